# Sourced by the other scripts: sets DENO to a Deno 2.9.6 binary, installing
# it from npm into scripts/.deno on machines that have only Node. The check
# is made once and remembered in scripts/.deno/.deno-path, so a command
# pays no `deno --version` probe.
DENO_VERSION=2.9.6
# The launcher sets scripts_dir (through a symbolic link, too); other
# callers get it here, with no subshell when $0 is an absolute path.
if [ -z "${scripts_dir:-}" ]; then
  case "$0" in
  /*/*) scripts_dir=${0%/*} ;;
  *) scripts_dir=$(cd "$(dirname "$0")" && pwd) ;;
  esac
fi
if [ -z "${DENO:-}" ]; then
  remembered="$scripts_dir/.deno/.deno-path-$DENO_VERSION"
  DENO=
  [ -r "$remembered" ] && read -r DENO <"$remembered"
  if [ -z "$DENO" ] || ! [ -x "$DENO" ]; then
    if command -v deno >/dev/null 2>&1 &&
      deno --version 2>/dev/null | grep -q "^deno $DENO_VERSION "; then
      DENO=$(command -v deno)
    else
      DENO="$scripts_dir/.deno/node_modules/.bin/deno"
      if ! [ -x "$DENO" ] || ! "$DENO" --version >/dev/null 2>&1; then
        echo "stormlock: installing Deno $DENO_VERSION from npm into scripts/.deno (once)" >&2
        log="$scripts_dir/.deno/npm-install.log"
        # Not `npm ci`: it rejects this lock, which lacks Deno's platform
        # packages for other systems (not published for every version).
        if ! npm install --no-save --prefix "$scripts_dir/.deno" --no-audit \
          --no-fund --loglevel=error >"$log" 2>&1 ||
          ! "$DENO" --version >/dev/null 2>&1; then
          echo "stormlock: could not install Deno from npm ($(grep -m1 -i 'err' "$log" || echo 'see the log')); check npm's registry access and ~/.npmrc, then retry (log: $log)" >&2
          exit 69
        fi
      fi
    fi
    printf '%s\n' "$DENO" >"$remembered"
  fi
fi
export DENO
