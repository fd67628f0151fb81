#!/bin/bash
# One-off measurement behind bench/results/2026-12-06-compressed-mount-reads.md (not part of
# `npm run bench`): mount read cost over compressed vs raw local objects: the same image, pulled from a compressed
# seed (objects are zstd frames) and imported (raw). qemu-img bench over NBD: 4 KiB reads, each in
# another 128 KiB chunk (step 132 KiB: the worst case for decode-on-read), then nbdcopy of the
# whole disk (sequential). Each mount is read once to verify every chunk first, then timed; 3 rounds alternating.
set -euo pipefail
BIN=${BIN:-$(cd "$(dirname "$0")/.." && pwd)/bin/run.js}   # BIN=other/bin/run.js: another build
W=/tmp/mread; rm -rf $W; mkdir -p $W
IMG=$(bash "$(dirname "$0")/../scripts/boot-image-path.sh")/disk.raw
VMI_HOME=$W/raw node $BIN import $IMG deb:1 >/dev/null 2>&1
echo tok > $W/tok
VMI_HOME=$W/seed node $BIN serve --listen 127.0.0.1:7399 --token-file $W/tok > $W/serve.log 2>&1 &
SP=$!; sleep 1.5
VMI_HOME=$W/raw node $BIN push deb:1 http://127.0.0.1:7399 --token-file $W/tok >/dev/null 2>&1
VMI_HOME=$W/z0 node $BIN pull deb:1 http://127.0.0.1:7399 >/dev/null 2>&1
kill $SP
echo "frames in the pulled store: $(VMI_HOME=$W/z0 node $BIN fsck --json | grep -o '"compressedObjects": *[0-9]*')"
one() { # store label
  if [ $1 = z ]; then rm -rf $W/z; cp -a $W/z0 $W/z; sync; fi # a fresh copy of the pulled store: frames again
  VMI_HOME=$W/$1 node $BIN mount deb:1 --read-only --json > $W/m.json 2>$W/m.err &
  MP=$!
  for i in $(seq 100); do grep -q '"mounted"' $W/m.json 2>/dev/null && break; sleep 0.1; done
  NBD=$(grep -o '"nbd":"[^"]*"' $W/m.json | head -1 | cut -d'"' -f4)
  s0=$(date +%s%N); nbdcopy "$NBD" null:; e0=$(date +%s%N) # first pass: verifies every chunk
  w0=$(date +%s%N); while [ "$(find $W/$1/objects -type f -newer $W/m.json | wc -l)" -lt 1 ] && [ $1 = z ] && [ $(( ($(date +%s%N)-w0)/1000000 )) -lt 1000 ]; do sleep 0.05; done
  for i in $(seq 200); do n=$(python3 -c "import os,sys;d=sys.argv[1];print(sum(1 for r,_,fs in os.walk(d) for f in fs if open(os.path.join(r,f),'rb').read(4)==bytes([0x28,0xb5,0x2f,0xfd])))" $W/$1/objects); [ "$n" = 0 ] && break; sleep 0.1; done
  w1=$(date +%s%N); idle="idle until no frame is left $(( (w1-e0)/1000000 )) ms ($n left)"
  s=$(date +%s%N); qemu-img bench -f raw -c 20000 -d 1 -s 4096 -S 135168 "$NBD" >/dev/null; e=$(date +%s%N)
  s2=$(date +%s%N); nbdcopy "$NBD" null:; e2=$(date +%s%N)
  kill $MP; wait $MP 2>/dev/null || true
  echo "$2: first pass $(( (e0-s0)/1000000 )) ms; scattered 4K reads (20000, each in another chunk) $(( (e-s)/1000000 )) ms; nbdcopy whole disk $(( (e2-s2)/1000000 )) ms; $idle"
}
for r in 1 2 3; do
  if [ $((r % 2)) = 1 ]; then one z compressed; one raw raw; else one raw raw; one z compressed; fi
done
