// The circuit breaker in front of a remote source: closed → open when the
// source cannot be reached (at once) or breaks part-way three times in a row,
// requests failing at once while it is open, background probes that back off
// up to a bound, and closed again when the source answers. Against a real
// HTTP server on 127.0.0.1 that is stopped and restarted on its port.
import {test} from 'uvu'
import * as assert from 'uvu/assert'
import {randomBytes} from 'node:crypto'
import {mkdtempSync, rmSync} from 'node:fs'
import http from 'node:http'
import os from 'node:os'
import path from 'node:path'
import {HttpStore} from '../../dist/peer/http-store.js'
import {guardRemote} from '../../dist/peer/circuit-breaker.js'
import {buildChain} from '../../dist/peer/factory.js'
import {LocalStore} from '../../dist/store/local-store.js'
import {hash} from '../../dist/store/hash.js'
import {RemoteError, RemoteIntegrityError, SourceDownError} from '../../dist/errors.js'
import {haveBlackhole, PYTHON, startBlackhole} from '../helpers/blackhole.js'
import {skip} from '../helpers/index.js'

const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

async function until(cond, what, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(10)
  }
}

async function rejects(promise) {
  try {
    await promise
  } catch (err) {
    return err
  }
  assert.unreachable('the request should have failed')
}

/** Milliseconds `fn` takes. */
async function timed(fn) {
  const t = performance.now()
  const value = await fn()
  return {value, ms: performance.now() - t}
}

const chunk = (n) => {
  const data = randomBytes(4096 + n)
  return {id: hash(data), data}
}

/**
 * A store over HTTP whose behaviour a test sets: 'ok' serves its chunks
 * (404 for others), '500' answers 500, 'reset' drops the connection, 'stall'
 * never answers, 'lie' sends wrong bytes. stop() and start() keep the port.
 */
async function chunkServer(chunks = []) {
  const byPath = new Map(chunks.map((c) => [`/objects/${c.id.slice(0, 2)}/${c.id.slice(2)}`, c.data]))
  const s = {mode: 'ok', seen: [], port: 0, url: ''}
  const sockets = new Set()
  let server
  s.start = async (port = s.port) => {
    server = http.createServer((req, res) => {
      s.seen.push(`${req.method} ${req.url}`)
      if (s.mode === 'stall') return
      if (s.mode === 'reset') return req.socket.destroy()
      if (s.mode === '500') return res.writeHead(500, {'content-length': 4}).end('boom')
      // a peer whose upstream is down: its fetch-throughs fail, plain GETs of what it lacks are 404
      if (s.mode === 'upstream-down' && req.headers['x-vmi-fetch']) return res.writeHead(502, {'content-length': 14}).end('upstream error')
      const body = byPath.get(req.url)
      if (!body) return res.writeHead(404, {'content-length': 2}).end('no')
      res.writeHead(200, {'content-length': body.length}).end(s.mode === 'lie' ? Buffer.alloc(body.length, 0x41) : body)
    })
    server.on('connection', (c) => {
      sockets.add(c)
      c.on('close', () => sockets.delete(c))
    })
    await new Promise((resolve, reject) => server.once('error', reject).listen(port, '127.0.0.1', resolve))
    s.port = server.address().port
    s.url = `http://127.0.0.1:${s.port}`
    return s
  }
  s.stop = () =>
    new Promise((resolve) => {
      for (const c of sockets) c.destroy()
      server.close(() => resolve())
    })
  return s.start(0)
}

/** The seed's settings in the fetch chain (factory.ts): retries, but none after an unreachable attempt. */
const seedLike = (url, extra = {}) => new HttpStore(url, {kind: 'seed', retry: {retries: 4, baseMs: 200, unreachableRetries: 0}, ...extra})

