// Fetch-through relays the upstream's body as it arrives (PROTOCOL.md "Relaying
// as it arrives"): the real vmi serve as a child process, in front of a fake
// upstream on 127.0.0.1 that sends a chunk in two halves when told, or of a
// real vmi serve seed; real HTTP clients.
import {test} from 'uvu'
import * as assert from 'uvu/assert'
import {randomBytes} from 'node:crypto'
import {existsSync, readFileSync} from 'node:fs'
import http from 'node:http'
import path from 'node:path'
import {fsckClean, textBytes, tmpDir} from '../helpers/index.js'
import {until} from '../helpers/crash.js'
import {metricSum, startServe} from '../helpers/serve.js'
import {hash} from '../../dist/store/hash.js'
import {LocalStore} from '../../dist/store/local-store.js'
import {decodeObject} from '../../dist/store/object-encoding.js'

const K = 1024
const objPath = (id) => `/objects/${id.slice(0, 2)}/${id.slice(2)}`
const ZSTD_MAGIC = Buffer.from([0x28, 0xb5, 0x2f, 0xfd])

/** A GET with fetch-through: {received() → bytes so far, answer: Promise<{status, headers, body, complete}>}; status undefined when cut before any answer. */
function fetchThrough(base, id, headers = {}) {
  const u = new URL(base)
  const parts = []
  let received = 0
  const answer = new Promise((resolve, reject) => {
    const req = http.request({host: u.hostname, port: u.port, path: objPath(id), headers: {'x-vmi-fetch': 'upstream', ...headers}, agent: false}, (res) => {
      const done = () => {
        const body = Buffer.concat(parts)
        resolve({status: res.statusCode, headers: res.headers, body, complete: res.complete && body.length === Number(res.headers['content-length'])})
      }
      res.on('data', (b) => {
        parts.push(b)
        received += b.length
      })
      res.on('end', done)
      res.on('aborted', done)
      res.on('error', done)
    })
    req.on('error', (err) => (err.code === 'ECONNRESET' ? resolve({status: undefined, body: Buffer.concat(parts), complete: false}) : reject(err)))
    req.end()
  })
  return {received: () => received, answer}
}

/**
 * A fake upstream that answers `id` with `body`: its head and first half at
 * once, the rest when release() is called. {url, hits(), release(), close()}.
 */
async function halvingUpstream(id, body) {
  let release
  const released = new Promise((r) => (release = r))
  let hits = 0
  const srv = http.createServer((req, res) => {
    if (req.url !== objPath(id)) {
      res.statusCode = 404
      return res.end()
    }
    hits++
    res.writeHead(200, {'content-length': body.length, 'content-type': 'application/octet-stream'})
    res.write(body.subarray(0, body.length / 2))
    released.then(() => res.end(body.subarray(body.length / 2)))
  })
  await new Promise((r) => srv.listen(0, '127.0.0.1', r))
  return {url: `http://127.0.0.1:${srv.address().port}`, hits: () => hits, release: () => release(), close: () => srv.close()}
}

test('fetch-through relays a chunk as it arrives, to every request joined on it, and sends its last byte once it is verified and stored', async () => {
  const chunk = randomBytes(256 * K)
  const id = hash(chunk)
  const up = await halvingUpstream(id, chunk)
  const t = tmpDir()
  const store = path.join(t.dir, 'store')
  const owner = await startServe(store, ['--seed', up.url])
  try {
    const first = fetchThrough(owner.url, id)
    // the first half reaches the client while the upstream holds the second back
    assert.ok(await until(() => first.received() >= chunk.length / 2, {timeoutMs: 15_000}), `received ${first.received()} of the first ${chunk.length / 2} bytes while the upstream held the rest back`)
    assert.not.ok(existsSync(path.join(store, objPath(id))), 'not stored before it is whole')
    // a request joining now gets the same relay, from its start
    const second = fetchThrough(owner.url, id)
    assert.ok(await until(() => second.received() >= chunk.length / 2, {timeoutMs: 15_000}), 'a joining request gets what has arrived')
    assert.ok(first.received() < chunk.length && second.received() < chunk.length)
    up.release()
    for (const r of [await first.answer, await second.answer]) {
      assert.is(r.status, 200)
      assert.ok(r.complete, 'the whole answer')
      assert.ok(r.body.equals(chunk), 'the right bytes')
      assert.is(r.headers.etag, `"${id}"`)
    }
    assert.is(up.hits(), 1, 'the upstream sent it once')
    assert.ok(readFileSync(path.join(store, objPath(id))).equals(chunk), 'stored')
    const m = await owner.metrics()
    assert.is(metricSum(m, 'vmi_fetch_through_relays_total', {outcome: 'completed'}), 2)
    assert.is(metricSum(m, 'vmi_fetch_through_relays_total', {outcome: 'cut'}), 0)
    assert.is(metricSum(m, 'vmi_served_bytes_total', {kind: 'objects'}), 2 * chunk.length)
  } finally {
    assert.is((await owner.stop()).code, 0)
    up.close()
  }
  fsckClean(store)
  t.cleanup()
})

