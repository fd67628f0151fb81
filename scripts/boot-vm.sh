#!/bin/bash
# boot-vm.sh - boot a disk image made by scripts/build-boot-image.sh under QEMU
# and succeed only if the guest reports, on its serial console, that it
# reached multi-user.target (the line 'VMI-BOOT-OK uptime=... kernel=...').
#
# usage: scripts/boot-vm.sh [options] DISK
#
#   DISK  a disk image file (raw unless -f), or an NBD URI QEMU understands:
#           nbd+unix:///?socket=/run/vmi.sock      (default export)
#           nbd+unix:///NAME?socket=/run/vmi.sock
#           nbd://HOST:PORT/NAME
#
# options:
#   -d DIR    directory holding vmlinuz, initrd.img and (optional) cmdline;
#             default: DISK's directory if it holds a vmlinuz, else the cache
#             directory printed by scripts/boot-image-path.sh
#   -t SECS   give up when no marker arrived after SECS seconds (default 300)
#   -A ACCEL  auto | kvm | tcg (default auto: kvm only when /dev/kvm is usable,
#             the CPU has vmx/svm and the kvm_pvm module is not loaded;
#             otherwise tcg, i.e. software emulation, ~20-25 s per boot)
#   -m MB     guest memory (default 512)
#   -l FILE   write the serial console log to FILE (kept); default: a
#             temporary file that is removed
#   -w        writable: guest writes go to DISK. Default: the disk is attached
#             with snapshot=on (writes go to a temporary overlay that is
#             deleted), so DISK or the NBD export may be read-only
#   -f FMT    disk format (default raw)
#   -a ARGS   extra kernel arguments appended to the command line
#             (e.g. 'vmi.nopoweroff' keeps the guest running after the marker)
#   -g SECS   after the marker, wait up to SECS for the guest to power off
#             before stopping QEMU (default 30; 0 = stop at once)
#   -h        print this help
#
# Output: one line on stdout, success or not, e.g.
#   BOOT-RESULT ok=1 accel=tcg marker_s=21.87 exit_s=23.02 guest_uptime_s=19.64 kernel=6.1.0-28-amd64 qemu_rc=0
# marker_s / exit_s: seconds from QEMU start to the marker / to QEMU's exit
# ('killed' if it had to be stopped); guest_uptime_s: the guest's own uptime
# when it printed the marker. Progress and diagnostics go to stderr; on
# failure these include QEMU's stderr and the end of the console log.
#
# Exit status: 0 marker seen; 1 boot failed or timed out; 2 usage error or
#   missing kernel/disk; 3 qemu-system-x86_64 not installed (callers skip).
set -euo pipefail

PROG=boot-vm.sh
MARKER=VMI-BOOT-OK
DEFAULT_CMDLINE='root=/dev/vda rw console=ttyS0 panic=-1'

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }
die()   { printf '%s: %s\n' "$PROG" "$1" >&2; exit "${2:-2}"; }
note()  { printf '%s: %s\n' "$PROG" "$*" >&2; }

DIR= TIMEOUT=300 ACCEL=auto MEM=512 LOG= WRITABLE=0 FORMAT=raw EXTRA_ARGS= GRACE=30
while getopts ':d:t:A:m:l:wf:a:g:h' opt; do
  case $opt in
    d) DIR=$OPTARG ;;
    t) TIMEOUT=$OPTARG ;;
    A) ACCEL=$OPTARG ;;
    m) MEM=$OPTARG ;;
    l) LOG=$OPTARG ;;
    w) WRITABLE=1 ;;
    f) FORMAT=$OPTARG ;;
    a) EXTRA_ARGS=$OPTARG ;;
    g) GRACE=$OPTARG ;;
    h) usage; exit 0 ;;
    :) usage >&2; die "option -$OPTARG needs a value" ;;
    *) usage >&2; die "unknown option -$OPTARG" ;;
  esac
done
shift $((OPTIND - 1))
[ $# -eq 1 ] || { usage >&2; exit 2; }
DISK=$1

for n in "$TIMEOUT" "$MEM" "$GRACE"; do
  [[ $n =~ ^[0-9]+$ ]] || die "not a whole number: $n"
done
case $ACCEL in auto|kvm|tcg) ;; *) die "-A must be auto, kvm or tcg" ;; esac

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# ------------------------------------------------------------ disk, kernel
case $DISK in
  nbd:*|nbd+*) ;;
  *) [ -f "$DISK" ] || die "no such disk image: $DISK"
     if [ -z "$DIR" ] && [ -f "$(dirname "$DISK")/vmlinuz" ]; then DIR=$(dirname "$DISK"); fi ;;
esac
[ -n "$DIR" ] || DIR=$("$HERE/boot-image-path.sh")
for f in vmlinuz initrd.img; do
  [ -f "$DIR/$f" ] || die "missing $DIR/$f (build it with scripts/build-boot-image.sh, or pass -d DIR)"
done
CMDLINE=$DEFAULT_CMDLINE
if [ -s "$DIR/cmdline" ]; then CMDLINE=$(head -n 1 "$DIR/cmdline"); fi
CMDLINE="$CMDLINE${EXTRA_ARGS:+ $EXTRA_ARGS}"

command -v qemu-system-x86_64 >/dev/null 2>&1 \
  || die "qemu-system-x86_64 not installed (Debian: qemu-system-x86)" 3

