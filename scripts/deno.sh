# Sourced by the other scripts: sets DENO to a Deno 2.9.6 binary, installing
# it from npm into scripts/.deno on machines that have only Node.
DENO_VERSION=2.9.6
scripts_dir=$(cd "$(dirname "$0")" && pwd)
if [ -z "${DENO:-}" ]; then
  if command -v deno >/dev/null 2>&1 &&
    deno --version 2>/dev/null | grep -q "^deno $DENO_VERSION "; then
    DENO=$(command -v deno)
  else
    DENO="$scripts_dir/.deno/node_modules/.bin/deno"
    if ! [ -x "$DENO" ] || ! "$DENO" --version >/dev/null 2>&1; then
      echo "stormlock: installing Deno $DENO_VERSION from npm into scripts/.deno (once)" >&2
      # Not `npm ci`: it rejects this lock, which lacks Deno's platform
      # packages for other systems (not published for every version).
      if ! npm install --no-save --prefix "$scripts_dir/.deno" --no-audit \
        --no-fund --loglevel=error >&2; then
        echo "stormlock: could not install Deno from npm; check npm's registry access" >&2
        exit 69
      fi
    fi
  fi
fi
export DENO
