// Crashes and faults (issue 5): kill -9 at random points of vmi serve,
// vmi mount (with writes), vmi commit and vmi gc; a full disk while pulling and
// while writing an overlay; a read-only store under a pull; two pulls of one
// image at once; gc looping while a pull and a mount run. After every fault the
// store is fsck-clean, a re-run completes, and what is read back is
// byte-identical: never a wrong byte, never a ref to an incomplete image.
// (kill -9 of the pulling and pushing clients: distribution.test.js; of import
// and load, and gc racing an import: crash.test.js; import into read-only and
// full stores: bad-input.test.js.)
import {test} from 'uvu'
import * as assert from 'uvu/assert'
import {existsSync, promises as fsp} from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {execAsync, fsckCleanAsync, hasCommand, listFiles, makeImage, runAsync, sha256File, skip, spawnCli, tmpStore} from '../helpers/index.js'
import {countFiles, finished, killMidway, sleep, until} from '../helpers/crash.js'
import {startMount} from '../helpers/mount.js'
import {startServe} from '../helpers/serve.js'
import {sh, tmpfs} from '../helpers/tmpfs.js'

const M = 1024 * 1024
const TOKEN = 'crash-serve-token'
const haveQemu = hasCommand('qemu-io') && hasCommand('qemu-img')
const rand = (n) => Math.floor(Math.random() * n)

function ok(r, what) {
  assert.is(r.status, 0, `${what}: exit ${r.status} (signal ${r.signal}), stderr ${JSON.stringify(r.stderr)}`)
  return r
}

/** A refused command: exit `code`, a message matching `re` on stderr, nothing on stdout. */
function refused(r, code, re, what) {
  const ctx = `${what}: exit ${r.status}, stderr ${JSON.stringify(r.stderr)}, stdout ${JSON.stringify(r.stdout)}`
  assert.is(r.status, code, ctx)
  assert.is(r.stdout, '', ctx)
  assert.match(r.stderr, re, ctx)
  assert.not.match(r.stderr, /\n\s+at .*:\d+:\d+/, `${what}: a stack trace leaked to stderr`)
}

const vmi = (argv, store, opts = {}) => execAsync(argv, {store, timeout: 120_000, ...opts})
const refs = (store) => listFiles(path.join(store, 'refs'))
const objectCount = (store) => countFiles(path.join(store, 'objects'))

/** Export `image` and assert its sha256 is `sha`. */
async function assertExport(store, image, sha, what) {
  const out = path.join(os.tmpdir(), `vmi-export-${process.pid}-${rand(1e9)}.raw`)
  ok(await vmi(['export', image, out], store), `export ${image} (${what})`)
  assert.is(await sha256File(out), sha, `${what}: export of ${image} is byte-identical`)
  await fsp.rm(out)
}

/** A seed store holding app:v1 from `layout`, served by vmi serve (with a push token). */
async function seedWith(t, layout, extra = []) {
  const src = path.join(t.dir, 'src.raw')
  await makeImage(src, layout)
  const store = path.join(t.dir, 'seed')
  const id = ok(await vmi(['import', src, 'app:v1', '--chunk-size', '64K'], store), 'import into the seed').stdout.trim()
  const server = await startServe(store, extra)
  return {src, sha: await sha256File(src), store, id, server}
}

/** An unreferenced image in `store` whose chunks partly equal the image to come (gc fodder). */
async function addGarbage(t, store, layout) {
  const file = path.join(t.dir, `garbage-${rand(1e9)}.raw`)
  await makeImage(file, layout)
  ok(await vmi(['import', file, 'garbage:v1', '--chunk-size', '64K'], store), 'import garbage')
  ok(await vmi(['rm', 'garbage:v1'], store), 'rm garbage')
  await fsp.rm(file)
}

const portOf = (url) => new URL(url).port

/** Stop a mount with SIGTERM; it must exit 0. */
async function unmount(m) {
  const st = await m.stop()
  assert.is(st.code, 0, `unmount: exit ${st.code} (signal ${st.signal}), stderr ${JSON.stringify(st.stderr)}`)
}

// ------------------------------------------------------------------ qemu-io against a mount

/**
 * Run one qemu-io with `cmds`; ok when it exited 0 and no command failed.
 * Write-back caching, as a guest with a disk cache: a write is durable only
 * after a FLUSH (qemu-io's default, write-through, sends every write with FUA).
 */
async function qemuIo(uri, cmds) {
  const r = await runAsync('qemu-io', ['-f', 'raw', '-t', 'writeback', ...cmds.flatMap((c) => ['-c', c]), uri], 60_000)
  return {...r, ok: r.status === 0 && !/failed|error/i.test(r.out)}
}

