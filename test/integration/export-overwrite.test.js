// export and save never replace an existing file unless asked (--force),
// and a failed export or save leaves neither a partial file nor a changed
// one, and says why in words.
import {test} from 'uvu'
import * as assert from 'uvu/assert'
import {readdirSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import path from 'node:path'
import {exec, makeImage, sha256File, skip, tmpStore} from '../helpers/index.js'
import {tmpfs} from '../helpers/tmpfs.js'

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

test('save -o refuses an existing file without --force, and a destination it cannot write fails in words (no stack), leaving nothing', async () => {
  const t = tmpStore()
  let m
  try {
    const src = path.join(t.dir, 'src.raw')
    await makeImage(src, [{kind: 'random', size: 4 * M, seed: 'save-overwrite'}])
    ok(exec(['import', src, 'x:1', '--chunk-size', '64K'], {store: t.store}), 'import')
    const out = path.join(t.dir, 'out.tar')
    writeFileSync(out, 'precious')
    const r = exec(['save', 'x:1', '-o', out, '--json'], {store: t.store})
    assert.is(r.status, 2, r.stderr)
    const e = JSON.parse(r.stderr).error
    assert.equal([e.code, e.hint], ['VMI_FILE_EXISTS', '--force replaces it'])
    assert.is(readFileSync(out, 'utf8'), 'precious', 'left as it was')
    ok(exec(['save', 'x:1', '-o', out, '--force'], {store: t.store}), 'save --force')
    const loaded = path.join(t.dir, 'loaded')
    ok(exec(['load', out], {store: loaded}), 'load the replaced file')
    // no such directory: a usage error, before any work
    const nodir = exec(['save', 'x:1', '-o', path.join(t.dir, 'nodir', 'x.tar'), '--json'], {store: t.store})
    assert.is(nodir.status, 2, nodir.stderr)
    assert.match(JSON.parse(nodir.stderr).error.message, /its directory does not exist/)
    const dir = exec(['save', 'x:1', '-o', t.dir], {store: t.store})
    assert.is(dir.status, 2, dir.stderr)
    assert.match(dir.stderr, /is a directory/)
    // a full filesystem: the error in words, and neither the old file nor a staging file changed
    m = tmpfs(t.dir, '3m')
    if (m.reason) return skip(`the full-filesystem case: ${m.reason}`)
    const full = path.join(m.mnt, 'b.tar')
    writeFileSync(full, 'precious')
    for (const argv of [['save', 'x:1', '-o', path.join(m.mnt, 'a.tar')], ['save', 'x:1', '-o', full, '--force', '--json']]) {
      const f = exec(argv, {store: t.store})
      assert.is(f.status, 1, f.stderr)
      assert.match(f.stderr, /no space left writing/)
      assert.not.match(f.stderr, /\n\s+at /, 'no stack trace')
    }
    assert.equal(readdirSync(m.mnt), ['b.tar'], 'no staging file left')
    assert.is(readFileSync(full, 'utf8'), 'precious')
    assert.equal(readdirSync(t.dir).sort(), ['loaded', 'mnt', 'out.tar', 'src.raw', 'store'])
  } finally {
    m?.umount?.()
    t.cleanup()
  }
})

function ok(r, what) {
  assert.is(r.status, 0, `${what} failed (exit ${r.status}): ${r.stderr}`)
  return r
}

test.run()
