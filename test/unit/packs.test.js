// Packs on a seed (src/peer/packs.ts, docs/FORMAT.md "Packs"): the index and
// pack-list formats, the planning of ranged reads, and the readers that use
// them — HttpStore over a static directory, BatchedSource (vmi serve's
// upstream) and the pull's bulk path on a writer thread — against a real
// node:http server on 127.0.0.1 that answers byte ranges the way nginx and
// S3 do (206 with exactly the bytes asked), and counts every request.
import {test} from 'uvu'
import * as assert from 'uvu/assert'
import http from 'node:http'
import {randomBytes} from 'node:crypto'
import {mkdtempSync, mkdirSync, writeFileSync, readFileSync, existsSync, rmSync} from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {buildPack, encodePackIndex, parsePackIndex, encodePackList, parsePackList, PackCatalog, packPath, packIndexPath, packListPath} from '../../dist/peer/packs.js'
import {HttpStore} from '../../dist/peer/http-store.js'
import {BatchedSource} from '../../dist/peer/batched-source.js'
import {receiveBulk} from '../../dist/peer/bulk-receive.js'
import {ObjectWriter} from '../../dist/store/object-writer.js'
import {LocalStore} from '../../dist/store/local-store.js'
import {hash} from '../../dist/store/hash.js'
import {RemoteError} from '../../dist/errors.js'

async function rejects(promise, re) {
  try {
    await promise
  } catch (err) {
    assert.match(err.message, re)
    return
  }
  assert.unreachable('expected a rejection')
}

function chunks(n, size = 40_000) {
  const out = []
  for (let i = 0; i < n; i++) {
    const data = randomBytes(size + ((i * 7919) % 20_000))
    out.push({id: hash(data), data})
  }
  return out
}

/** A static directory as a seed: GET with or without Range, 404 when absent; `ignoreRange` answers 200 whole files. */
async function staticSeed(dir, {ignoreRange = false, listDelayMs = 0} = {}) {
  const requests = []
  const server = http.createServer(async (req, res) => {
    const rel = decodeURIComponent(req.url.split('?')[0]).replace(/^\/+/, '')
    requests.push({path: rel, range: req.headers.range})
    if (rel.startsWith('packs/by-manifest/')) await new Promise((r) => setTimeout(r, listDelayMs))
    const file = path.join(dir, rel)
    if (!existsSync(file) || rel.includes('..')) return res.writeHead(404, {'content-length': 0}).end()
    const body = readFileSync(file)
    const m = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? '')
    if (m && !ignoreRange) {
      const a = Number(m[1])
      const b = Math.min(Number(m[2]), body.length - 1)
      if (a >= body.length) return res.writeHead(416, {'content-length': 0}).end()
      const part = body.subarray(a, b + 1)
      return res.writeHead(206, {'content-length': part.length, 'content-range': `bytes ${a}-${b}/${body.length}`}).end(part)
    }
    res.writeHead(200, {'content-length': body.length}).end(body)
  })
  await new Promise((r) => server.listen(0, '127.0.0.1', r))
  return {url: `http://127.0.0.1:${server.address().port}/`, requests, close: () => new Promise((r) => server.close(r))}
}

/** Write `groups` (arrays of chunks) as packs of a seed directory, and a pack list for manifest `m`. */
function writePacks(dir, m, groups) {
  const packs = []
  for (const g of groups) {
    const p = buildPack(g)
    mkdirSync(path.join(dir, 'packs', 'by-manifest'), {recursive: true})
    writeFileSync(path.join(dir, packPath(p.id)), p.bytes)
    writeFileSync(path.join(dir, packIndexPath(p.id)), encodePackIndex(p.entries))
    packs.push(p)
  }
  writeFileSync(path.join(dir, packListPath(m)), encodePackList(packs.map((p) => p.id)))
  return packs
}

test('a pack index round-trips; one that does not tile its pack, or is not an index, is refused', () => {
  const cs = chunks(5)
  const p = buildPack(cs)
  assert.is(p.id, hash(p.bytes))
  assert.equal(parsePackIndex(encodePackIndex(p.entries), 'x'), p.entries)
  assert.equal(p.entries.map((e) => p.bytes.subarray(e.offset, e.offset + e.length)), cs.map((c) => c.data))
  const lines = encodePackIndex(p.entries).split('\n')
  const gap = [...lines]
  gap[3] = gap[3].replace(/ (\d+) /, (_, o) => ` ${Number(o) + 1} `)
  assert.throws(() => parsePackIndex(gap.join('\n'), 'pack index P'), (e) => e instanceof RemoteError && /starts at/.test(e.message) && /pack index P/.test(e.message))
  assert.throws(() => parsePackIndex(lines.slice(1).join('\n'), 'x'), /first line/)
  assert.throws(() => parsePackIndex(lines[0] + '\nnot an id 0 1\n', 'x'), /ID OFFSET LENGTH/)
  assert.throws(() => parsePackIndex(`${lines[0]}\n${cs[0].id} 0 99999999\n`, 'x'), /over the cap/)
  assert.equal(parsePackList(encodePackList([p.id]), 'x'), [p.id])
  assert.throws(() => parsePackList('vmi-pack-list 1\n../../etc/passwd\n', 'x'), /not a pack id/)
})

