#!/bin/bash
# build-boot-image.sh - build vmi's test fixture: a real, bootable Debian VM
# disk image plus the kernel/initrd needed to boot it directly under QEMU.
#
# usage: scripts/build-boot-image.sh [-h] [OUTDIR]
#
#   OUTDIR  where the result goes; default: the cache directory printed by
#           scripts/boot-image-path.sh (keyed by this script's sha256, so
#           editing this script starts a fresh cache entry).
#
# Result (OUTDIR):
#   disk.raw    raw ext4 filesystem, no partition table (the guest's /dev/vda),
#               label vmi-root; Debian <suite> --variant=minbase + systemd-sysv,
#               udev, linux-image-amd64, initramfs-tools
#   vmlinuz     the guest kernel, copied out of the image
#   initrd.img  its initramfs (checked to contain virtio_blk, virtio_pci, ext4)
#   cmdline     kernel command line for QEMU -append
#   info        key=value facts: versions, sizes, build timings
#   .complete   written last; its presence means OUTDIR is whole
#
# The guest boots to multi-user.target, where a oneshot unit writes
#   VMI-BOOT-OK uptime=<seconds> kernel=<release>
# to /dev/ttyS0 and powers the VM off (it stays up if the kernel command line
# contains 'vmi.nopoweroff').  Root has no password (test image only).
#
# Behaviour:
#   - If OUTDIR/.complete exists, exits 0 at once.
#   - Builds in a scratch directory next to OUTDIR and renames the finished
#     result into place; an interrupted build leaves no half-made OUTDIR that
#     could be mistaken for a good one. Concurrent runs for the same OUTDIR
#     serialize on OUTDIR.lock.
#   - The debootstrap tree is deleted afterwards; only the files above stay.
#   - No loop devices or mounts: the image is populated with 'mkfs.ext4 -d'.
#   - On success prints OUTDIR on stdout; progress goes to stderr.
#
# Exit status: 0 built (or already complete), 1 build failed, 2 usage error,
#   3 cannot build here (not root, debootstrap/mkfs missing, mirror
#     unreachable) - a one-line reason is printed on stderr; callers skip.
#
# Environment (NB: not part of the cache key - pass an explicit OUTDIR when
# changing them):
#   SIZE=1536M                          virtual size of disk.raw
#   SUITE=bookworm                      Debian suite
#   MIRROR=http://deb.debian.org/debian Debian mirror
#   DEB_CACHE=                          optional directory to keep downloaded
#                                       .debs in across builds (debootstrap
#                                       --cache-dir)
set -euo pipefail

PROG=build-boot-image.sh
MARKER=VMI-BOOT-OK
FS_LABEL=vmi-root
GUEST_HOSTNAME=vmi-guest
CMDLINE='root=/dev/vda rw console=ttyS0 panic=-1'
REQUIRED_MODULES=(virtio_blk virtio_pci ext4)
PACKAGES=systemd-sysv,udev,linux-image-amd64,initramfs-tools

SIZE=${SIZE:-1536M}
SUITE=${SUITE:-bookworm}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
DEB_CACHE=${DEB_CACHE:-}

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }
say()   { printf '%s [%(%H:%M:%S)T] %s\n' "$PROG" -1 "$*" >&2; }
fail()  { printf '%s: error: %s\n' "$PROG" "$*" >&2; exit 1; }
skip()  { printf '%s: cannot build here: %s\n' "$PROG" "$*" >&2; exit 3; }

case ${1:-} in
  -h|--help) usage; exit 0 ;;
  -*) usage >&2; exit 2 ;;
