// Guest data safety through `vmi mount`'s copy-on-write overlay, driven by NBD
// clients this project did not write (libnbd's Python bindings, qemu-io):
// concurrent sub-block writes, writes inside writes, concurrent FLUSH and FUA
// on one connection and on several, a randomized model test, kill -9 during
// flushes, and one owner per overlay, --file path and socket.
import {test} from 'uvu'
import * as assert from 'uvu/assert'
import {existsSync, promises as fsp, readFileSync, writeFileSync} from 'node:fs'
import net from 'node:net'
import path from 'node:path'
import {execAsync, fsckCleanAsync, hasCommand, makeImage, ROOT, runAsync, sha256File, skip, tmpStore} from '../helpers/index.js'
import {tmpfs} from '../helpers/tmpfs.js'
import {sleep} from '../helpers/crash.js'
import {startMount} from '../helpers/mount.js'

const M = 1024 * 1024
const PY = '/usr/bin/python3'
const DRIVER = path.join(ROOT, 'test', 'helpers', 'nbd_stress.py')
const haveLibnbd = (await runAsync(PY, ['-c', 'import nbd'])).status === 0
const haveQemuIo = hasCommand('qemu-io')

async function driver(mode, cfg, timeoutMs = 120_000) {
  const r = await runAsync(PY, [DRIVER, mode, JSON.stringify(cfg)], timeoutMs)
  const last = r.out.trim().split('\n').pop()
  try {
    if (r.status !== 0) throw new Error('exit')
    return JSON.parse(last)
  } catch {
    throw new Error(`nbd_stress.py ${mode} failed (exit ${r.status}): ${r.out.slice(-2000)}`)
  }
}

/** A store holding img:v1 (random data, then zeros), its raw bytes in base.raw. */
async function fixture(t, size = 8 * M) {
  const base = path.join(t.dir, 'base.raw')
  await makeImage(base, [{kind: 'random', size: size / 2, seed: 'write-safety'}, {kind: 'zero', size: size / 2}])
  const store = path.join(t.dir, 'store')
  const r = await execAsync(['import', base, 'img:v1', '--chunk-size', '64K', '-q'], {store})
  assert.is(r.status, 0, r.stderr)
  return {base, store, size}
}

/** Run fn({f, m, t}) against a fresh store and a mount of img:v1 with `args`; stops and cleans up after. */
async function withMount(args, fn) {
  const t = tmpStore()
  const ctx = {t, m: undefined, f: undefined}
  try {
    ctx.f = await fixture(t)
    ctx.m = await startMount(ctx.f.store, ['img:v1', ...args.map((a) => a.replace('{dir}', t.dir))])
    await fn(ctx)
  } finally {
    await ctx.m?.stop()
    t.cleanup()
  }
}

/** A fixture of 2 MiB and its kept overlay, after a mount wrote `write` (a qemu-io command), flushed and stopped: {f, ovl}. */
async function overlayWritten(t, write) {
  const f = await fixture(t, 2 * M)
  const ovl = path.join(t.dir, 'ovl')
  const m = await startMount(f.store, ['img:v1', '--overlay', ovl])
  try {
    assert.is((await runAsync('qemu-io', ['-f', 'raw', '-c', write, '-c', 'flush', m.nbd])).status, 0)
  } finally {
    await m.stop()
  }
  return {f, ovl}
}

function need() {
  if (!haveLibnbd) {
    skip(`libnbd's Python bindings are not importable by ${PY} (Debian package python3-libnbd)`)
    return false
  }
  return true
}

test('eight concurrent 512-byte writes to the sectors of each 4 KiB block, then one FLUSH: every sector reads back on another connection', async () => {
  if (!need()) return
  await withMount([], async ({m}) => {
    for (const [i, offset] of [0, 3 * M + 4096, 5 * M].entries()) {
      const r = await driver('sectors', {uri: m.nbd, seed: `s${i}`, offset, blocks: 8})
      assert.equal(r.errors, [], 'no write or flush failed')
      assert.is(r.stale, 0, `${r.stale} of ${r.sectors} acknowledged sectors read back stale (offset ${offset})`)
    }
  })
})