test('plan: adjacent objects of one pack join up to the cap; other packs and gaps start a new range; unknown ids stay loose', () => {
  const a = buildPack(chunks(6, 10_000))
  const b = buildPack(chunks(3, 10_000))
  const cat = new PackCatalog()
  cat.add(a.id, a.entries)
  cat.add(b.id, b.entries)
  const loose = chunks(1)[0]
  // asked out of order, with one of a's objects left out (a gap) and one unknown id
  const items = [b.entries[1], a.entries[5], loose, a.entries[0], a.entries[1], a.entries[3], a.entries[4], b.entries[0], b.entries[2]].map((e) => ({id: e.id}))
  const {spans, loose: rest} = cat.plan(items)
  assert.equal(rest, [2])
  // a: [0,1] then (gap at 2) [3,4,5]; b: [0,1,2]
  assert.is(spans.length, 3)
  const total = (s) => s.sizes.reduce((x, y) => x + y, 0)
  for (const s of spans) assert.is(s.length, total(s))
  const key = (ids) => ids.join(',')
  assert.equal(
    spans.map((s) => key(s.members.map((m) => items[m].id))).sort(),
    [[a.entries[0], a.entries[1]], [a.entries[3], a.entries[4], a.entries[5]], [b.entries[0], b.entries[1], b.entries[2]]].map((es) => key(es.map((e) => e.id))).sort(),
  )
  // a cap smaller than two objects: one object per range
  const small = cat.plan(items, 10_000 + 20_000)
  assert.is(small.spans.reduce((n, s) => n + s.members.length, 0), 8)
  for (const s of small.spans) assert.ok(s.length <= 30_000 || s.members.length === 1)
})

test('HttpStore over a static directory with packs: chunks come by range, a pull plans few reads, a lying pack is caught', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'vmi-packs-'))
  const cs = chunks(40)
  const m = hash(Buffer.from('a manifest id'))
  const [p1, p2] = writePacks(dir, m, [cs.slice(0, 25), cs.slice(25)])
  // one object also loose, one only loose
  const extra = chunks(1)[0]
  mkdirSync(path.join(dir, 'objects', extra.id.slice(0, 2)), {recursive: true})
  writeFileSync(path.join(dir, 'objects', extra.id.slice(0, 2), extra.id.slice(2)), extra.data)
  const seed = await staticSeed(dir)
  try {
    const store = new HttpStore(seed.url)
    // before the pack list is read a packed chunk is looked for loose, and is missing there
    assert.is(await store.get(cs[0].id), undefined)
    assert.is(await store.usePacks(m), 2)
    assert.is(await store.usePacks(m), 2)
    assert.is(seed.requests.filter((r) => r.path.startsWith('packs/')).length, 3, 'the list and two indexes, read once')
    seed.requests.length = 0
    for (const c of [cs[3], cs[30]]) assert.ok((await store.get(c.id)).equals(c.data))
    assert.ok(await store.has(cs[7].id))
    assert.ok((await store.get(extra.id)).equals(extra.data))
    assert.equal(
      seed.requests.map((r) => r.path),
      [packPath(p1.id), packPath(p2.id), `objects/${extra.id.slice(0, 2)}/${extra.id.slice(2)}`],
    )
    assert.match(seed.requests[0].range, /^bytes=\d+-\d+$/)
    const plan = store.packPlan([...cs, extra].map((c) => ({id: c.id})))
    assert.equal(plan.loose, [40])
    assert.is(plan.spans.length, 2, 'each pack whole in one range (under the cap)')
    // a pack whose bytes were changed: the object read from it fails verification
    const bytes = readFileSync(path.join(dir, packPath(p1.id)))
    bytes[p1.entries[4].offset + 10] ^= 0xff
    writeFileSync(path.join(dir, packPath(p1.id)), bytes)
    await rejects(store.get(cs[4].id), /wrong bytes for chunk/)
  } finally {
    await seed.close()
    rmSync(dir, {recursive: true, force: true})
  }
})

