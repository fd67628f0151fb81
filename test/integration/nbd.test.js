// The NBD server (dist/mount/nbd/server.js) against real clients (qemu-img,
// qemu-io, nbdcopy, nbdinfo, libnbd's Python bindings) and against a raw
// JS client speaking the protocol by hand, including hostile input.
import {test} from 'uvu'
import * as assert from 'uvu/assert'
import {execFile, spawn, spawnSync} from 'node:child_process'
import {once} from 'node:events'
import {readFileSync, promises as fsp} from 'node:fs'
import net from 'node:net'
import path from 'node:path'
import {pathToFileURL} from 'node:url'
import {ROOT, hasCommand, makeImage, seededBytes, sha256File, skip, tmpDir} from '../helpers/index.js'
import {startNbdServer} from '../../dist/mount/nbd/server.js'
import {FileBackend, MemoryBackend} from '../../dist/mount/nbd/block-backend.js'
import {P, Raw} from '../helpers/nbd-raw.js'

const K = 1024
const M = 1024 * 1024

const HAVE = Object.fromEntries(['qemu-img', 'qemu-io', 'nbdcopy', 'nbdinfo'].map((c) => [c, hasCommand(c)]))
/** A python3 that can `import nbd` (libnbd's bindings, what nbdsh runs), if any. */
const PYTHON = ['python3', '/usr/bin/python3'].find((py) => spawnSync(py, ['-c', 'import nbd'], {stdio: 'ignore'}).status === 0)

function need(...tools) {
  const missing = tools.filter((t) => (t === 'nbdsh' ? !PYTHON : !HAVE[t]))
  if (missing.length) skip(`${missing.join(', ')} not installed`)
  return missing.length === 0
}

/** Run a command without blocking the event loop (the server may be in this process). */
function run(cmd, args, {timeout = 120_000, input} = {}) {
  return new Promise((resolve) => {
    const child = execFile(cmd, args, {timeout, maxBuffer: 256 * M, encoding: 'utf8'}, (err, stdout, stderr) => {
      resolve({code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr, signal: err?.signal})
    })
    if (input !== undefined) child.stdin.end(input)
  })
}

function ok(r, what) {
  assert.is(r.code, 0, `${what} failed (${r.code}${r.signal ? ' ' + r.signal : ''}): ${r.stderr}`)
  return r
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

function py(script, timeout = 60_000) {
  return run(PYTHON, ['-c', script], {timeout})
}

// ---------------------------------------------------------------- fixtures

const fx = tmpDir('vmi-nbd-')
const IMAGE = path.join(fx.dir, 'image.raw')
// random data, zero regions, unaligned pieces; 512-aligned total (qemu rounds sizes up to 512)
const LAYOUT = [
  {kind: 'random', size: 3 * M, seed: 'nbd1'},
  {kind: 'zero', size: 2 * M},
  {kind: 'random', size: M + 512, seed: 'nbd2'},
  {kind: 'zero', size: M},
  {kind: 'random', size: 4 * K, seed: 'nbd3'},
  {kind: 'zero', size: 1024},
]
let IMAGE_SIZE = 0
let IMAGE_SHA = ''
let ZERO_RANGES = [] // [start, end) of the zero regions

let sockCounter = 0
function sockPath() {
  return path.join(fx.dir, `s${++sockCounter}.sock`)
}

async function serveUnix(backend, init = {}) {
  return startNbdServer(backend, {socketPath: sockPath(), ...init})
}

test.before(async () => {
  IMAGE_SIZE = await makeImage(IMAGE, LAYOUT)
  IMAGE_SHA = await sha256File(IMAGE)
  let pos = 0
  for (const r of LAYOUT) {
    if (r.kind === 'zero') ZERO_RANGES.push([pos, pos + r.size])
    pos += r.size
  }
})

test.after(() => fx.cleanup())

// ------------------------------------------------------------ real clients

test('unix socket: qemu-img convert and nbdcopy copy the image byte for byte', async () => {
  if (!need('qemu-img', 'nbdcopy')) return
  const be = new FileBackend(IMAGE, {readOnly: true})
  const s = await serveUnix(be)
  try {
    assert.match(s.address, /^nbd\+unix:\/\/\/\?socket=\//)
    const out = path.join(fx.dir, 'convert.raw')
    ok(await run('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', s.address, out]), 'qemu-img convert')
    assert.is(await sha256File(out), IMAGE_SHA, 'qemu-img convert output identical')
    const out2 = path.join(fx.dir, 'nbdcopy.raw')
    ok(await run('nbdcopy', [s.address, out2]), 'nbdcopy')
    assert.is(await sha256File(out2), IMAGE_SHA, 'nbdcopy output identical')
    // without extents (plain reads only), and over a single connection
    const out3 = path.join(fx.dir, 'nbdcopy3.raw')
    ok(await run('nbdcopy', ['--no-extents', '-C', '1', '--request-size=65536', s.address, out3]), 'nbdcopy --no-extents')
    assert.is(await sha256File(out3), IMAGE_SHA)
    await Promise.all([out, out2, out3].map((f) => fsp.rm(f)))
  } finally {
    await s.close()
    await be.close()
  }
})

test('TCP 127.0.0.1:0: qemu-img convert is identical; an odd-sized export through nbdcopy too', async () => {
  if (!need('qemu-img', 'nbdcopy')) return
  const be = new FileBackend(IMAGE, {readOnly: true})
  const s = await startNbdServer(be, {host: '127.0.0.1', port: 0})
  const odd = seededBytes('odd', M + 333)
  const s2 = await startNbdServer(new MemoryBackend(odd, {readOnly: true}), {host: '127.0.0.1', port: 0, exportName: 'odd'})
  try {
    assert.ok(s.port > 0)
    assert.is(s.address, `nbd://127.0.0.1:${s.port}/`)
    assert.is(s2.address, `nbd://127.0.0.1:${s2.port}/odd`)
    const out = path.join(fx.dir, 'tcp.raw')
    ok(await run('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', s.address, out]), 'qemu-img convert over TCP')
    assert.is(await sha256File(out), IMAGE_SHA)
    const out2 = path.join(fx.dir, 'odd.raw')
    ok(await run('nbdcopy', [s2.address, out2]), 'nbdcopy odd size')
    assert.ok(readFileSync(out2).equals(odd), 'odd-sized export copied exactly')
    await fsp.rm(out)
    await fsp.rm(out2)
  } finally {
    await s.close()
    await s2.close()
    await be.close()
  }
})

