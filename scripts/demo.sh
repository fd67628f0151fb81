#!/bin/bash
# demo.sh - `npm run demo`: the main job end to end on this machine.
# Installs missing Debian packages (as root), makes sure the CLI is built,
# then runs scripts/demo.mjs. Ctrl-C cleans up.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh || echo "demo: could not install Debian packages; parts of the demo will be skipped" >&2
[ -f dist/index.js ] && [ -z "$(find src -newer dist/index.js -name '*.ts' | head -1)" ] || npm run build --silent || exit 1
exec node scripts/demo.mjs "$@"