test('closed → open at the first refused connection; requests then fail at once without connecting; half-open probes; closed when the server is back', async () => {
  const c = chunk(1)
  const srv = await chunkServer([c])
  const changes = []
  const src = guardRemote(seedLike(srv.url), {probeMinMs: 300, probeMaxMs: 600, onChange: (x) => changes.push(x)})
  try {
    assert.ok((await src.get(c.id)).equals(c.data))
    assert.is(src.breaker.state, 'closed')
    assert.is(src.downSince, undefined)

    await srv.stop()
    const first = await timed(() => rejects(src.get(c.id)))
    assert.instance(first.value, RemoteError)
    assert.not.instance(first.value, SourceDownError, 'the first failure is the real one')
    assert.match(first.value.message, /ECONNREFUSED/)
    assert.ok(first.ms < 1000, `a refused connection is not retried for seconds (${first.ms.toFixed(0)} ms)`)
    assert.is(src.breaker.state, 'open')
    assert.ok(src.downSince > 0)
    assert.equal(changes.map((x) => [x.from, x.to, x.reason]), [['closed', 'open', 'ECONNREFUSED']])

    for (const op of [() => src.get(c.id), () => src.has(c.id), () => src.getManifestBytes(c.id), () => src.getRef('a', 'b')]) {
      const r = await timed(() => rejects(op()))
      assert.instance(r.value, SourceDownError)
      assert.match(r.value.message, /is down \(ECONNREFUSED\)/)
      assert.ok(r.ms < 50, `fails at once while open (${r.ms.toFixed(1)} ms)`)
    }

    // a probe finds it still down, then the server comes back on its port
    await until(() => changes.some((x) => x.from === 'half-open' && x.to === 'open'), 'a failed probe')
    await srv.start()
    srv.seen.length = 0
    for (let i = 0; i < 10; i++) assert.instance(await rejects(src.get(c.id)), SourceDownError)
    assert.equal(
      srv.seen.filter((r) => !r.startsWith('HEAD ')),
      [],
      'while open, requests never reach the server (only the probe may)',
    )
    await until(() => src.breaker.state === 'closed', 'the breaker to close')
    assert.ok(srv.seen.includes('HEAD /'), `the probe asked the server: ${srv.seen}`)
    const states = changes.map((x) => `${x.from}>${x.to}`)
    assert.is(states[0], 'closed>open')
    assert.is(states.at(-1), 'half-open>closed')
    assert.ok(states.slice(1, -1).every((s) => s === 'open>half-open' || s === 'half-open>open'), states.join(' '))
    assert.is(src.downSince, undefined)
    assert.ok((await src.get(c.id)).equals(c.data), 'requests go through again')
  } finally {
    src.breaker.close()
    await srv.stop()
  }
})

test('answers keep it closed: 404 is missing, a 500 and wrong bytes are errors of the request, not of the network', async () => {
  const c = chunk(2)
  const srv = await chunkServer([c])
  const changes = []
  const src = guardRemote(new HttpStore(srv.url, {retry: {retries: 1, baseMs: 5, maxMs: 10, unreachableRetries: 0}}), {onChange: (x) => changes.push(x)})
  try {
    assert.is(await src.get(chunk(3).id), undefined)
    srv.mode = '500'
    for (let i = 0; i < 5; i++) assert.is((await rejects(src.get(c.id))).status, 500)
    srv.mode = 'lie'
    for (let i = 0; i < 5; i++) assert.instance(await rejects(src.get(c.id)), RemoteIntegrityError)
    assert.is(src.breaker.state, 'closed')
    assert.equal(changes, [])
    srv.mode = 'ok'
    assert.ok((await src.get(c.id)).equals(c.data))
  } finally {
    src.breaker.close()
    await srv.stop()
  }
})

test('connections that break part-way open it only after three in a row with no answer between', async () => {
  const c = chunk(4)
  const srv = await chunkServer([c])
  const src = guardRemote(new HttpStore(srv.url, {retry: {retries: 0}}), {probeMinMs: 60_000})
  try {
    srv.mode = 'reset'
    for (let i = 0; i < 2; i++) await rejects(src.get(c.id))
    assert.is(src.breaker.state, 'closed')
    srv.mode = 'ok'
    assert.ok(await src.get(c.id), 'an answer clears the count')
    srv.mode = 'reset'
    for (let i = 0; i < 2; i++) await rejects(src.get(c.id))
    assert.is(src.breaker.state, 'closed', 'two in a row are not enough')
    await rejects(src.get(c.id))
    assert.is(src.breaker.state, 'open', 'the third is')
    assert.match(src.breaker.reason, /ECONNRESET|socket hang up/)
  } finally {
    src.breaker.close()
    await srv.stop()
  }
})