test('nbdinfo --json reports size and transmission flags (read-only file, writable memory)', async () => {
  if (!need('nbdinfo')) return
  const be = new FileBackend(IMAGE, {readOnly: true})
  const s = await serveUnix(be, {exportName: 'disk', description: 'a test disk'})
  const mem = await serveUnix(new MemoryBackend(4 * M))
  try {
    const r = JSON.parse(ok(await run('nbdinfo', ['--json', s.address]), 'nbdinfo').stdout)
    assert.is(r.protocol, 'newstyle-fixed')
    assert.is(r.structured, true)
    const e = r.exports[0]
    assert.is(e['export-name'], 'disk')
    assert.is(e.description, 'a test disk')
    assert.is(e['export-size'], IMAGE_SIZE)
    assert.is(e.is_read_only, true)
    assert.is(e.can_flush, true)
    assert.is(e.can_trim, false)
    assert.is(e.can_zero, false)
    assert.is(e.can_cache, true)
    assert.is(e.can_df, true)
    assert.is(e.can_multi_conn, true)
    assert.equal(e.contexts, ['base:allocation'])
    assert.is(e.block_size_minimum, 1)
    assert.is(e.block_size_preferred, 4096)
    assert.is(e.block_size_maximum, 32 * M)

    const w = JSON.parse(ok(await run('nbdinfo', ['--json', mem.address]), 'nbdinfo rw').stdout).exports[0]
    assert.is(w['export-size'], 4 * M)
    assert.is(w.is_read_only, false)
    assert.is(w.can_trim, true)
    assert.is(w.can_zero, true)
    assert.is(w.can_fua, true)
    assert.is(w.can_multi_conn, true)

    // NBD_OPT_LIST
    const list = ok(await run('nbdinfo', ['--list', '--json', s.address]), 'nbdinfo --list')
    assert.equal(
      JSON.parse(list.stdout).exports.map((x) => x['export-name']),
      ['disk'],
    )
    // unknown export name: NBD_REP_ERR_UNKNOWN, a clean failure
    const bad = await run('nbdinfo', [s.address.replace('/disk?', '/nope?')])
    assert.is.not(bad.code, 0)
    assert.match(bad.stderr, /unknown|not available|export/i)
    // the empty name is the default export
    ok(await run('nbdinfo', ['--size', s.address.replace('/disk?', '/?')]), 'default export')
  } finally {
    await s.close()
    await mem.close()
    await be.close()
  }
})

test('a backend that may not be shared does not advertise multi-conn', async () => {
  if (!need('nbdinfo')) return
  const be = new MemoryBackend(M)
  const wrapped = Object.create(be, {multiConnSafe: {value: false}})
  const s = await serveUnix(wrapped)
  try {
    const e = JSON.parse(ok(await run('nbdinfo', ['--json', s.address]), 'nbdinfo').stdout).exports[0]
    assert.is(e.can_multi_conn, false)
  } finally {
    await s.close()
  }
})

test('nbdinfo --map and qemu-img map: base:allocation covers the export and finds the zero regions', async () => {
  if (!need('nbdinfo', 'qemu-img')) return
  const be = new FileBackend(IMAGE, {readOnly: true})
  const s = await serveUnix(be)
  try {
    const map = JSON.parse(ok(await run('nbdinfo', ['--map', '--json', s.address]), 'nbdinfo --map').stdout)
    let pos = 0
    for (const e of map) {
      assert.is(e.offset, pos, 'extents are contiguous')
      assert.ok(e.length > 0)
      pos += e.length
    }
    assert.is(pos, IMAGE_SIZE, 'extents cover the whole export')
    const zeroAt = (off) => map.find((e) => e.offset <= off && off < e.offset + e.length).type & P.STATE_ZERO
    for (const [a, b] of ZERO_RANGES) {
      // whole 4 KiB blocks inside a zero region are reported as zero
      const first = Math.ceil(a / 4096) * 4096
      const last = Math.floor(b / 4096) * 4096 - 1
      if (last > first) {
        assert.ok(zeroAt(first), `zero at ${first}`)
        assert.ok(zeroAt(last), `zero at ${last}`)
      }
    }
    assert.not.ok(zeroAt(0), 'data at 0')
    assert.not.ok(zeroAt(5 * M + 100), 'data in the second random region')

    const qmap = JSON.parse(ok(await run('qemu-img', ['map', '--output=json', '-f', 'raw', s.address]), 'qemu-img map').stdout)
    let end = 0
    for (const e of qmap) end = Math.max(end, e.start + e.length)
    assert.ok(end >= IMAGE_SIZE)
    const q = qmap.find((e) => e.start <= 3 * M + 4096 && 3 * M + 4096 < e.start + e.length)
    assert.is(q.zero, true, 'qemu sees the zero region')
    assert.is(q.data, false)
    assert.is(qmap[0].data, true)
  } finally {
    await s.close()
    await be.close()
  }
})

test('qemu-io: write, read back, flush, zero, discard on a writable memory export', async () => {
  if (!need('qemu-io')) return
  const initial = seededBytes('qio', 8 * M)
  const be = new MemoryBackend(initial)
  const seen = new Set()
  const s = await serveUnix(be, {onRequest: (ev) => seen.add(ev.type)})
  try {
    const r = ok(
      await run('qemu-io', [
        '-f', 'raw',
        '-c', 'write -P 0xab 4096 4096',
        '-c', 'read -P 0xab 4096 4096',
        '-c', 'write -f -P 0xcd 1M 64k',
        '-c', 'read -P 0xcd 1M 64k',
        '-c', 'write -z 2M 1M',
        '-c', 'read -P 0 2M 1M',
        '-c', 'discard 4M 64k',
        '-c', 'write -P 0x11 8384512 4096',
        '-c', 'read -P 0x11 8384512 4096',
        '-c', 'flush',
        s.address,
      ]),
      'qemu-io',
    )
    assert.not.match(r.stdout, /Pattern verification failed|error/i)
    assert.ok(be.data.subarray(4096, 8192).every((b) => b === 0xab))
    assert.ok(be.data.subarray(M, M + 64 * K).every((b) => b === 0xcd))
    assert.ok(be.data.subarray(2 * M, 3 * M).every((b) => b === 0))
    assert.ok(be.data.subarray(8 * M - 4096).every((b) => b === 0x11))
    assert.ok(be.data.subarray(0, 4096).equals(initial.subarray(0, 4096)), 'untouched bytes stay')
    for (const t of ['read', 'write', 'flush', 'write-zeroes', 'trim']) assert.ok(seen.has(t), `saw ${t}`)
  } finally {
    await s.close()
  }
})

