#!/bin/sh
# Puts `stormlock` on PATH from this clone: links the launcher into DIR
# (default ~/.local/bin), installs Deno from npm on first use (Node and npm
# are all it needs), and checks it runs. Run it again after moving the clone.
#   sh scripts/install.sh [DIR]
set -e
scripts_dir=$(cd "$(dirname "$0")" && pwd)
dir=${1:-${HOME:?set HOME or name a folder: sh scripts/install.sh DIR}/.local/bin}
mkdir -p "$dir"
if [ -e "$dir/stormlock" ] && ! [ -L "$dir/stormlock" ]; then
  echo "stormlock: $dir/stormlock exists and is not a link this script made; move it aside, or name another folder: sh scripts/install.sh DIR" >&2
  exit 73
fi
ln -sf "$scripts_dir/stormlock" "$dir/stormlock"
version=$("$dir/stormlock" version)
echo "stormlock: installed $version as $dir/stormlock (a link to $scripts_dir/stormlock)" >&2
case ":$PATH:" in
*":$dir:"*) ;;
*)
  echo "stormlock: $dir is not on PATH; add it, e.g. echo 'export PATH=\"$dir:\$PATH\"' >> ~/.profile" >&2
  ;;
esac
echo "stormlock: shell completions: eval \"\$(stormlock completions bash)\" in ~/.bashrc (zsh and fish: stormlock completions --help)" >&2
