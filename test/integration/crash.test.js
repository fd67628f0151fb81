// Crashes and concurrency: kill -9 in the middle of import and load, several
// writers at once, gc racing an import. The store must never end up with a
// ref to an incomplete image, must stay fsck-clean, and the interrupted
// command must simply work when run again.
import {test} from 'uvu'
import * as assert from 'uvu/assert'
import {cpSync, promises as fsp} from 'node:fs'
import path from 'node:path'
import {pathToFileURL} from 'node:url'
import {exec, fsckClean, listFiles, makeImage, sha256File, spawnCli, tmpStore} from '../helpers/index.js'
import {countFiles, finished, killMidway, sleep, until} from '../helpers/crash.js'

const ID_LINE = /^[0-9a-f]{64}\n$/

function ok(r, what) {
  assert.is(r.status, 0, `${what}: exit ${r.status} (signal ${r.signal}), stderr ${JSON.stringify(r.stderr)}`)
}

const refs = (store) => listFiles(path.join(store, 'refs'))

const sourceHashes = new Map()

/** Export `ref` and compare with `source` by sha256. */
async function assertExportsAs(store, dir, ref, source) {
  const out = path.join(dir, `export-${ref.replace(/[^a-z0-9]/gi, '_')}.raw`)
  ok(exec(['export', ref, out], {store}), `export ${ref}`)
  if (!sourceHashes.has(source)) sourceHashes.set(source, await sha256File(source))
  assert.is(await sha256File(out), sourceHashes.get(source), `export of ${ref} is byte-identical to its source`)
  await fsp.rm(out)
}

/** After gc, no staging files and no stale locks may remain. */
async function gcLeavesNothing(store) {
  const g = exec(['gc', '--json'], {store})
  ok(g, 'gc')
  assert.equal(await listFiles(path.join(store, 'tmp')), [], 'tmp/ is empty after gc')
  assert.equal(await listFiles(path.join(store, 'locks')), [], 'locks/ is empty after gc')
  return JSON.parse(g.stdout)
}

// ------------------------------------------------------------------ kill -9 during import

test('kill -9 during import: no ref, fsck clean, rerun completes byte-identical, gc empties tmp/', async () => {
  const {store, dir, cleanup} = tmpStore()
  try {
    const src = path.join(dir, 'big.raw')
    // 200 MiB of random data with a zero gap and a repeated region
    await makeImage(src, [
      {kind: 'random', size: 120 << 20},
      {kind: 'zero', size: 8 << 20},
      {kind: 'repeat', size: 8 << 20},
      {kind: 'random', size: 64 << 20},
    ])
    const argv = ['import', src, 'big:v1', '--chunk-size', '64K']
    let kills = 0
    let completed = 0
    for (let attempt = 0; kills < 3 && attempt < 10; attempt++) {
      const before = await countFiles(path.join(store, 'objects'))
      // kill once this run has stored new chunks (later runs first re-walk what earlier ones stored)
      const k = await killMidway(argv, store, async () => (await countFiles(path.join(store, 'objects'))) > before, 250)
      if (!k.killed) {
        // finished before the kill landed (a slow poll on a busy machine): undo it and try again
        ok(k.result, 'import that outran the kill')
        completed++
        ok(exec(['rm', 'big:v1'], {store}), 'rm')
        ok(exec(['gc'], {store}), 'gc') // so the next run stores new chunks again
        continue
      }
      kills++
      assert.ok(k.seen, 'the import had stored chunks when it was killed')
      assert.equal(await refs(store), [], `after kill ${kills}: no ref exists for the name`)
      fsckClean(store)
    }
    assert.ok(kills >= 2, `killed the import mid-way at least twice (kills ${kills}, finished first ${completed})`)
    const leftovers = await listFiles(path.join(store, 'tmp'))
    console.log(`  (${kills} kills; ${await countFiles(path.join(store, 'objects'))} objects and ${leftovers.length} tmp files left behind)`)

    const r = exec(argv, {store})
    ok(r, 'import after the crashes')
    assert.match(r.stdout, ID_LINE)
    assert.equal(await refs(store), [path.join('big', 'v1')])

    const g = await gcLeavesNothing(store)
    assert.is(g.removedTmpFiles, leftovers.length, 'gc removed exactly the staging files the killed imports left')
    assert.is(g.removedManifests.length, 0)
    fsckClean(store)
    await assertExportsAs(store, dir, 'big:v1', src)
  } finally {
    cleanup()
  }
})

// ------------------------------------------------------------------ kill -9 during load

/** A bundle of one `size`-byte random image, tagged bundled:v1. */
async function makeBundle(dir, size) {
  const src = path.join(dir, 'src.raw')
  await makeImage(src, [{kind: 'random', size}])
  const srcStore = path.join(dir, 'src-store')
  ok(exec(['import', src, 'bundled:v1', '--chunk-size', '64K'], {store: srcStore}), 'import into the source store')
  const bundle = path.join(dir, 'b.tar')
  ok(exec(['save', 'bundled:v1', '-o', bundle], {store: srcStore}), 'save')
  await fsp.rm(srcStore, {recursive: true})
  return {src, bundle}
}