test('writing whole images into the server: nbdcopy (multi-conn) to a file, qemu-img convert -n to memory', async () => {
  if (!need('qemu-img', 'nbdcopy')) return
  const target = path.join(fx.dir, 'target.raw')
  await fsp.writeFile(target, seededBytes('junk', IMAGE_SIZE)) // old content the copy must overwrite (zeros included)
  const fileBe = new FileBackend(target)
  const s = await serveUnix(fileBe)
  const mem = new MemoryBackend(seededBytes('junk2', IMAGE_SIZE))
  const s2 = await serveUnix(mem)
  try {
    ok(await run('nbdcopy', ['--flush', IMAGE, s.address]), 'nbdcopy into the server')
    assert.is(await sha256File(target), IMAGE_SHA, 'file written through NBD equals the image')
    ok(await run('qemu-img', ['convert', '-n', '-f', 'raw', '-O', 'raw', IMAGE, s2.address]), 'qemu-img convert -n into the server')
    assert.ok(mem.data.equals(readFileSync(IMAGE)), 'memory written through NBD equals the image')
  } finally {
    await s.close()
    await s2.close()
    await fileBe.close()
    await fsp.rm(target)
  }
})

test('qemu-io on a read-only export cannot write', async () => {
  if (!need('qemu-io')) return
  const be = new FileBackend(IMAGE, {readOnly: true})
  const s = await serveUnix(be)
  try {
    const r = await run('qemu-io', ['-f', 'raw', '-c', 'write -P 0xab 0 4096', s.address])
    assert.ok(r.code !== 0 || /read-only|Permission|not permitted|failed/i.test(r.stdout + r.stderr), `write must fail: ${r.stdout} ${r.stderr}`)
    ok(await run('qemu-io', ['-r', '-f', 'raw', '-c', 'read 0 64k', s.address]), 'read-only read')
    assert.is(await sha256File(IMAGE), IMAGE_SHA, 'image unchanged')
  } finally {
    await s.close()
    await be.close()
  }
})

test('libnbd (nbdsh API): structured reads with holes, trim, zero, cache, block status, FUA, DF, EPERM', async () => {
  if (!need('nbdsh')) return
  const initial = Buffer.alloc(4 * M)
  seededBytes('sh', M).copy(initial, 0)
  seededBytes('sh2', 64 * K).copy(initial, 3 * M)
  const be = new MemoryBackend(initial)
  const s = await serveUnix(be)
  const ro = await serveUnix(new MemoryBackend(initial, {readOnly: true}))
  try {
    const script = `
import nbd, json, hashlib
out = {}
h = nbd.NBD()
h.add_meta_context("base:allocation")
h.connect_uri(${JSON.stringify(s.address)})
out["structured"] = h.get_structured_replies_negotiated()
out["size"] = h.get_size()
out["can"] = [h.can_trim(), h.can_zero(), h.can_cache(), h.can_df(), h.can_fua(), h.can_flush(), h.can_multi_conn()]
kinds = []
def chunk(buf, offset, status, err):
    kinds.append([offset, len(buf), status])
    return 0
data = h.pread_structured(2 * 1024 * 1024, 0, chunk)
out["chunks"] = kinds
out["sha_head"] = hashlib.sha256(data).hexdigest()
one = []
h.pread_structured(256 * 1024, 1024 * 1024 - 4096, lambda b, o, s, e: one.append(s) or 0, nbd.CMD_FLAG_DF)
out["df_chunks"] = one
ext = []
def bs(meta, offset, entries, err):
    ext.append([meta, list(entries)])
    return 0
h.block_status(4 * 1024 * 1024, 0, bs)
out["extents"] = ext
one_ext = []
h.block_status(4 * 1024 * 1024, 0, lambda m, o, e, err: one_ext.append(list(e)) or 0, nbd.CMD_FLAG_REQ_ONE)
out["req_one"] = one_ext
h.pwrite(b"\\x5a" * 8192, 2 * 1024 * 1024, nbd.CMD_FLAG_FUA)
h.zero(65536, 3 * 1024 * 1024, nbd.CMD_FLAG_NO_HOLE)
h.trim(4096, 0)
h.cache(1024 * 1024, 0)
h.flush()
out["after"] = [h.pread(2, 2 * 1024 * 1024).hex(), h.pread(4, 3 * 1024 * 1024).hex()]
try:
    h.pread(4096, 4 * 1024 * 1024 - 100)
    out["past_end"] = "no error"
except nbd.Error as e:
    out["past_end"] = e.errno
h.shutdown()

r = nbd.NBD()
r.set_strict_mode(0)
r.connect_uri(${JSON.stringify(ro.address)})
try:
    r.pwrite(b"x" * 512, 0)
    out["ro_write"] = "no error"
except nbd.Error as e:
    out["ro_write"] = e.errno
try:
    r.trim(512, 0)
    out["ro_trim"] = "no error"
except nbd.Error as e:
    out["ro_trim"] = e.errno
out["ro_read"] = r.pread(4, 0).hex()
r.shutdown()
print(json.dumps(out))
`
    const r = ok(await py(script), 'python libnbd script')
    const out = JSON.parse(r.stdout.trim().split('\n').pop())
    assert.is(out.structured, true)
    assert.is(out.size, 4 * M)
    assert.equal(out.can, [true, true, true, true, true, true, true])
    // 0..1M data, 1M..2M hole: READ_DATA then READ_HOLE chunks
    const READ_DATA = 1
    const READ_HOLE = 2
    assert.ok(out.chunks.some((c) => c[2] === READ_HOLE && c[0] === M && c[1] === M), `hole chunk: ${JSON.stringify(out.chunks)}`)
    assert.ok(out.chunks.some((c) => c[2] === READ_DATA && c[0] === 0), 'data chunk')
    const {createHash} = await import('node:crypto')
    assert.is(out.sha_head, createHash('sha256').update(initial.subarray(0, 2 * M)).digest('hex'))
    assert.equal(out.df_chunks, [READ_DATA], 'DF: one data chunk covering data and zeros')
    assert.is(out.extents.length, 1)
    assert.is(out.extents[0][0], 'base:allocation')
    const e = out.extents[0][1]
    assert.equal(e.slice(0, 4), [M, 0, 2 * M, 3])
    assert.is(out.req_one[0].length, 2, 'REQ_ONE: a single extent')
    assert.equal(out.after, ['5a5a', '00000000'])
    assert.ok(be.data.subarray(2 * M, 2 * M + 8192).every((b) => b === 0x5a))
    assert.is(out.past_end, 'EINVAL')
    assert.is(out.ro_write, 'EPERM')
    assert.is(out.ro_trim, 'EPERM')
    assert.is(out.ro_read, initial.subarray(0, 4).toString('hex'))
  } finally {
    await s.close()
    await ro.close()
  }
})