test('a relay of bytes that do not hash to the id is cut before its last byte; nothing is stored', async () => {
  const bad = randomBytes(256 * K)
  const id = hash(randomBytes(32)) // the upstream answers this id with `bad`
  const up = await halvingUpstream(id, bad)
  const t = tmpDir()
  const store = path.join(t.dir, 'store')
  const owner = await startServe(store, ['--seed', up.url])
  try {
    const q = fetchThrough(owner.url, id)
    assert.ok(await until(() => q.received() >= bad.length / 2, {timeoutMs: 15_000}), 'relayed as it arrived')
    up.release()
    const r = await q.answer
    assert.is(r.status, 200)
    assert.not.ok(r.complete, 'cut')
    assert.ok(r.body.length < bad.length, `got ${r.body.length} of ${bad.length} bytes`)
    assert.not.ok(existsSync(path.join(store, objPath(id))), 'nothing stored')
    const m = await owner.metrics()
    assert.is(metricSum(m, 'vmi_fetch_through_relays_total', {outcome: 'cut'}), 1)
    assert.is(metricSum(m, 'vmi_verification_failures_total', {source: 'seed'}), 1)
    assert.match(owner.stderr(), /fetch-through of [0-9a-f]{64} failed: seed .* sent wrong bytes/)
  } finally {
    assert.is((await owner.stop()).code, 0)
    up.close()
  }
  fsckClean(store)
  t.cleanup()
})

test('what is relayed is what the server would send once whole: frames to clients that read them, raw chunks raw when the seed says they do not compress', async () => {
  const t = tmpDir()
  const seedStore = await LocalStore.open(path.join(t.dir, 'seed'))
  const random = randomBytes(128 * K) // does not compress
  const text = textBytes(7, 128 * K) // compresses
  const text2 = textBytes(8, 128 * K)
  const ids = {random: hash(random), text: hash(text), text2: hash(text2)}
  for (const [data, id] of [[random, ids.random], [text, ids.text], [text2, ids.text2]]) await seedStore.putObject(id, data)
  // every client compressed for, as across a link
  const seed = await startServe(seedStore.root, ['--compress-sends', 'always'])
  const ownerStore = path.join(t.dir, 'owner')
  const owner = await startServe(ownerStore, ['--seed', seed.url, '--compress-sends', 'always'])
  const frames = {'x-vmi-encodings': 'zstd'}
  try {
    // a chunk that does not compress: the seed says so, and the owner relays it raw, saying so too
    const r1 = await fetchThrough(owner.url, ids.random, frames).answer
    assert.is(r1.status, 200)
    assert.ok(r1.body.equals(random))
    assert.is(r1.headers['x-vmi-compressible'], 'no')
    // a chunk that compresses comes from the seed as a frame, relayed as it is to a client that reads frames
    const r2 = await fetchThrough(owner.url, ids.text, frames).answer
    assert.is(r2.status, 200)
    assert.ok(r2.body.subarray(0, 4).equals(ZSTD_MAGIC), 'a frame')
    assert.ok(decodeObject(r2.body).equals(text), 'that decodes to the chunk')
    assert.is(r2.headers['x-vmi-compressible'], undefined)
    let m = await owner.metrics()
    assert.is(metricSum(m, 'vmi_fetch_through_relays_total', {outcome: 'completed'}), 2)
    // a client that does not read frames gets the chunk decoded, which waits for the whole frame: not relayed
    const r3 = await fetchThrough(owner.url, ids.text2).answer
    assert.is(r3.status, 200)
    assert.ok(r3.body.equals(text2))
    m = await owner.metrics()
    assert.is(metricSum(m, 'vmi_fetch_through_relays_total', {outcome: 'completed'}), 2, 'not relayed')
    // the seed itself says the random chunk does not compress, once it has tried
    const direct = await new Promise((resolve, reject) =>
      http.get(`${seed.url}${objPath(ids.random)}`, {headers: frames}, (res) => (res.resume(), res.on('end', () => resolve(res.headers)))).on('error', reject),
    )
    assert.is(direct['x-vmi-compressible'], 'no')
  } finally {
    assert.is((await owner.stop()).code, 0)
    assert.is((await seed.stop()).code, 0)
  }
  fsckClean(ownerStore)
  t.cleanup()
})

test('raw bytes from an upstream that does not say they do not compress are not relayed to a client the server compresses for', async () => {
  const chunk = textBytes(9, 256 * K)
  const id = hash(chunk)
  const up = await halvingUpstream(id, chunk)
  const t = tmpDir()
  const store = path.join(t.dir, 'store')
  const owner = await startServe(store, ['--seed', up.url, '--compress-sends', 'always'])
  try {
    const q = fetchThrough(owner.url, id, {'x-vmi-encodings': 'zstd'})
    // nothing goes out while the chunk is not whole: it may compress
    await new Promise((r) => setTimeout(r, 500))
    assert.is(q.received(), 0, 'nothing relayed')
    up.release()
    const r = await q.answer
    assert.is(r.status, 200)
    assert.ok(r.body.subarray(0, 4).equals(ZSTD_MAGIC), 'compressed by the owner, as before relaying existed')
    assert.is(metricSum(await owner.metrics(), 'vmi_fetch_through_relays_total'), 0)
  } finally {
    assert.is((await owner.stop()).code, 0)
    up.close()
  }
  fsckClean(store)
  t.cleanup()
})

test.run()
