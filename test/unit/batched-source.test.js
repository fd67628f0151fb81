// BatchedSource (the fetch-through upstream of `vmi serve --seed`): single
// gets joined into pipelined batches, every body verified, and what a batch
// cannot settle fetched again one by one through HttpStore.get — against a
// real node:http server on 127.0.0.1 that answers each id as scripted.
import {test} from 'uvu'
import * as assert from 'uvu/assert'
import http from 'node:http'
import {randomBytes} from 'node:crypto'
import {BatchedSource} from '../../dist/peer/batched-source.js'
import {HttpStore} from '../../dist/peer/http-store.js'
import {hash} from '../../dist/store/hash.js'
import {RemoteIntegrityError} from '../../dist/errors.js'

function chunks(n) {
  const out = []
  for (let i = 0; i < n; i++) {
    const body = randomBytes(4096 + ((i * 7919) % 60000))
    out.push({id: hash(body), body})
  }
  return out
}

/**
 * A server answering GET /objects/xx/yyy by `script(id, attempt)`:
 * undefined serves the body, or {status}, {body}, {destroy: true}.
 */
async function server(bodies, script = () => undefined) {
  const attempts = new Map()
  const conns = {count: 0}
  const s = http.createServer((req, res) => {
    const m = /^\/objects\/([0-9a-f]{2})\/([0-9a-f]{62})$/.exec(req.url)
    const id = m ? m[1] + m[2] : ''
    const n = (attempts.get(id) ?? 0) + 1
    attempts.set(id, n)
    const a = script(id, n)
    if (a?.destroy) return req.socket.destroy()
    const body = a?.body ?? bodies.get(id)
    if (a?.status || !body) {
      res.writeHead(a?.status ?? 404, {'content-length': '0'}).end()
      return
    }
    res.writeHead(200, {'content-length': String(body.length)}).end(body)
  })
  s.on('connection', () => conns.count++)
  await new Promise((r) => s.listen(0, '127.0.0.1', r))
  return {
    url: `http://127.0.0.1:${s.address().port}`,
    attempts,
    conns,
    close: () => new Promise((r) => s.close(r)),
  }
}

const fastRetry = {retries: 2, baseMs: 5, maxMs: 20}

test('gets made together go out in a few pipelined batches and return verified bytes', async () => {
  const cs = chunks(200)
  const srv = await server(new Map(cs.map((c) => [c.id, c.body])))
  try {
    const src = new BatchedSource(new HttpStore(srv.url, {kind: 'seed', retry: fastRetry}), {maxBatch: 64, maxInFlight: 2})
    const got = await Promise.all(cs.map((c) => src.get(c.id)))
    for (let i = 0; i < cs.length; i++) assert.ok(got[i]?.equals(cs[i].body), `chunk ${i}`)
    // 200 gets: 2 batches leave at once (1 get, then 64), the rest queue behind them
    assert.ok(src.stats.batches <= 6, `${src.stats.batches} batches for 200 gets`)
    assert.is(src.stats.batched, 200)
    assert.is(src.stats.fallbacks, 0)
    assert.ok(srv.conns.count <= src.stats.batches, `one connection a batch at most (${srv.conns.count})`)
    // a lone get is not held back waiting for company
    const t0 = performance.now()
    assert.ok((await src.get(cs[0].id)).equals(cs[0].body))
    assert.ok(performance.now() - t0 < 1000)
  } finally {
    await srv.close()
  }
})

test('404 is missing; wrong bytes are an integrity error, not retried; a 5xx or a reset is fetched again one by one', async () => {
  const cs = chunks(40)
  const bodies = new Map(cs.map((c) => [c.id, c.body]))
  const absent = cs[1].id
  bodies.delete(absent)
  const liar = cs[2].id
  const flaky = cs[3].id
  const reset = cs[4].id
  const srv = await server(bodies, (id, n) => {
    if (id === liar) return {body: Buffer.from('not the chunk')}
    if (id === flaky && n === 1) return {status: 503}
    if (id === reset && n === 1) return {destroy: true}
    return undefined
  })
  try {
    const src = new BatchedSource(new HttpStore(srv.url, {kind: 'seed', retry: fastRetry}), {maxBatch: 64})
    // the reset separately: a server that drops the connection also drops replies it had not flushed yet
    const first = cs.filter((c) => c.id !== reset)
    const results = await Promise.allSettled(first.map((c) => src.get(c.id)))
    assert.is(src.stats.fallbacks, 1, `only the 503 went one by one: ${JSON.stringify(src.stats)}`)
    results.push(...(await Promise.allSettled(cs.filter((c) => c.id === reset).map((c) => src.get(c.id)))))
    cs.splice(0, cs.length, ...first, ...cs.filter((c) => c.id === reset))
    for (let i = 0; i < cs.length; i++) {
      const r = results[i]
      const id = cs[i].id
      if (id === absent) assert.equal(r, {status: 'fulfilled', value: undefined}, 'absent: undefined')
      else if (id === liar) {
        assert.is(r.status, 'rejected')
        assert.instance(r.reason, RemoteIntegrityError)
        assert.match(r.reason.message, /wrong bytes/)
      } else {
        assert.is(r.status, 'fulfilled', `chunk ${i}: ${r.reason?.message}`)
        assert.ok(r.value.equals(cs[i].body), `chunk ${i} bytes`)
      }
    }
    assert.is(srv.attempts.get(liar), 1, 'wrong bytes are not asked again')
    assert.is(srv.attempts.get(flaky), 2, 'the 503 was asked again')
    assert.ok(srv.attempts.get(reset) >= 2, 'the reset one was asked again')
  } finally {
    await srv.close()
  }
})

test('an upstream that is down fails each get with the store error', async () => {
  const srv = await server(new Map())
  const url = srv.url
  await srv.close()
  const src = new BatchedSource(new HttpStore(url, {kind: 'seed', retry: fastRetry, connectTimeoutMs: 500}))
  const [id] = chunks(1).map((c) => c.id)
  const err = await src.get(id).then(
    () => undefined,
    (e) => e,
  )
  assert.ok(err, 'rejected')
  assert.match(err.message, /ECONNREFUSED|failed/)
})

test.run()
