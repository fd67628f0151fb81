#!/usr/bin/env bash
# radosgw.sh - a throwaway S3 endpoint (Ceph radosgw, Debian 12 packages) for tests and benchmarks.
#
#   scripts/radosgw.sh start   (root) one ceph-mon, one ceph-osd with memstore (object data in the
#                              OSD's RAM) and radosgw on 127.0.0.1:<free port> in a fresh temp dir,
#                              then one S3 user with known keys. Prints eval-able lines:
#                              RGW_DIR S3_ENDPOINT S3_ACCESS_KEY S3_SECRET_KEY S3_REGION
#   scripts/radosgw.sh stop DIR  stop exactly those daemons (rgw, then osd, then mon: an OSD
#                              stopped after its mon waits 5 s for it) and remove DIR.
#
# Knobs (env): S3_ACCESS_KEY, S3_SECRET_KEY, RGW_BASE (parent of the temp dir, default /tmp),
# RGW_MEMSTORE_BYTES (cap of the OSD's RAM store, default 4 GiB; memstore holds ~2.6x the bytes
# stored and never shrinks: keep test data to a few hundred MiB), RGW_USAGE=1 (usage log on, for
# egress counts via `radosgw-admin usage show`).
set -euo pipefail

T0=$(date +%s%N)
log() { local ms=$(( ($(date +%s%N) - T0) / 1000000 )); printf '[radosgw %d.%03ds] %s\n' $((ms/1000)) $((ms%1000)) "$*" >&2; }

ours() {  # pid still runs one of our daemons with our config (guards against pid reuse)
  local pid=$1 D=$2 exe
  exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || return 1
  case "$exe" in */ceph-mon|*/ceph-osd|*/radosgw) ;; *) return 1;; esac
  { tr '\0' '\n' <"/proc/$pid/environ"; } 2>/dev/null | grep -qx "CEPH_CONF=$D/ceph.conf"
}

stop() {
  local D=$1 pids=() pid name
  case "$D" in */vmi-rgw.*) ;; *) echo "radosgw.sh: refusing to remove '$D'" >&2; exit 1;; esac
  [ -d "$D" ] || exit 0
  if [ -f "$D/pids" ]; then
    while read -r pid name; do ours "$pid" "$D" && pids=("$pid" "${pids[@]}"); done <"$D/pids"
  fi
  for pid in "${pids[@]}"; do   # reverse start order, one at a time
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 30); do ours "$pid" "$D" || break; sleep 0.1; done
    ours "$pid" "$D" && kill -KILL "$pid" 2>/dev/null
    while ours "$pid" "$D"; do sleep 0.05; done
  done
  rm -rf -- "$D"
}

free_port() {  # outside the ephemeral range, nothing listening
  local p
  for _ in $(seq 200); do
    p=$(( 20000 + RANDOM % 12000 ))
    if ! ss -Hltn "sport = :$p" | grep -q .; then echo "$p"; return; fi
  done
  return 1
}

