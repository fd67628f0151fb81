// vmi mount: a lazy NBD export read by real clients (qemu-img, nbdcopy,
// nbdinfo, qemu-io), its overlay, commit, and the hand-off bridges.
import {test} from 'uvu'
import * as assert from 'uvu/assert'
import {spawnSync} from 'node:child_process'
import {existsSync, promises as fsp, readFileSync} from 'node:fs'
import path from 'node:path'
import {exec, fsckClean, hasCommand, listFiles, makeImage, sha256File, skip, tmpStore} from '../helpers/index.js'
import {startMount} from '../helpers/mount.js'
import {P, Raw} from '../helpers/nbd-raw.js'
import {metricSum, startServe} from '../helpers/serve.js'

const M = 1024 * 1024
const TOKEN = 'mount-test-token'
const haveQemu = hasCommand('qemu-img') && hasCommand('qemu-io')

function ok(r, what) {
  assert.is(r.status, 0, `${what} failed (exit ${r.status}): ${r.stderr}`)
  return r
}

function run(cmd, args) {
  const r = spawnSync(cmd, args, {maxBuffer: 256 * M})
  return {status: r.status, stdout: r.stdout?.toString() ?? '', stderr: r.stderr?.toString() ?? ''}
}

async function imageStore(t, layout, chunk = '64K') {
  const src = path.join(t.dir, 'src.raw')
  await makeImage(src, layout)
  const store = path.join(t.dir, 'store')
  const id = ok(exec(['import', src, 'img:v1', '--chunk-size', chunk], {store}), 'import').stdout.trim()
  return {src, store, id}
}

test('real NBD clients read a mounted image byte-identical (qemu-img, nbdcopy, nbdinfo)', async () => {
  if (!haveQemu) return skip('qemu-img/qemu-io not installed')
  const t = tmpStore()
  let m
  try {
    const {src, store} = await imageStore(t, [{kind: 'random', size: 3 * M, seed: 1}, {kind: 'zero', size: 2 * M}, {kind: 'random', size: M + 4096, seed: 2}])
    m = await startMount(store, ['img:v1', '--read-only'])
    const out = path.join(t.dir, 'out.raw')
    ok(run('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', m.nbd, out]), 'qemu-img convert')
    assert.is(await sha256File(out), await sha256File(src))
    if (hasCommand('nbdcopy')) {
      const out2 = path.join(t.dir, 'out2.raw')
      ok(run('nbdcopy', [m.nbd, out2]), 'nbdcopy')
      assert.is(await sha256File(out2), await sha256File(src))
    }
    if (hasCommand('nbdcopy')) {
      // every chunk is verified now: small reads take the synchronous fast path
      // (one reply buffer, holes for zero chunks); twice, with and without structured replies
      for (const args of [[], ['--no-extents']]) {
        const out3 = path.join(t.dir, 'out3.raw')
        ok(run('nbdcopy', [...args, '--request-size=4096', '--requests=16', m.nbd, out3]), 'nbdcopy 4 KiB requests')
        assert.is(await sha256File(out3), await sha256File(src), `4 KiB reads ${args.join(' ')}`)
      }
      // unaligned small reads straddling chunk boundaries and the zero region
      const io = run('qemu-io', ['-f', 'raw', '-r', '-c', 'read -v 65530 12', '-c', 'read -v 3145720 16', m.nbd])
      assert.is(io.status, 0, io.stderr)
      const want = readFileSync(src)
      const hex = (buf) => [...buf].map((b) => b.toString(16).padStart(2, '0')).join(' ')
      assert.ok(io.stdout.includes(hex(want.subarray(65530, 65542))), `bytes across a chunk boundary: ${io.stdout}`)
      assert.ok(io.stdout.includes(hex(want.subarray(3145720, 3145736))), `bytes into the zero region: ${io.stdout}`)
    }
    if (hasCommand('nbdinfo')) {
      const info = JSON.parse(ok(run('nbdinfo', ['--json', m.nbd]), 'nbdinfo').stdout)
      assert.is(info.exports[0]['export-size'], 6 * M + 4096)
      assert.is(info.exports[0]['is_read_only'], true)
      const map = ok(run('nbdinfo', ['--map', m.nbd]), 'nbdinfo --map').stdout
      assert.match(map, /3145728\s+2097152\s+3\s+hole,zero/, 'the zero region is reported as a hole')
    }
    const w = run('qemu-io', ['-f', 'raw', '-c', 'write -P 0x55 0 4096', m.nbd])
    assert.ok(w.status !== 0 || /(failed|Operation not permitted|read-only)/i.test(w.stdout + w.stderr), 'writes to a read-only mount fail')
  } finally {
    await m?.stop()
    t.cleanup()
  }
})