test('a source that stays silent (idle timeout) is marked down at its first timeout', async () => {
  const c = chunk(5)
  const srv = await chunkServer([c])
  const src = guardRemote(new HttpStore(srv.url, {idleTimeoutMs: 300, retry: {retries: 3, baseMs: 50, unreachableRetries: 0}}), {probeMinMs: 60_000})
  try {
    srv.mode = 'stall'
    const r = await timed(() => rejects(src.get(c.id)))
    assert.ok(r.ms < 1500, `one timeout, not four (${r.ms.toFixed(0)} ms)`)
    assert.is(src.breaker.state, 'open')
    assert.match(src.breaker.reason, /timed out/)
    assert.is(srv.seen.length, 1, 'not retried')
  } finally {
    src.breaker.close()
    await srv.stop()
  }
})

test('a connection that is never accepted (its SYN dropped) times out once and marks the source down', async () => {
  if (!haveBlackhole()) return skip(`${PYTHON} not installed`)
  const hole = await startBlackhole()
  const src = guardRemote(seedLike(hole.url, {connectTimeoutMs: 300}), {probeMinMs: 60_000})
  try {
    const r = await timed(() => rejects(src.get(chunk(6).id)))
    assert.ok(r.ms >= 250 && r.ms < 1500, `one connect timeout (${r.ms.toFixed(0)} ms)`)
    assert.is(src.breaker.state, 'open')
    assert.match(src.breaker.reason, /timed out/)
    const again = await timed(() => rejects(src.get(chunk(6).id)))
    assert.instance(again.value, SourceDownError)
    assert.ok(again.ms < 50)
  } finally {
    src.breaker.close()
    hole.close()
  }
})

test('probes back off, doubling up to the bound, and close() stops them', async () => {
  const srv = await chunkServer()
  await srv.stop() // a port nobody listens on
  const marks = []
  const src = guardRemote(seedLike(srv.url), {
    probeMinMs: 50,
    probeMaxMs: 400,
    onChange: (x) => marks.push({to: x.to, at: performance.now()}),
  })
  try {
    await rejects(src.get(chunk(7).id))
    await until(() => marks.filter((m) => m.to === 'half-open').length >= 6, 'six probes')
    // wait before each probe: from the breaker opening (again) to the probe
    const waits = []
    for (let i = 1; i < marks.length; i++) if (marks[i].to === 'half-open') waits.push(marks[i].at - marks[i - 1].at)
    assert.ok(waits[0] < 300, `the first probe comes soon: ${waits.map(Math.round)}`)
    for (const w of waits.slice(3, 6)) assert.ok(w >= 290 && w < 1500, `later waits reach the bound and stay there: ${waits.map(Math.round)}`)
    src.breaker.close()
    const n = marks.length
    await sleep(700)
    assert.is(marks.length, n, 'no probe after close()')
  } finally {
    src.breaker.close()
  }
})