# ------------------------------------------------------------ accelerator
HWVIRT=0
if grep -qwE 'vmx|svm' /proc/cpuinfo && [ ! -d /sys/module/kvm_pvm ]; then HWVIRT=1; fi
if [ "$ACCEL" = auto ]; then
  # An openable /dev/kvm is not enough: a PVM-backed /dev/kvm (no vmx/svm)
  # cannot run a stock distro kernel usefully, and '-cpu host' aborts there.
  if [ "$HWVIRT" = 1 ] && [ -r /dev/kvm ] && [ -w /dev/kvm ]; then
    ACCEL=kvm
  else
    ACCEL=tcg
  fi
fi
CPU_OPTS=()
if [ "$ACCEL" = kvm ] && [ "$HWVIRT" = 1 ]; then CPU_OPTS=(-cpu host); fi

# ------------------------------------------------------------ run QEMU
TMP=$(mktemp -d "${TMPDIR:-/tmp}/vmi-boot.XXXXXX")
QPID=
stop_qemu() {
  [ -n "$QPID" ] || return 0
  if kill -0 "$QPID" 2>/dev/null; then
    kill "$QPID" 2>/dev/null || true
    local i
    for i in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$QPID" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$QPID" 2>/dev/null || true
  fi
  wait "$QPID" 2>/dev/null || true
  QPID=
}
cleanup() { stop_qemu; rm -rf "$TMP"; }
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP

[ -n "$LOG" ] || LOG=$TMP/console.log
: > "$LOG"
QEMU_ERR=$TMP/qemu.stderr

DRIVE="file=${DISK//,/,,},format=$FORMAT,if=virtio"
[ "$WRITABLE" = 1 ] || DRIVE="$DRIVE,snapshot=on"

QEMU=(qemu-system-x86_64
  -name vmi-boot
  -nodefaults -no-user-config
  -accel "$ACCEL" "${CPU_OPTS[@]}"
  -m "$MEM" -smp 1
  -display none -monitor none
  -serial "file:$LOG"
  -no-reboot
  -nic none
  -kernel "$DIR/vmlinuz" -initrd "$DIR/initrd.img" -append "$CMDLINE"
  -drive "$DRIVE")
note "${QEMU[*]}"

# microseconds since the epoch, into $NOW_US (no subshell)
now_us() { NOW_US=${EPOCHREALTIME//[!0-9]/}; NOW_US=$((10#$NOW_US)); }
secs() { printf '%d.%02d' $(($1 / 1000000)) $(($1 % 1000000 / 10000)); }

now_us; T0=$NOW_US
# snapshot=on puts its temporary overlay in $TMPDIR
TMPDIR=$TMP "${QEMU[@]}" </dev/null >/dev/null 2>"$QEMU_ERR" &
QPID=$!

MARKER_US= EXIT_US= KILLED=0 QEMU_RC=
DEADLINE_US=$((T0 + TIMEOUT * 1000000))
while :; do
  if kill -0 "$QPID" 2>/dev/null; then alive=1; else alive=0; fi
  now_us
  if [ -z "$MARKER_US" ] && grep -aq "$MARKER uptime=" "$LOG"; then
    MARKER_US=$((NOW_US - T0))
    DEADLINE_US=$((NOW_US + GRACE * 1000000))
  fi
  if [ "$alive" = 0 ]; then
    EXIT_US=$((NOW_US - T0))
    QEMU_RC=0; wait "$QPID" || QEMU_RC=$?
    QPID=
    break
  fi
  if [ "$NOW_US" -ge "$DEADLINE_US" ]; then
    KILLED=1
    stop_qemu
    break
  fi
  sleep 0.1
done

MARKER_LINE=$(grep -ao "$MARKER uptime=[0-9.]* kernel=[^[:space:]]*" "$LOG" | head -n 1 || true)
GUEST_UPTIME=none GUEST_KERNEL=none
if [ -n "$MARKER_LINE" ]; then
  GUEST_UPTIME=${MARKER_LINE#*uptime=}; GUEST_UPTIME=${GUEST_UPTIME%% *}
  GUEST_KERNEL=${MARKER_LINE##*kernel=}
  # the marker can land in the last 0.1 s before QEMU exits
  [ -n "$MARKER_US" ] || MARKER_US=${EXIT_US:-$((NOW_US - T0))}
fi

OK=0 MARKER_S=none EXIT_S=killed
if [ -n "$MARKER_US" ]; then OK=1; MARKER_S=$(secs "$MARKER_US"); fi
if [ -n "$EXIT_US" ]; then EXIT_S=$(secs "$EXIT_US"); fi
echo "BOOT-RESULT ok=$OK accel=$ACCEL marker_s=$MARKER_S exit_s=$EXIT_S" \
     "guest_uptime_s=$GUEST_UPTIME kernel=$GUEST_KERNEL qemu_rc=${QEMU_RC:-none}"

if [ "$OK" = 1 ]; then
  [ "$KILLED" = 0 ] || note "marker seen, but the guest did not power off within ${GRACE}s; QEMU stopped"
  exit 0
fi
if [ "$KILLED" = 0 ] && grep -q 'terminating on signal' "$QEMU_ERR"; then
  # e.g. ^C on the terminal reached QEMU too; QEMU then exits with status 0
  note "interrupted: $(head -n 1 "$QEMU_ERR")"
  exit 130
fi
if [ "$KILLED" = 1 ]; then
  note "FAILED: no $MARKER within ${TIMEOUT}s; QEMU stopped"
else
  note "FAILED: QEMU exited with status $QEMU_RC after ${EXIT_S}s without printing $MARKER"
fi
if [ -s "$QEMU_ERR" ]; then
  note "QEMU stderr:"
  sed 's/^/  | /' "$QEMU_ERR" >&2
fi
note "last console lines:"
tail -n 30 "$LOG" | tr -d '\r' | sed 's/^/  | /' >&2
exit 1