test('libnbd without structured replies, and through NBD_OPT_EXPORT_NAME (no fixed newstyle)', async () => {
  if (!need('nbdsh')) return
  const initial = seededBytes('simple', 2 * M)
  const s = await serveUnix(new MemoryBackend(initial))
  try {
    const script = `
import nbd, json, hashlib
out = {}
h = nbd.NBD()
h.set_request_structured_replies(False)
h.connect_uri(${JSON.stringify(s.address)})
out["structured"] = h.get_structured_replies_negotiated()
out["sha"] = hashlib.sha256(h.pread(2 * 1024 * 1024, 0)).hexdigest()
try:
    h.pread(8192, 2 * 1024 * 1024 - 4096)
except nbd.Error as e:
    out["past_end"] = e.errno
out["after_error"] = h.pread(4, 0).hex()
h.pwrite(b"\\x01\\x02", 10)
out["write"] = h.pread(2, 10).hex()
h.shutdown()

o = nbd.NBD()
o.set_handshake_flags(0)
o.connect_uri(${JSON.stringify(s.address)})
out["old_proto"] = o.get_protocol()
out["old_size"] = o.get_size()
out["old_read"] = o.pread(4, 0).hex()
o.shutdown()
print(json.dumps(out))
`
    const out = JSON.parse(ok(await py(script), 'python libnbd script').stdout.trim().split('\n').pop())
    const {createHash} = await import('node:crypto')
    assert.is(out.structured, false)
    assert.is(out.sha, createHash('sha256').update(initial).digest('hex'))
    assert.is(out.past_end, 'EINVAL')
    assert.is(out.after_error, initial.subarray(0, 4).toString('hex'), 'no stray payload after a failed simple read')
    assert.is(out.write, '0102')
    assert.is(out.old_proto, 'newstyle')
    assert.is(out.old_size, 2 * M)
    assert.is(out.old_read, initial.subarray(0, 4).toString('hex'))
  } finally {
    await s.close()
  }
})

test('two connections at once: parallel qemu-img converts and a 4-connection nbdcopy', async () => {
  if (!need('qemu-img', 'nbdcopy')) return
  const be = new FileBackend(IMAGE, {readOnly: true})
  const s = await serveUnix(be)
  let peak = 0
  const timer = setInterval(() => (peak = Math.max(peak, s.connectionCount())), 2)
  try {
    const outs = [1, 2].map((i) => path.join(fx.dir, `par${i}.raw`))
    const rs = await Promise.all(outs.map((o) => run('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', s.address, o])))
    rs.forEach((r, i) => ok(r, `convert ${i}`))
    for (const o of outs) assert.is(await sha256File(o), IMAGE_SHA)
    const out3 = path.join(fx.dir, 'multi.raw')
    ok(await run('nbdcopy', ['-C', '4', '--no-extents', '--request-size=65536', s.address, out3]), 'nbdcopy -C 4')
    assert.is(await sha256File(out3), IMAGE_SHA)
    assert.ok(peak >= 2, `saw ${peak} connections at once`)
    for (const o of [...outs, out3]) await fsp.rm(o)
  } finally {
    clearInterval(timer)
    await s.close()
    await be.close()
  }
})

// -------------------------------------------------- protocol by hand (in-process)

test('raw client: handshake details, option errors, NBD_OPT_EXPORT_NAME with and without zeroes', async () => {
  const be = new MemoryBackend(seededBytes('raw', M))
  const s = await serveUnix(be, {exportName: 'disk', description: 'd'})
  try {
    const c = await Raw.connect(s.socketPath)
    await c.greeting()
    let r = await c.option(99, Buffer.from('junk'))
    assert.equal([r.option, r.type], [99, P.REP_ERR_UNSUP])
    r = await c.option(P.OPT_STARTTLS)
    assert.is(r.type, P.REP_ERR_UNSUP)
    r = await c.option(P.OPT_EXTENDED_HEADERS)
    assert.is(r.type, P.REP_ERR_UNSUP)
    r = await c.option(P.OPT_LIST, Buffer.from('x'))
    assert.is(r.type, P.REP_ERR_INVALID)
    r = await c.option(P.OPT_LIST)
    assert.is(r.type, P.REP_SERVER)
    assert.is(r.data.readUInt32BE(0), 4)
    assert.is(r.data.subarray(4).toString(), 'diskd')
    assert.is((await c.optReply()).type, P.REP_ACK)
    r = await c.option(P.OPT_SET_META_CONTEXT, P.encodeMetaContextRequest('disk', ['base:allocation']))
    assert.is(r.type, P.REP_ERR_INVALID, 'meta context before structured replies')
    r = await c.option(P.OPT_STRUCTURED_REPLY, Buffer.from('x'))
    assert.is(r.type, P.REP_ERR_INVALID)
    assert.is((await c.option(P.OPT_STRUCTURED_REPLY)).type, P.REP_ACK)
    r = await c.option(P.OPT_LIST_META_CONTEXT, P.encodeMetaContextRequest('disk', []))
    assert.is(r.type, P.REP_META_CONTEXT)
    assert.is(r.data.subarray(4).toString(), 'base:allocation')
    assert.is((await c.optReply()).type, P.REP_ACK)
    r = await c.option(P.OPT_LIST_META_CONTEXT, P.encodeMetaContextRequest('disk', ['qemu:dirty-bitmap:x', 'nocolon']))
    assert.is(r.type, P.REP_ACK, 'no match: a bare ACK')
    r = await c.option(P.OPT_SET_META_CONTEXT, P.encodeMetaContextRequest('nope', ['base:allocation']))
    assert.is(r.type, P.REP_ERR_UNKNOWN)
    r = await c.option(P.OPT_SET_META_CONTEXT, Buffer.from([0, 0, 0, 9]))
    assert.is(r.type, P.REP_ERR_INVALID)
    r = await c.option(P.OPT_INFO, Buffer.from([0, 0, 0, 50, 0, 0]))
    assert.is(r.type, P.REP_ERR_INVALID)
    r = await c.option(P.OPT_GO, P.encodeInfoRequest('other', []))
    assert.is(r.type, P.REP_ERR_UNKNOWN)
    // NBD_OPT_INFO with every info type
    c.write(P.encodeOption(P.OPT_INFO, P.encodeInfoRequest('disk', [P.INFO_NAME, P.INFO_DESCRIPTION, P.INFO_BLOCK_SIZE, 77])))
    const infos = {}
    for (;;) {
      const x = await c.optReply()
      if (x.type === P.REP_ACK) break
      assert.is(x.type, P.REP_INFO)
      infos[x.data.readUInt16BE(0)] = x.data.subarray(2)
    }
    assert.is(infos[P.INFO_NAME].toString(), 'disk')
    assert.is(infos[P.INFO_DESCRIPTION].toString(), 'd')
    assert.is(Number(infos[P.INFO_EXPORT].readBigUInt64BE(0)), M)
    assert.equal([...infos[P.INFO_BLOCK_SIZE]].length, 12)
    // abort: ACK then close
    r = await c.option(P.OPT_ABORT)
    assert.is(r.type, P.REP_ACK)
    assert.ok(await c.waitClosed())

    for (const noZeroes of [true, false]) {
      const d = await Raw.connect(s.socketPath)
      await d.greeting(P.FLAG_C_FIXED_NEWSTYLE | (noZeroes ? P.FLAG_C_NO_ZEROES : 0))
      d.write(P.encodeOption(P.OPT_EXPORT_NAME, Buffer.from('disk')))
      const rep = await d.read(noZeroes ? 10 : 134)
      assert.is(Number(rep.readBigUInt64BE(0)), M)
      assert.ok(rep.readUInt16BE(8) & P.FLAG_HAS_FLAGS)
      assert.not.ok(rep.readUInt16BE(8) & P.FLAG_SEND_DF, 'no DF without structured replies')
      const rd = await d.readAt(100, 1000)
      assert.ok(rd.simple)
      assert.ok(rd.data.equals(be.data.subarray(100, 1100)))
      d.request(P.CMD_DISC)
      assert.ok(await d.waitClosed(), 'DISC closes')
    }

    // EXPORT_NAME for an unknown export: the server hangs up
    const e = await Raw.connect(s.socketPath)
    await e.greeting()
    e.write(P.encodeOption(P.OPT_EXPORT_NAME, Buffer.from('nope')))
    assert.ok(await e.waitClosed())
  } finally {
    await s.close()
  }
})

