// The commands end to end, through the real CLI as a child process.
import {test} from 'uvu'
import * as assert from 'uvu/assert'
import {spawnSync} from 'node:child_process'
import {promises as fsp, readFileSync, statSync, writeFileSync} from 'node:fs'
import path from 'node:path'
import {hash} from '../../dist/store/hash.js'
import {exec, fsckClean, hasCommand, listFiles, makeImage, seededBytes, sha256File, skip, tmpStore} from '../helpers/index.js'

const K = 1024
const M = 1024 * 1024

function ok(r, what) {
  assert.is(r.status, 0, `${what} failed (exit ${r.status}): ${r.stderr}`)
  return r
}

test('import → export round trip is byte-identical, sparse, and prints the id last', async () => {
  const t = tmpStore()
  try {
    const src = path.join(t.dir, 'src.raw')
    await makeImage(src, [
      {kind: 'random', size: 3 * M, seed: 1},
      {kind: 'zero', size: 5 * M},
      {kind: 'repeat', size: 2 * M},
      {kind: 'random', size: 1 * M + 512, seed: 2},
    ])
    const r = ok(exec(['import', src, 'disk:v1', '--chunk-size', '64K'], {store: t.store}), 'import')
    const id = r.stdout.trim().split('\n').pop()
    assert.match(id, /^[0-9a-f]{64}$/)
    const out = path.join(t.dir, 'out.raw')
    ok(exec(['export', 'disk:v1', out], {store: t.store}), 'export')
    assert.is(await sha256File(out), await sha256File(src))
    const st = statSync(out)
    assert.ok(st.blocks * 512 < st.size - 4 * M, `export should be sparse: ${st.blocks * 512} allocated of ${st.size}`)
    // by id and by unique prefix too
    const out2 = path.join(t.dir, 'out2.raw')
    ok(exec(['export', id.slice(0, 8), out2], {store: t.store}), 'export by prefix')
    assert.is(await sha256File(out2), await sha256File(src))
    // to stdout
    const s = exec(['export', id, '-'], {store: t.store})
    assert.is(s.status, 0, s.stderr)
    assert.ok(s.stdoutBuf.equals(readFileSync(src)), 'stdout export equals the source')
    fsckClean(t.store)
  } finally {
    t.cleanup()
  }
})

test('zero chunks are not stored; identical chunks are stored once across images', async () => {
  const t = tmpStore()
  try {
    const a = path.join(t.dir, 'a.raw')
    const b = path.join(t.dir, 'b.raw')
    await makeImage(a, [{kind: 'random', size: 4 * M, seed: 'a'}, {kind: 'zero', size: 4 * M}])
    // b = a with its second MiB changed
    await fsp.copyFile(a, b)
    const fh = await fsp.open(b, 'r+')
    await fh.write(seededBytes('b', M), 0, M, M)
    await fh.close()
    const ra = JSON.parse(ok(exec(['import', a, 'a', '--chunk-size', '256K', '--json'], {store: t.store}), 'import a').stdout)
    assert.is(ra.chunks, 32)
    assert.is(ra.zeroChunks, 16)
    assert.is(ra.newChunks, 16)
    assert.is(ra.newBytes, 4 * M)
    const rb = JSON.parse(ok(exec(['import', b, 'b', '--chunk-size', '256K', '--json'], {store: t.store}), 'import b').stdout)
    assert.is(rb.newChunks, 4, 'only the changed MiB is new')
    assert.is(rb.dedupedChunks, 12)
    const objects = (await listFiles(path.join(t.store, 'objects'))).length
    assert.is(objects, 20)
    // diff sees 4 changed chunks
    const d = JSON.parse(ok(exec(['diff', 'a', 'b', '--json'], {store: t.store}), 'diff').stdout)
    assert.is(d.positional.changed.chunks, 4)
    assert.is(d.positional.same.chunks, 12)
    assert.is(d.positional.zeroBoth.chunks, 16)
    assert.is(d.content.shared.chunks, 12)
    assert.is(d.content.onlyB.bytes, M)
    // ls: stored and unique bytes
    const ls = JSON.parse(ok(exec(['ls', '--json'], {store: t.store}), 'ls').stdout)
    const la = ls.images.find((i) => i.refs.includes('a:latest'))
    assert.is(la.storedBytes, 4 * M)
    assert.is(la.uniqueBytes, M)
    assert.is(la.virtualSize, 8 * M)
    const human = ok(exec(['ls'], {store: t.store}), 'ls').stdout
    assert.match(human, /a:latest\s+[0-9a-f]{12}\s+8\.0 MiB\s+4\.0 MiB\s+1\.0 MiB/)
  } finally {
    t.cleanup()
  }
})

