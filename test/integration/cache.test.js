// Cache budget: least-recently-used chunks go first, never a pinned image's.
import {test} from 'uvu'
import * as assert from 'uvu/assert'
import path from 'node:path'
import {exec, fsckClean, makeImage, sha256File, tmpStore} from '../helpers/index.js'

const M = 1024 * 1024

function ok(r, what) {
  assert.is(r.status, 0, `${what} failed (exit ${r.status}): ${r.stderr}`)
  return r
}

test('gc --max-cache evicts the least recently used unpinned chunks; pinned images stay whole', async () => {
  const t = tmpStore()
  try {
    const files = {}
    for (const [name, seed] of [['a', 'ca'], ['b', 'cb'], ['c', 'cc']]) {
      files[name] = path.join(t.dir, `${name}.raw`)
      await makeImage(files[name], [{kind: 'random', size: M, seed}])
      ok(exec(['import', files[name], name, '--chunk-size', '256K'], {store: t.store}), `import ${name}`)
      await new Promise((r) => setTimeout(r, 30)) // distinct mtimes
    }
    ok(exec(['pin', 'a'], {store: t.store}), 'pin a')
    const pins = JSON.parse(ok(exec(['pin', '--json'], {store: t.store}), 'pin list').stdout)
    assert.is(pins.pinned.length, 1)
    const r = JSON.parse(ok(exec(['gc', '--max-cache', '2M', '--json'], {store: t.store}), 'gc --max-cache').stdout)
    assert.is(r.evicted.removedObjects, 4, 'one image of 4 chunks goes')
    assert.is(r.evicted.freedBytes, M)
    const ls = JSON.parse(ok(exec(['ls', '--json'], {store: t.store}), 'ls').stdout).images
    const by = Object.fromEntries(ls.map((i) => [i.refs[0].split(':')[0], i]))
    assert.is(by.a.missingChunks, 0, 'pinned a is whole')
    assert.is(by.b.missingChunks, 4, 'b, the least recently used unpinned image, was evicted')
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
    // exporting the evicted image fails clearly
    const e = exec(['export', 'b', path.join(t.dir, 'b.out')], {store: t.store})
    assert.is(e.status, 8)
    assert.match(e.stderr, /not in local store/)
    ok(exec(['pin', '--remove', 'a'], {store: t.store}), 'unpin')
    assert.is(JSON.parse(exec(['pin', '--json'], {store: t.store}).stdout).pinned.length, 0)
  } finally {
    t.cleanup()
  }
})

test.run()