test('kill -9 during load: no new refs, fsck clean, rerun load succeeds', async () => {
  const {store, dir, cleanup} = tmpStore()
  try {
    const {src, bundle} = await makeBundle(dir, 48 << 20)
    // the target store already holds an image
    const other = path.join(dir, 'other.raw')
    await makeImage(other, [{kind: 'random', size: 1 << 20}])
    ok(exec(['import', other, 'other:v1', '--chunk-size', '64K'], {store}), 'import other')
    const refsBefore = await refs(store)

    const staged = async () => (await listFiles(path.join(store, 'tmp'))).some((f) => /-load\//.test(f))
    let kills = 0
    for (let attempt = 0; kills < 3 && attempt < 10; attempt++) {
      const k = await killMidway(['load', bundle], store, staged, 1000)
      if (!k.killed) {
        assert.ok(k.seen, `load exited before staging anything: exit ${k.result.status}, stderr ${JSON.stringify(k.result.stderr)}`)
        ok(k.result, 'load that outran the kill')
        ok(exec(['rm', 'bundled:v1'], {store}), 'rm')
        ok(exec(['gc'], {store}), 'gc')
        continue
      }
      assert.ok(k.seen, 'the load had staged objects when it was killed')
      const after = await refs(store)
      if (after.length !== refsBefore.length) {
        // the kill landed after the commit wrote the ref (only the staging clean-up was left):
        // the ref must then name a complete image
        assert.equal(after, [path.join('bundled', 'v1'), ...refsBefore], 'a late kill leaves exactly the loaded ref')
        fsckClean(store)
        await assertExportsAs(store, dir, 'bundled:v1', src)
        ok(exec(['rm', 'bundled:v1'], {store}), 'rm')
        ok(exec(['gc'], {store}), 'gc')
        continue
      }
      kills++
      assert.equal(after, refsBefore, `after kill ${kills}: no new refs`)
      fsckClean(store)
    }
    assert.ok(kills >= 2, `killed the load mid-way at least twice (${kills})`)

    const r = exec(['load', bundle], {store})
    ok(r, 'load after the crashes')
    assert.equal(await refs(store), [path.join('bundled', 'v1'), path.join('other', 'v1')])
    await gcLeavesNothing(store) // removes the dead loads' staging directories
    fsckClean(store)
    await assertExportsAs(store, dir, 'bundled:v1', src)
    await assertExportsAs(store, dir, 'other:v1', other)
  } finally {
    cleanup()
  }
})

test('load with a slow store filesystem (staging mkdir takes 200 ms) completes instead of hanging', async () => {
  // Fault injection through a preload: the real CLI runs, only fs.promises.mkdir
  // of the load staging directory is delayed, as on a slow or network filesystem.
  const {store, dir, cleanup} = tmpStore()
  try {
    const {src, bundle} = await makeBundle(dir, 1 << 20)
    const preload = path.join(dir, 'slow-mkdir.mjs')
    await fsp.writeFile(
      preload,
      `import fs from 'node:fs'
const mkdir = fs.promises.mkdir
fs.promises.mkdir = async function (p, ...rest) {
  if (String(p).includes('-load')) await new Promise((r) => setTimeout(r, 200))
  return mkdir.call(this, p, ...rest)
}
`,
    )
    const env = {NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --import=${pathToFileURL(preload).href}`.trim()}
    const child = spawnCli(['load', bundle], {store, env})
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000)
    const r = await finished(child)
    clearTimeout(timer)
    ok(r, 'load with a slow mkdir (exit 13 = the event loop drained with the load still pending: it hung)')
    assert.match(r.stdout, /loaded [0-9a-f]{64} \(bundled:v1\)/)
    assert.equal(await refs(store), [path.join('bundled', 'v1')])
    fsckClean(store)
    await assertExportsAs(store, dir, 'bundled:v1', src)
  } finally {
    cleanup()
  }
})

// ------------------------------------------------------------------ concurrent writers

test('two imports of different images at once (sharing some chunks): both succeed', async () => {
  const {store, dir, cleanup} = tmpStore()
  try {
    const a = path.join(dir, 'a.raw')
    const b = path.join(dir, 'b.raw')
    // a common 24 MiB region (both write the same chunks at the same time), then distinct data
    await makeImage(a, [{kind: 'random', size: 16 << 20, seed: 'common'}, {kind: 'random', size: 32 << 20, seed: 'a'}])
    await makeImage(b, [{kind: 'random', size: 16 << 20, seed: 'common'}, {kind: 'zero', size: 4 << 20}, {kind: 'random', size: 28 << 20, seed: 'b'}])
    const pa = finished(spawnCli(['import', a, 'a:v1', '--chunk-size', '64K'], {store}))
    const pb = finished(spawnCli(['import', b, 'b:v1', '--chunk-size', '64K'], {store}))
    const [ra, rb] = await Promise.all([pa, pb])
    ok(ra, 'import a')
    ok(rb, 'import b')
    assert.match(ra.stdout, ID_LINE)
    assert.match(rb.stdout, ID_LINE)
    assert.is.not(ra.stdout, rb.stdout)
    assert.equal(await refs(store), [path.join('a', 'v1'), path.join('b', 'v1')])
    fsckClean(store)
    await assertExportsAs(store, dir, 'a:v1', a)
    await assertExportsAs(store, dir, 'b:v1', b)
    assert.equal(await listFiles(path.join(store, 'tmp')), [], 'no staging files left')
    assert.equal(await listFiles(path.join(store, 'locks')), [], 'no locks left')
  } finally {
    cleanup()
  }
})

test('two imports of the same image at once: both succeed with the same id', async () => {
  const {store, dir, cleanup} = tmpStore()
  try {
    const src = path.join(dir, 'same.raw')
    await makeImage(src, [{kind: 'random', size: 36 << 20}, {kind: 'zero', size: 4 << 20}, {kind: 'repeat', size: 8 << 20}])
    const created = '2024-01-01T00:00:00.000Z' // same manifest → same id
    const run = (ref) => finished(spawnCli(['import', src, ref, '--chunk-size', '64K', '--created', created], {store}))
    const [r1, r2] = await Promise.all([run('same:one'), run('same:two')])
    ok(r1, 'import one')
    ok(r2, 'import two')
    assert.match(r1.stdout, ID_LINE)
    assert.is(r1.stdout, r2.stdout, 'same image, same id')
    assert.equal(await refs(store), [path.join('same', 'one'), path.join('same', 'two')])
    fsckClean(store)
    await assertExportsAs(store, dir, 'same:one', src)
    await assertExportsAs(store, dir, 'same:two', src)
    assert.equal(await listFiles(path.join(store, 'tmp')), [], 'no staging files left')
  } finally {
    cleanup()
  }
})

// ------------------------------------------------------------------ gc racing an import

test('gc concurrent with an import: both succeed, gc never deletes the import’s chunks', async () => {
  const {dir, cleanup} = tmpStore()
  try {
    // "garbage" is an unreferenced image whose chunks the new import re-uses
    // (dedup): gc must neither delete them under the import nor keep garbage.
    const MiB = 1 << 20
    const garbage = path.join(dir, 'garbage.raw')
    const keep = path.join(dir, 'keep.raw')
    const img = path.join(dir, 'img.raw')
    await makeImage(garbage, [{kind: 'random', size: 16 * MiB, seed: 'shared'}, {kind: 'random', size: 8 * MiB, seed: 'garbage-only'}])
    await makeImage(keep, [{kind: 'random', size: 2 * MiB, seed: 'keep'}])
    await makeImage(img, [{kind: 'random', size: 16 * MiB, seed: 'shared'}, {kind: 'random', size: 24 * MiB, seed: 'img-only'}])
    const template = path.join(dir, 'template')
    ok(exec(['import', keep, 'keep:v1', '--chunk-size', '64K'], {store: template}), 'import keep')
    ok(exec(['import', garbage, 'garbage:v1', '--chunk-size', '64K'], {store: template}), 'import garbage')
    ok(exec(['rm', 'garbage:v1'], {store: template}), 'rm garbage')
    const objectsBefore = await countFiles(path.join(template, 'objects'))
    assert.is(objectsBefore, (2 * MiB + 24 * MiB) / 65536)

    const importImg = (store) => finished(spawnCli(['import', img, 'img:v1', '--chunk-size', '64K'], {store}))
    const startGc = (store) => finished(spawnCli(['gc', '--json'], {store}))
    const variants = {
      'gc started once the import holds its lock': async (store) => {
        const imp = importImg(store)
        const locked = await until(async () => (await listFiles(path.join(store, 'locks'))).some((f) => /-import\.json$/.test(f)), {exited: imp})
        assert.ok(locked, 'saw the import lock before the import ended')
        return [startGc(store), imp]
      },
      'gc and import started together': async (store) => [startGc(store), importImg(store)],
      'gc started just before the import': async (store) => {
        const g = startGc(store)
        await sleep(150)
        return [g, importImg(store)]
      },
    }
    let i = 0
    for (const [name, start] of Object.entries(variants)) {
      const store = path.join(dir, `store-${i++}`)
      cpSync(template, store, {recursive: true})
      const [g, r] = await Promise.all(await start(store))
      ok(g, `${name}: gc`)
      ok(r, `${name}: import`)
      assert.match(r.stdout, ID_LINE)
      assert.ok(JSON.parse(g.stdout).removedObjects <= objectsBefore - (2 * MiB) / 65536, `${name}: gc removed only unreferenced old objects`)
      assert.equal(await refs(store), [path.join('img', 'v1'), path.join('keep', 'v1')], name)
      await assertExportsAs(store, dir, 'img:v1', img)
      // whichever order the race took, a final gc leaves exactly keep's and img's chunks, all intact
      await gcLeavesNothing(store)
      assert.is(await countFiles(path.join(store, 'objects')), (2 * MiB + 40 * MiB) / 65536, `${name}: exactly keep's and img's chunks remain`)
      fsckClean(store)
      await fsp.rm(store, {recursive: true})
    }
  } finally {
    cleanup()
  }
})

test.run()
