#!/usr/bin/python3
"""Concurrent NBD client for the write-safety tests, on libnbd (Debian's
python3-libnbd, which is built for /usr/bin/python3).

usage: nbd_stress.py MODE CONFIG_JSON   (prints one JSON object on stdout)

Modes:
  model   random concurrent reads, writes, zeroes, trims, flushes and FUA
          writes of random sizes and alignments on several connections,
          checked against an in-memory model of the disk. Two requests in
          flight never touch the same byte (their order would be undefined),
          but they may share a block: that is what a read-modify-write race
          needs. Every read is compared with the model; at the end the whole
          disk is read back and compared.
  kill    write-once requests (every byte is written at most once) with
          FUA writes and flushes mixed in, until the server dies or time runs
          out. Writes a journal of every request and whether it is known to be
          durable (a FUA write acknowledged; a write acknowledged before a
          FLUSH that was then acknowledged was sent).
  verify  reads the whole disk and checks it against a kill-mode journal:
          durable writes read back exactly, other written bytes hold either
          the base's byte or the write's, untouched bytes the base's.
  sectors N 512-byte writes to the N sectors of consecutive 4 KiB blocks, all
          in flight at once on one connection, then one FLUSH; the disk is
          read back on a second connection.
  overlap an aligned 4 KiB write and a small write inside the same block in
          flight together, block after block; outside the small write's
          bytes every block must hold the 4 KiB write's bytes.

CONFIG keys: uri, size, base (path of the image's raw bytes), seed, seconds,
connections, journal, blocks.
"""
import json
import random
import select
import sys
import time

import nbd

LENGTHS = [1, 7, 100, 511, 512, 513, 1000, 2048, 4095, 4096, 4097, 5000, 8192, 12345, 16384, 65536, 131072]


def errno_of(err):
    """libnbd passes a completion's error as a ctypes int (0: success)."""
    return getattr(err, 'value', err)


def connect(uri):
    h = nbd.NBD()
    h.connect_uri(uri)
    return h


def drain(handles, pending, until_empty=False, timeout=10.0):
    """Run the handles' state machines until some command completes
    (or, with until_empty, until none is in flight)."""
    deadline = time.monotonic() + timeout
    while True:
        busy = [h for h in handles if h.aio_in_flight() > 0]
        if not busy:
            return
        rl, wl = [], []
        for h in busy:
            d = h.aio_get_direction()
            if d & nbd.AIO_DIRECTION_READ:
                rl.append(h.aio_get_fd())
            if d & nbd.AIO_DIRECTION_WRITE:
                wl.append(h.aio_get_fd())
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError('no reply within %.0f s (%d in flight)' % (timeout, sum(h.aio_in_flight() for h in busy)))
        r, w, _ = select.select(rl, wl, [], min(left, 1.0))
        before = len(pending)
        for h in busy:
            fd = h.aio_get_fd()
            if fd in r:
                h.aio_notify_read()
            if fd in w:
                h.aio_notify_write()
        if not until_empty and len(pending) < before:
            return


def read_all(h, size, piece=1 << 20):
    out = bytearray()
    for off in range(0, size, piece):
        out += h.pread(min(piece, size - off), off)
    return out


def overlaps(a0, a1, ranges):
    for b0, b1 in ranges:
        if a0 < b1 and b0 < a1:
            return True
    return False