/** The whole disk behind an NBD URI. */
async function readDisk(uri, dir) {
  const out = path.join(dir, `disk-${rand(1e9)}.raw`)
  const r = await runAsync('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', uri, out], 120_000)
  assert.is(r.status, 0, `qemu-img convert from the mount: ${r.out}`)
  const data = await fsp.readFile(out)
  await fsp.rm(out)
  return data
}

/** qemu-io commands for a write {off, len, byte} (byte 0: WRITE_ZEROES). */
const writeCmd = (w) => (w.byte === 0 ? `write -z ${w.off} ${w.len}` : `write -P 0x${w.byte.toString(16)} ${w.off} ${w.len}`)

/**
 * Check a disk read back after a crash: every byte equals `durable` (what was
 * acknowledged before a FLUSH), except bytes an unflushed write covered,
 * which may also hold that write's byte. Returns the first wrong offset, or -1.
 */
function firstWrongByte(disk, durable, unflushed) {
  if (disk.equals(durable)) return -1
  const maybe = new Uint8Array(disk.length)
  for (const w of unflushed) for (let i = w.off; i < w.off + w.len; i++) if (disk[i] === w.byte) maybe[i] = 1
  for (let i = 0; i < disk.length; i++) if (disk[i] !== durable[i] && !maybe[i]) return i
  return -1
}

// ------------------------------------------------------------------ kill -9 of vmi serve

test('kill -9 of a fetch-through peer (vmi serve) at random points of host pulls: each pull completes, falling back to the seed; the peer store stays fsck clean', async () => {
  const t = tmpStore()
  let s
  let peer
  try {
    s = await seedWith(t, [{kind: 'random', size: 40 * M, seed: 'serve-kill'}])
    const peerStore = path.join(t.dir, 'peer')
    peer = await startServe(peerStore, ['--seed', s.server.url])
    const listen = `127.0.0.1:${portOf(peer.url)}`
    const totals = {peer: 0, seed: 0}
    for (let round = 0; round < 3; round++) {
      const host = path.join(t.dir, `host-${round}`)
      const pull = spawnCli(['pull', 'app:v1', s.server.url, '--peer', peer.url, '--concurrency', '2', '--json'], {store: host})
      const exited = finished(pull)
      // a random point: after 5..300 of its 640 chunks
      const at = 5 + rand(296)
      const reached = await until(async () => (await objectCount(host)) >= at, {exited})
      if (reached) await sleep(rand(100))
      await peer.stop('SIGKILL')
      // the server's store, as the kill left it, is consistent
      await fsckCleanAsync(peerStore)
      await sleep(rand(300))
      peer = await startServe(peerStore, ['--seed', s.server.url], {listen})
      const r = await exited
      ok(r, `pull ${round} (peer killed after ${at} chunks)`)
      const j = JSON.parse(r.stdout)
      assert.is(j.fromChunks.peer + j.fromChunks.seed, 640, 'every chunk arrived, from the peer or the seed')
      totals.peer += j.fromChunks.peer
      totals.seed += j.fromChunks.seed
      await assertExport(host, 'app:v1', s.sha, `pull ${round}`)
      await fsckCleanAsync(host)
      // empty the peer again (it holds no refs), so the next round makes it fetch and store again
      ok(await vmi(['gc'], peerStore), 'gc of the peer store')
      await fsckCleanAsync(peerStore)
    }
    assert.ok(totals.peer > 0, 'the peer served chunks before its kills')
    assert.ok(totals.seed > 0, 'the pulls fell back to the seed while the peer was dead')
    await peer.stop()
    await fsckCleanAsync(peerStore)
  } finally {
    await peer?.stop('SIGKILL')
    await s?.server.stop()
    t.cleanup()
  }
})

