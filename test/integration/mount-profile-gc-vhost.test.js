// Mount: boot profiles travel with the image and drive prefetch; a mount in
// use is protected from gc; the vhost-user-blk bridge comes up.
import {test} from 'uvu'
import * as assert from 'uvu/assert'
import {spawn} from 'node:child_process'
import {existsSync, promises as fsp} from 'node:fs'
import path from 'node:path'
import {exec, runAsync, fsckClean, hasCommand, listFiles, makeImage, sha256File, skip, tmpStore} from '../helpers/index.js'
import {startMount} from '../helpers/mount.js'
import {forwarder} from '../helpers/peers.js'
import {metricSum, startServe} from '../helpers/serve.js'

const M = 1024 * 1024
const TOKEN = 'extra-token'

function ok(r, what) {
  assert.is(r.status, 0, `${what} failed (exit ${r.status}): ${r.stderr}`)
  return r
}

const qemuIo = (args) => runAsync('qemu-io', args)

/** The objects in `store` once there are `n` of them, or after `tries` polls 50 ms apart. */
async function objectsOnce(store, n, tries) {
  for (let i = 0; i < tries && (await listFiles(path.join(store, 'objects'))).length < n; i++) await new Promise((r) => setTimeout(r, 50))
  return listFiles(path.join(store, 'objects'))
}

test('a recorded boot profile travels through push, pull, save and load, and a cold mount prefetches it', async () => {
  if (!hasCommand('qemu-io')) return skip('qemu-io not installed')
  const t = tmpStore()
  let seed
  let m
  try {
    const src = path.join(t.dir, 'src.raw')
    await makeImage(src, [{kind: 'random', size: 4 * M, seed: 'prof'}])
    const a = path.join(t.dir, 'a')
    const id = ok(exec(['import', src, 'p:1', '--chunk-size', '64K'], {store: a}), 'import').stdout.trim()
    // "boot": read three scattered regions with the profile recorder on
    m = await startMount(a, ['p:1', '--read-only', '--record-profile', '--prefetch', 'none'])
    const r = await qemuIo(['-r', '-f', 'raw', '-c', 'read 0 4096', '-c', 'read 1048576 4096', '-c', 'read 3145728 70000', m.nbd])
    assert.is(r.status, 0, r.out)
    await m.stop()
    m = undefined
    const profileFile = path.join(a, 'profiles', id.slice(0, 2), id.slice(2))
    const profile = JSON.parse(await fsp.readFile(profileFile, 'utf8'))
    assert.equal(profile.chunks, [0, 16, 48, 49], 'chunks in first-read order')
    // the image id did not change
    assert.is(JSON.parse(ok(exec(['inspect', 'p:1', '--json'], {store: a}), 'inspect').stdout).id, id)
    // push → seed has it; pull → b has it; save/load → c has it
    const seedStore = path.join(t.dir, 'seed')
    seed = await startServe(seedStore, ['--push-token', TOKEN])
    ok(exec(['push', 'p:1', seed.url], {store: a, env: {VMI_PUSH_TOKEN: TOKEN}}), 'push')
    assert.ok(existsSync(path.join(seedStore, 'profiles', id.slice(0, 2), id.slice(2))), 'the seed has the profile')
    const b = path.join(t.dir, 'b')
    ok(exec(['pull', 'p:1', seed.url], {store: b}), 'pull')
    assert.ok(existsSync(path.join(b, 'profiles', id.slice(0, 2), id.slice(2))), 'pull brought the profile')
    const bundle = path.join(t.dir, 'x.tar')
    ok(exec(['save', 'p:1', '-o', bundle], {store: a}), 'save')
    const c = path.join(t.dir, 'c')
    ok(exec(['load', bundle], {store: c}), 'load')
    assert.ok(existsSync(path.join(c, 'profiles', id.slice(0, 2), id.slice(2))), 'load brought the profile')
    // a cold host mounts with the default --prefetch profile: those 4 chunks arrive without any read
    const cold = path.join(t.dir, 'cold')
    const before = metricSum(await seed.metrics(), 'vmi_served_bytes_total', {kind: 'objects'})
    m = await startMount(cold, [id, seed.url, '--read-only'])
    assert.is((await objectsOnce(cold, 4, 100)).length, 4, 'exactly the profile chunks were prefetched')
    assert.is(metricSum(await seed.metrics(), 'vmi_served_bytes_total', {kind: 'objects'}) - before, 4 * 65536)
    await m.stop()
    m = undefined
  } finally {
    await m?.stop()
    await seed?.stop()
    t.cleanup()
  }
})

