import {test} from 'uvu'
import * as assert from 'uvu/assert'
import fs from 'node:fs'
import path from 'node:path'
import {encodeManifest, expandChunks} from '../../dist/store/manifest.js'
import {ManifestWriter} from '../../dist/store/manifest-stream.js'
import {manifestFileEntries, verifyManifestFile} from '../../dist/store/manifest-scan.js'
import {hash} from '../../dist/store/hash.js'
import {seededBytes, tmpDir} from '../helpers/index.js'

const CS = 65536

/** A deterministic random per-chunk list (null = zero chunk) with runs and repeats. */
function randomChunks(seed, n) {
  const r = seededBytes(`chunks-${seed}`, n * 2)
  const ids = []
  for (let i = 0; i < n; i++) {
    const v = r[i * 2]
    if (v < 90) ids.push(null)
    else if (v < 120 && i > 0) ids.push(ids[Math.floor((r[i * 2 + 1] / 256) * i)])
    else ids.push(hash(Buffer.from(`${seed}-${i}`)))
  }
  return ids
}

function writeWithWriter(dir, ids, head) {
  const w = new ManifestWriter(path.join(dir, `spill-${Math.random()}`))
  for (const id of ids) w.push(id)
  const out = path.join(dir, `m-${Math.random()}`)
  const r = w.finish(head, out)
  return {...r, file: out, count: w.count}
}

async function entriesOf(file) {
  const out = []
  for await (const batch of manifestFileEntries(file)) out.push(...batch)
  return out
}

test('ManifestWriter writes exactly the canonical bytes encodeManifest does, and the scanner reads them back', async () => {
  const t = tmpDir()
  try {
    const cases = [1, 2, 7, 300, 5000, 40000]
    for (const [k, n] of cases.entries()) {
      const ids = randomChunks(k, n)
      if (k === 0) ids[0] = null // a single zero chunk
      const head = {
        version: 1,
        virtualSize: n * CS - (k % 2 ? 512 : 0),
        chunkSize: CS,
        sourceFormat: 'raw',
        created: '2026-11-25T00:00:00.000Z',
        ...(k % 2 ? {parent: hash(Buffer.from('p'))} : {}),
        ...(k === 3 ? {annotations: {'build.commit': 'abc', note: 'päckchen ✓ "quoted"'}} : {}),
      }
      const w = writeWithWriter(t.dir, ids, head)
      // the in-memory encoder over the same list
      const chunks = []
      for (const id of ids) {
        if (id === null && typeof chunks[chunks.length - 1] === 'number') chunks[chunks.length - 1]++
        else chunks.push(id === null ? 1 : id)
      }
      const {bytes, id} = encodeManifest({...head, chunks})
      assert.ok(fs.readFileSync(w.file).equals(bytes), `n=${n}: same bytes`)
      assert.is(w.id, id, `n=${n}: same id`)
      assert.is(w.size, bytes.length)
      assert.is(w.count, n)
      const v = await verifyManifestFile(w.file, id)
      assert.equal(v.head, head)
      assert.is(v.nonZero, ids.filter((x) => x !== null).length)
      assert.equal(expandChunks({chunks: await entriesOf(w.file)}), ids, `n=${n}: entries read back`)
    }
  } finally {
    t.cleanup()
  }
})

test('verifyManifestFile refuses wrong ids, non-canonical text, bad entries and wrong counts', async () => {
  const t = tmpDir()
  try {
    const ids = randomChunks('v', 50)
    const head = {version: 1, virtualSize: 50 * CS, chunkSize: CS, sourceFormat: 'raw', created: '2026-11-25T00:00:00.000Z'}
    const w = writeWithWriter(t.dir, ids, head)
    const good = fs.readFileSync(w.file, 'latin1')
    const refuse = async (text, re, why) => {
      const f = path.join(t.dir, `bad-${Math.random()}`)
      fs.writeFileSync(f, text, 'latin1')
      const id = hash(Buffer.from(text, 'latin1'))
      let err
      try {
        await verifyManifestFile(f, id)
      } catch (e) {
        err = e
      }
      assert.ok(err, `${why}: refused`)
      assert.is(err.name, 'BadManifestError', why)
      assert.match(err.message, re, why)
    }
    let err
    try {
      await verifyManifestFile(w.file, hash(Buffer.from('other')))
    } catch (e) {
      err = e
    }
    assert.match(err?.message ?? '', /does not match its id/)
    await refuse(good.replace('"chunks":[', '"chunks": ['), /no chunk list|not valid JSON|canonical/, 'space before the list')
    await refuse(good.replace('],"created"', '] ,"created"'), /canonical|not valid JSON/, 'space after the list')
    const firstId = ids.find((x) => x !== null)
    await refuse(good.replace(`"${firstId}"`, `"${firstId.toUpperCase()}"`), /not 64 lowercase hex/, 'upper-case id')
    await refuse(good.replace(`"${firstId}"`, `"${firstId}",007`), /neither an id|cover/, 'leading zeros')
    await refuse(good.replace(`"${firstId}"`, `"${firstId}",1,1`), /two zero runs|cover/, 'two runs')
    await refuse(good.replace(`"virtualSize":${50 * CS}`, `"virtualSize":${51 * CS}`), /cover 50 chunks/, 'count does not match the size')
    await refuse(good.slice(0, good.length / 2), /not terminated/, 'truncated')
    await refuse(good.replace('"chunks":[', '"chunks":[' + '9'.repeat(70) + ','), /malformed|neither/, 'endless number')
    await refuse(good.replace('"chunks":[', '"chunks":[,'), /empty chunk entry/, 'a comma before the first entry')
    await refuse(good.replace(`"${firstId}"`, `"${firstId}",`), /empty chunk entry/, 'two commas')
    await refuse(good.replace(/\]/, ',]'), /trailing comma/, 'trailing comma')
    await refuse(good.replace(`"${firstId}"`, `"${firstId.slice(1)}"`), /not 64 lowercase hex/, 'short id')
    await refuse(good.replace(`"${firstId}"`, `"${firstId}0"`), /malformed chunk entry/, 'long id')
  } finally {
    t.cleanup()
  }
})