test('kill -9 of the seed (vmi serve) at random points of a push and of a pull: no ref to an incomplete image on the seed, its store fsck clean; restarted, the re-runs complete', async () => {
  const t = tmpStore()
  let seed
  try {
    const src = path.join(t.dir, 'src.raw')
    // large enough that a push (object batches, the server writing as they arrive) is still under way at every kill
    await makeImage(src, [{kind: 'random', size: 88 * M, seed: 'seed-kill'}, {kind: 'zero', size: 4 * M}, {kind: 'random', size: 8 * M, seed: 'seed-kill-2'}])
    const sha = await sha256File(src)
    const build = path.join(t.dir, 'build')
    ok(await vmi(['import', src, 'app:v1', '--chunk-size', '64K'], build), 'import')
    const seedStore = path.join(t.dir, 'seed')
    seed = await startServe(seedStore, ['--push-token', TOKEN])
    const listen = `127.0.0.1:${portOf(seed.url)}`
    const env = {VMI_PUSH_TOKEN: TOKEN}
    let kills = 0
    for (let attempt = 0; kills < 3 && attempt < 8; attempt++) {
      const before = await objectCount(seedStore)
      const push = spawnCli(['push', 'app:v1', seed.url, '--concurrency', '2'], {store: build, env})
      const exited = finished(push)
      const reached = await until(async () => (await objectCount(seedStore)) > before + 10 + rand(60), {exited})
      if (reached) await sleep(rand(100))
      await seed.stop('SIGKILL')
      const r = await exited
      const seedRefs = await refs(seedStore)
      if (r.status === 0) assert.equal(seedRefs, [path.join('app', 'v1')], 'a push that completed left its ref')
      else {
        kills++
        assert.is(r.status, 9, `a push whose seed died fails as a remote error: ${r.stderr}`)
        assert.equal(seedRefs, [], `after kill ${kills}: no ref on the seed`)
      }
      await fsckCleanAsync(seedStore)
      seed = await startServe(seedStore, ['--push-token', TOKEN], {listen})
      if (r.status === 0) break
    }
    assert.ok(kills >= 2, `the seed died mid-push at least twice (${kills})`)
    const again = JSON.parse(ok(await vmi(['push', 'app:v1', seed.url, '--json'], build, {env}), 'push after the kills').stdout)
    assert.ok(again.alreadyThere > 0, 'the re-run skipped the chunks the dead seed had stored')
    await fsckCleanAsync(seedStore)

    // the seed dies under a pull and comes back on its port: the pull rides it out, or fails clearly and a re-run completes
    const host = path.join(t.dir, 'host')
    const pull = spawnCli(['pull', 'app:v1', seed.url, '--concurrency', '2'], {store: host})
    const exited = finished(pull)
    await until(async () => (await objectCount(host)) > 50 + rand(200), {exited})
    await seed.stop('SIGKILL')
    seed = await startServe(seedStore, ['--push-token', TOKEN], {listen})
    const r = await exited
    if (r.status !== 0) {
      refused(r, 9, /seed|chunk [0-9a-f]{64}|ECONNREFUSED/, 'pull from a seed that died')
      assert.equal(await refs(host), [], 'the failed pull left no ref')
      await fsckCleanAsync(host)
      ok(await vmi(['pull', 'app:v1', seed.url], host), 'pull again')
    }
    await assertExport(host, 'app:v1', sha, 'pulled from the restarted seed')
    await fsckCleanAsync(host)
    await fsckCleanAsync(seedStore)
  } finally {
    await seed?.stop('SIGKILL')
    t.cleanup()
  }
})

// ------------------------------------------------------------------ kill -9 of vmi mount with writes

test('kill -9 of vmi mount at random points of a stream of writes and FLUSHes: after a remount of the overlay every flushed write reads back, no byte is wrong, the base is unchanged', async () => {
  if (!haveQemu) return skip('qemu-io/qemu-img not installed')
  const t = tmpStore()
  let m
  try {
    const DISK = 8 * M
    const src = path.join(t.dir, 'src.raw')
    await makeImage(src, [{kind: 'random', size: 4 * M, seed: 'mount-kill'}, {kind: 'zero', size: 4 * M}])
    const srcSha = await sha256File(src)
    const store = path.join(t.dir, 'store')
    ok(await vmi(['import', src, 'img:v1', '--chunk-size', '64K'], store), 'import')
    const ovl = path.join(t.dir, 'ovl')
    let durable = await fsp.readFile(src) // the disk as of the last acknowledged FLUSH
    const randomWrite = () => {
      const len = [1, 512, 4096, 5000, 3 * 4096, 65536, 200_000][rand(7)]
      const off = rand(2) ? rand(Math.floor((DISK - len) / 4096)) * 4096 : rand(DISK - len)
      return {off, len, byte: rand(8) === 0 ? 0 : 1 + rand(255)}
    }
    let batches = 0
    let lost = 0
    for (let round = 0; round < 5; round++) {
      m = await startMount(store, ['img:v1', '--overlay', ovl])
      // what the previous crash left is what this mount shows
      assert.ok(durable.equals(await readDisk(m.nbd, t.dir)), `round ${round}: the remounted overlay reads as before`)
      let killed = false
      const killer = (async () => {
        await sleep(150 + rand(1500))
        killed = true
        m.child.kill('SIGKILL')
        await m.exited
      })()
      let unflushed = []
      while (!killed) {
        const batch = Array.from({length: 1 + rand(5)}, randomWrite)
        const r = await qemuIo(m.nbd, [...batch.map(writeCmd), 'flush'])
        if (r.ok) {
          // acknowledged and flushed: durable from now on
          for (const w of batch) durable.fill(w.byte, w.off, w.off + w.len)
          batches++
        } else {
          assert.ok(killed, `a batch failed while the mount was alive: ${r.out}`)
          unflushed = batch
        }
      }
      await killer
      m = await startMount(store, ['img:v1', '--overlay', ovl])
      const disk = await readDisk(m.nbd, t.dir)
      const wrong = firstWrongByte(disk, durable, unflushed)
      assert.is(wrong, -1, `round ${round}: byte ${wrong} reads ${disk[wrong]}, expected ${durable[wrong]} (flushed) or an unflushed write's byte`)
      if (!disk.equals(durable)) lost++
      durable = disk
      await unmount(m)
      m = undefined
    }
    assert.ok(batches >= 5, `flushed batches went through between the kills (${batches})`)
    console.log(`  (${batches} flushed batches, ${lost} crashes left an unflushed write in place)`)
    await assertExport(store, 'img:v1', srcSha, 'base after the crashes')
    await fsckCleanAsync(store)
    // and the overlay as the crashes left it commits to exactly that disk
    const c = JSON.parse(ok(await vmi(['commit', ovl, 'img:v2', '--json'], store), 'commit').stdout)
    const out = path.join(t.dir, 'v2.raw')
    ok(await vmi(['export', 'img:v2', out], store), 'export v2')
    assert.ok((await fsp.readFile(out)).equals(durable), 'the committed image is the disk the mount showed')
    assert.ok(c.changedChunks > 0)
    await fsckCleanAsync(store)
    // gc clears what the killed mounts left: their sockets in tmp/ and their locks
    ok(await vmi(['gc'], store), 'gc')
    assert.equal(await listFiles(path.join(store, 'tmp')), [], 'no socket or staging file of a dead mount left')
    assert.equal(await listFiles(path.join(store, 'locks')), [])
  } finally {
    await m?.stop('SIGKILL')
    t.cleanup()
  }
})