test('stdin import, and qemu-img formats import to the same raw content', async () => {
  const t = tmpStore()
  try {
    const src = path.join(t.dir, 'src.raw')
    await makeImage(src, [{kind: 'random', size: 2 * M, seed: 3}, {kind: 'zero', size: 2 * M}, {kind: 'random', size: M, seed: 4}])
    const r = ok(exec(['import', '-', 'piped', '--json'], {store: t.store, input: readFileSync(src)}), 'stdin import')
    const piped = JSON.parse(r.stdout)
    assert.is(piped.virtualSize, 5 * M)
    assert.is(piped.via, 'stdin')
    if (!hasCommand('qemu-img')) return skip('qemu-img not installed: format conversion not tested')
    for (const fmt of ['qcow2', 'vmdk', 'vhdx', 'vdi', 'vpc']) {
      const conv = path.join(t.dir, `img.${fmt}`)
      const c = spawnSync('qemu-img', ['convert', '-f', 'raw', '-O', fmt, ...(fmt === 'vpc' ? ['-o', 'force_size=on'] : []), src, conv])
      assert.is(c.status, 0, c.stderr?.toString())
      const j = JSON.parse(ok(exec(['import', conv, `f:${fmt}`, '--json'], {store: t.store}), `import ${fmt}`).stdout)
      assert.is(j.sourceFormat, fmt)
      const out = path.join(t.dir, `out-${fmt}.raw`)
      ok(exec(['export', `f:${fmt}`, out], {store: t.store}), `export ${fmt}`)
      assert.is(await sha256File(out), await sha256File(src), `${fmt} round trip`)
      assert.is(j.newChunks, 0, `${fmt}: all chunks already stored from the stdin import`)
    }
    // export as qcow2, read back through qemu-img
    const q = path.join(t.dir, 'back.qcow2')
    ok(exec(['export', 'piped', q, '--format', 'qcow2'], {store: t.store}), 'export qcow2')
    const info = JSON.parse(spawnSync('qemu-img', ['info', '--output=json', q]).stdout.toString())
    assert.is(info.format, 'qcow2')
    const back = path.join(t.dir, 'back.raw')
    assert.is(spawnSync('qemu-img', ['convert', '-O', 'raw', q, back]).status, 0)
    assert.is(await sha256File(back), await sha256File(src))
    fsckClean(t.store)
  } finally {
    t.cleanup()
  }
})