test('fast-path reads a client leaves unread (far past the socket buffer) all arrive intact', async () => {
  const t = tmpStore()
  let m
  let c
  try {
    const {src, store} = await imageStore(t, [{kind: 'random', size: 8 * M, seed: 'unread'}])
    const want = readFileSync(src)
    m = await startMount(store, ['img:v1', '--read-only'])
    c = await Raw.connect({path: m.socket})
    await c.handshake({structured: false, meta: false})
    // one pass in 64 KiB reads verifies every chunk: after it, 4 KiB reads take the fast path
    for (let off = 0; off < want.length; off += 64 * 1024) {
      const r = await c.readAt(off, 64 * 1024, 0, BigInt(off))
      assert.ok(r.data.equals(want.subarray(off, off + 64 * 1024)), `verifying pass at ${off}`)
    }
    // 1,200 scattered reads of 4 KiB and (every 4th) 120 KiB, ~40 MiB of replies, while the
    // client reads nothing: the kernel takes a few hundred KiB (the big replies only in part),
    // the rest must queue behind it, in order, nothing lost or doubled
    const n = 1200
    const lengths = Array.from({length: n}, (_, i) => (i % 4 === 3 ? 120 * 1024 : 4096))
    const offsets = lengths.map((len, i) => ((i * 7919) % ((want.length - len) / 4096)) * 4096)
    c.sock.pause()
    for (let i = 0; i < n; i++) c.request(P.CMD_READ, {cookie: BigInt(i), offset: offsets[i], length: lengths[i]})
    await new Promise((r) => setTimeout(r, 1000))
    c.sock.resume()
    const total = lengths.reduce((a, len) => a + 16 + len, 0)
    const all = await c.read(total, 30_000)
    const seen = new Set()
    for (let i = 0, at = 0; i < n; i++) {
      assert.is(all.readUInt32BE(at), P.SIMPLE_REPLY_MAGIC, `reply ${i}: magic`)
      assert.is(all.readUInt32BE(at + 4), 0, `reply ${i}: error`)
      const cookie = Number(all.readBigUInt64BE(at + 8))
      assert.ok(cookie < n && !seen.has(cookie), `reply ${i}: cookie ${cookie}`)
      seen.add(cookie)
      const len = lengths[cookie]
      assert.ok(all.subarray(at + 16, at + 16 + len).equals(want.subarray(offsets[cookie], offsets[cookie] + len)), `reply ${i} (cookie ${cookie}): data`)
      at += 16 + len
    }
    assert.is(seen.size, n)
  } finally {
    c?.destroy()
    await m?.stop()
    t.cleanup()
  }
})