test('manifests read a block (1 MiB) at a time: the list key and every position of an entry may straddle two blocks', async () => {
  const t = tmpDir()
  try {
    const BLOCK = 1 << 20
    const ids = randomChunks('straddle', 3000)
    const filler = {}
    for (let i = 0; i < 15; i++) filler[`f${i}`] = 'x'.repeat(65536)
    const headFor = (extra) => ({
      version: 1,
      virtualSize: ids.length * CS,
      chunkSize: CS,
      sourceFormat: 'raw',
      created: '2026-11-25T00:00:00.000Z',
      annotations: {...filler, pad: 'y'.repeat(extra + 1)},
    })
    // where the list starts with the shortest pad
    const probe = writeWithWriter(t.dir, ids, headFor(0))
    const start0 = fs.readFileSync(probe.file).indexOf('"chunks":[') + '"chunks":['.length
    assert.ok(start0 < BLOCK - 400, 'the list starts in the first block')
    // the key cut at each of its bytes, then the block boundary at each byte of a few entries
    const listStarts = []
    for (let k = 1; k < '"chunks":['.length; k++) listStarts.push(BLOCK + '"chunks":['.length - k)
    for (let j = 0; j <= 140; j++) listStarts.push(BLOCK - j)
    const want = expandChunks({chunks: await entriesOf(probe.file)})
    assert.equal(want, ids)
    for (const start of listStarts) {
      const w = writeWithWriter(t.dir, ids, headFor(start - start0))
      const bytes = fs.readFileSync(w.file)
      assert.is(bytes.indexOf('"chunks":[') + '"chunks":['.length, start, 'layout as planned')
      const v = await verifyManifestFile(w.file, w.id)
      assert.is(v.nonZero, ids.filter((x) => x !== null).length, `list at ${start}: verified`)
      let batches = 0
      const got = []
      for await (const batch of manifestFileEntries(w.file)) {
        assert.ok(batch.length > 0 && batch.length <= 32, 'small batches')
        batches++
        got.push(...batch)
      }
      assert.ok(batches >= Math.ceil(got.length / 32))
      assert.equal(expandChunks({chunks: got}), ids, `list at ${start}: entries read back`)
      fs.rmSync(w.file)
    }
  } finally {
    t.cleanup()
  }
})

test('ManifestWriter keeps no per-chunk memory: a million entries', async () => {
  const t = tmpDir()
  try {
    const before = process.memoryUsage().heapUsed
    const w = new ManifestWriter(path.join(t.dir, 'spill'))
    const id = hash(Buffer.from('x'))
    for (let i = 0; i < 1_000_000; i++) w.push(i % 3 === 0 ? null : id)
    const grown = process.memoryUsage().heapUsed - before
    assert.ok(grown < 32 << 20, `heap grew ${grown} bytes for 1M entries`)
    const r = w.finish({version: 1, virtualSize: 1_000_000 * CS, chunkSize: CS, sourceFormat: 'raw', created: '2026-11-25T00:00:00.000Z'}, path.join(t.dir, 'm'))
    const v = await verifyManifestFile(path.join(t.dir, 'm'), r.id)
    assert.is(v.nonZero, 666_666)
    assert.not.ok(fs.existsSync(path.join(t.dir, 'spill')), 'spill file removed')
  } finally {
    t.cleanup()
  }
})

test.run()