test('a 4 KiB write and a 100-byte write inside it, in flight together: the bytes outside the small write are the 4 KiB write\'s', async () => {
  if (!need()) return
  await withMount([], async ({m}) => {
    const r = await driver('overlap', {uri: m.nbd, seed: 'ov', offset: M, blocks: 256})
    assert.equal(r.errors, [])
    assert.is(r.lost, 0, `${r.lost} of ${r.blocks} blocks lost bytes of an acknowledged write`)
  })
})

test('qemu-io -t writeback: 32 concurrent 512-byte aio_writes and aio_flush all read back', async () => {
  if (!haveQemuIo) return skip('qemu-io not installed (Debian package qemu-utils)')
  await withMount([], async ({m}) => {
    const base = 2 * M + 512 // across a chunk and block boundaries, unaligned to 4 KiB
    const cmds = []
    for (let s = 0; s < 32; s++) cmds.push('-c', `aio_write -P ${0x10 + s} ${base + s * 512} 512`)
    cmds.push('-c', 'aio_flush')
    const w = await runAsync('qemu-io', ['-f', 'raw', '-t', 'writeback', ...cmds, m.nbd])
    assert.is(w.status, 0, w.out)
    assert.not.match(w.out, /error|failed/i, w.out)
    const checks = []
    for (let s = 0; s < 32; s++) checks.push('-c', `read -P ${0x10 + s} ${base + s * 512} 512`)
    const r = await runAsync('qemu-io', ['-f', 'raw', '-r', ...checks, m.nbd])
    const bad = (r.out.match(/Pattern verification failed/g) ?? []).length
    assert.is(bad, 0, `${bad} of 32 sectors stale:\n${r.out.slice(0, 1500)}`)
    assert.is(r.status, 0, r.out)
  })
})

test('concurrent FLUSHes and FUA writes on two connections never fail, and a flush on one connection covers the other\'s writes', async () => {
  if (!need()) return
  await withMount(['--overlay', '{dir}/ovl'], async ({m, f, t}) => {
    // flush-heavy model run: every reply must be a success
    const r = await driver('model', {uri: m.nbd, size: f.size, base: f.base, seed: 7, seconds: 4, connections: 2, model_out: path.join(t.dir, 'model.bin')})
    assert.is(r.errors_count, 0, `commands failed: ${r.errors.join('; ')}`)
    assert.equal(r.mismatches, [])
    assert.ok(r.flush > 10 && r.fua > 10, `flushes and FUA writes were sent (${r.flush}, ${r.fua})`)
    const py = `
import nbd, random
a = nbd.NBD(); a.connect_uri(${JSON.stringify(m.nbd)})
b = nbd.NBD(); b.connect_uri(${JSON.stringify(m.nbd)})
assert a.can_multi_conn()
rng = random.Random(3)
for i in range(64):
    off = rng.randrange(0, ${f.size - 4096})
    data = rng.randbytes(rng.choice([1, 512, 3000, 4096]))
    a.pwrite(data, off)
    b.flush()
    assert b.pread(len(data), off) == data, 'write %d not seen on the other connection' % i
print('ok')
`
    const p = await runAsync(PY, ['-c', py])
    assert.is(p.status, 0, p.out)
    assert.match(p.out, /^ok/m)
  })
})

