// Cache budget: least-recently-used chunks go first, never a pinned image's,
// and never the only copy of an image (one no remote is known to hold). A
// lazily mounted image is listed and spared while mounted; an export that
// meets evicted chunks says where to get them again.
import {test} from 'uvu'
import * as assert from 'uvu/assert'
import {existsSync, readdirSync} from 'node:fs'
import path from 'node:path'
import {exec, execAsync, fsckClean, fsckCleanAsync, hasCommand, makeImage, runAsync, sha256File, skip, tmpStore} from '../helpers/index.js'
import {startMount} from '../helpers/mount.js'
import {startServe} from '../helpers/serve.js'

const M = 1024 * 1024

function ok(r, what) {
  assert.is(r.status, 0, `${what} failed (exit ${r.status}): ${r.stderr}`)
  return r
}

test('gc --max-cache evicts the least recently used chunks of pulled images; pinned images stay whole', async () => {
  const t = tmpStore()
  const seedStore = path.join(t.dir, 'seed')
  let seed
  try {
    const files = {}
    for (const [name, s] of [['a', 'ca'], ['b', 'cb'], ['c', 'cc']]) {
      files[name] = path.join(t.dir, `${name}.raw`)
      await makeImage(files[name], [{kind: 'random', size: M, seed: s}])
      ok(exec(['import', files[name], name, '--chunk-size', '256K'], {store: seedStore}), `import ${name}`)
    }
    seed = await startServe(seedStore)
    // pulled, so each is cache on this host: the seed holds it
    for (const name of ['a', 'b', 'c']) {
      ok(await execAsync(['pull', name, seed.url], {store: t.store}), `pull ${name}`)
      await new Promise((r) => setTimeout(r, 30)) // distinct mtimes
    }
    ok(exec(['pin', 'a'], {store: t.store}), 'pin a')
    const pins = JSON.parse(ok(exec(['pin', '--json'], {store: t.store}), 'pin list').stdout)
    assert.is(pins.pinned.length, 1)
    const r = JSON.parse(ok(exec(['gc', '--max-cache', '2M', '--json'], {store: t.store}), 'gc --max-cache').stdout)
    assert.is(r.evicted.removedObjects, 4, 'one image of 4 chunks goes')
    assert.is(r.evicted.freedBytes, M)
    assert.is(r.evicted.onlyCopyImages.length, 0)
    const ls = JSON.parse(ok(exec(['ls', '--json'], {store: t.store}), 'ls').stdout).images
    const by = Object.fromEntries(ls.map((i) => [i.refs[0].split(':')[0], i]))
    assert.is(by.a.missingChunks, 0, 'pinned a is whole')
    assert.is(by.b.missingChunks, 4, 'b, the least recently used unpinned image, was evicted')
    assert.ok(by.b.lazy)
    assert.is(by.c.missingChunks, 0, 'c, more recent, stays')
    const f = fsckClean(t.store)
    assert.is(f.lazyImages, 1)
    assert.is(f.lazyMissingChunks, 4)
    // a budget smaller than the pinned image: reports what it could not free
    const r2 = JSON.parse(ok(exec(['gc', '--max-cache', '512K', '--json'], {store: t.store}), 'gc tiny budget').stdout)
    assert.is(r2.evicted.overBudget, M - 512 * 1024)
    const out = path.join(t.dir, 'a.out')
    ok(exec(['export', 'a', out], {store: t.store}), 'export pinned a')
    assert.is(await sha256File(out), await sha256File(files.a))
    // exporting the evicted image fails clearly, says where to get it again, and leaves no file
    const bOut = path.join(t.dir, 'b.out')
    const e = exec(['export', 'b', bOut], {store: t.store})
    assert.is(e.status, 8)
    assert.match(e.stderr, /not in local store/)
    assert.ok(e.stderr.includes(`vmi pull b ${seed.url}`), e.stderr)
    assert.match(e.stderr, /vmi fsck/)
    assert.not.ok(existsSync(bOut))
    assert.is(readdirSync(t.dir).filter((n) => n.includes('vmi-export')).length, 0, 'no temporary file left')
    // the hinted command brings it back
    ok(await execAsync(['pull', 'b', seed.url], {store: t.store}), 'pull b again')
    ok(exec(['export', 'b', bOut], {store: t.store}), 'export b')
    assert.is(await sha256File(bOut), await sha256File(files.b))
    ok(exec(['pin', '--remove', 'a'], {store: t.store}), 'unpin')
    assert.is(JSON.parse(exec(['pin', '--json'], {store: t.store}).stdout).pinned.length, 0)
  } finally {
    await seed?.stop()
    t.cleanup()
  }
})

