// HttpStore's small GETs (refs, manifests, profiles) go through the narrow
// pipelined client first and fall back to the general client (http-client.ts) for anything else: redirects,
// compressed bodies, oversize answers, error statuses. Scripted server on
// 127.0.0.1 (port 0); each case counts what the server saw.
import {test} from 'uvu'
import * as assert from 'uvu/assert'
import http from 'node:http'
import {gzipSync} from 'node:zlib'
import {randomBytes} from 'node:crypto'
import {HttpStore} from '../../dist/peer/http-store.js'
import {hash} from '../../dist/store/hash.js'
import {RemoteError, RemoteIntegrityError} from '../../dist/errors.js'

const manifest = Buffer.from(JSON.stringify({version: 1, note: randomBytes(8).toString('hex')}))
const mid = hash(manifest)
const gzManifest = Buffer.from(JSON.stringify({version: 1, gz: true}))
const gzId = hash(gzManifest)
const refId = hash(Buffer.from('target'))
const mpath = (id) => `/manifests/${id.slice(0, 2)}/${id.slice(2)}`

function startServer() {
  const seen = []
  let flaky = 0
  const srv = http.createServer((req, res) => {
    seen.push(req.url)
    const send = (status, body, headers = {}) => {
      res.writeHead(status, {'content-length': body.length, ...headers})
      res.end(body)
    }
    if (req.url === '/refs/plain/v1') return send(200, Buffer.from(refId + '\n'))
    if (req.url === '/refs/moved/v1') return send(302, Buffer.alloc(0), {location: '/elsewhere/refs/moved/v1'})
    if (req.url === '/elsewhere/refs/moved/v1') return send(200, Buffer.from(refId))
    if (req.url === '/refs/huge/v1') return send(200, Buffer.alloc(5000, 0x61))
    if (req.url === '/refs/junk/v1') return send(200, Buffer.from('not an id'))
    if (req.url === '/refs/flaky/v1') return ++flaky === 1 ? send(503, Buffer.from('busy')) : send(200, Buffer.from(refId))
    if (req.url === mpath(mid)) return send(200, manifest)
    if (req.url === mpath(gzId)) return send(200, gzipSync(gzManifest), {'content-encoding': 'gzip'})
    send(404, Buffer.from('no'))
  })
  return new Promise((resolve) =>
    srv.listen(0, '127.0.0.1', () => resolve({url: `http://127.0.0.1:${srv.address().port}`, seen, close: () => new Promise((r) => srv.close(r))})),
  )
}

test('a plain answer takes one request; redirects, gzip, 5xx go on through the general client; 404 is missing; oversize and junk are refused', async () => {
  const s = await startServer()
  try {
    const store = new HttpStore(s.url, {retry: {retries: 2, baseMs: 10, maxMs: 20}})
    assert.is(await store.getRef('plain', 'v1'), refId)
    assert.equal(s.seen.splice(0), ['/refs/plain/v1'], 'answered by the quick path alone')
    assert.ok((await store.getManifestBytes(mid)).equals(manifest))
    assert.equal(s.seen.splice(0), [mpath(mid)])
    assert.is(await store.getRef('absent', 'v1'), undefined)
    assert.equal(s.seen.splice(0), ['/refs/absent/v1'], '404: missing, not asked again')
    // a redirect: the quick path gives up, the general client follows it
    assert.is(await store.getRef('moved', 'v1'), refId)
    assert.equal(s.seen.splice(0), ['/refs/moved/v1', '/refs/moved/v1', '/elsewhere/refs/moved/v1'])
    // a compressed body: the general client decodes it, and the bytes are verified against the id
    assert.ok((await store.getManifestBytes(gzId)).equals(gzManifest))
    assert.is(s.seen.splice(0).length, 2)
    // a 503 first: the retry through the general client gets the answer
    assert.is(await store.getRef('flaky', 'v1'), refId)
    // more than a ref may hold: refused, not truncated
    const e1 = await store.getRef('huge', 'v1').catch((e) => e)
    assert.instance(e1, RemoteIntegrityError)
    assert.match(e1.message, /more than 1024 bytes/)
    const e2 = await store.getRef('junk', 'v1').catch((e) => e)
    assert.instance(e2, RemoteError)
    assert.match(e2.message, /not an id/)
    // wrong bytes for a manifest id
    const wrong = hash(Buffer.from('other'))
    assert.is(await store.getManifestBytes(wrong), undefined, 'absent: 404')
  } finally {
    await s.close()
  }
})

test('a seed that is down: the same connection error as before, after the quick attempt', async () => {
  const s = await startServer()
  const url = s.url
  await s.close()
  const store = new HttpStore(url, {retry: {retries: 1, baseMs: 10, maxMs: 20}, connectTimeoutMs: 500})
  const err = await store.getRef('plain', 'v1').catch((e) => e)
  assert.instance(err, RemoteError)
  assert.match(err.message, /ECONNREFUSED/)
})

test.run()