test('a cold mount prefetches its profile 16 chunks at a time by default, --prefetch-concurrency sets it', async () => {
  const t = tmpStore()
  let seed
  let m
  try {
    const src = path.join(t.dir, 'src.raw')
    await makeImage(src, [{kind: 'random', size: 2 * M, seed: 'prefetch-concurrency'}])
    const seedStore = path.join(t.dir, 'seed')
    const id = ok(exec(['import', src, 'p:1', '--chunk-size', '64K'], {store: seedStore}), 'import').stdout.trim()
    // a profile naming all 32 chunks (docs/FORMAT.md "Boot profiles")
    await fsp.mkdir(path.join(seedStore, 'profiles', id.slice(0, 2)), {recursive: true})
    await fsp.writeFile(path.join(seedStore, 'profiles', id.slice(0, 2), id.slice(2)), JSON.stringify({version: 1, chunkSize: 65536, chunks: [...Array(32).keys()]}))
    seed = await startServe(seedStore)
    for (const [args, least, most] of [
      [[], 12, 18],
      [['--prefetch-concurrency', '2'], 1, 4],
    ]) {
      // every connection to the seed held 300 ms: prefetches at once show as connections open at once
      const open = {now: 0, max: 0}
      const fwd = await forwarder(seed.url, {delayMs: 300, open})
      const cold = path.join(t.dir, `cold-${args.length}`)
      m = await startMount(cold, [id, fwd.url, '--read-only', ...args])
      assert.is((await objectsOnce(cold, 32, 400)).length, 32, `${args.join(' ') || 'default'}: the whole profile prefetched`)
      assert.ok(open.max >= least && open.max <= most, `${args.join(' ') || 'default'}: ${open.max} connections open at once (expected ${least}-${most})`)
      await m.stop()
      m = undefined
      await fwd.stop()
    }
  } finally {
    await m?.stop()
    await seed?.stop()
    t.cleanup()
  }
})

test('gc while a lazily mounted image is in use keeps its manifest and fetched chunks', async () => {
  if (!hasCommand('qemu-io')) return skip('qemu-io not installed')
  const t = tmpStore()
  let seed
  let m
  try {
    const src = path.join(t.dir, 'src.raw')
    await makeImage(src, [{kind: 'random', size: 2 * M, seed: 'gcm'}])
    const s = path.join(t.dir, 'seed')
    const id = ok(exec(['import', src, 'g:1', '--chunk-size', '64K'], {store: s}), 'import').stdout.trim()
    seed = await startServe(s)
    const host = path.join(t.dir, 'host')
    m = await startMount(host, [id, seed.url, '--read-only', '--prefetch', 'none'])
    assert.is((await qemuIo(['-r', '-f', 'raw', '-c', 'read 0 200000', m.nbd])).status, 0)
    const g = JSON.parse(ok(exec(['gc', '--json', '--max-cache', '0'], {store: host}), 'gc').stdout)
    assert.is(g.removedObjects, 0, 'the mounted image (no ref on this host) is a gc root')
    assert.is(g.evicted.removedObjects, 0, 'and eviction spares it')
    // the mount still reads everything correctly
    const out = path.join(t.dir, 'out.raw')
    const conv = await new Promise((resolve) => spawn('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', m.nbd, out]).on('close', resolve))
    assert.is(conv, 0)
    assert.is(await sha256File(out), await sha256File(src))
    await m.stop()
    m = undefined
    // unmounted and unreferenced: now gc may take it
    const g2 = JSON.parse(ok(exec(['gc', '--json'], {store: host}), 'gc after').stdout)
    assert.is(g2.removedObjects, 32)
    fsckClean(host)
  } finally {
    await m?.stop()
    await seed?.stop()
    t.cleanup()
  }
})