test('randomized model test: concurrent reads, writes, zeroes, trims, flushes of random sizes and alignments on three connections match an in-memory model, and again after a remount', async () => {
  if (!need()) return
  const t = tmpStore()
  let m
  try {
    const f = await fixture(t)
    const ovl = path.join(t.dir, 'ovl')
    m = await startMount(f.store, ['img:v1', '--overlay', ovl])
    const modelOut = path.join(t.dir, 'model.bin')
    const seed = Number(process.env.VMI_TEST_SEED ?? Date.now() % 100000)
    const r = await driver('model', {uri: m.nbd, size: f.size, base: f.base, seed, seconds: 8, connections: 3, model_out: modelOut})
    const ctx = `seed ${seed} (rerun with VMI_TEST_SEED=${seed})`
    assert.is(r.errors_count, 0, `${ctx}: commands failed: ${r.errors.join('; ')}`)
    assert.equal(r.mismatches, [], ctx)
    assert.ok(r.write + r.fua > 200 && r.read > 100, `${ctx}: enough requests ran (${JSON.stringify(r)})`)
    await m.stop()
    // a clean remount shows the same disk
    m = await startMount(f.store, ['img:v1', '--overlay', ovl])
    const model = await fsp.readFile(modelOut)
    const unknown = await fsp.readFile(modelOut + '.unknown')
    const got = path.join(t.dir, 'got.raw')
    const c = await runAsync('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', m.nbd, got])
    assert.is(c.status, 0, c.out)
    const disk = await fsp.readFile(got)
    let wrong = -1
    for (let i = 0; i < f.size; i++)
      if (disk[i] !== model[i] && !unknown[i]) {
        wrong = i
        break
      }
    assert.is(wrong, -1, `${ctx}: after the remount byte ${wrong} is ${disk[wrong]}, the model says ${model[wrong]}`)
    await m.stop()
    m = undefined
    await fsckCleanAsync(f.store)
  } finally {
    await m?.stop()
    t.cleanup()
  }
})

test('kill -9 of vmi mount while FLUSHes and FUA writes are in flight: the remount shows every durable write, and no byte that was never written changes', async () => {
  if (!need()) return
  const t = tmpStore()
  let m
  try {
    const f = await fixture(t)
    let durable = 0
    for (let round = 0; round < 4; round++) {
      const ovl = path.join(t.dir, `ovl${round}`)
      m = await startMount(f.store, ['img:v1', '--overlay', ovl])
      const journal = path.join(t.dir, `journal${round}.json`)
      const run = driver('kill', {uri: m.nbd, size: f.size, seed: `k${round}`, seconds: 20, journal})
      await sleep(300 + Math.floor(Math.random() * 1500))
      m.child.kill('SIGKILL')
      await m.exited
      const k = await run
      assert.ok(k.ops > 0, `round ${round}: requests were sent`)
      m = await startMount(f.store, ['img:v1', '--overlay', ovl])
      const v = await driver('verify', {uri: m.nbd, size: f.size, base: f.base, journal})
      assert.equal(v.problems, [], `round ${round}: ${v.problem_count} problems (${v.durable} of ${v.ops} writes durable)`)
      durable += v.durable
      await m.stop()
      m = undefined
    }
    assert.ok(durable > 20, `writes were made durable before the kills (${durable})`)
  } finally {
    await m?.stop('SIGKILL')
    t.cleanup()
  }
})

test('one owner per overlay, --file path and socket: a second mount is refused naming the holder\'s pid (exit 6); the owner dying frees it', async () => {
  const t = tmpStore()
  let m
  try {
    const f = await fixture(t, 2 * M)
    const ovl = path.join(t.dir, 'ovl')
    const sock = path.join(t.dir, 'nbd.sock')
    m = await startMount(f.store, ['img:v1', '--overlay', ovl, '--socket', sock])
    const pid = m.child.pid
    for (const [what, args] of [
      ['overlay', ['img:v1', '--overlay', ovl]],
      ['socket', ['img:v1', '--socket', sock]],
    ]) {
      const r = await execAsync(['mount', ...args], {store: f.store, timeout: 30_000})
      assert.is(r.status, 6, `${what}: exit ${r.status}: ${r.stderr}`)
      assert.match(r.stderr, new RegExp(`pid ${pid}`), `${what}: names the holder: ${r.stderr}`)
      assert.is(r.stdout, '')
    }
    // the held socket still answers
    const q = await runAsync('qemu-img', ['info', '-f', 'raw', `nbd+unix:///?socket=${sock}`])
    assert.is(q.status, 0, q.out)
    m.child.kill('SIGKILL')
    await m.exited
    m = await startMount(f.store, ['img:v1', '--overlay', ovl, '--socket', sock])
    assert.is(m.socket, sock)
    await m.stop()
    m = undefined
  } finally {
    await m?.stop('SIGKILL')
    t.cleanup()
  }
})