test('raw client: transmission errors are replied to and the connection survives', async () => {
  const be = new MemoryBackend(seededBytes('tx', M))
  const s = await serveUnix(be)
  try {
    const c = await Raw.connect(s.socketPath)
    const info = await c.handshake()
    assert.is(info.size, M)
    assert.equal(info.blockSize, [1, 4096, 32 * M])
    const expectErr = async (what, type, opts, errno) => {
      c.request(type, {cookie: 42n, ...opts})
      const r = await c.reply()
      assert.is(r.cookie, 42n, what)
      assert.is(r.error, errno, `${what}: error ${r.error}`)
    }
    await expectErr('read past end', P.CMD_READ, {offset: M - 10, length: 20}, P.EINVAL)
    await expectErr('read at 2^63', P.CMD_READ, {offset: 2n ** 63n, length: 1}, P.EINVAL)
    await expectErr('1 GiB read', P.CMD_READ, {offset: 0, length: 1 << 30}, P.EINVAL)
    await expectErr('unknown command', 42, {offset: 0, length: 1}, P.EINVAL)
    await expectErr('unknown flag', P.CMD_READ, {flags: 0x4000, offset: 0, length: 1}, P.EINVAL)
    await expectErr('REQ_ONE on a read', P.CMD_READ, {flags: P.CMD_FLAG_REQ_ONE, offset: 0, length: 1}, P.EINVAL)
    await expectErr('trim past end', P.CMD_TRIM, {offset: M, length: 1}, P.EINVAL)
    await expectErr('zero past end', P.CMD_WRITE_ZEROES, {offset: M - 1, length: 2}, P.ENOSPC)
    await expectErr('block status past end', P.CMD_BLOCK_STATUS, {offset: M, length: 4096}, P.EINVAL)
    await expectErr('block status length 0', P.CMD_BLOCK_STATUS, {offset: 0, length: 0}, P.EINVAL)
    await expectErr('cache past end', P.CMD_CACHE, {offset: 2 * M, length: 1}, P.EINVAL)
    // a write past the end: the payload is consumed, ENOSPC, the stream stays in sync
    await expectErr('write past end', P.CMD_WRITE, {offset: M - 100, length: 4096, payload: Buffer.alloc(4096, 0xee)}, P.ENOSPC)
    // zero-length operations succeed as no-ops
    let r = await c.readAt(0, 0)
    assert.is(r.error, 0)
    assert.is(r.chunks.length, 1)
    assert.is(r.chunks[0].type, P.REPLY_TYPE_NONE)
    for (const t of [P.CMD_WRITE, P.CMD_TRIM, P.CMD_WRITE_ZEROES, P.CMD_CACHE, P.CMD_FLUSH]) {
      c.request(t, {cookie: 5n, offset: 0, length: 0})
      assert.is((await c.reply()).error, 0, `zero-length ${t}`)
    }
    // the connection still works
    r = await c.readAt(4096, 8192)
    assert.is(r.error, 0)
    assert.ok(r.data.equals(be.data.subarray(4096, 4096 + 8192)))
    // block status: one chunk with our context id
    c.request(P.CMD_BLOCK_STATUS, {cookie: 9n, offset: 0, length: M})
    r = await c.reply()
    assert.is(r.chunks.length, 1)
    assert.is(r.chunks[0].type, P.REPLY_TYPE_BLOCK_STATUS)
    assert.is(r.chunks[0].payload.readUInt32BE(0), c.contextId)
    assert.is(r.chunks[0].flags & P.REPLY_FLAG_DONE, 1)
    // write then read back
    c.request(P.CMD_WRITE, {cookie: 10n, flags: P.CMD_FLAG_FUA, offset: 512, length: 3, payload: Buffer.from('abc')})
    assert.is((await c.reply()).error, 0)
    assert.is(be.data.subarray(512, 515).toString(), 'abc')
    // write larger than 32 MiB: error reply, then the server hangs up
    c.request(P.CMD_WRITE, {cookie: 11n, offset: 0, length: 33 * M})
    r = await c.reply()
    assert.is(r.error, P.EINVAL)
    assert.ok(await c.waitClosed(), 'oversized write payload: disconnected')

    // BLOCK_STATUS without a negotiated context
    const d = await Raw.connect(s.socketPath)
    await d.handshake({meta: false})
    d.request(P.CMD_BLOCK_STATUS, {cookie: 1n, offset: 0, length: 4096})
    assert.is((await d.reply()).error, P.EINVAL)
    // bad request magic: disconnect
    d.write(Buffer.alloc(28, 0x41))
    assert.ok(await d.waitClosed())
  } finally {
    await s.close()
  }
})

