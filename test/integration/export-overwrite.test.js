// export never replaces an existing file unless asked (--force), and a
// failed export leaves neither a partial file nor a changed one.
import {test} from 'uvu'
import * as assert from 'uvu/assert'
import {readdirSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import path from 'node:path'
import {exec, makeImage, sha256File, tmpStore} from '../helpers/index.js'

const M = 1024 * 1024

test('export refuses an existing file (exit 2) without --force, replaces it with --force, and a failure changes nothing', async () => {
  const t = tmpStore()
  try {
    const src = path.join(t.dir, 'src.raw')
    await makeImage(src, [{kind: 'random', size: M, seed: 'export-overwrite'}])
    const id = exec(['import', src, 'x:1', '--chunk-size', '64K'], {store: t.store}).stdout.trim()
    const out = path.join(t.dir, 'out.raw')
    writeFileSync(out, 'precious')
    const r = exec(['export', 'x:1', out], {store: t.store})
    assert.is(r.status, 2, r.stderr)
    assert.match(r.stderr, /already exists/)
    assert.match(r.stderr, /--force/)
    assert.is(r.stdout, '')
    assert.is(readFileSync(out, 'utf8'), 'precious', 'left as it was')
    const j = exec(['export', 'x:1', out, '--json'], {store: t.store})
    assert.is(JSON.parse(j.stderr).error.code, 'VMI_FILE_EXISTS')
    // --force replaces it
    const f = exec(['export', 'x:1', out, '--force'], {store: t.store})
    assert.is(f.status, 0, f.stderr)
    assert.is(await sha256File(out), await sha256File(src))
    // a fresh path needs no --force
    const fresh = path.join(t.dir, 'fresh.raw')
    assert.is(exec(['export', 'x:1', fresh], {store: t.store}).status, 0)
    // a failure (a chunk gone) leaves the old file untouched, even with --force, and no temporary file
    writeFileSync(out, 'precious')
    const objects = path.join(t.store, 'objects')
    const shard = readdirSync(objects)[0]
    rmSync(path.join(objects, shard, readdirSync(path.join(objects, shard))[0]))
    const e = exec(['export', 'x:1', out, '--force'], {store: t.store})
    assert.is(e.status, 8, e.stderr)
    assert.match(e.stderr, /vmi fsck/)
    assert.ok(e.stderr.includes('no remote is known to hold this image'), e.stderr)
    assert.is(readFileSync(out, 'utf8'), 'precious')
    const e2 = exec(['export', id, path.join(t.dir, 'never.raw')], {store: t.store})
    assert.is(e2.status, 8)
    assert.equal(readdirSync(t.dir).sort(), ['fresh.raw', 'out.raw', 'src.raw', 'store'])
  } finally {
    t.cleanup()
  }
})

test.run()