test('a chain with its seed down: a chunk only the seed could give fails at once and is reported once; the peer\'s chunks are unaffected; the seed coming back heals it', async () => {
  const onPeer = chunk(8)
  const onlySeed = chunk(9)
  const alsoOnlySeed = chunk(10)
  const peer = await chunkServer([onPeer])
  const seed = await chunkServer([onPeer, onlySeed, alsoOnlySeed])
  const dir = mkdtempSync(path.join(os.tmpdir(), 'vmi-breaker-'))
  const events = []
  let built
  try {
    const store = await LocalStore.open(path.join(dir, 'store'))
    await seed.stop()
    built = await buildChain(store, {seedUrl: seed.url, peers: [peer.url], onEvent: (e) => events.push(e)})
    const {chain} = built
    for (let i = 0; i < 3; i++) {
      const r = await timed(() => rejects(chain.fetch(onlySeed.id, {store: false})))
      assert.instance(r.value, RemoteError)
      assert.ok(r.ms < 1000, `read ${i + 1} of an unavailable chunk failed in ${r.ms.toFixed(0)} ms`)
      assert.match(r.value.message, new RegExp(`${onlySeed.id}.*peer ${peer.url} \\(missing\\).*seed ${seed.url} \\((ECONNREFUSED|down since)`))
    }
    await rejects(chain.fetch(alsoOnlySeed.id, {store: false}))
    const f = await chain.fetch(onPeer.id)
    assert.is(f.source, 'peer')
    assert.ok(f.data.equals(onPeer.data))

    const kinds = events.map((e) => e.type)
    assert.equal(kinds, ['source-down', 'chunk-unavailable'], `one warning that the seed is down, one for the chunk: ${events.map((e) => e.message).join('\n')}`)
    const warn = events[1]
    assert.is(warn.id, onlySeed.id)
    for (const name of [store.name, `peer ${peer.url}`, `seed ${seed.url}`]) assert.ok(warn.message.includes(name), `the warning names ${name}: ${warn.message}`)
    assert.match(events[0].message, new RegExp(`seed ${seed.url} is unreachable \\(ECONNREFUSED\\)`))

    await seed.start()
    await until(() => events.some((e) => e.type === 'source-up'), 'the seed to be found back', 15_000)
    const back = await chain.fetch(onlySeed.id)
    assert.is(back.source, 'seed')
    assert.ok(back.data.equals(onlySeed.data))

    // down again: a new outage, so the next unavailable chunk is reported again (with the count of the ones left unreported)
    await seed.stop()
    await rejects(chain.fetch(alsoOnlySeed.id, {store: false}))
    await rejects(chain.fetch(alsoOnlySeed.id, {store: false}))
    assert.equal(
      events.map((e) => e.type),
      ['source-down', 'chunk-unavailable', 'source-up', 'source-down', 'chunk-unavailable'],
    )
    assert.match(events.at(-1).message, /3 more chunk fetches failed/)
  } finally {
    built?.close()
    await peer.stop()
    await seed.stop().catch(() => {})
    rmSync(dir, {recursive: true, force: true})
  }
})

test('several owner peers whose fetch-throughs fail, the seed down: unavailable chunks are reported once per set of reasons, not once per chunk', async () => {
  const peers = [await chunkServer(), await chunkServer(), await chunkServer()]
  for (const p of peers) p.mode = 'upstream-down'
  const seed = await chunkServer()
  await seed.stop()
  const dir = mkdtempSync(path.join(os.tmpdir(), 'vmi-breaker-'))
  const events = []
  let built
  try {
    const store = await LocalStore.open(path.join(dir, 'store'))
    built = await buildChain(store, {seedUrl: seed.url, peers: peers.map((p) => p.url), onEvent: (e) => events.push(e)})
    const ids = Array.from({length: 30}, (_, i) => chunk(100 + i).id)
    for (const id of ids) {
      const err = await rejects(built.chain.fetch(id, {store: false}))
      // each peer in turn is a chunk's owner (its fetch-through fails), the others say missing
      assert.match(err.message, /HTTP 502/)
    }
    const reports = events.filter((e) => e.type === 'chunk-unavailable')
    assert.ok(reports.length >= 2 && reports.length <= peers.length, `one report per owner peer at most, not per chunk: ${reports.length} for ${ids.length} chunks`)
    assert.equal(events.filter((e) => e.type === 'source-down').map((e) => e.source), [`seed ${seed.url}`])
    assert.equal(events.filter((e) => e.type === 'source-error'), [], 'no per-source warning for chunks that no source gave')
  } finally {
    built?.close()
    for (const p of peers) await p.stop()
    rmSync(dir, {recursive: true, force: true})
  }
})

test.run()