test('a file imported by segments on two threads gives the same chunk list as the same bytes from stdin', async () => {
  const t = tmpStore()
  try {
    // 64 KiB chunks: a segment is 128 chunks (8 MiB), so this file (385 chunks) is 4 segments,
    // the last one a single short chunk; repeats inside and across segments
    const src = path.join(t.dir, 'src.raw')
    const a = seededBytes('seg-a', 3 * M)
    const b = seededBytes('seg-b', 5 * M + 4608)
    writeFileSync(src, Buffer.concat([a, Buffer.alloc(9 * M), a, a.subarray(0, M), Buffer.alloc(3 * M), b]))
    const f = JSON.parse(ok(exec(['import', src, 'file:1', '--chunk-size', '64K', '--json'], {store: t.store}), 'file import').stdout)
    assert.is(f.via, 'file')
    assert.is(f.virtualSize, statSync(src).size)
    assert.is(f.chunks, 385)
    assert.is(f.zeroChunks, 12 * 16)
    assert.is(f.newChunks, 48 + 81, 'a once, b with its short last chunk')
    assert.is(f.dedupedChunks, 48 + 16, 'the second a and the first MiB of a again')
    const s = JSON.parse(ok(exec(['import', '-', 'stdin:1', '--chunk-size', '64K', '--json'], {store: t.store, input: readFileSync(src)}), 'stdin import').stdout)
    assert.is(s.newChunks, 0, 'the stdin import found every chunk stored')
    const d = JSON.parse(ok(exec(['diff', 'file:1', 'stdin:1', '--json'], {store: t.store}), 'diff').stdout)
    assert.is(d.positional.same.chunks + d.positional.zeroBoth.chunks, 385, JSON.stringify(d.positional))
    assert.is(d.positional.changed.chunks + d.positional.onlyA.chunks + d.positional.onlyB.chunks, 0)
    const out = path.join(t.dir, 'out.raw')
    ok(exec(['export', 'file:1', out], {store: t.store}), 'export')
    assert.is(await sha256File(out), await sha256File(src))
    fsckClean(t.store)
  } finally {
    t.cleanup()
  }
})

test('tag, rm, log, inspect and prefix resolution', async () => {
  const t = tmpStore()
  try {
    const a = path.join(t.dir, 'a.raw')
    await makeImage(a, [{kind: 'random', size: 512 * K, seed: 'x'}])
    const id1 = JSON.parse(ok(exec(['import', a, 'app:v1', '--json', '--chunk-size', '64K'], {store: t.store}), 'import').stdout).id
    const b = path.join(t.dir, 'b.raw')
    await makeImage(b, [{kind: 'random', size: 512 * K, seed: 'y'}])
    const id2 = JSON.parse(
      ok(exec(['import', b, 'app:v2', '--parent', 'app:v1', '--json', '-a', 'os=debian', '--chunk-size', '64K'], {store: t.store}), 'import').stdout,
    ).id
    ok(exec(['tag', 'app:v2', 'app'], {store: t.store}), 'tag')
    const ins = JSON.parse(ok(exec(['inspect', 'app', '--json'], {store: t.store}), 'inspect').stdout)
    assert.is(ins.id, id2)
    assert.is(ins.parent, id1)
    assert.equal(ins.annotations, {os: 'debian'})
    assert.equal(ins.refs.sort(), ['app:latest', 'app:v2'])
    const log = JSON.parse(ok(exec(['log', 'app:v2', '--json'], {store: t.store}), 'log').stdout)
    assert.equal(log.entries.map((e) => e.id), [id2, id1])
    const human = ok(exec(['log', 'app:v2'], {store: t.store}), 'log').stdout
    assert.match(human, new RegExp(`image ${id2} \\(app:latest, app:v2\\)`))
    // rm of an unknown name removes nothing
    const bad = exec(['rm', 'app:v1', 'nope:1'], {store: t.store})
    assert.is(bad.status, 3)
    assert.match(bad.stderr, /no image "nope:1"/)
    ok(exec(['inspect', 'app:v1'], {store: t.store}), 'app:v1 still there')
    // rm v1: its manifest goes, v2's log now ends at a missing parent
    ok(exec(['rm', 'app:v1'], {store: t.store}), 'rm')
    const log2 = JSON.parse(ok(exec(['log', 'app:v2', '--json'], {store: t.store}), 'log').stdout)
    assert.is(log2.entries.length, 1)
    assert.is(log2.entries[0].missingParent, id1)
    // rm by id removes every ref to it
    const rm = JSON.parse(ok(exec(['rm', id2.slice(0, 10), '--json'], {store: t.store}), 'rm by id').stdout)
    assert.equal(rm.removed[0].untagged.sort(), ['app:latest', 'app:v2'])
    assert.is(JSON.parse(exec(['ls', '--json'], {store: t.store}).stdout).images.length, 0)
    const g = JSON.parse(ok(exec(['gc', '--json'], {store: t.store}), 'gc').stdout)
    assert.is(g.removedObjects, 16)
    assert.is((await listFiles(path.join(t.store, 'objects'))).length, 0)
    fsckClean(t.store)
  } finally {
    t.cleanup()
  }
})