test('one owner per --file path: a second --file mount on the same path is refused (exit 6)', async () => {
  if (!hasCommand('qemu-storage-daemon') || process.getuid?.() !== 0) return skip('--file needs qemu-storage-daemon and root (FUSE)')
  const t = tmpStore()
  let m
  try {
    const f = await fixture(t, 2 * M)
    const file = path.join(t.dir, 'disk.raw')
    m = await startMount(f.store, ['img:v1', '--file', file])
    const r = await execAsync(['mount', 'img:v1', '--file', file], {store: f.store, timeout: 30_000})
    assert.is(r.status, 6, `exit ${r.status}: ${r.stderr}`)
    assert.match(r.stderr, new RegExp(`pid ${m.child.pid}`), r.stderr)
    assert.is((await fsp.stat(file)).size, f.size, 'the first mount\'s file still serves the disk')
  } finally {
    await m?.stop()
    t.cleanup()
  }
})

test('one owner per overlay whose path runs through a symlink to directories not made yet: a second mount by either spelling is refused (exit 6)', async () => {
  const t = tmpStore()
  let m
  try {
    const f = await fixture(t, 2 * M)
    await fsp.mkdir(path.join(t.dir, 'real'))
    await fsp.symlink(path.join(t.dir, 'real'), path.join(t.dir, 'lnk'))
    // neither real/sub nor real/sub/ov exists before the first mount makes them
    const viaLink = path.join(t.dir, 'lnk', 'sub', 'ov')
    m = await startMount(f.store, ['img:v1', '--overlay', viaLink])
    for (const ovl of [viaLink, path.join(t.dir, 'real', 'sub', 'ov')]) {
      const r = await execAsync(['mount', 'img:v1', '--overlay', ovl], {store: f.store, timeout: 30_000})
      assert.is(r.status, 6, `${ovl}: exit ${r.status}: ${r.stderr}`)
      assert.match(r.stderr, new RegExp(`pid ${m.child.pid}`))
    }
  } finally {
    await m?.stop()
    t.cleanup()
  }
})

test('--socket never removes what is not a stale socket: a file is refused (exit 2), another program\'s live socket too (exit 6); both stay', async () => {
  const t = tmpStore()
  let other
  try {
    const f = await fixture(t, 2 * M)
    const file = path.join(t.dir, 'important')
    writeFileSync(file, 'important')
    const r = await execAsync(['mount', 'img:v1', '--socket', file], {store: f.store, timeout: 30_000})
    assert.is(r.status, 2, r.stderr)
    assert.match(r.stderr, /exists and is not a socket/)
    assert.is(readFileSync(file, 'utf8'), 'important')
    const sock = path.join(t.dir, 'other.sock')
    other = net.createServer().listen(sock)
    await new Promise((resolve) => other.once('listening', resolve))
    const r2 = await execAsync(['mount', 'img:v1', '--socket', sock], {store: f.store, timeout: 30_000})
    assert.is(r2.status, 6, r2.stderr)
    assert.match(r2.stderr, /in use by a running server/)
    assert.ok(existsSync(sock), 'the other program keeps its socket')
  } finally {
    other?.close()
    t.cleanup()
  }
})