test('adaptive polling: requests read while polling are answered right (reads, writes between them, split headers, a client that leaves)', async () => {
  const t = tmpStore()
  let m
  let c
  try {
    const {src, store} = await imageStore(t, [{kind: 'random', size: 4 * M, seed: 'poll'}])
    const want = readFileSync(src)
    // a wide window, so a Node client's turnaround falls inside it on any machine
    m = await startMount(store, ['img:v1', '--poll-us', '5000', '--prefetch', 'none'], {env: {VMI_DEBUG: '1'}})
    c = await Raw.connect({path: m.socket})
    await c.handshake({structured: false, meta: false})
    for (let off = 0; off < want.length; off += 64 * 1024) {
      const r = await c.readAt(off, 64 * 1024, 0, BigInt(off))
      assert.ok(r.data.equals(want.subarray(off, off + 64 * 1024)), `verifying pass at ${off}`)
    }
    const blocks = want.length / 4096
    // depth-1 reads back to back: most are read by the poll, not the event loop
    for (let i = 0; i < 1500; i++) {
      const off = ((i * 7919) % blocks) * 4096
      const r = await c.readAt(off, 4096, 0, BigInt(i))
      assert.ok(r.data.equals(want.subarray(off, off + 4096)), `read ${i} at ${off}`)
    }
    // a WRITE (header and payload) right after a fast read: the poll hands it to the request loop
    for (let i = 0; i < 40; i++) {
      const off = ((i * 104729) % blocks) * 4096
      await c.readAt(off, 4096, 0, 1n)
      const data = Buffer.alloc(4096, (i * 37 + 1) & 0xff)
      c.request(P.CMD_WRITE, {cookie: 2n, offset: off, length: 4096, payload: data})
      const w = await c.reply()
      assert.is(w.error, 0, `write ${i}`)
      data.copy(want, off)
      const r = await c.readAt(off, 4096, 0, 3n)
      assert.ok(r.data.equals(data), `write ${i} reads back`)
    }
    // a header split in two, the second part after a pause: the first part may be read by a poll
    for (let i = 0; i < 20; i++) {
      const off = ((i * 31) % blocks) * 4096
      await c.readAt(0, 4096, 0, 4n)
      const h = P.encodeRequest(P.CMD_READ, 0, 5n, off, 4096)
      const cut = 1 + (i % 27)
      c.write(h.subarray(0, cut))
      await new Promise((r) => setTimeout(r, i % 2 ? 1 : 8))
      c.write(h.subarray(cut))
      const r = await c.reply({readLength: 4096})
      assert.is(r.cookie, 5n)
      assert.ok(r.data.equals(want.subarray(off, off + 4096)), `split header ${i} (cut at ${cut})`)
    }
    // a client that leaves right after a reply, while the server polls its socket
    await c.readAt(4096, 4096, 0, 6n)
    c.destroy()
    c = await Raw.connect({path: m.socket})
    await c.handshake({structured: true, meta: false})
    const r = await c.readAt(8192, 4096, 0, 7n)
    assert.ok(r.data.equals(want.subarray(8192, 8192 + 4096)), 'a new connection is served')
    c.destroy()
    c = undefined
    await m.stop()
    const stats = [...m.stderr().matchAll(/adaptive polling: (\d+) polls found requests, (\d+) found them at once, (\d+) found them after being preempted, (\d+) ran out/g)]
    assert.ok(stats.length > 0, `the log reports polling: ${m.stderr().slice(-2000)}`)
    const found = stats.reduce((a, s) => a + Number(s[1]) + Number(s[2]) + Number(s[3]), 0)
    assert.ok(found > 0, `polls found requests: ${stats.map((s) => s[0]).join('; ')}`)
  } finally {
    c?.destroy()
    await m?.stop()
    t.cleanup()
  }
})

test('an empty host reading 4 KiB fetches one chunk from the seed, not the image', async () => {
  if (!haveQemu) return skip('qemu-io not installed')
  const t = tmpStore()
  let seed
  let m
  try {
    const {store, id} = await imageStore(t, [{kind: 'random', size: 8 * M, seed: 3}], '256K')
    seed = await startServe(store)
    const host = path.join(t.dir, 'host')
    m = await startMount(host, [id, seed.url, '--read-only', '--prefetch', 'none'])
    const before = metricSum(await seed.metrics(), 'vmi_served_bytes_total', {kind: 'objects'})
    ok(run('qemu-io', ['-r', '-f', 'raw', '-c', 'read 1048576 4096', m.nbd]), 'qemu-io read')
    const after = metricSum(await seed.metrics(), 'vmi_served_bytes_total', {kind: 'objects'})
    assert.is(after - before, 256 * 1024, 'exactly one 256 KiB chunk crossed the wire')
    assert.is((await listFiles(path.join(host, 'objects'))).length, 1)
    const st = await m.stop()
    assert.is(st.code, 0, st.stderr)
    fsckClean(host) // the image is lazy: its missing chunks are not problems
  } finally {
    await m?.stop()
    await seed?.stop()
    t.cleanup()
  }
})