// ------------------------------------------------------------------ kill -9 of vmi commit

test('kill -9 of vmi commit at random points: no ref or a complete image, fsck clean, gc cleans up, the re-run commits exactly the written disk', async () => {
  if (!haveQemu) return skip('qemu-io/qemu-img not installed')
  const t = tmpStore()
  let m
  try {
    const store = path.join(t.dir, 'store')
    const base = path.join(t.dir, 'base.raw')
    await makeImage(base, [{kind: 'random', size: 32 * M, seed: 'commit-base'}])
    const baseSha = await sha256File(base)
    const baseId = ok(await vmi(['import', base, 'img:v1', '--chunk-size', '64K'], store), 'import').stdout.trim()
    const baseObjects = await objectCount(store)
    // the disk the guest writes: the same first 4 MiB, then zeros, then new data
    const next = path.join(t.dir, 'next.raw')
    await makeImage(next, [{kind: 'random', size: 4 * M, seed: 'commit-base'}, {kind: 'zero', size: 4 * M}, {kind: 'random', size: 24 * M, seed: 'commit-next'}])
    const nextSha = await sha256File(next)
    const ovl = path.join(t.dir, 'ovl')
    m = await startMount(store, ['img:v1', '--overlay', ovl])
    const w = await runAsync('qemu-img', ['convert', '-n', '-f', 'raw', '-O', 'raw', next, m.nbd], 120_000)
    assert.is(w.status, 0, w.out)
    await unmount(m)
    m = undefined

    const argv = ['commit', ovl, 'img:v2']
    const committing = async () => (await listFiles(path.join(store, 'locks'))).some((f) => f.endsWith('-commit.json'))
    let kills = 0
    for (let attempt = 0; kills < 3 && attempt < 10; attempt++) {
      const k = await killMidway(argv, store, committing, 700)
      assert.ok(k.seen, `the commit took its lock: exit ${k.result.status}, ${k.result.stderr}`)
      const after = await refs(store)
      if (!k.killed || after.length === 2) {
        // finished before the kill landed: a complete image
        if (!k.killed) ok(k.result, 'commit that outran the kill')
        assert.equal(after, [path.join('img', 'v1'), path.join('img', 'v2')])
        await fsckCleanAsync(store)
        await assertExport(store, 'img:v2', nextSha, 'a commit that completed')
        ok(await vmi(['rm', 'img:v2'], store), 'rm v2')
      } else {
        kills++
        assert.equal(after, [path.join('img', 'v1')], `after kill ${kills}: no ref to the new image`)
        await fsckCleanAsync(store)
      }
      const g = JSON.parse(ok(await vmi(['gc', '--json'], store), 'gc after the kill').stdout)
      assert.is(g.keptImages, 1)
      assert.is(await objectCount(store), baseObjects, 'gc removed every chunk the dead commit stored, and only those')
      assert.equal(await listFiles(path.join(store, 'tmp')), [], 'no staging files left')
      assert.equal(await listFiles(path.join(store, 'locks')), [], 'no stale lock left')
    }
    assert.ok(kills >= 2, `killed the commit mid-way at least twice (${kills})`)
    const c = JSON.parse(ok(await vmi(['commit', ovl, 'img:v2', '--json'], store), 'commit after the kills').stdout)
    assert.is(c.parent, baseId)
    assert.is(c.changedChunks, 512, 'the guest wrote every chunk')
    assert.is(c.newChunks, 384, 'the first 4 MiB are the base’s chunks again and zeros are not stored: 24 MiB of new chunks')
    await assertExport(store, 'img:v2', nextSha, 'the committed image')
    await assertExport(store, 'img:v1', baseSha, 'the base')
    await fsckCleanAsync(store)
  } finally {
    await m?.stop('SIGKILL')
    t.cleanup()
  }
})