test('backend errors map to NBD errors (errno, simple and structured replies)', async () => {
  const err = (errno) => Object.assign(new Error(`fake ${errno}`), {errno})
  const base = new MemoryBackend(M)
  const failing = {
    size: M,
    readOnly: false,
    multiConnSafe: true,
    read: async (o, l) => (o === 0 ? Promise.reject(err('EIO')) : o === 4096 ? Buffer.alloc(l - 1) : base.read(o, l)),
    write: async () => Promise.reject(err('ENOSPC')),
    flush: async () => Promise.reject(new Error('no errno')),
    trim: async () => Promise.reject(err('EPERM')),
    writeZeroes: async () => Promise.reject(err('EINVAL')),
    cache: async () => {
      throw 'a string'
    },
    blockStatus: async () => [],
  }
  const s = await serveUnix(failing)
  try {
    for (const structured of [true, false]) {
      const c = await Raw.connect(s.socketPath)
      await c.handshake({structured, meta: structured})
      const expect = async (type, opts, errno, what) => {
        c.request(type, {cookie: 3n, ...opts})
        const r = await c.reply({readLength: opts.length})
        assert.is(r.simple, !structured)
        assert.is(r.error, errno, `${what}: ${r.error}`)
      }
      await expect(P.CMD_READ, {offset: 0, length: 512}, P.EIO, 'read EIO')
      await expect(P.CMD_READ, {offset: 4096, length: 512}, P.EIO, 'short read')
      await expect(P.CMD_WRITE, {offset: 0, length: 4, payload: Buffer.alloc(4)}, P.ENOSPC, 'write ENOSPC')
      await expect(P.CMD_FLUSH, {}, P.EIO, 'flush')
      await expect(P.CMD_TRIM, {offset: 0, length: 10}, P.EPERM, 'trim')
      await expect(P.CMD_WRITE_ZEROES, {offset: 0, length: 10}, P.EINVAL, 'zero')
      await expect(P.CMD_CACHE, {offset: 0, length: 10}, P.EIO, 'cache')
      const r = await c.readAt(8192, 100)
      assert.is(r.error, 0)
      if (structured) {
        // an empty extent list still yields one valid descriptor
        c.request(P.CMD_BLOCK_STATUS, {cookie: 4n, offset: 0, length: 1000})
        const b = await c.reply()
        assert.is(b.error, 0)
        assert.is(b.chunks[0].payload.length, 12)
        assert.is(b.chunks[0].payload.readUInt32BE(4), 1000)
      }
      c.destroy()
    }
  } finally {
    await s.close()
  }
})

test('requests run concurrently (bounded) and replies come back out of order', async () => {
  const base = new MemoryBackend(seededBytes('ooo', M))
  let active = 0
  let maxActive = 0
  const slow = Object.create(base)
  slow.read = async (o, l) => {
    active++
    maxActive = Math.max(maxActive, active)
    await new Promise((r) => setTimeout(r, o === 0 ? 300 : 20))
    active--
    return base.read(o, l)
  }
  const s = await serveUnix(slow, {maxInFlight: 4})
  try {
    const c = await Raw.connect(s.socketPath)
    await c.handshake({structured: false, meta: false})
    c.request(P.CMD_READ, {cookie: 100n, offset: 0, length: 512})
    c.request(P.CMD_READ, {cookie: 200n, offset: 4096, length: 512})
    const first = await c.reply({readLength: 512})
    const second = await c.reply({readLength: 512})
    assert.is(first.cookie, 200n, 'the fast read is answered first')
    assert.is(second.cookie, 100n)
    assert.ok(first.data.equals(base.data.subarray(4096, 4608)))
    assert.ok(second.data.equals(base.data.subarray(0, 512)))
    // 20 reads at once: at most 4 run in the backend at a time
    for (let i = 0; i < 20; i++) c.request(P.CMD_READ, {cookie: BigInt(1000 + i), offset: 8192 + i * 512, length: 512})
    const cookies = new Set()
    for (let i = 0; i < 20; i++) cookies.add((await c.reply({readLength: 512})).cookie)
    assert.is(cookies.size, 20)
    assert.ok(maxActive <= 4 && maxActive >= 2, `max concurrent backend reads ${maxActive}`)
  } finally {
    await s.close()
  }
})

test('handshake timeout, connection limit, close() with clients attached', async () => {
  const base = new MemoryBackend(M)
  const slow = Object.create(base)
  slow.read = async (o, l) => {
    await sleep(200)
    return base.read(o, l)
  }
  let sawRead
  const readSeen = new Promise((r) => (sawRead = r))
  const s = await serveUnix(slow, {handshakeTimeoutMs: 300, maxConnections: 2, onRequest: (ev) => ev.type === 'read' && sawRead()})
  const a = await Raw.connect(s.socketPath)
  const t0 = Date.now()
  assert.ok(await a.waitClosed(3000), 'idle client dropped')
  assert.ok(Date.now() - t0 < 2500)
  const b = await Raw.connect(s.socketPath)
  await b.handshake()
  const c = await Raw.connect(s.socketPath)
  await c.handshake()
  const d = await Raw.connect(s.socketPath)
  assert.ok(await d.waitClosed(2000), 'third connection refused')
  assert.is(s.connectionCount(), 2)
  // a read in flight when close() is called still gets its reply
  b.request(P.CMD_READ, {cookie: 1n, offset: 0, length: 4096})
  await readSeen
  const closing = s.close()
  const r = await b.reply({offset: 0})
  assert.is(r.cookie, 1n)
  assert.is(r.error, 0)
  assert.ok(r.data.equals(base.data.subarray(0, 4096)))
  await closing
  assert.ok(await b.waitClosed(2000))
  assert.ok(await c.waitClosed(2000))
  const gone = await new Promise((resolve) => {
    const x = net.connect(s.socketPath)
    x.on('error', () => resolve(true))
    x.on('connect', () => resolve(false))
  })
  assert.ok(gone, 'socket removed after close')
  // a stale socket file is replaced on the next start
  const path2 = sockPath()
  const srv = net.createServer().listen(path2)
  await once(srv, 'listening')
  let inUse
  try {
    await startNbdServer(new MemoryBackend(M), {socketPath: path2})
  } catch (e) {
    inUse = e
  }
  assert.is(inUse?.code, 'VMI_IN_USE', 'a live socket is not stolen')
  srv.close()
})

// ------------------------------------------ hostile clients (server in a child)

const CHILD = `
import {startNbdServer} from ${JSON.stringify(pathToFileURL(path.join(ROOT, 'dist/mount/nbd/server.js')).href)}
import {FileBackend, MemoryBackend} from ${JSON.stringify(pathToFileURL(path.join(ROOT, 'dist/mount/nbd/block-backend.js')).href)}
const cfg = JSON.parse(process.env.NBD_CHILD)
const log = (l) => process.stderr.write(l + '\\n')
const ro = await startNbdServer(new FileBackend(cfg.image, {readOnly: true}), {socketPath: cfg.dir + '/child-ro.sock', handshakeTimeoutMs: 2000, log})
const rw = await startNbdServer(new MemoryBackend(8 << 20), {socketPath: cfg.dir + '/child-rw.sock', handshakeTimeoutMs: 2000, log})
process.on('message', async (m) => {
  if (m === 'stats') {
    globalThis.gc?.()
    process.send({rss: process.memoryUsage().rss, conns: ro.connectionCount() + rw.connectionCount()})
  } else if (m === 'exit') {
    await ro.close()
    await rw.close()
    process.exit(0)
  }
})
process.send({ready: true, ro: ro.address, rw: rw.address, roSock: cfg.dir + '/child-ro.sock', rwSock: cfg.dir + '/child-rw.sock'})
`