def pick_range(rng, size):
    n = min(rng.choice(LENGTHS), size)
    r = rng.random()
    if r < 0.35:
        off = rng.randrange(0, (size - n) // 4096 + 1) * 4096
    elif r < 0.6:
        off = rng.randrange(0, (size - n) // 512 + 1) * 512
    else:
        off = rng.randrange(0, size - n + 1)
    return off, n


def model_mode(cfg):
    rng = random.Random(cfg['seed'])
    size = cfg['size']
    with open(cfg['base'], 'rb') as f:
        disk = bytearray(f.read())
    assert len(disk) == size, 'base file is %d bytes, export %d' % (len(disk), size)
    unknown = bytearray(size)  # 1: trimmed, any value may be read
    handles = [connect(cfg['uri']) for _ in range(cfg.get('connections', 2))]
    pending = {}  # (handle index, cookie) -> op
    stats = {'write': 0, 'fua': 0, 'read': 0, 'zero': 0, 'trim': 0, 'flush': 0, 'errors': [], 'mismatches': []}
    deadline = time.monotonic() + cfg['seconds']
    max_ops = cfg.get('ops', 1 << 30)
    issued = 0

    def busy_ranges(kinds):
        return [(op['off'], op['off'] + op['len']) for op in pending.values() if op['kind'] in kinds]

    def done(key):
        def cb(err):
            err = errno_of(err)
            op = pending.pop(key[0])
            if err != 0:
                stats['errors'].append('%s %d+%d: error %d' % (op['kind'], op.get('off', 0), op.get('len', 0), err))
            elif op['kind'] == 'read':
                got = op['buf'].to_bytearray()
                want = op['want']
                mask = op['mask']
                for i in range(len(got)):
                    if got[i] != want[i] and not mask[i]:
                        stats['mismatches'].append('read %d+%d: byte %d is %d, expected %d' % (op['off'], op['len'], op['off'] + i, got[i], want[i]))
                        break
            return 1
        return cb

    while time.monotonic() < deadline and issued < max_ops:
        hi = rng.randrange(len(handles))
        h = handles[hi]
        if h.aio_in_flight() >= 32:
            drain(handles, pending)
            continue
        r = rng.random()
        kind = 'write' if r < 0.4 else 'read' if r < 0.65 else 'zero' if r < 0.75 else 'trim' if r < 0.8 else 'flush' if r < 0.9 else 'fua'
        op = {'kind': kind}
        if kind != 'flush':
            for _ in range(20):
                off, n = pick_range(rng, size)
                blockers = busy_ranges({'write', 'fua', 'zero', 'trim'} | ({'read'} if kind != 'read' else set()))
                if not overlaps(off, off + n, blockers):
                    break
            else:
                drain(handles, pending)
                continue
            op['off'], op['len'] = off, n
        key = [None]
        cb = done(key)
        if kind in ('write', 'fua'):
            data = rng.randbytes(n)
            op['buf'] = nbd.Buffer.from_bytearray(data)
            cookie = h.aio_pwrite(op['buf'], off, completion=cb, flags=nbd.CMD_FLAG_FUA if kind == 'fua' else 0)
            disk[off:off + n] = data
            unknown[off:off + n] = bytes(n)
        elif kind == 'read':
            op['buf'] = nbd.Buffer(n)
            op['want'] = bytes(disk[off:off + n])
            op['mask'] = bytes(unknown[off:off + n])
            cookie = h.aio_pread(op['buf'], off, completion=cb)
        elif kind == 'zero':
            cookie = h.aio_zero(n, off, completion=cb)
            disk[off:off + n] = bytes(n)
            unknown[off:off + n] = bytes(n)
        elif kind == 'trim':
            cookie = h.aio_trim(n, off, completion=cb)
            unknown[off:off + n] = b'\x01' * n
        else:
            cookie = h.aio_flush(completion=cb)
        key[0] = (hi, cookie)
        pending[key[0]] = op
        stats[kind] += 1
        issued += 1
    drain(handles, pending, until_empty=True)
    handles[0].flush()
    # the whole disk through another connection than the one that wrote most
    got = read_all(handles[-1], size)
    wrong = [i for i in range(size) if got[i] != disk[i] and not unknown[i]] if got != disk else []
    stats['final_wrong_bytes'] = len(wrong)
    if wrong:
        stats['mismatches'].append('final read: %d wrong bytes, first at %d (%d, expected %d)' % (len(wrong), wrong[0], got[wrong[0]], disk[wrong[0]]))
    for h in handles:
        h.shutdown()
    stats['mismatches'] = stats['mismatches'][:20]
    stats['errors_count'] = len(stats['errors'])
    stats['errors'] = stats['errors'][:20]
    with open(cfg['model_out'], 'wb') as f:
        f.write(disk)
    with open(cfg['model_out'] + '.unknown', 'wb') as f:
        f.write(unknown)
    return stats


def op_bytes(seed, i, n):
    return random.Random('%s:%d' % (seed, i)).randbytes(n)


def kill_mode(cfg):
    """Write-once requests until the connection dies; journal to cfg['journal']."""
    rng = random.Random(cfg['seed'])
    size = cfg['size']
    used = bytearray(size)
    h = connect(cfg['uri'])
    ops = []  # {i, kind, off, len, acked, durable}
    pending = {}
    completed = []  # indexes of acknowledged writes (not yet covered by a flush)
    stats = {'acked': 0, 'flushes_acked': 0, 'error': None}
    deadline = time.monotonic() + cfg['seconds']

    def on_write(i):
        def cb(err):
            err = errno_of(err)
            pending.pop(('w', i), None)
            op = ops[i]
            if err == 0:
                op['acked'] = True
                stats['acked'] += 1
                if op['kind'] == 'fua':
                    op['durable'] = True
                completed.append(i)
            return 1
        return cb

    def on_flush(covered, key):
        def cb(err):
            err = errno_of(err)
            pending.pop(key, None)
            if err == 0:
                stats['flushes_acked'] += 1
                for i in covered:
                    ops[i]['durable'] = True
            return 1
        return cb

    nflush = 0
    try:
        while time.monotonic() < deadline:
            if h.aio_in_flight() >= 24:
                drain([h], pending)
                continue
            if rng.random() < 0.15:
                key = ('f', nflush)
                nflush += 1
                pending[key] = True
                h.aio_flush(completion=on_flush(list(completed), key))
                continue
            for _ in range(30):
                off, n = pick_range(rng, size)
                if not any(used[off:off + n]):
                    break
            else:
                break  # the disk is full of writes
            used[off:off + n] = b'\x01' * n
            i = len(ops)
            kind = 'fua' if rng.random() < 0.2 else 'zero' if rng.random() < 0.1 else 'write'
            ops.append({'i': i, 'kind': kind, 'off': off, 'len': n, 'acked': False, 'durable': False})
            pending[('w', i)] = True
            if kind == 'zero':
                h.aio_zero(n, off, completion=on_write(i))
            else:
                buf = nbd.Buffer.from_bytearray(op_bytes(cfg['seed'], i, n))
                ops[i]['buf'] = buf
                h.aio_pwrite(buf, off, completion=on_write(i), flags=nbd.CMD_FLAG_FUA if kind == 'fua' else 0)
        drain([h], pending, until_empty=True, timeout=30)
    except (nbd.Error, TimeoutError, OSError) as e:
        stats['error'] = str(e)
    for op in ops:
        op.pop('buf', None)
    with open(cfg['journal'], 'w') as f:
        json.dump({'seed': cfg['seed'], 'ops': ops}, f)
    stats['ops'] = len(ops)
    stats['durable'] = sum(1 for op in ops if op['durable'])
    return stats


def verify_mode(cfg):
    with open(cfg['journal']) as f:
        journal = json.load(f)
    with open(cfg['base'], 'rb') as f:
        base = f.read()
    h = connect(cfg['uri'])
    got = read_all(h, cfg['size'])
    h.shutdown()
    problems = []
    covered = bytearray(cfg['size'])
    for op in journal['ops']:
        off, n = op['off'], op['len']
        covered[off:off + n] = b'\x01' * n
        data = bytes(n) if op['kind'] == 'zero' else op_bytes(journal['seed'], op['i'], n)
        seg = got[off:off + n]
        if seg == data:
            continue
        if op['durable']:
            problems.append('durable %s %d+%d does not read back' % (op['kind'], off, n))
            continue
        for k in range(n):
            if seg[k] != data[k] and seg[k] != base[off + k]:
                problems.append('unflushed %s %d+%d: byte %d is %d, neither the base %d nor the write %d' % (op['kind'], off, n, off + k, seg[k], base[off + k], data[k]))
                break
    for k in range(cfg['size']):
        if not covered[k] and got[k] != base[k]:
            problems.append('byte %d, never written, is %d, not the base %d' % (k, got[k], base[k]))
            break
    return {'problems': problems[:20], 'problem_count': len(problems),
            'durable': sum(1 for op in journal['ops'] if op['durable']), 'ops': len(journal['ops'])}


def sectors_mode(cfg):
    blocks = cfg.get('blocks', 4)
    h = connect(cfg['uri'])
    pending = {}
    errors = []
    datas = {}

    def cb_for(key):
        def cb(err):
            err = errno_of(err)
            pending.pop(key, None)
            if err:
                errors.append('%s: error %d' % (key, err))
            return 1
        return cb

    bufs = []
    for s in range(blocks * 8):
        off = cfg.get('offset', 0) + s * 512
        data = op_bytes(cfg['seed'], s, 512)
        datas[off] = data
        buf = nbd.Buffer.from_bytearray(data)
        bufs.append(buf)
        key = ('w', s)
        pending[key] = True
        h.aio_pwrite(buf, off, completion=cb_for(key))
    pending['f'] = True
    h.aio_flush(completion=cb_for('f'))
    drain([h], pending, until_empty=True)
    h2 = connect(cfg['uri'])
    stale = [off for off, data in datas.items() if h2.pread(512, off) != data]
    h.shutdown()
    h2.shutdown()
    return {'sectors': len(datas), 'stale': len(stale), 'errors': errors}


def overlap_mode(cfg):
    blocks = cfg.get('blocks', 64)
    h = connect(cfg['uri'])
    pending = {}
    errors = []
    bufs = []

    def cb_for(key):
        def cb(err):
            err = errno_of(err)
            pending.pop(key, None)
            if err:
                errors.append('%s: error %d' % (key, err))
            return 1
        return cb

    base_off = cfg.get('offset', 0)
    for b in range(blocks):
        off = base_off + b * 4096
        big = nbd.Buffer.from_bytearray(op_bytes(cfg['seed'], 2 * b, 4096))
        small = nbd.Buffer.from_bytearray(op_bytes(cfg['seed'], 2 * b + 1, 100))
        bufs += [big, small]
        for key, buf, o in ((('big', b), big, off), (('small', b), small, off + 1000)):
            pending[key] = True
            h.aio_pwrite(buf, o, completion=cb_for(key))
    drain([h], pending, until_empty=True)
    lost = 0
    for b in range(blocks):
        off = base_off + b * 4096
        got = h.pread(4096, off)
        big = op_bytes(cfg['seed'], 2 * b, 4096)
        small = op_bytes(cfg['seed'], 2 * b + 1, 100)
        if got[:1000] != big[:1000] or got[1100:] != big[1100:]:
            lost += 1
        elif got[1000:1100] not in (big[1000:1100], small):
            lost += 1
    h.shutdown()
    return {'blocks': blocks, 'lost': lost, 'errors': errors}


def main():
    mode, cfg = sys.argv[1], json.loads(sys.argv[2])
    fn = {'model': model_mode, 'kill': kill_mode, 'verify': verify_mode, 'sectors': sectors_mode, 'overlap': overlap_mode}[mode]
    print(json.dumps(fn(cfg)))


if __name__ == '__main__':
    main()