// ------------------------------------------------------------------ kill -9 of vmi gc

test('kill -9 of vmi gc at random points: every ref’d image still exports byte-identical, fsck clean, writers are not blocked, a re-run of gc completes', async () => {
  const t = tmpStore()
  try {
    const store = path.join(t.dir, 'store')
    const keep = path.join(t.dir, 'keep.raw')
    // keep:v1 shares 8 MiB with the garbage: gc must sort chunk by chunk
    await makeImage(keep, [{kind: 'random', size: 8 * M, seed: 'gc-shared'}, {kind: 'zero', size: M}, {kind: 'random', size: 8 * M, seed: 'gc-keep'}])
    const keepSha = await sha256File(keep)
    ok(await vmi(['import', keep, 'keep:v1', '--chunk-size', '64K'], store), 'import keep')
    const keepObjects = await objectCount(store)
    for (let i = 0; i < 3; i++) await addGarbage(t, store, [{kind: 'random', size: 8 * M, seed: 'gc-shared'}, {kind: 'random', size: 32 * M, seed: `gc-garbage-${i}`}])
    const total = await objectCount(store)
    assert.is(total, keepObjects + 3 * 512)

    // kill 1 lands as soon as gc holds its lock; the others at a random point of the deletions
    let kills = 0
    let partial = 0
    let lastCount = total
    // under load a kill can land after the last deletion: until two have
    // landed mid-way, more garbage is added whenever little is left
    for (let attempt = 0; (kills < 4 || partial < 2) && attempt < 12; attempt++) {
      if (kills > 0 && partial < 2 && lastCount - keepObjects < 256) {
        await addGarbage(t, store, [{kind: 'random', size: 32 * M, seed: `gc-more-${attempt}`}])
        lastCount = await objectCount(store)
      }
      const target = kills === 0 ? Infinity : lastCount - Math.floor((0.1 + Math.random() * 0.4) * (lastCount - keepObjects))
      const reached = async () => existsSync(path.join(store, 'locks', 'gc')) && (await objectCount(store)) <= target
      const k = await killMidway(['gc'], store, reached, 20)
      if (!k.killed) {
        ok(k.result, 'gc that outran the kill')
        break
      }
      kills++
      const now = await objectCount(store)
      if (now < lastCount && now > keepObjects) partial++
      lastCount = now
      await assertExport(store, 'keep:v1', keepSha, `after gc kill ${kills}`)
      await fsckCleanAsync(store)
      if (kills === 1) {
        // the dead gc's lock does not make writers wait
        const small = path.join(t.dir, 'small.raw')
        await makeImage(small, [{kind: 'random', size: M, seed: 'gc-small'}])
        ok(await vmi(['import', small, 'small:v1', '--chunk-size', '64K'], store, {timeout: 20_000}), 'import after a killed gc')
        ok(await vmi(['rm', 'small:v1'], store), 'rm small')
      }
    }
    assert.ok(kills >= 3, `killed gc at least three times (${kills})`)
    assert.ok(partial >= 2, `at least two kills landed mid-way through the deletions (${partial})`)
    console.log(`  (${kills} kills, ${partial} mid-way through the objects; ${lastCount - keepObjects} garbage objects left)`)
    const g = JSON.parse(ok(await vmi(['gc', '--json'], store), 'gc after the kills').stdout)
    assert.is(g.keptImages, 1)
    assert.is(await objectCount(store), keepObjects, 'exactly keep’s chunks remain')
    assert.equal(await listFiles(path.join(store, 'manifests')).then((f) => f.length), 1)
    assert.equal(await listFiles(path.join(store, 'tmp')), [])
    assert.equal(await listFiles(path.join(store, 'locks')), [])
    await assertExport(store, 'keep:v1', keepSha, 'after the last gc')
    await fsckCleanAsync(store)
  } finally {
    t.cleanup()
  }
})

// ------------------------------------------------------------------ full disk

