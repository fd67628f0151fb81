#!/usr/bin/python3
# Replay a recorded boot read trace (bench/traces/*.json) against an NBD
# export, one read at a time: before each read, wait the recorded think time
# (the time between the previous read's completion and this read's start in
# the recorded boot, times SCALE), then read and wait for the data. It models
# a guest whose next read depends on the previous one; reads the recorded
# guest issued in parallel are replayed one after the other.
#
# usage: /usr/bin/python3 replay-trace.py NBD_URI|FILE TRACE.json [SCALE]
# (a FILE, e.g. a copied raw image, is read with pread instead: copy-then-boot)
# Prints one JSON line: {"start", "connected", "end" (epoch seconds), "reads",
# "bytes", "thinkSeconds", "readSeconds"}.
import json
import os
import sys
import time

import nbd

uri, trace_file = sys.argv[1], sys.argv[2]
scale = float(sys.argv[3]) if len(sys.argv) > 3 else 1.0
with open(trace_file) as fh:
    reads = json.load(fh)["reads"]

start = time.time()
if "://" in uri:
    h = nbd.NBD()
    h.connect_uri(uri)
    read = h.pread
else:
    h = None
    fd = os.open(uri, os.O_RDONLY)
    read = lambda count, offset: os.pread(fd, count, offset)
connected = time.time()
think = 0.0
busy = 0.0
nbytes = 0
for r in reads:
    t = r["think"] * scale
    if t > 0:
        time.sleep(t)
        think += t
    a = time.time()
    read(r["count"], r["offset"])
    busy += time.time() - a
    nbytes += r["count"]
end = time.time()
if h is not None:
    h.shutdown()
print(json.dumps({"start": start, "connected": connected, "end": end, "reads": len(reads), "bytes": nbytes, "thinkSeconds": think, "readSeconds": busy}))