async function startChild() {
  const child = spawn(process.execPath, ['--expose-gc', '--input-type=module', '-e', CHILD], {
    env: {...process.env, NBD_CHILD: JSON.stringify({image: IMAGE, dir: fx.dir})},
    stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
  })
  let stderr = ''
  child.stderr.on('data', (d) => (stderr += d))
  let exited = null
  child.on('exit', (code, signal) => (exited = {code, signal}))
  let timer
  const [ready] = await Promise.race([
    once(child, 'message'),
    new Promise((_, rej) => (timer = setTimeout(() => rej(new Error(`child did not start: ${stderr}`)), 10_000))),
  ]).finally(() => clearTimeout(timer))
  const stats = async () => {
    child.send('stats')
    const [m] = await once(child, 'message')
    return m
  }
  return {
    ...ready,
    stats,
    stderr: () => stderr,
    exited: () => exited,
    async stop() {
      if (exited) return
      child.send('exit')
      let timer
      await Promise.race([once(child, 'exit'), new Promise((r) => (timer = setTimeout(r, 8000)))])
      clearTimeout(timer)
      if (!exited) child.kill('SIGKILL')
    },
  }
}

/** Connect, send bytes (all at once or in pieces), read whatever comes back for a while, hang up. */
async function session(target, bytes, {linger = 60, pieces = 1} = {}) {
  const sock = net.connect(target)
  sock.on('error', () => {})
  let received = 0
  let closed = false
  sock.on('data', (d) => (received += d.length))
  sock.on('close', () => (closed = true))
  try {
    let timer
    await Promise.race([once(sock, 'connect'), new Promise((r) => (timer = setTimeout(r, 2000)))])
    clearTimeout(timer)
    const step = Math.ceil(bytes.length / pieces)
    for (let i = 0; i < bytes.length && !closed; i += step) {
      sock.write(bytes.subarray(i, i + step))
      if (pieces > 1) await sleep(2)
    }
    const until = Date.now() + linger
    while (!closed && Date.now() < until) await sleep(10)
  } finally {
    sock.destroy()
  }
  return {received, closed}
}

function u32(n) {
  const b = Buffer.alloc(4)
  b.writeUInt32BE(n >>> 0)
  return b
}

/** A valid client byte stream: flags, options, GO, then requests. */
function validStream(rand, {size = 8 << 20} = {}) {
  const parts = [u32(P.FLAG_C_FIXED_NEWSTYLE | P.FLAG_C_NO_ZEROES), P.encodeOption(P.OPT_STRUCTURED_REPLY)]
  parts.push(P.encodeOption(P.OPT_SET_META_CONTEXT, P.encodeMetaContextRequest('', ['base:allocation'])))
  parts.push(P.encodeOption(P.OPT_GO, P.encodeInfoRequest('', [P.INFO_BLOCK_SIZE])))
  const n = 1 + Math.floor(rand() * 6)
  for (let i = 0; i < n; i++) {
    const type = [P.CMD_READ, P.CMD_WRITE, P.CMD_BLOCK_STATUS, P.CMD_FLUSH, P.CMD_TRIM, P.CMD_WRITE_ZEROES, P.CMD_CACHE][Math.floor(rand() * 7)]
    const length = Math.floor(rand() * 65536)
    const offset = Math.floor(rand() * (size - length))
    parts.push(P.encodeRequest(type, 0, BigInt(i), offset, length))
    if (type === P.CMD_WRITE) parts.push(Buffer.alloc(length, i))
  }
  if (rand() < 0.5) parts.push(P.encodeRequest(P.CMD_DISC, 0, 99n, 0, 0))
  return Buffer.concat(parts)
}

function mulberry32(seed) {
  return () => {
    seed |= 0
    seed = (seed + 0x6d2b79f5) | 0
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed)
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

function randomBuf(rand, n) {
  const b = Buffer.alloc(n)
  for (let i = 0; i < n; i++) b[i] = Math.floor(rand() * 256)
  return b
}

/** One fuzz case: random bytes, random options, random requests, or a mutated valid stream. */
function fuzzCase(rand) {
  const kind = Math.floor(rand() * 5)
  const flags = u32(P.FLAG_C_FIXED_NEWSTYLE | P.FLAG_C_NO_ZEROES)
  const go = Buffer.concat([P.encodeOption(P.OPT_STRUCTURED_REPLY), P.encodeOption(P.OPT_GO, P.encodeInfoRequest('', []))])
  switch (kind) {
    case 0:
      return randomBuf(rand, Math.floor(rand() * 3000))
    case 1: {
      const parts = [flags]
      for (let i = 0, n = 1 + Math.floor(rand() * 8); i < n; i++) {
        const len = rand() < 0.2 ? Math.floor(rand() * 2 ** 32) : Math.floor(rand() * 300)
        const h = P.encodeOption(Math.floor(rand() * 14), Buffer.alloc(0))
        h.writeUInt32BE(len >>> 0, 12)
        parts.push(h, randomBuf(rand, Math.min(len, 300)))
      }
      return Buffer.concat(parts)
    }
    case 2: {
      const parts = [flags, go]
      for (let i = 0, n = 1 + Math.floor(rand() * 10); i < n; i++) {
        const type = Math.floor(rand() * 10)
        const length = rand() < 0.3 ? Math.floor(rand() * 2 ** 32) : Math.floor(rand() * 70000)
        const offset = rand() < 0.3 ? BigInt.asUintN(64, BigInt(Math.floor(rand() * 2 ** 53)) << 11n) : BigInt(Math.floor(rand() * (9 << 20)))
        parts.push(P.encodeRequest(type, Math.floor(rand() * 65536) & (rand() < 0.5 ? 0xffff : 0x1f), BigInt(i), offset, length))
        if (type === P.CMD_WRITE) parts.push(randomBuf(rand, Math.min(length, 20000)))
      }
      return Buffer.concat(parts)
    }
    case 3: {
      const b = Buffer.concat([flags, go, randomBuf(rand, Math.floor(rand() * 2000))])
      return b
    }
    default: {
      const b = validStream(rand)
      for (let i = 0, n = 1 + Math.floor(rand() * 6); i < n; i++) b[Math.floor(rand() * b.length)] = Math.floor(rand() * 256)
      return rand() < 0.3 ? b.subarray(0, Math.floor(rand() * b.length)) : b
    }
  }
}

async function copyOk(address, what) {
  const out = path.join(fx.dir, 'after-hostile.raw')
  ok(await run('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', address, out]), what)
  assert.is(await sha256File(out), IMAGE_SHA, `${what}: identical`)
  await fsp.rm(out)
}