start() {
  [ "$(id -u)" = 0 ] || { echo "radosgw.sh: needs root" >&2; exit 1; }
  local p
  for p in ceph-mon ceph-osd radosgw; do
    command -v "$p" >/dev/null || { echo "radosgw.sh: $p is not installed (scripts/install-deps.sh)" >&2; exit 1; }
  done
  local AK=${S3_ACCESS_KEY:-VMITESTACCESSKEY0001} SK=${S3_SECRET_KEY:-vmitestsecretkey000000000000000000000001}
  D=$(mktemp -d "${RGW_BASE:-/tmp}/vmi-rgw.XXXXXX")
  mkdir -p "$D"/{run,log,mon.a,osd.0,rgw}
  local MON_PORT RGW_PORT FSID
  MON_PORT=$(free_port); RGW_PORT=$(free_port)
  [ "$MON_PORT" != "$RGW_PORT" ] || RGW_PORT=$(free_port)
  FSID=$(cat /proc/sys/kernel/random/uuid)
  cat >"$D/ceph.conf" <<CONF
[global]
fsid = $FSID
mon host = [v2:127.0.0.1:$MON_PORT]
public addr = 127.0.0.1
public network = 127.0.0.0/8
ms bind ipv6 = false
# no cephx between the daemons; S3 requests are still SigV4-checked by radosgw
auth cluster required = none
auth service required = none
auth client required = none
keyring = $D/keyring
run dir = $D/run
admin socket = $D/run/\$name.asok
pid file = $D/run/\$name.pid
log file = $D/log/\$name.log
log to stderr = false
err to stderr = true
# one OSD: size-1 pools with few PGs (rgw creates 6-7 pools; 32 PGs each would near the 250-PG budget)
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool delete = true
mon max pg per osd = 1000
mon warn on pool no redundancy = false
# the mon stops itself on a disk > 95 % full otherwise
mon data avail crit = 0
mon data avail warn = 0
# each pool rgw creates waits a paxos round (1 s by default): start-up ~15 s -> ~3 s
paxos propose interval = 0.05
paxos min wait = 0.01

[mon]
mon data = $D/mon.\$id

[osd]
osd data = $D/osd.\$id
osd objectstore = memstore
memstore device bytes = ${RGW_MEMSTORE_BYTES:-4294967296}
osd crush update on start = true

[client.rgw.a]
# radosgw defaults to cephx and a "secure" mon connection, which auth none cannot negotiate
auth client required = none
ms mon client mode = crc
rgw frontends = beast endpoint=127.0.0.1:$RGW_PORT
rgw dns name = localhost
rgw data = $D/rgw
rgw enable usage log = $([ "${RGW_USAGE:-0}" = 1 ] && echo true || echo false)
rgw usage log tick interval = 1
rgw usage log flush threshold = 1
rgw thread pool size = 128
debug rgw = 0/0
CONF
  export CEPH_CONF=$D/ceph.conf
  : >"$D/keyring"
  trap 'log "start-up failed; logs:"; tail -n 20 "$D"/log/* >&2 || true; stop "$D"; exit 1' ERR
  spawn() { local name=$1; shift; "$@" >>"$D/log/$name.out" 2>&1 & echo "$! $name" >>"$D/pids"; }
  monmaptool --create --fsid "$FSID" --addv a "[v2:127.0.0.1:$MON_PORT]" "$D/monmap" >/dev/null 2>&1
  ceph-mon --mkfs -i a --monmap "$D/monmap" >>"$D/log/mkfs.out" 2>&1
  spawn mon.a ceph-mon -f -i a
  local uuid id up=0
  uuid=$(cat /proc/sys/kernel/random/uuid)
  id=$(timeout 30 ceph --connect-timeout 20 osd new "$uuid")
  [ "$id" = 0 ] || { log "unexpected osd id $id"; false; }
  ceph-osd -i 0 --mkfs --osd-uuid "$uuid" >>"$D/log/mkfs.out" 2>&1
  spawn osd.0 ceph-osd -f -i 0
  for _ in $(seq 120); do
    up=$(timeout 30 ceph --connect-timeout 20 osd stat -f json 2>/dev/null | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin).get("num_up_osds",0))' || echo 0)
    [ "$up" = 1 ] && break
    sleep 0.5
  done
  [ "$up" = 1 ] || { log "osd did not come up"; false; }
  spawn rgw.a radosgw -f -n client.rgw.a
  local code=000
  for _ in $(seq 240); do
    code=$(curl -s -o /dev/null -m 2 -w '%{http_code}' "http://127.0.0.1:$RGW_PORT/" || true)
    [ "$code" = 200 ] && break
    sleep 0.25
  done
  [ "$code" = 200 ] || { log "radosgw does not answer on $RGW_PORT"; false; }
  radosgw-admin user create --uid=test --display-name="vmi test" --access-key="$AK" --secret-key="$SK" >"$D/user.json" 2>>"$D/log/radosgw-admin.out"
  trap - ERR
  log "ready on 127.0.0.1:$RGW_PORT ($D)"
  printf 'RGW_DIR=%s\nS3_ENDPOINT=http://127.0.0.1:%s\nS3_ACCESS_KEY=%s\nS3_SECRET_KEY=%s\nS3_REGION=us-east-1\n' "$D" "$RGW_PORT" "$AK" "$SK"
}

case "${1:-}" in
  start) start ;;
  stop) [ -n "${2:-}" ] || { echo "usage: radosgw.sh stop DIR" >&2; exit 2; }; stop "$2" ;;
  *) echo "usage: radosgw.sh start | stop DIR" >&2; exit 2 ;;
esac