test('a chunk asked while the pack list is still being read is found in its pack, not reported missing (HttpStore and BatchedSource)', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'vmi-packs-'))
  const cs = chunks(6)
  const m = hash(Buffer.from('a slow list'))
  writePacks(dir, m, [cs])
  const seed = await staticSeed(dir, {listDelayMs: 300})
  try {
    const store = new HttpStore(seed.url)
    const listed = store.usePacks(m)
    // the loose 404 comes back long before the list: the get waits for the list, then reads the range
    assert.ok((await store.get(cs[2].id)).equals(cs[2].data))
    await listed
    const batched = new BatchedSource(new HttpStore(seed.url))
    const listed2 = batched.usePacks(m)
    const got = await Promise.all(cs.map((c) => batched.get(c.id)))
    for (let i = 0; i < cs.length; i++) assert.ok(got[i]?.equals(cs[i].data), `chunk ${i} through BatchedSource`)
    await listed2
  } finally {
    await seed.close()
    rmSync(dir, {recursive: true, force: true})
  }
})

test('a server that ignores Range (200, the whole pack) is an error, not wrong bytes', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'vmi-packs-'))
  const cs = chunks(4)
  const m = hash(Buffer.from('another manifest'))
  writePacks(dir, m, [cs])
  const seed = await staticSeed(dir, {ignoreRange: true})
  try {
    const store = new HttpStore(seed.url, {retry: {retries: 0}})
    await store.usePacks(m)
    await rejects(store.get(cs[1].id), /sent more than \d+ bytes for chunk .* in pack .*does the server ignore Range/)
  } finally {
    await seed.close()
    rmSync(dir, {recursive: true, force: true})
  }
})

test("BatchedSource (vmi serve's upstream): gets of packed chunks leave as ranges, a few requests for many chunks", async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'vmi-packs-'))
  const cs = chunks(60)
  const m = hash(Buffer.from('third manifest'))
  writePacks(dir, m, [cs.slice(0, 30), cs.slice(30)])
  const seed = await staticSeed(dir)
  try {
    const batched = new BatchedSource(new HttpStore(seed.url))
    await batched.usePacks(m)
    seed.requests.length = 0
    const got = await Promise.all(cs.map((c) => batched.get(c.id)))
    for (let i = 0; i < cs.length; i++) assert.ok(got[i].equals(cs[i].data), `chunk ${i}`)
    assert.ok(seed.requests.every((r) => r.path.startsWith('packs/') && r.range), 'every request a range of a pack')
    assert.ok(seed.requests.length <= 4, `${seed.requests.length} requests for 60 chunks`)
    assert.is(batched.stats.fallbacks, 0)
  } finally {
    await seed.close()
    rmSync(dir, {recursive: true, force: true})
  }
})

test('the bulk path on a writer thread: spans are split, each object verified and stored; a bad one is a mismatch of its own', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'vmi-packs-'))
  const storeDir = mkdtempSync(path.join(os.tmpdir(), 'vmi-packs-store-'))
  const cs = chunks(20)
  const m = hash(Buffer.from('fourth manifest'))
  const [p] = writePacks(dir, m, [cs])
  const bytes = readFileSync(path.join(dir, packPath(p.id)))
  bytes[p.entries[7].offset + 3] ^= 1
  writeFileSync(path.join(dir, packPath(p.id)), bytes)
  const seed = await staticSeed(dir)
  const local = await LocalStore.open(storeDir)
  const writer = new ObjectWriter(local.root)
  try {
    const store = new HttpStore(seed.url)
    await store.usePacks(m)
    const items = cs.map((c) => ({id: c.id, path: `objects/${c.id.slice(0, 2)}/${c.id.slice(2)}`, length: c.data.length}))
    const plan = store.packPlan(items)
    seed.requests.length = 0
    const seen = {stored: [], mismatch: [], missing: [], failed: []}
    const end = await receiveBulk(writer, {url: seed.url, items, spans: plan.spans, options: {...store.bulkOptions(false), connections: 1}, probe: false}, (pr) => {
      seen.stored.push(...pr.stored)
      seen.mismatch.push(...pr.mismatch.map(([i]) => i))
      seen.missing.push(...pr.missing)
      seen.failed.push(...pr.failed.map(([i]) => i))
    })
    assert.equal(end.unanswered, [])
    assert.equal(seen.mismatch, [7])
    assert.equal(seen.stored.sort((a, b) => a - b), [...Array(20).keys()].filter((i) => i !== 7))
    assert.is(seed.requests.length, 1, 'one ranged read for the whole pack')
    for (const i of seen.stored) assert.ok((await local.getObject(cs[i].id)).equals(cs[i].data))
    assert.not.ok(await local.hasObject(cs[7].id))
  } finally {
    await writer.close()
    await seed.close()
    rmSync(dir, {recursive: true, force: true})
    rmSync(storeDir, {recursive: true, force: true})
  }
})

test.run()
