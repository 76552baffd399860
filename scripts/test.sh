#!/bin/sh
# The test command: runs on a machine with only Node and npm (it installs
# Deno from npm), installs and starts the real servers, runs everything, and
# ends with "N passed, N failed". Arguments narrow `deno test` to some files.
set -e
. "$(cd "$(dirname "$0")" && pwd)/deno.sh"
cd "$scripts_dir/.."
exec "$DENO" run --quiet --no-prompt \
  --allow-env --allow-read --allow-write --allow-net --allow-run --allow-sys \
  scripts/test.ts "$@"