test('--read-only --overlay serves the disk as the overlay left it (base and writes) and refuses writes; without an overlay there, exit 2', async () => {
  if (!haveQemuIo) return skip('qemu-io not installed')
  const t = tmpStore()
  let m
  try {
    const {f, ovl} = await overlayWritten(t, 'write -P 0xab 100000 70000')
    const expected = readFileSync(f.base)
    expected.fill(0xab, 100000, 170000)
    m = await startMount(f.store, ['img:v1', '--overlay', ovl, '--read-only'])
    const out = path.join(t.dir, 'out.raw')
    assert.is((await runAsync('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', m.nbd, out])).status, 0)
    assert.ok(readFileSync(out).equals(expected), 'base and the overlay’s writes')
    const w = await runAsync('qemu-io', ['-f', 'raw', '-c', 'write -P 0xcd 0 4096', m.nbd])
    assert.match(w.out, /Operation not permitted|Permission denied|read-only/i, w.out)
    await m.stop()
    m = undefined
    const none = await execAsync(['mount', 'img:v1', '--overlay', path.join(t.dir, 'nothing'), '--read-only'], {store: f.store, timeout: 30_000})
    assert.is(none.status, 2, none.stderr)
    assert.match(none.stderr, /holds no overlay/)
    assert.not.ok(existsSync(path.join(t.dir, 'nothing')), 'nothing made')
  } finally {
    await m?.stop()
    t.cleanup()
  }
})

test('a kept overlay whose last flush fails at unmount (its filesystem full): the unmount says so and exits 1, not 0', async () => {
  if (!haveQemuIo) return skip('qemu-io not installed')
  const t = tmpStore()
  let m
  let fs
  try {
    const f = await fixture(t, 2 * M)
    fs = tmpfs(t.dir, '1m')
    if (fs.reason) return skip(fs.reason)
    const ovl = path.join(fs.mnt, 'ovl')
    m = await startMount(f.store, ['img:v1', '--overlay', ovl])
    // fill what is left: zeroing needs no data blocks, only the map written at a flush
    writeFileSync(path.join(fs.mnt, 'filler'), Buffer.alloc(0))
    const fill = await runAsync('sh', ['-c', `dd if=/dev/zero of=${path.join(fs.mnt, 'filler')} bs=4k 2>/dev/null; true`])
    assert.is(fill.status, 0)
    await runAsync('qemu-io', ['-f', 'raw', '-c', 'write -z 0 65536', m.nbd])
    const end = await m.stop('SIGTERM')
    m = undefined
    assert.is(end.code, 1, end.stderr)
    assert.match(end.stderr, /the overlay's last flush at unmount failed/)
  } finally {
    await m?.stop('SIGKILL')
    fs?.umount?.()
    t.cleanup()
  }
})

test('a new overlay is its owner\'s only (0700, files 0600; the tests run under umask 022); another image\'s overlay and a socket in a missing directory are usage errors (exit 2)', async () => {
  if (!haveQemuIo) return skip('qemu-io not installed')
  const t = tmpStore()
  try {
    const {f, ovl} = await overlayWritten(t, 'write -P 0xab 0 4096')
    const mode = async (p) => ((await fsp.stat(p)).mode & 0o777).toString(8)
    assert.equal([await mode(ovl), await mode(path.join(ovl, 'data')), await mode(path.join(ovl, 'meta.json')), await mode(path.join(ovl, 'map'))], ['700', '600', '600', '600'])
    const other = path.join(t.dir, 'other.raw')
    await makeImage(other, [{kind: 'random', size: M, seed: 'other-image'}])
    assert.is((await execAsync(['import', other, 'other:v1', '-q'], {store: f.store})).status, 0)
    const wrong = await execAsync(['mount', 'other:v1', '--overlay', ovl], {store: f.store, timeout: 30_000})
    assert.is(wrong.status, 2, wrong.stderr)
    assert.match(wrong.stderr, /belongs to image/)
    const nodir = await execAsync(['mount', 'img:v1', '--socket', path.join(t.dir, 'nodir', 'x.sock')], {store: f.store, timeout: 30_000})
    assert.is(nodir.status, 2, nodir.stderr)
    assert.match(nodir.stderr, /its directory does not exist/)
  } finally {
    t.cleanup()
  }
})

test.run()