test('hostile clients: bad magic, oversized options, floods, vanishing writers; the server survives', async () => {
  const child = await startChild()
  try {
    const target = {path: child.roSock}
    const rwTarget = {path: child.rwSock}

    // unknown client flags
    let c = await Raw.connect(target)
    await c.greeting(0x80)
    assert.ok(await c.waitClosed(), 'unknown client flags: closed')
    // bad option magic
    c = await Raw.connect(target)
    await c.greeting()
    c.write(Buffer.alloc(16, 0x33))
    assert.ok(await c.waitClosed(), 'bad option magic: closed')
    // oversized option: 1 GiB claimed, nothing sent
    c = await Raw.connect(target)
    await c.greeting()
    const big = P.encodeOption(P.OPT_GO)
    big.writeUInt32BE(1 << 30, 12)
    c.write(big)
    assert.ok(await c.waitClosed(), 'oversized option: closed')
    // too many options
    c = await Raw.connect(target)
    await c.greeting()
    const flood = Buffer.concat(Array.from({length: 300}, () => P.encodeOption(1000)))
    c.write(flood)
    assert.ok(await c.waitClosed(5000), 'option flood: closed')
    // write to the read-only export: EPERM, payload skipped, stream in sync
    c = await Raw.connect(target)
    await c.handshake()
    c.request(P.CMD_WRITE, {cookie: 1n, offset: 0, length: 65536, payload: Buffer.alloc(65536, 1)})
    assert.is((await c.reply()).error, P.EPERM)
    c.request(P.CMD_TRIM, {cookie: 2n, offset: 0, length: 4096})
    assert.is((await c.reply()).error, P.EPERM)
    const rd = await c.readAt(0, 4096)
    assert.ok(rd.data.equals(readFileSync(IMAGE).subarray(0, 4096)))
    // 1 GiB read and a read past the end
    c.request(P.CMD_READ, {cookie: 3n, offset: 0, length: 1 << 30})
    assert.is((await c.reply()).error, P.EINVAL)
    c.request(P.CMD_READ, {cookie: 4n, offset: IMAGE_SIZE, length: 1})
    assert.is((await c.reply()).error, P.EINVAL)
    c.destroy()
    // a writer announcing 16 MiB that sends 1 MiB and vanishes
    c = await Raw.connect(rwTarget)
    await c.handshake()
    c.request(P.CMD_WRITE, {cookie: 1n, offset: 0, length: 16 << 20, payload: Buffer.alloc(M, 7)})
    await sleep(50)
    c.destroy()
    // a client vanishing with many reads in flight
    c = await Raw.connect(target)
    await c.handshake()
    for (let i = 0; i < 40; i++) c.request(P.CMD_READ, {cookie: BigInt(i), offset: 0, length: 4 << 20})
    await sleep(20)
    c.destroy()

    /** rss growth while `scenario` runs, from a baseline taken once earlier connections are gone. */
    const growth = async (scenario) => {
      for (let i = 0; i < 50 && (await child.stats()).conns > 0; i++) await sleep(50)
      const before = await child.stats()
      const during = await scenario()
      return {before: before.rss, during: during.rss, grew: during.rss - before.rss}
    }
    // a client that asks for 2 GiB of reads and never reads the replies
    const stalled = await growth(async () => {
      const x = await Raw.connect(target)
      await x.handshake()
      x.sock.pause()
      for (let i = 0; i < 512; i++) x.request(P.CMD_READ, {cookie: BigInt(i), offset: (i % 2) * (4 << 20), length: 4 << 20})
      await sleep(1500)
      const st = await child.stats()
      x.destroy()
      return st
    })
    // a client pushing 128 MiB of writes without reading replies
    const flooded = await growth(async () => {
      const x = await Raw.connect(rwTarget)
      await x.handshake()
      x.sock.pause()
      const payload = Buffer.alloc(M, 0x42)
      for (let i = 0; i < 128; i++) x.request(P.CMD_WRITE, {cookie: BigInt(i), offset: (i % 8) * M, length: M, payload})
      await sleep(1500)
      const st = await child.stats()
      x.destroy()
      return st
    })
    const mib = (n) => `${(n / M).toFixed(0)} MiB`
    console.log(`  hostile: rss ${mib(stalled.before)} → ${mib(stalled.during)} with 2 GiB of unread replies; ${mib(flooded.before)} → ${mib(flooded.during)} during a 128 MiB unread write flood`)
    assert.ok(stalled.grew < 100 * M, `unread replies: rss grew ${mib(stalled.grew)}`)
    assert.ok(flooded.grew < 100 * M, `write flood: rss grew ${mib(flooded.grew)}`)

    if (HAVE['qemu-img']) await copyOk(child.ro, 'qemu-img convert after hostile clients')
    assert.is(child.exited(), null, `server process alive: ${child.stderr()}`)
    assert.not.match(child.stderr(), /\]: error:|request \S+ failed/, 'no unexpected exceptions')
  } finally {
    await child.stop()
  }
})

test('fuzz: 300 random and mutated sessions within 20 s; memory bounded; clients still served', async () => {
  const child = await startChild()
  try {
    // warm up, then measure
    if (HAVE['qemu-img']) await copyOk(child.ro, 'warm-up copy')
    const before = await child.stats()
    const rand = mulberry32(0x5eed)
    const cases = Array.from({length: 300}, () => ({bytes: fuzzCase(rand), rw: rand() < 0.5, pieces: rand() < 0.3 ? 4 : 1}))
    const started = Date.now()
    let next = 0
    let done = 0
    const worker = async () => {
      while (next < cases.length && Date.now() - started < 20_000) {
        const c = cases[next++]
        await session({path: c.rw ? child.rwSock : child.roSock}, c.bytes, {pieces: c.pieces})
        done++
      }
    }
    await Promise.all(Array.from({length: 12}, worker))
    const elapsed = Date.now() - started
    assert.ok(done >= 300 || elapsed >= 20_000, `ran ${done} sessions`)
    console.log(`  fuzz: ${done} sessions in ${elapsed} ms`)
    // every connection winds down (nothing hangs)
    let after
    for (let i = 0; i < 50; i++) {
      after = await child.stats()
      if (after.conns === 0) break
      await sleep(100)
    }
    assert.is(after.conns, 0, 'all fuzz connections closed')
    assert.ok(after.rss - before.rss < 100 * M, `rss grew ${((after.rss - before.rss) / M).toFixed(1)} MiB`)
    if (HAVE['qemu-img']) await copyOk(child.ro, 'qemu-img convert after fuzz')
    else {
      const c = await Raw.connect({path: child.roSock})
      await c.handshake()
      assert.is((await c.readAt(0, 4096)).error, 0)
      c.destroy()
    }
    assert.is(child.exited(), null, `server process alive: ${child.stderr()}`)
    assert.not.match(child.stderr(), /\]: error:|request \S+ failed/, 'no unexpected exceptions')
  } finally {
    await child.stop()
  }
})

test.run()