test('gc keeps what refs reach; --dry-run removes nothing', async () => {
  const t = tmpStore()
  try {
    const a = path.join(t.dir, 'a.raw')
    const b = path.join(t.dir, 'b.raw')
    await makeImage(a, [{kind: 'random', size: M, seed: 'ga'}])
    await makeImage(b, [{kind: 'random', size: 512 * K, seed: 'ga'}, {kind: 'random', size: 512 * K, seed: 'gb'}])
    ok(exec(['import', a, 'a', '--chunk-size', '256K'], {store: t.store}), 'import a')
    ok(exec(['import', b, 'b', '--chunk-size', '256K'], {store: t.store}), 'import b')
    ok(exec(['rm', 'a'], {store: t.store}), 'rm a')
    const before = await listFiles(t.store)
    const dry = JSON.parse(ok(exec(['gc', '--dry-run', '--json'], {store: t.store}), 'gc -n').stdout)
    assert.is(dry.removedObjects, 2, 'a has 4 chunks of 256K; 2 are shared with b')
    assert.is(dry.freedBytes, 512 * K)
    assert.equal(await listFiles(t.store), before)
    const real = JSON.parse(ok(exec(['gc', '--json'], {store: t.store}), 'gc').stdout)
    assert.is(real.removedObjects, 2)
    const out = path.join(t.dir, 'b.out')
    ok(exec(['export', 'b', out], {store: t.store}), 'export b')
    assert.is(await sha256File(out), await sha256File(b))
    fsckClean(t.store)
  } finally {
    t.cleanup()
  }
})

test('fsck finds a corrupt object and a missing one; --repair quarantines; re-import heals', async () => {
  const t = tmpStore()
  try {
    const a = path.join(t.dir, 'a.raw')
    await makeImage(a, [{kind: 'random', size: M, seed: 'fs'}])
    ok(exec(['import', a, 'a', '--chunk-size', '256K'], {store: t.store}), 'import')
    const objs = (await listFiles(path.join(t.store, 'objects'))).map((f) => path.join(t.store, 'objects', f))
    assert.is(objs.length, 4)
    // corrupt one object (objects are read-only files: root can still write)
    await fsp.chmod(objs[0], 0o644)
    const data = readFileSync(objs[0])
    data[100] ^= 0xff
    writeFileSync(objs[0], data)
    await fsp.rm(objs[1])
    const r = exec(['fsck'], {store: t.store})
    assert.is(r.status, 1)
    assert.match(r.stderr, /corrupt-object: object [0-9a-f]{64} is corrupt/)
    assert.match(r.stderr, /missing-chunk: image [0-9a-f]{64} lacks 2 chunk\(s\)/)
    // export refuses to hand out a wrong byte
    const e = exec(['export', 'a', path.join(t.dir, 'bad.raw')], {store: t.store})
    assert.is(e.status, 8)
    assert.match(e.stderr, /corrupt|not in/)
    assert.not.ok(await fsp.stat(path.join(t.dir, 'bad.raw')).catch(() => false), 'no partial export left')
    const rep = exec(['fsck', '--repair', '--json'], {store: t.store})
    assert.is(rep.status, 1)
    const j = JSON.parse(rep.stdout)
    assert.ok(j.problems.find((p) => p.kind === 'corrupt-object').repaired.startsWith('moved to quarantine/'))
    ok(exec(['import', a, 'a', '--chunk-size', '256K'], {store: t.store}), 're-import')
    fsckClean(t.store)
    const out = path.join(t.dir, 'ok.raw')
    ok(exec(['export', 'a', out], {store: t.store}), 'export')
    assert.is(await sha256File(out), await sha256File(a))
  } finally {
    t.cleanup()
  }
})