test('disk full while pulling: exit 6 saying no space, no ref, fsck clean; after freeing space the re-run completes', async () => {
  const t = tmpStore()
  const fs = tmpfs(t.dir, '40m')
  if (fs.reason) {
    t.cleanup()
    return skip(fs.reason)
  }
  let s
  try {
    s = await seedWith(t, [{kind: 'random', size: 24 * M, seed: 'full-pull'}, {kind: 'zero', size: 8 * M}])
    const host = path.join(fs.mnt, 'store')
    const filler = path.join(fs.mnt, 'filler')
    await fsp.writeFile(filler, Buffer.alloc(24 * M, 1))
    const r = await vmi(['pull', 'app:v1', s.server.url], host)
    refused(r, 6, /no space left/i, 'pull into a full store')
    assert.equal(await refs(host), [], 'no ref to the incomplete image')
    assert.equal(await listFiles(path.join(host, 'locks')), [], 'the pull released its lock')
    await fsckCleanAsync(host)
    await fsp.rm(filler)
    const again = ok(await vmi(['pull', 'app:v1', s.server.url], host), 'pull after freeing space')
    assert.match(again.stdout, /local [^(]+\((\d+)\)/)
    assert.ok(Number(/local [^(]+\((\d+)\)/.exec(again.stdout)[1]) > 0, 'the re-run kept what the failed pull had stored')
    await assertExport(host, 'app:v1', s.sha, 'after freeing space')
    await fsckCleanAsync(host)
    ok(await vmi(['gc'], host), 'gc')
    assert.equal(await listFiles(path.join(host, 'tmp')), [])
  } finally {
    await s?.server.stop()
    fs.umount()
    t.cleanup()
  }
})

test('disk full under a mount’s overlay: the writes that do not fit get an error reply, the mount lives on, acknowledged writes survive a FLUSH after space is freed and a kill -9', async () => {
  if (!haveQemu) return skip('qemu-io/qemu-img not installed')
  const t = tmpStore()
  const fs = tmpfs(t.dir, '8m')
  if (fs.reason) {
    t.cleanup()
    return skip(fs.reason)
  }
  let m
  try {
    const src = path.join(t.dir, 'src.raw')
    await makeImage(src, [{kind: 'random', size: 12 * M, seed: 'full-ovl'}, {kind: 'zero', size: 4 * M}])
    const srcSha = await sha256File(src)
    const base = await fsp.readFile(src)
    const store = path.join(t.dir, 'store')
    ok(await vmi(['import', src, 'img:v1', '--chunk-size', '64K'], store), 'import')
    const ovl = path.join(fs.mnt, 'ovl')
    const filler = path.join(fs.mnt, 'filler')
    await fsp.writeFile(filler, Buffer.alloc(4 * M, 1))
    m = await startMount(store, ['img:v1', '--overlay', ovl])
    const first = await qemuIo(m.nbd, ['write -P 0x11 0 1048576', 'flush'])
    assert.ok(first.ok, first.out)
    // 6 MiB of 64 KiB writes into the 3 MiB left: some are acknowledged, the rest refused
    const cmds = Array.from({length: 96}, (_, i) => `write -P 0x22 ${2 * M + i * 65536} 65536`)
    const r = await qemuIo(m.nbd, [...cmds, 'flush'])
    assert.match(r.out, /No space left on device/, `the overlay ran out of space: ${r.out.slice(0, 500)}`)
    const acked = new Set([...r.out.matchAll(/wrote 65536\/65536 bytes at offset (\d+)/g)].map((x) => Number(x[1])))
    assert.ok(acked.size > 0 && acked.size < 96, `some writes were acknowledged, some refused (${acked.size})`)
    assert.is(m.child.exitCode, null, 'the mount survived the full disk')

    /** Acknowledged writes read 0x22; refused ones read, per 4 KiB block, as the base or as written; the rest as before. */
    const check = (disk, when) => {
      assert.ok(disk.subarray(0, M).equals(Buffer.alloc(M, 0x11)), `${when}: the first flushed write reads back`)
      for (let i = 0; i < 96; i++) {
        const off = 2 * M + i * 65536
        if (acked.has(off)) {
          assert.ok(disk.subarray(off, off + 65536).equals(Buffer.alloc(65536, 0x22)), `${when}: acknowledged write at ${off} reads back`)
          continue
        }
        for (let b = off; b < off + 65536; b += 4096) {
          const blk = disk.subarray(b, b + 4096)
          assert.ok(blk.equals(base.subarray(b, b + 4096)) || blk.equals(Buffer.alloc(4096, 0x22)), `${when}: refused write's block at ${b} is the base or the write, nothing else`)
        }
      }
      assert.ok(disk.subarray(M, 2 * M).equals(base.subarray(M, 2 * M)), `${when}: untouched bytes are the base`)
      assert.ok(disk.subarray(8 * M).equals(base.subarray(8 * M)), `${when}: untouched bytes are the base`)
    }
    check(await readDisk(m.nbd, t.dir), 'while full')

    // space comes back: a FLUSH now succeeds and makes every acknowledged write durable
    await fsp.rm(filler)
    const flushed = await qemuIo(m.nbd, ['flush'])
    assert.ok(flushed.ok, `flush after freeing space: ${flushed.out}`)
    m.child.kill('SIGKILL')
    await m.exited
    m = await startMount(store, ['img:v1', '--overlay', ovl])
    check(await readDisk(m.nbd, t.dir), 'after kill -9 and remount')
    // and the overlay takes writes again
    const more = await qemuIo(m.nbd, ['write -P 0x33 10485760 1048576', 'flush', 'read -P 0x33 10485760 1048576'])
    assert.ok(more.ok && !/Pattern verification failed/.test(more.out), more.out)
    await unmount(m)
    m = undefined
    await assertExport(store, 'img:v1', srcSha, 'the base')
    await fsckCleanAsync(store)
  } finally {
    await m?.stop('SIGKILL')
    fs.umount()
    t.cleanup()
  }
})

// ------------------------------------------------------------------ read-only store

test('pull into a read-only store → exit 6 saying not writable, store unchanged; writable again, the pull completes', async () => {
  const t = tmpStore()
  const fs = tmpfs(t.dir, '32m')
  if (fs.reason) {
    t.cleanup()
    return skip(fs.reason)
  }
  let s
  try {
    s = await seedWith(t, [{kind: 'random', size: 4 * M, seed: 'ro-pull'}])
    const store = path.join(fs.mnt, 'store')
    const other = path.join(t.dir, 'other.raw')
    await makeImage(other, [{kind: 'random', size: M, seed: 'ro-other'}])
    ok(await vmi(['import', other, 'other:v1', '--chunk-size', '64K'], store), 'import other')
    const err = sh('mount', ['-o', 'remount,ro', fs.mnt])
    if (err) return skip(`cannot remount read-only (${err})`)
    const before = await listFiles(store)
    refused(await vmi(['pull', 'app:v1', s.server.url], store), 6, /not writable|read-only/i, 'pull into a read-only store')
    refused(await vmi(['pull', 'app:v1', s.server.url], path.join(fs.mnt, 'new-store')), 6, /not writable|read-only/i, 'pull into a new store on a read-only filesystem')
    assert.equal(await listFiles(store), before, 'store unchanged')
    await fsckCleanAsync(store)
    assert.is(sh('mount', ['-o', 'remount,rw', fs.mnt]), undefined)
    ok(await vmi(['pull', 'app:v1', s.server.url], store), 'pull into the writable store')
    await assertExport(store, 'app:v1', s.sha, 'pulled after remount rw')
    await fsckCleanAsync(store)
  } finally {
    await s?.server.stop()
    fs.umount()
    t.cleanup()
  }
})

// ------------------------------------------------------------------ concurrent pulls

test('two pulls of the same image into one store at once: both succeed, fsck clean, export byte-identical, each chunk stored once', async () => {
  const t = tmpStore()
  let s
  try {
    s = await seedWith(t, [{kind: 'random', size: 24 * M, seed: 'twice'}, {kind: 'zero', size: 4 * M}, {kind: 'repeat', size: 8 * M}])
    const host = path.join(t.dir, 'host')
    const [a, b] = await Promise.all([1, 2].map(() => vmi(['pull', 'app:v1', s.server.url, '--json', '--concurrency', '4'], host)))
    ok(a, 'first pull')
    ok(b, 'second pull')
    const [ja, jb] = [JSON.parse(a.stdout), JSON.parse(b.stdout)]
    assert.is(ja.id, s.id)
    assert.is(jb.id, s.id)
    for (const j of [ja, jb]) assert.is(j.fromChunks.local + j.fromChunks.seed, 384, 'each pull accounts for every distinct chunk')
    assert.equal(await refs(host), [path.join('app', 'v1')])
    assert.is(await objectCount(host), 384, 'each distinct chunk stored once')
    assert.equal(await listFiles(path.join(host, 'tmp')), [], 'no staging files left')
    assert.equal(await listFiles(path.join(host, 'locks')), [], 'no locks left')
    await fsckCleanAsync(host)
    await assertExport(host, 'app:v1', s.sha, 'after two concurrent pulls')
  } finally {
    await s?.server.stop()
    t.cleanup()
  }
})

// ------------------------------------------------------------------ gc during a pull and during a mount

/** Run `vmi gc` back to back until `done()`; every run must succeed. Returns the runs' JSON. */
async function gcLoop(store, done, minRuns = 3) {
  const runs = []
  while (!done() || runs.length < minRuns) {
    const g = await vmi(['gc', '--json'], store)
    ok(g, `gc run ${runs.length + 1}`)
    runs.push(JSON.parse(g.stdout))
  }
  return runs
}

test('gc looping while a pull runs: the pull completes, no chunk it needs is removed (even ones it found locally), the image exports byte-identical, fsck clean', async () => {
  const t = tmpStore()
  let s
  try {
    s = await seedWith(t, [{kind: 'random', size: 16 * M, seed: 'gcp-shared'}, {kind: 'random', size: 40 * M, seed: 'gcp-image'}])
    const host = path.join(t.dir, 'host')
    // garbage on the host: 16 MiB the image shares (the pull takes it locally), 8 MiB it does not
    await addGarbage(t, host, [{kind: 'random', size: 16 * M, seed: 'gcp-shared'}, {kind: 'random', size: 8 * M, seed: 'gcp-other'}])
    const pull = finished(spawnCli(['pull', 'app:v1', s.server.url, '--json'], {store: host}))
    let pulled = false
    pull.then(() => (pulled = true))
    const runs = await gcLoop(host, () => pulled)
    const r = await pull
    ok(r, 'pull with gc running')
    const j = JSON.parse(r.stdout)
    assert.is(j.fromChunks.local + j.fromChunks.seed, 896)
    assert.ok(runs.some((g) => g.removedObjects > 0), 'gc did remove garbage meanwhile')
    await fsckCleanAsync(host)
    await assertExport(host, 'app:v1', s.sha, 'pulled under gc')
    const g = JSON.parse(ok(await vmi(['gc', '--json'], host), 'final gc').stdout)
    assert.is(await objectCount(host), 896, 'in the end exactly the image’s chunks remain')
    assert.is(g.keptImages, 1)
    await fsckCleanAsync(host)
  } finally {
    await s?.server.stop()
    t.cleanup()
  }
})

test('gc looping while a lazy mount reads and writes: every read is right, nothing the mount needs is removed, even for a mount running longer than a day; fsck clean', async () => {
  if (!haveQemu) return skip('qemu-io/qemu-img not installed')
  const t = tmpStore()
  let s
  let m
  try {
    s = await seedWith(t, [{kind: 'random', size: 8 * M, seed: 'gcm-shared'}, {kind: 'random', size: 16 * M, seed: 'gcm-image'}, {kind: 'zero', size: 8 * M}])
    const host = path.join(t.dir, 'host')
    await addGarbage(t, host, [{kind: 'random', size: 8 * M, seed: 'gcm-shared'}, {kind: 'random', size: 8 * M, seed: 'gcm-other'}])
    // lazy, with a temporary overlay in the store's tmp/
    m = await startMount(host, [s.id, s.server.url, '--prefetch', 'none'])
    const expected = await fsp.readFile(s.src)
    let stop = false
    const loop = gcLoop(host, () => stop).catch((err) => err) // awaited below, also when a read fails
    try {
      for (let i = 0; i < 6; i++) {
        const off = rand(32 * 16 - 2) * 65536 + rand(4096)
        const byte = 1 + rand(255)
        const w = await qemuIo(m.nbd, [`write -P 0x${byte.toString(16)} ${off} 70000`, 'flush'])
        assert.ok(w.ok, w.out)
        expected.fill(byte, off, off + 70000)
        assert.ok((await readDisk(m.nbd, t.dir)).equals(expected), `read ${i} under gc is the image with the writes`)
      }
    } finally {
      stop = true
      await loop
    }
    const runs = await loop
    if (runs instanceof Error) throw runs
    assert.ok(runs.some((g) => g.removedObjects > 0), 'gc did remove garbage meanwhile')

    // a VM runs for days: the mount's files in tmp/ are then old, and a gc must still leave them alone
    const old = new Date(Date.now() - 3 * 24 * 3600_000)
    const tmpEntries = await fsp.readdir(path.join(host, 'tmp'))
    assert.ok(tmpEntries.length >= 2, `the mount keeps its socket and overlay in tmp/: ${tmpEntries}`)
    for (const e of tmpEntries) {
      const p = path.join(host, 'tmp', e)
      await fsp.utimes(p, old, old)
      if ((await fsp.stat(p)).isDirectory()) for (const f of await fsp.readdir(p)) await fsp.utimes(path.join(p, f), old, old)
    }
    const g = JSON.parse(ok(await vmi(['gc', '--json'], host), 'gc with a day-old mount').stdout)
    assert.is(g.removedTmpFiles, 0, 'the running mount’s socket and overlay are not stale')
    const w = await qemuIo(m.nbd, ['write -P 0x44 65536 4096', 'flush'])
    assert.ok(w.ok, `the mount still takes new connections and writes: ${w.out}`)
    expected.fill(0x44, 65536, 65536 + 4096)
    assert.ok((await readDisk(m.nbd, t.dir)).equals(expected), 'reads after the gc are right')
    await unmount(m)
    m = undefined
    await fsckCleanAsync(host)
  } finally {
    await m?.stop('SIGKILL')
    await s?.server.stop()
    t.cleanup()
  }
})

test.run()