esac
[ $# -le 1 ] || { usage >&2; exit 2; }

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OUT=${1:-$("$HERE/boot-image-path.sh")}
OUT=${OUT%/}

# Fast path: nothing to do.
if [ -e "$OUT/.complete" ]; then echo "$OUT"; exit 0; fi

# ------------------------------------------------------------ preconditions
[ "$(id -u)" -eq 0 ] || skip "needs root (debootstrap, chroot, file ownership)"
for tool in debootstrap mkfs.ext4 e2fsck chroot flock wget; do
  command -v "$tool" >/dev/null 2>&1 || skip "'$tool' not installed (see scripts/install-deps.sh)"
done
# '-d root-directory' appeared in e2fsprogs 1.43
{ mkfs.ext4 2>&1 || true; } | grep -q -- '-d ' || skip "mkfs.ext4 has no -d option (need e2fsprogs >= 1.43)"
wget -q -T 20 -t 2 -O /dev/null "$MIRROR/dists/$SUITE/InRelease" \
  || skip "Debian mirror unreachable: $MIRROR/dists/$SUITE/InRelease"

PARENT=$(dirname "$OUT")
mkdir -p "$PARENT"
PARENT=$(cd "$PARENT" && pwd)
OUT=$PARENT/$(basename "$OUT")

# ------------------------------------------------------------ helpers
# Paths of mount points at or below $1, deepest first.
mounts_below() {
  awk -v d="$1/" 'index($2 "/", d) == 1 { print $2 }' /proc/self/mounts | sort -r
}
# rm -rf that refuses to descend into anything still mounted (debootstrap
# mounts /proc etc. inside the chroot while it runs).
remove_tree() {
  local dir=$1 m
  [ -e "$dir" ] || return 0
  for m in $(mounts_below "$dir"); do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done
  if [ -n "$(mounts_below "$dir")" ]; then
    printf '%s: warning: still mounted below %s; not removing it\n' "$PROG" "$dir" >&2
    return 1
  fi
  rm -rf --one-file-system "$dir"
}

# Run a long command in its own process group, so that when we are signalled
# we can stop it together with everything it started (debootstrap -> dpkg ->
# maintainer scripts) instead of waiting for it to finish.
CHILD=
run_child() {
  local rc=0
  setsid "$@" & CHILD=$!
  wait "$CHILD" || rc=$?
  CHILD=
  return "$rc"
}
stop_child() {
  [ -n "$CHILD" ] || return 0
  local i
  kill -TERM -- "-$CHILD" 2>/dev/null || true
  for i in 1 2 3 4 5 6 7 8 9 10; do
    kill -0 -- "-$CHILD" 2>/dev/null || break
    sleep 0.3
  done
  kill -KILL -- "-$CHILD" 2>/dev/null || true
  wait "$CHILD" 2>/dev/null || true
  CHILD=
}

WORK=
cleanup() {
  stop_child
  if [ -n "$WORK" ]; then remove_tree "$WORK" || true; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP

# ------------------------------------------------------------ lock, scratch
exec 9>"$OUT.lock"
if ! flock -n 9; then
  say "another build of $OUT is running; waiting for it"
  flock 9
fi
if [ -e "$OUT/.complete" ]; then echo "$OUT"; exit 0; fi

# We hold the lock, so scratch dirs of this OUTDIR are leftovers of killed runs.
for stale in "$OUT".build.*; do
  [ -d "$stale" ] || continue
  say "removing leftover scratch directory $stale"
  remove_tree "$stale" || fail "cannot remove $stale"
done

WORK=$(mktemp -d "$OUT.build.XXXXXX")
ROOT=$WORK/rootfs          # debootstrap tree; never part of the result
STAGE=$WORK/out            # becomes OUTDIR
mkdir -p "$STAGE"
T_START=$SECONDS

# ------------------------------------------------------------ 1. debootstrap
say "debootstrap --variant=minbase $SUITE from $MIRROR (include: $PACKAGES)"
t=$SECONDS
ds_opts=(--variant=minbase --include="$PACKAGES")
if [ -n "$DEB_CACHE" ]; then
  mkdir -p "$DEB_CACHE"
  ds_opts+=(--cache-dir="$(cd "$DEB_CACHE" && pwd)")
fi
if ! run_child debootstrap "${ds_opts[@]}" "$SUITE" "$ROOT" "$MIRROR" >"$WORK/debootstrap.log" 2>&1; then
  tail -n 15 "$WORK/debootstrap.log" | sed 's/^/  | /' >&2
  if grep -qiE "Failed getting release|Couldn't download|name resolution|unable to resolve|Network is unreachable|Connection (refused|timed out)" \
       "$WORK/debootstrap.log"; then
    skip "debootstrap could not download from $MIRROR"
  fi
  fail "debootstrap failed"
fi
T_DEBOOTSTRAP=$((SECONDS - t))

# ------------------------------------------------------------ 2. configure
say "configuring the guest"
t=$SECONDS
echo "$GUEST_HOSTNAME" > "$ROOT/etc/hostname"
cat > "$ROOT/etc/hosts" <<EOF
127.0.0.1	localhost
127.0.1.1	$GUEST_HOSTNAME
::1	localhost ip6-localhost ip6-loopback
EOF
printf 'LABEL=%s\t/\text4\tdefaults,errors=remount-ro\t0\t1\n' "$FS_LABEL" > "$ROOT/etc/fstab"
# empty password field = log in as root without a password
sed -i 's/^root:[^:]*:/root::/' "$ROOT/etc/shadow"
grep -q '^root::' "$ROOT/etc/shadow" || fail "could not clear root's password"

install -d -m 0755 "$ROOT/usr/local/sbin"
cat > "$ROOT/usr/local/sbin/vmi-boot-ok" <<EOF
#!/bin/sh
# Installed by vmi's build-boot-image.sh: tell the host (serial console)
# that the guest reached multi-user.target, then power off.
read -r up _ < /proc/uptime
echo "$MARKER uptime=\$up kernel=\$(uname -r)" > /dev/ttyS0
case " \$(cat /proc/cmdline) " in
  *" vmi.nopoweroff "*) ;;
  *) systemctl --no-block poweroff ;;