test('fsck --repair leaves an image of a newer format (and its ref) alone, and moves aside what is not a file where an object should be and refs with invalid names', async () => {
  const t = tmpStore()
  try {
    const a = path.join(t.dir, 'a.raw')
    await makeImage(a, [{kind: 'random', size: M, seed: 'fsck-newer'}])
    ok(exec(['import', a, 'a:1', '--chunk-size', '256K'], {store: t.store}), 'import')
    // a whole manifest of format 2, with a field format 1 does not know, and a ref to it
    const bytes = Buffer.from(JSON.stringify({version: 2, virtualSize: 512, chunkSize: 65536, chunks: [1], layers: []}))
    const id = hash(bytes)
    await fsp.mkdir(path.join(t.store, 'manifests', id.slice(0, 2)), {recursive: true})
    writeFileSync(path.join(t.store, 'manifests', id.slice(0, 2), id.slice(2)), bytes)
    await fsp.mkdir(path.join(t.store, 'refs', 'next'), {recursive: true})
    writeFileSync(path.join(t.store, 'refs', 'next', '2'), id + '\n')
    // a directory where an object should be, and a ref no command can name
    const objs = await listFiles(path.join(t.store, 'objects'))
    const victim = path.join(t.store, 'objects', objs[0])
    await fsp.rm(victim)
    await fsp.mkdir(victim)
    await fsp.mkdir(path.join(t.store, 'refs', 'bad name'), {recursive: true})
    writeFileSync(path.join(t.store, 'refs', 'bad name', 'x'), readFileSync(path.join(t.store, 'refs', 'a', '1')))

    const r = exec(['fsck', '--repair', '--json'], {store: t.store})
    assert.is(r.status, 1, r.stderr)
    assert.is(r.stderr, '', 'with --json the problems are in the document only')
    const kinds = Object.fromEntries(JSON.parse(r.stdout).problems.map((p) => [p.kind, p]))
    assert.match(kinds['newer-manifest'].message, /format version 2 is newer than this vmi reads \(1\); upgrade vmi/)
    assert.is(kinds['newer-manifest'].repaired, undefined)
    assert.not.ok(kinds['dangling-ref'], 'its ref is not dangling')
    assert.match(kinds.unreadable.repaired, /^moved to quarantine\//)
    assert.match(kinds['bad-ref'].repaired, /^moved to quarantine\//)
    // the newer image and its ref stay; the rest is repaired: a re-import stores the chunk again
    assert.is(readFileSync(path.join(t.store, 'refs', 'next', '2'), 'utf8').trim(), id)
    assert.ok(statSync(path.join(t.store, 'manifests', id.slice(0, 2), id.slice(2))).isFile())
    ok(exec(['import', a, 'a:1', '--chunk-size', '256K'], {store: t.store}), 're-import')
    const out = path.join(t.dir, 'out.raw')
    ok(exec(['export', 'a:1', out], {store: t.store}), 'export')
    assert.is(await sha256File(out), await sha256File(a))
    const again = exec(['fsck'], {store: t.store})
    assert.is(again.status, 1)
    assert.equal(again.stderr.trim().split('\n').map((l) => l.split(':')[0]), ['newer-manifest'], 'only the newer image is left to report')
  } finally {
    t.cleanup()
  }
})

test('--created: a time without an offset is UTC (the same id in any time zone), anything not ISO 8601 is refused; -a takes one value each and a key once', async () => {
  const t = tmpStore()
  try {
    const a = path.join(t.dir, 'a.raw')
    await makeImage(a, [{kind: 'random', size: 256 * K, seed: 'created'}])
    const id = (tz, created) => ok(exec(['import', a, '--created', created, '-q'], {store: t.store, env: {TZ: tz}}), `import TZ=${tz} ${created}`).stdout.trim()
    const utc = id('UTC', '2026-01-01T00:00:00Z')
    assert.is(id('America/New_York', '2026-01-01T00:00:00'), utc)
    assert.is(id('Asia/Tokyo', '2026-01-01T09:00:00+09:00'), utc)
    assert.is(id('Asia/Tokyo', '2026-01-01'), utc)
    for (const bad of ['1', 'yesterday', '2026-02-30', '2026-13-01', '2026-01-01 00:00', '2026-01-01T24:00:00Z']) {
      const r = exec(['import', a, '--created', bad], {store: t.store})
      assert.is(r.status, 2, `${bad}: ${r.stderr}`)
      assert.match(r.stderr, /is not an ISO 8601 date or time/)
    }
    const an = ok(exec(['import', '-a', 'k=v', '-a', 'o=p', a, 'ann:1', '-q'], {store: t.store}), '-a before the arguments').stdout.trim()
    assert.equal(JSON.parse(ok(exec(['inspect', an, '--json'], {store: t.store}), 'inspect').stdout).annotations, {k: 'v', o: 'p'})
    const twice = exec(['import', a, 'ann:2', '-a', 'k=v', '-a', 'k=w'], {store: t.store})
    assert.is(twice.status, 2)
    assert.match(twice.stderr, /annotation "k" is given twice/)
    fsckClean(t.store)
  } finally {
    t.cleanup()
  }
})

test('save → load into an empty store carries refs, manifests and chunks', async () => {
  const t = tmpStore()
  const t2 = tmpStore()
  try {
    const a = path.join(t.dir, 'a.raw')
    const b = path.join(t.dir, 'b.raw')
    await makeImage(a, [{kind: 'random', size: M, seed: 'sa'}, {kind: 'zero', size: M}])
    await makeImage(b, [{kind: 'random', size: M, seed: 'sa'}, {kind: 'random', size: M, seed: 'sb'}])
    ok(exec(['import', a, 'a:1', '--chunk-size', '256K'], {store: t.store}), 'import')
    ok(exec(['import', b, 'b:1', '--chunk-size', '256K'], {store: t.store}), 'import')
    const bundle = path.join(t.dir, 'x.tar')
    const s = JSON.parse(ok(exec(['save', 'a:1', 'b:1', '-o', bundle, '--json'], {store: t.store}), 'save').stdout)
    assert.is(s.objects, 8, 'shared chunks travel once')
    const l = JSON.parse(ok(exec(['load', bundle, '--json'], {store: t2.store}), 'load').stdout)
    assert.is(l.newObjects, 8)
    for (const [ref, src] of [['a:1', a], ['b:1', b]]) {
      const out = path.join(t.dir, `${ref.replace(':', '_')}.out`)
      ok(exec(['export', ref, out], {store: t2.store}), 'export')
      assert.is(await sha256File(out), await sha256File(src))
    }
    // through a pipe
    const t3 = tmpStore()
    try {
      const piped = exec(['save', 'b:1', '-o', '-'], {store: t.store})
      assert.is(piped.status, 0, piped.stderr)
      ok(exec(['load', '-'], {store: t3.store, input: piped.stdoutBuf}), 'load -')
      fsckClean(t3.store)
      assert.is(JSON.parse(exec(['ls', '--json'], {store: t3.store}).stdout).images[0].refs[0], 'b:1')
    } finally {
      t3.cleanup()
    }
    fsckClean(t2.store)
  } finally {
    t.cleanup()
    t2.cleanup()
  }
})

test('every command has --help with examples', () => {
  for (const cmd of ['import', 'export', 'ls', 'inspect', 'tag', 'rm', 'log', 'diff', 'gc', 'fsck', 'save', 'load']) {
    const r = exec([cmd, '--help'])
    assert.is(r.status, 0, `${cmd} --help`)
    assert.match(r.stdout, /EXAMPLES/, `${cmd} --help shows examples`)
    assert.match(r.stdout, /--json/, `${cmd} --help shows --json`)
  }
})

test('errors go to stderr with a stable code under --json, nothing on stdout', () => {
  const t = tmpStore()
  try {
    const r = exec(['inspect', 'nothere:1', '--json'], {store: t.store})
    assert.is(r.status, 3)
    assert.is(r.stdout, '')
    const e = JSON.parse(r.stderr.trim().split('\n').pop())
    assert.is(e.error.code, 'VMI_REF_NOT_FOUND')
    const u = exec(['import'], {store: t.store})
    assert.is(u.status, 2)
    assert.match(u.stderr, /Missing 1 required arg/)
  } finally {
    t.cleanup()
  }
})

test.run()