test('overlay: writes read back, the base is unchanged, a FLUSHed write survives kill -9, commit makes a new image', async () => {
  if (!haveQemu) return skip('qemu-io not installed')
  const t = tmpStore()
  let m
  try {
    const {src, store, id} = await imageStore(t, [{kind: 'random', size: 2 * M, seed: 4}, {kind: 'zero', size: 2 * M}])
    const ovl = path.join(t.dir, 'ovl')
    m = await startMount(store, ['img:v1', '--overlay', ovl])
    // an unaligned write across a chunk boundary, a write into the zero region, a zeroing
    ok(run('qemu-io', ['-f', 'raw', '-c', 'write -P 0xab 65000 1000', '-c', 'write -P 0xcd 3145728 8192', '-c', 'write -z 0 4096', '-c', 'flush', m.nbd]), 'qemu-io write')
    const rb = run('qemu-io', ['-f', 'raw', '-c', 'read -P 0xab 65000 1000', '-c', 'read -P 0xcd 3145728 8192', '-c', 'read -P 0 0 4096', m.nbd])
    assert.is(rb.status, 0, rb.stdout + rb.stderr)
    assert.not.match(rb.stdout, /Pattern verification failed/)
    // kill -9 after the flush, remount the same overlay: the writes are there
    m.child.kill('SIGKILL')
    await m.exited
    m = await startMount(store, ['img:v1', '--overlay', ovl])
    const rb2 = run('qemu-io', ['-f', 'raw', '-c', 'read -P 0xab 65000 1000', '-c', 'read -P 0xcd 3145728 8192', m.nbd])
    assert.is(rb2.status, 0, rb2.stdout + rb2.stderr)
    assert.not.match(rb2.stdout, /Pattern verification failed/)
    const disk = path.join(t.dir, 'disk.raw')
    ok(run('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', m.nbd, disk]), 'read the written disk')
    await m.stop()
    // base unchanged
    const base = path.join(t.dir, 'base.raw')
    ok(exec(['export', id, base], {store}), 'export base')
    assert.is(await sha256File(base), await sha256File(src))
    fsckClean(store)
    // commit: equals the written disk, parent is the base, only changed chunks are new
    const c = JSON.parse(ok(exec(['commit', ovl, 'img:v2', '--json'], {store}), 'commit').stdout)
    assert.is(c.parent, id)
    assert.is(c.changedChunks, 3, 'chunks 0 and 1 (the write crosses 65536) and chunk 48 in the zero region')
    const out = path.join(t.dir, 'v2.raw')
    ok(exec(['export', 'img:v2', out], {store}), 'export v2')
    assert.is(await sha256File(out), await sha256File(disk))
    const log = JSON.parse(ok(exec(['log', 'img:v2', '--json'], {store}), 'log').stdout)
    assert.equal(log.entries.map((e) => e.id), [c.id, id])
    fsckClean(store)
  } finally {
    await m?.stop()
    t.cleanup()
  }
})