esac
EOF
chmod 0755 "$ROOT/usr/local/sbin/vmi-boot-ok"
cat > "$ROOT/etc/systemd/system/vmi-boot-ok.service" <<'EOF'
[Unit]
Description=Report boot completion on ttyS0 (vmi test fixture)
After=multi-user.target

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/vmi-boot-ok

[Install]
WantedBy=multi-user.target
EOF
install -d "$ROOT/etc/systemd/system/multi-user.target.wants"
ln -sfn /etc/systemd/system/vmi-boot-ok.service \
  "$ROOT/etc/systemd/system/multi-user.target.wants/vmi-boot-ok.service"

# downloaded .debs and package lists are ~100 MB of dead weight
run_child chroot "$ROOT" apt-get clean
rm -rf "$ROOT"/var/lib/apt/lists/* "$ROOT"/var/cache/apt/*.bin \
       "$ROOT"/tmp/* "$ROOT"/var/tmp/* "$ROOT"/var/log/apt/* "$ROOT"/var/log/dpkg.log
T_CONFIGURE=$((SECONDS - t))

# ------------------------------------------------------------ 3. kernel, initrd
KVER=$(find "$ROOT/boot" -maxdepth 1 -name 'vmlinuz-*' -printf '%f\n' | sed 's/^vmlinuz-//' | sort -V | tail -n 1)
[ -n "$KVER" ] || fail "no kernel found in the guest's /boot"
if [ ! -s "$ROOT/boot/initrd.img-$KVER" ]; then
  say "no initrd for $KVER; running update-initramfs"
  run_child chroot "$ROOT" update-initramfs -c -k "$KVER" >&2
fi
run_child chroot "$ROOT" lsinitramfs "/boot/initrd.img-$KVER" > "$WORK/initrd.list"
builtin_list=$ROOT/usr/lib/modules/$KVER/modules.builtin
for mod in "${REQUIRED_MODULES[@]}"; do
  # a module the kernel has built in needs no .ko in the initrd
  if grep -qE "/$mod\.ko(\.[a-z]+)?\$" "$WORK/initrd.list"; then continue; fi
  if [ -f "$builtin_list" ] && grep -qE "/$mod\.ko\$" "$builtin_list"; then continue; fi
  fail "initrd lacks $mod (the guest could not find its root disk)"
done
cp "$ROOT/boot/vmlinuz-$KVER" "$STAGE/vmlinuz"
cp "$ROOT/boot/initrd.img-$KVER" "$STAGE/initrd.img"
echo "$CMDLINE" > "$STAGE/cmdline"

pkg_version() { dpkg-query --admindir="$ROOT/var/lib/dpkg" -W -f='${Version}' "$1" 2>/dev/null || echo unknown; }
KPKG_VERSION=$(pkg_version "linux-image-$KVER")
SYSTEMD_VERSION=$(pkg_version systemd)
PKG_COUNT=$(dpkg-query --admindir="$ROOT/var/lib/dpkg" -W | wc -l)
ROOTFS_BYTES=$(du -sb "$ROOT" | cut -f1)

# ------------------------------------------------------------ 4. filesystem image
say "mkfs.ext4 -d: $SIZE image from the guest tree"
t=$SECONDS
# lazy_*_init=0: initialise inode tables and journal now; otherwise the guest
# kernel's ext4lazyinit thread writes them in the background on every boot.
mkfs.ext4 -q -F -L "$FS_LABEL" -E lazy_itable_init=0,lazy_journal_init=0 \
  -d "$ROOT" "$STAGE/disk.raw" "$SIZE" >&2   # -q still chats on stdout
if ! e2fsck -fn "$STAGE/disk.raw" > "$WORK/e2fsck.log" 2>&1; then
  sed 's/^/  | /' "$WORK/e2fsck.log" >&2
  fail "e2fsck reports problems in the new image"
fi
T_MKFS=$((SECONDS - t))

# the tree is in disk.raw now; drop it before the rename to free the space early
remove_tree "$ROOT" || fail "cannot remove $ROOT"

VIRT_BYTES=$(stat -c %s "$STAGE/disk.raw")
ALLOC_BYTES=$(( $(stat -c %b "$STAGE/disk.raw") * $(stat -c %B "$STAGE/disk.raw") ))
cat > "$STAGE/info" <<EOF
built_at=$(date -u +%Y-%m-%dT%H:%M:%SZ)
builder_sha256=$(sha256sum "$HERE/$PROG" | cut -d' ' -f1)
suite=$SUITE
mirror=$MIRROR
variant=minbase
packages=$PACKAGES
package_count=$PKG_COUNT
kernel_release=$KVER
kernel_package_version=$KPKG_VERSION
systemd_version=$SYSTEMD_VERSION
fs_label=$FS_LABEL
hostname=$GUEST_HOSTNAME
marker=$MARKER
cmdline=$CMDLINE
rootfs_bytes=$ROOTFS_BYTES
disk_virtual_bytes=$VIRT_BYTES
disk_allocated_bytes=$ALLOC_BYTES
vmlinuz_bytes=$(stat -c %s "$STAGE/vmlinuz")
initrd_bytes=$(stat -c %s "$STAGE/initrd.img")
debootstrap_s=$T_DEBOOTSTRAP
configure_s=$T_CONFIGURE
mkfs_s=$T_MKFS
build_s=$((SECONDS - T_START))
EOF

# ------------------------------------------------------------ 5. publish
# Make the data durable before the rename makes it visible, and the stamp
# durable last.
sync "$STAGE"/disk.raw "$STAGE"/vmlinuz "$STAGE"/initrd.img "$STAGE"/cmdline "$STAGE"/info
if [ -e "$OUT" ]; then
  say "replacing incomplete $OUT"
  remove_tree "$OUT" || fail "cannot remove incomplete $OUT"
fi
mv "$STAGE" "$OUT"
touch "$OUT/.complete"
sync "$OUT/.complete" "$OUT"
say "done in $((SECONDS - T_START))s: $OUT (disk.raw virtual $VIRT_BYTES, allocated $ALLOC_BYTES bytes; kernel $KVER)"
echo "$OUT"