test('gc --max-cache on a host with no remote keeps the only copy of its images whole; once pushed, they are cache', async () => {
  const t = tmpStore()
  let seed
  try {
    const src = path.join(t.dir, 'local.raw')
    await makeImage(src, [{kind: 'random', size: M, seed: 'only-copy'}])
    const id = ok(exec(['import', src, 'only:1', '--chunk-size', '64K'], {store: t.store}), 'import').stdout.trim()
    const r = JSON.parse(ok(exec(['gc', '--max-cache', '100K', '--json'], {store: t.store}), 'gc --max-cache').stdout)
    assert.is(r.evicted.removedObjects, 0, 'nothing of an image no remote holds is evicted')
    assert.equal(r.evicted.onlyCopyImages, [id])
    assert.is(r.evicted.overBudget, M - 100 * 1024)
    const text = ok(exec(['gc', '--max-cache', '100K'], {store: t.store}), 'gc text').stdout
    assert.match(text, /only copy/)
    const out = path.join(t.dir, 'out.raw')
    ok(exec(['export', 'only:1', out], {store: t.store}), 'export after gc')
    assert.is(await sha256File(out), await sha256File(src))
    fsckClean(t.store)
    // pushed to a seed, the image can be fetched again: now it is cache
    const seedStore = path.join(t.dir, 'seed')
    ok(exec(['remote', 'ls'], {store: seedStore}), 'create seed store')
    seed = await startServe(seedStore, ['--token', 'tok'])
    ok(await execAsync(['push', 'only:1', seed.url, '--token', 'tok'], {store: t.store}), 'push')
    const r2 = JSON.parse(ok(exec(['gc', '--max-cache', '100K', '--json'], {store: t.store}), 'gc after push').stdout)
    assert.is(r2.evicted.onlyCopyImages.length, 0)
    assert.ok(r2.evicted.removedObjects > 0)
    const e = exec(['export', 'only:1', path.join(t.dir, 'evicted.raw')], {store: t.store})
    assert.is(e.status, 8)
    assert.ok(e.stderr.includes(`vmi pull only:1 ${seed.url}`), e.stderr)
  } finally {
    await seed?.stop()
    t.cleanup()
  }
})

test('after a lazy mount by name, ls lists the image (partial), and gc --dry-run plans to free none of what the mount uses', async () => {
  if (!hasCommand('qemu-io')) return skip('qemu-io not installed')
  const t = tmpStore()
  let seed
  let m
  try {
    const src = path.join(t.dir, 'src.raw')
    await makeImage(src, [{kind: 'random', size: 2 * M, seed: 'lazy-ls'}])
    const seedStore = path.join(t.dir, 'seed')
    ok(exec(['import', src, 'lz:1', '--chunk-size', '64K'], {store: seedStore}), 'import')
    seed = await startServe(seedStore)
    m = await startMount(t.store, ['lz:1', seed.url, '--read-only', '--prefetch', 'none'])
    const io = await runAsync('qemu-io', ['-r', '-f', 'raw', '-c', 'read 0 200000', m.nbd])
    assert.is(io.status, 0, io.out)
    const listed = () => JSON.parse(ok(exec(['ls', '--json'], {store: t.store}), 'ls').stdout).images
    let ls = listed()
    assert.is(ls.length, 1, 'the mounted image is listed')
    assert.equal(ls[0].refs, ['lz:1'])
    assert.ok(ls[0].lazy)
    assert.is(ls[0].storedBytes, 4 * 65536, 'the 4 chunks read so far are local')
    assert.is(ls[0].missingChunks, 28)
    assert.match(ok(exec(['ls'], {store: t.store}), 'ls text').stdout, /lz:1 .*28 chunks absent/)
    const plan = JSON.parse(ok(exec(['gc', '--dry-run', '--max-cache', '0', '--json'], {store: t.store}), 'gc --dry-run').stdout)
    assert.is(plan.removedObjects, 0)
    assert.is(plan.removedManifests.length, 0)
    assert.is(plan.evicted.removedObjects, 0, 'eviction spares a mounted image')
    assert.is((await m.stop()).code, 0)
    m = undefined
    // unmounted: still listed, and gc keeps what it fetched (the ref holds it; a cache budget may evict it)
    ls = listed()
    assert.is(ls.length, 1)
    const after = JSON.parse(ok(exec(['gc', '--dry-run', '--json'], {store: t.store}), 'gc --dry-run after').stdout)
    assert.is(after.removedObjects, 0)
    await fsckCleanAsync(t.store)
  } finally {
    await m?.stop()
    await seed?.stop()
    t.cleanup()
  }
})

test.run()