test('rm of an image a running mount reads, or of a pinned one, keeps it whole until the mount ends or the pin goes', async () => {
  if (!hasCommand('qemu-img')) return skip('qemu-img not installed')
  const t = tmpStore()
  let m
  try {
    const src = path.join(t.dir, 'src.raw')
    await makeImage(src, [{kind: 'random', size: 2 * M, seed: 'rm-mounted'}])
    const store = t.store
    const id = ok(exec(['import', src, 'web:3', '--chunk-size', '64K'], {store}), 'import').stdout.trim()
    m = await startMount(store, ['web:3', '--read-only'])
    const rm = JSON.parse(ok(exec(['rm', 'web:3', '--json'], {store}), 'rm while mounted').stdout)
    assert.equal(rm.removed, [{spec: 'web:3', id, untagged: ['web:3'], kept: 'in-use'}])
    const g = JSON.parse(ok(exec(['gc', '--json'], {store}), 'gc while mounted').stdout)
    assert.is(g.removedObjects, 0, 'the mount’s image keeps its chunks')
    assert.equal(g.missingRoots, [])
    // every byte still reads through the mount
    const out = path.join(t.dir, 'out.raw')
    assert.is((await runAsync('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', m.nbd, out])).status, 0)
    assert.is(await sha256File(out), await sha256File(src))
    // undone while it is still there: the id names it
    ok(exec(['tag', id, 'web:3'], {store}), 'tag it again')
    ok(exec(['rm', 'web:3'], {store}), 'rm again')
    await m.stop()
    m = undefined
    const g2 = JSON.parse(ok(exec(['gc', '--json'], {store}), 'gc after the mount').stdout)
    assert.equal([g2.removedManifests, g2.removedObjects], [[id], 32], 'unmounted and unreferenced: gc takes it')
    fsckClean(store)

    // pinned: the same
    const id4 = ok(exec(['import', src, 'web:4', '--chunk-size', '64K'], {store}), 'import again').stdout.trim()
    ok(exec(['pin', 'web:4'], {store}), 'pin')
    const rm2 = ok(exec(['rm', 'web:4'], {store}), 'rm pinned')
    assert.match(rm2.stdout, /is pinned/)
    assert.is(JSON.parse(ok(exec(['gc', '--json'], {store}), 'gc pinned').stdout).removedObjects, 0, 'a pinned image keeps its chunks')
    ok(exec(['export', id4, out, '--force'], {store}), 'export the pinned image by id')
    assert.is(await sha256File(out), await sha256File(src))
    ok(exec(['pin', '--remove', id4], {store}), 'unpin')
    assert.is(JSON.parse(ok(exec(['gc', '--json'], {store}), 'gc unpinned').stdout).removedObjects, 32)
    fsckClean(store)
  } finally {
    await m?.stop()
    t.cleanup()
  }
})

test('--vhost-user-blk brings up a vhost-user-blk socket (qemu-storage-daemon) and removes it at unmount', async () => {
  if (!hasCommand('qemu-storage-daemon')) return skip('qemu-storage-daemon not installed')
  const t = tmpStore()
  let m
  try {
    const src = path.join(t.dir, 'src.raw')
    await makeImage(src, [{kind: 'random', size: M, seed: 'vub'}])
    const store = path.join(t.dir, 'store')
    ok(exec(['import', src, 'v:1'], {store}), 'import')
    const sock = path.join(t.dir, 'vub.sock')
    m = await startMount(store, ['v:1', '--vhost-user-blk', sock])
    assert.is(m.vhost, sock)
    assert.ok((await fsp.stat(sock)).isSocket(), 'a unix socket is listening for cloud-hypervisor')
    await m.stop()
    assert.not.ok(existsSync(sock), 'removed at unmount')
  } finally {
    await m?.stop()
    t.cleanup()
  }
})

test.run()