test('commit of a lazy mount’s overlay fetches the base chunks the guest never read: the new image is whole (fsck clean, exports base + writes); with no seed to fetch them, no ref', async () => {
  if (!haveQemu) return skip('qemu-io not installed')
  const t = tmpStore()
  let m
  let seed
  try {
    const {src, store: seedStore} = await imageStore(t, [{kind: 'random', size: 4 * M, seed: 'lazy-commit'}])
    seed = await startServe(seedStore)
    const host = path.join(t.dir, 'host')
    const ovl = path.join(t.dir, 'ovl')
    m = await startMount(host, ['img:v1', seed.url, '--overlay', ovl, '--prefetch', 'none'])
    ok(run('qemu-io', ['-f', 'raw', '-c', 'write -P 0xab 100000 5000', '-c', 'flush', m.nbd]), 'qemu-io write')
    await m.stop()
    m = undefined
    const expected = readFileSync(src)
    expected.fill(0xab, 100000, 105000)
    // no seed named (and no origin): the chunks the guest never read cannot be had, and nothing is referenced
    const refused = exec(['commit', ovl, 'img:v2'], {store: host})
    assert.is(refused.status, 8, refused.stderr)
    assert.ok(refused.stderr.includes(`vmi commit ${ovl} img:v2 ${seed.url}`), `the hint names the seed the mount used: ${refused.stderr}`)
    assert.is(exec(['inspect', 'img:v2'], {store: host}).status, 3, 'no ref to an image whose chunks are not here')
    const c = JSON.parse(ok(exec(['commit', ovl, 'img:v2', seed.url, '--json'], {store: host}), 'commit with the seed').stdout)
    assert.is(c.changedChunks, 1)
    const f = fsckClean(host)
    assert.is(f.lazyMissingChunks, 0)
    await seed.stop()
    seed = undefined
    const out = path.join(t.dir, 'v2.raw')
    ok(exec(['export', 'img:v2', out], {store: host}), 'export v2 with the seed gone')
    assert.ok(readFileSync(out).equals(expected), 'base and the write')
  } finally {
    await m?.stop()
    await seed?.stop()
    t.cleanup()
  }
})

test('--exec runs the client with {nbd} substituted and passes its exit code on', async () => {
  if (!haveQemu) return skip('qemu-img not installed')
  const t = tmpStore()
  try {
    const {src, store} = await imageStore(t, [{kind: 'random', size: M, seed: 5}])
    const out = path.join(t.dir, 'x.raw')
    const r = exec(['mount', 'img:v1', '--read-only', '--exec', `qemu-img convert -O raw {nbd} ${out} && exit 7`], {store})
    assert.is(r.status, 7, r.stderr)
    assert.is(await sha256File(out), await sha256File(src))
    assert.equal((await listFiles(path.join(store, 'tmp'))).filter((f) => f.endsWith('.sock')), [], 'socket removed')
    const bad = exec(['mount', 'img:v1', '--exec', 'echo {file}'], {store})
    assert.is(bad.status, 2)
    assert.match(bad.stderr, /\{file\}/)
  } finally {
    t.cleanup()
  }
})

test('--file exposes a regular file (FUSE via qemu-storage-daemon) identical to the image', async () => {
  if (!hasCommand('qemu-storage-daemon') || !existsSync('/dev/fuse')) return skip('qemu-storage-daemon or /dev/fuse missing')
  const t = tmpStore()
  let m
  try {
    const {src, store} = await imageStore(t, [{kind: 'random', size: 2 * M, seed: 6}, {kind: 'zero', size: M}])
    const file = path.join(t.dir, 'disk.img')
    m = await startMount(store, ['img:v1', '--read-only', '--file', file])
    assert.is(m.file, file)
    assert.ok(readFileSync(file).equals(readFileSync(src)), 'file content equals the image')
    await m.stop()
    assert.not.ok(existsSync(file), 'the file is gone after unmount')
  } finally {
    await m?.stop()
    t.cleanup()
  }
})

test('--device needs a kernel NBD driver', async () => {
  if (existsSync('/sys/module/nbd') && existsSync('/dev/nbd0')) return skip('kernel NBD present: covered by the boot test setup only')
  const t = tmpStore()
  try {
    const {store} = await imageStore(t, [{kind: 'random', size: M, seed: 7}])
    const r = exec(['mount', 'img:v1', '--device', '/dev/nbd0', '--read-only'], {store})
    assert.is(r.status, 7)
    assert.match(r.stderr, /no NBD driver/)
    skip('/dev/nbdN cannot be used here (no kernel NBD driver, no module loading); checked the clear error instead')
    fsckClean(store)
  } finally {
    t.cleanup()
  }
})

test.run()
