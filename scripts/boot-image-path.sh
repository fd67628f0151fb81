#!/bin/bash
# boot-image-path.sh - print the cache directory that scripts/build-boot-image.sh
# builds into by default (and that scripts/boot-vm.sh reads from by default).
#
# usage: scripts/boot-image-path.sh [-h]
#
# The directory is keyed by the builder's own content, so any edit to
# build-boot-image.sh yields a new directory (the old image is never reused):
#
#   ${VMI_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/vmi}/boot-image-<H>
#
# where <H> = first 16 hex digits of sha256(scripts/build-boot-image.sh).
# Prints the path only; it does not create or check the directory.
set -euo pipefail

if [ "${1:-}" = -h ] || [ "${1:-}" = --help ]; then
  sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"
  exit 0
fi

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
builder=$script_dir/build-boot-image.sh
[ -f "$builder" ] || { echo "boot-image-path.sh: builder not found: $builder" >&2; exit 2; }

hash=$(sha256sum "$builder" | cut -c1-16)
base=${VMI_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/vmi}
printf '%s/boot-image-%s\n' "$base" "$hash"
