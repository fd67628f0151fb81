#!/bin/bash
# install-deps.sh - install the Debian packages vmi's tests, demo and
# benchmarks use, when any is missing. Needs root (apt-get); without root it
# lists what is missing and exits 0 so callers can skip what needs them.
#
# usage: scripts/install-deps.sh [--check]
#   --check   only report what is missing (exit 1 when something is)
set -uo pipefail
PKGS=(qemu-utils qemu-system-x86 qemu-system-common libnbd-bin python3-libnbd nbdkit nginx-light
      fuse3 b3sum debootstrap e2fsprogs curl ceph-mon ceph-osd radosgw awscli
      openssh-client openssl)
# zstd-napi (an optional npm dependency) compiles its bundled zstd at `npm ci`
# with node-gyp; where that failed (no compiler then), install the compiler and
# build it again: without it vmi reads compressed objects but cannot write them.
zstd_native() { node -e "require('zstd-napi/binding')" >/dev/null 2>&1; }
if [ -d node_modules ] && ! zstd_native; then
  if [ "${1:-}" = --check ]; then echo "missing: the native zstd module (npm rebuild zstd-napi)"
  elif [ "$(id -u)" = 0 ]; then
    command -v g++ >/dev/null && command -v make >/dev/null || {
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends g++ make python3 >/dev/null; }
    npm rebuild zstd-napi >/dev/null 2>&1 && zstd_native || echo "install-deps: could not build zstd-napi; vmi will write chunks uncompressed" >&2
  fi
fi
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then exit 0; fi
if [ "${1:-}" = --check ]; then echo "missing: ${missing[*]}"; exit 1; fi
if [ "$(id -u)" != 0 ]; then
  echo "install-deps: not root; missing Debian packages: ${missing[*]} (tests that need them are skipped)" >&2
  exit 0
fi
echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq || { echo "install-deps: apt-get update failed" >&2; exit 1; }
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
  || { echo "install-deps: apt-get install failed" >&2; exit 1; }
# nginx's package starts a system instance on port 80; the tests start their own.
if command -v systemctl >/dev/null 2>&1; then systemctl disable --now nginx >/dev/null 2>&1 || true; fi
pkill -x nginx 2>/dev/null || true
exit 0
