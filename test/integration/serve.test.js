// `vmi serve` end to end: the real CLI as a child process speaking the wire
// protocol (docs/PROTOCOL.md) to raw HTTP requests, a second server fetching
// through from the first, a real nginx over the same store, and an
// in-process server for the slow-client timeouts.
import {test} from 'uvu'
import * as assert from 'uvu/assert'
import {spawnSync} from 'node:child_process'
import {randomBytes} from 'node:crypto'
import {existsSync, readdirSync, readFileSync, readlinkSync, realpathSync, writeFileSync} from 'node:fs'
import http from 'node:http'
import https from 'node:https'
import net from 'node:net'
import path from 'node:path'
import {exec, fsckClean, hasCommand, listFiles, makeImage, sha256File, skip, spawnCli, tmpDir, tmpStore} from '../helpers/index.js'
import {until} from '../helpers/crash.js'
import {startNginx} from '../helpers/nginx.js'
import {metricSum} from '../helpers/serve.js'
import {hash} from '../../dist/store/hash.js'
import {LocalStore} from '../../dist/store/local-store.js'
import {startServer} from '../../dist/peer/server.js'
import {HttpStore} from '../../dist/peer/http-store.js'

const K = 1024
const M = 1024 * 1024
/** One byte more than any object (a 4 MiB chunk, or a zstd frame of one: docs/FORMAT.md "Compressed objects"). */
const OVER_OBJECT = 4 * M + 4096 + 1
const TOKEN = 'push-secret-' + randomBytes(8).toString('hex')
const MARKER = 'CONFIG-MARKER-' + randomBytes(8).toString('hex')
const ID_RE = /^[0-9a-f]{64}$/

const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
const objPath = (id) => `/objects/${id.slice(0, 2)}/${id.slice(2)}`
const manPath = (id) => `/manifests/${id.slice(0, 2)}/${id.slice(2)}`

function ok(r, what) {
  assert.is(r.status, 0, `${what}: exit ${r.status}, stderr ${r.stderr}`)
  return r
}

// servers still running if this process dies early (a crash must not leave them behind)
const children = new Set()
process.on('exit', () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL')
})

/** Start `vmi serve` and learn its URL from the first stdout line. */
async function serve(store, args = [], opts = {}) {
  const child = spawnCli(['serve', '--listen', '127.0.0.1:0', ...args], {store, env: opts.env})
  children.add(child)
  child.once('exit', () => children.delete(child))
  let stdout = ''
  let stderr = ''
  child.stderr.on('data', (b) => (stderr += b))
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({code, signal})))
  const first = await new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`serve did not start: ${stderr}`)), 15_000)
    child.stdout.on('data', (b) => {
      stdout += b
      const nl = stdout.indexOf('\n')
      if (nl >= 0) {
        clearTimeout(t)
        resolve(stdout.slice(0, nl))
      }
    })
    child.once('exit', (code) => {
      clearTimeout(t)
      reject(new Error(`serve exited ${code} before listening: ${stderr}`))
    })
  })
  let url
  if (opts.json) url = JSON.parse(first).url
  else {
    const m = /^listening on (https?:\/\/\S+)$/.exec(first)
    if (!m) throw new Error(`unexpected first line ${JSON.stringify(first)}`)
    url = m[1]
  }
  return {
    url,
    child,
    first,
    exited,
    stderr: () => stderr,
    stdout: () => stdout,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM')
      const t = setTimeout(() => child.kill('SIGKILL'), 15_000)
      const r = await exited
      clearTimeout(t)
      return r
    },
  }
}

/** One HTTP request with the path sent verbatim; resolves {status, headers, body}. */
function request(base, target, {method = 'GET', headers = {}, body, chunks, agent = false, client = http, timeout = 10_000} = {}) {
  const u = new URL(base)
  return new Promise((resolve, reject) => {
    const req = client.request(
      {host: u.hostname, port: u.port, method, path: target, headers, agent, rejectUnauthorized: false, timeout},
      (res) => {
        const parts = []
        res.on('data', (b) => parts.push(b))
        res.on('end', () => resolve({status: res.statusCode, headers: res.headers, body: Buffer.concat(parts)}))
        res.on('error', reject)
      },
    )
    req.on('error', reject)
    req.on('timeout', () => req.destroy(new Error(`timeout on ${method} ${target}`)))
    if (chunks) {
      for (const c of chunks) req.write(c)
      req.end()
    } else req.end(body)
  })
}

/** `connections` sockets that each send `depth` pipelined GETs of `target` at once and never read. */
function pipelineUnread(base, target, connections, depth) {
  const u = new URL(base)
  const text = `GET ${target} HTTP/1.1\r\nHost: x\r\n\r\n`.repeat(depth)
  return Array.from({length: connections}, () => {
    const sock = net.connect({host: u.hostname, port: Number(u.port)}, () => sock.write(text))
    sock.on('error', () => {})
    sock.pause()
    return sock
  })
}

/** Bytes on a raw socket (for targets no HTTP client would send); resolves {status, text}. */
function rawRequest(base, text) {
  const u = new URL(base)
  return new Promise((resolve, reject) => {
    const sock = net.connect({host: u.hostname, port: Number(u.port)})
    const parts = []
    sock.on('data', (b) => parts.push(b))
    sock.on('error', reject)
    sock.on('close', () => {
      const all = Buffer.concat(parts).toString('latin1')
      const m = /^HTTP\/1\.1 (\d{3})/.exec(all)
      resolve({status: m ? Number(m[1]) : 0, text: all})
    })
    sock.setTimeout(10_000, () => sock.destroy())
    sock.write(text)
  })
}

/** The value of one series in a Prometheus text exposition (undefined when absent). */
function metric(text, name, labels = {}) {
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$/.exec(line)
    if (!m || m[1] !== name) continue
    const got = Object.fromEntries([...(m[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]))
    if (Object.entries(labels).every(([k, v]) => got[k] === v) && Object.keys(got).length === Object.keys(labels).length) return Number(m[3])
  }
  return undefined
}

async function metrics(url) {
  const r = await request(url, '/metrics')
  assert.is(r.status, 200)
  return r.body.toString('utf8')
}

// ---------------------------------------------------------------- fixtures

const S = tmpStore() // the served store
const T = tmpStore() // where the image pushed into S is imported first
const E = tmpStore() // empty store of the fetch-through peer
let rw // vmi serve on S, with a push token
let ro // vmi serve on S, read-only, started with --json
let imageId
let objectIds = []
let srcImage

test.before(async () => {
  srcImage = path.join(S.dir, 'src.raw')
  await makeImage(srcImage, [
    {kind: 'random', size: 1 * M, seed: 'serve-a'},
    {kind: 'zero', size: 256 * K},
    {kind: 'repeat', size: 128 * K},
    {kind: 'random', size: 200 * K + 512, seed: 'serve-b'},
  ])
  imageId = ok(exec(['import', srcImage, 'disk:v1', '--chunk-size', '64K', '--quiet'], {store: S.store}), 'import').stdout.trim()
  assert.match(imageId, ID_RE)
  ok(exec(['tag', 'disk:v1', 'disk:latest'], {store: S.store}), 'tag')
  writeFileSync(path.join(S.store, 'config.json'), JSON.stringify({version: 1, marker: MARKER}))
  writeFileSync(path.join(S.dir, 'token'), TOKEN + '\n')
  objectIds = (await listFiles(path.join(S.store, 'objects'))).map((f) => f.replace('/', ''))
  assert.ok(objectIds.length >= 15, `expected a few objects, got ${objectIds.length}`)
  ;[rw, ro] = await Promise.all([
    serve(S.store, ['--push-token-file', path.join(S.dir, 'token'), '--log']),
    serve(S.store, ['--json'], {json: true}),
  ])
})

test.after(async () => {
  await Promise.all([rw?.stop(), ro?.stop()])
  for (const t of [S, T, E]) t.cleanup()
})

// ---------------------------------------------------------------- reads

test('read routes return the store files byte for byte, with ETag and Cache-Control', async () => {
  assert.match(ro.first, /^\{"version":1,"url":"http:\/\/127\.0\.0\.1:\d+"\}$/, '--json prints one JSON line first')
  const files = await listFiles(S.store)
  const served = files.filter((f) => /^(objects|manifests|refs)\//.test(f))
  assert.ok(served.length >= objectIds.length + 3)
  for (const f of served) {
    const bytes = readFileSync(path.join(S.store, f))
    const r = await request(ro.url, '/' + f)
    assert.is(r.status, 200, f)
    assert.ok(r.body.equals(bytes), `${f}: body differs from the file`)
    assert.is(Number(r.headers['content-length']), bytes.length, f)
    const [kind, a, b] = f.split('/')
    if (kind === 'refs') {
      assert.is(r.headers['cache-control'], 'no-cache', f)
      assert.match(r.headers['content-type'], /^text\/plain/)
      assert.is(r.body.toString(), imageId + '\n')
    } else {
      assert.is(r.headers.etag, `"${a}${b}"`, f)
      assert.is(r.headers['cache-control'], 'public, max-age=31536000, immutable', f)
      assert.is(r.headers['content-type'], kind === 'objects' ? 'application/octet-stream' : 'application/json', f)
      assert.is(hash(r.body), a + b, `${f} hashes to its id`)
    }
    const h = await request(ro.url, '/' + f, {method: 'HEAD'})
    assert.is(h.status, 200, `HEAD ${f}`)
    assert.is(h.body.length, 0, `HEAD ${f} has no body`)
    assert.is(Number(h.headers['content-length']), bytes.length, `HEAD ${f} content-length`)
  }
  const absent = hash(Buffer.from('not in the store'))
  for (const p of [objPath(absent), manPath(absent), '/refs/disk/nope', '/refs/nope/v1']) {
    assert.is((await request(ro.url, p)).status, 404, p)
    const h = await request(ro.url, p, {method: 'HEAD'})
    assert.is(h.status, 404, `HEAD ${p}`)
    assert.is(h.body.length, 0)
  }
  const c = await request(ro.url, objPath(objectIds[0]), {headers: {'if-none-match': `"${objectIds[0]}"`}})
  assert.is(c.status, 304)
  assert.is(c.body.length, 0)
})

test('/v1/refs, /healthz, and 405 with Allow for wrong methods', async () => {
  const r = await request(ro.url, '/v1/refs')
  assert.is(r.status, 200)
  assert.match(r.headers['content-type'], /^application\/json/)
  assert.equal(JSON.parse(r.body).refs, [
    {name: 'disk', tag: 'latest', id: imageId},
    {name: 'disk', tag: 'v1', id: imageId},
  ])
  const h = await request(ro.url, '/healthz')
  assert.is(h.status, 200)
  assert.is(h.body.toString().trim(), 'ok')
  for (const [method, p, allow] of [
    ['DELETE', objPath(objectIds[0]), 'GET, HEAD'],
    ['POST', objPath(objectIds[0]), 'GET, HEAD'],
    ['GET', '/v1/objects/missing', 'POST'],
    ['PUT', '/healthz', 'GET, HEAD'],
    ['PATCH', '/v1/refs', 'GET, HEAD'],
  ]) {
    const x = await request(ro.url, p, {method})
    assert.is(x.status, 405, `${method} ${p}`)
    assert.is(x.headers.allow, allow, `${method} ${p} Allow`)
  }
  assert.is((await request(rw.url, objPath(objectIds[0]), {method: 'DELETE'})).headers.allow, 'GET, HEAD, PUT')
})

test('POST /v1/objects/missing answers exactly the absent ids; refuses malformed and oversized batches', async () => {
  const absent = [hash(Buffer.from('x1')), hash(Buffer.from('x2'))]
  const ids = [objectIds[0], absent[0], objectIds[3], absent[1], objectIds[5]]
  const r = await request(ro.url, '/v1/objects/missing', {method: 'POST', headers: {'content-type': 'application/json'}, body: JSON.stringify({ids})})
  assert.is(r.status, 200)
  assert.equal(JSON.parse(r.body), {missing: absent})
  const empty = await request(ro.url, '/v1/objects/missing', {method: 'POST', body: '{"ids":[]}'})
  assert.equal(JSON.parse(empty.body), {missing: []})
  for (const bad of ['not json', '{"ids":"x"}', '{"ids":["../../etc/passwd"]}', JSON.stringify({ids: [objectIds[0].toUpperCase()]})]) {
    const x = await request(ro.url, '/v1/objects/missing', {method: 'POST', body: bad})
    assert.is(x.status, 400, bad)
  }
  const many = Array.from({length: 10_001}, (_, i) => hash(Buffer.from(String(i))))
  assert.is((await request(ro.url, '/v1/objects/missing', {method: 'POST', body: JSON.stringify({ids: many})})).status, 413)
  const limit = await request(ro.url, '/v1/objects/missing', {method: 'POST', body: JSON.stringify({ids: many.slice(0, 10_000)})})
  assert.is(limit.status, 200)
  assert.is(JSON.parse(limit.body).missing.length, 10_000)
  // and the client built for this protocol agrees
  assert.equal(await new HttpStore(ro.url).missing(ids), absent)
})

// ---------------------------------------------------------------- traversal

test('traversal and malformed paths get a 4xx and never any file content', async () => {
  const id = objectIds[0]
  const targets = [
    '/objects/../config.json',
    `/objects/${id.slice(0, 2)}/..%2f..%2fconfig.json`,
    '/objects/ab/%2e%2e%2f%2e%2e%2fconfig.json',
    '/refs/../../etc/passwd',
    '/refs/../config.json',
    '/refs/disk/../../config.json',
    `/objects/${id.slice(0, 2).toUpperCase()}/${id.slice(2)}`,
    `/objects/${id.slice(0, 2)}/${id.slice(2).toUpperCase()}`,
    '/objects/ab/short',
    `/objects/${id.slice(0, 2)}/${id.slice(2)}/`,
    `/objects/${id.slice(0, 2)}/${id.slice(2)}/extra`,
    `/objects/${id}`,
    `/objects/${id.slice(0, 2)}/${id.slice(2)}?x=1`,
    `/objects/${id.slice(0, 2)}/${id.slice(2)}%00`,
    '/objects/ab',
    '/objects/',
    '/objects',
    '/manifests/',
    '/refs/',
    '/refs/disk',
    '/refs/disk/',
    '/refs/disk/v1/x',
    '/refs/.hidden/v1',
    '/refs/-x/v1',
    '/%2e%2e/',
    '/%2e%2e/config.json',
    '/.%2e/config.json',
    '//objects',
    `//objects/${id.slice(0, 2)}/${id.slice(2)}`,
    '//config.json',
    '/./config.json',
    '/objects\\..\\config.json',
    '/config.json',
    '/locks/',
    '/tmp/',
    '/',
    '/v1/',
    '/v1/objects',
    '/v1/refs/../config.json',
    '/healthz/../config.json',
    '/' + 'a'.repeat(5000),
    `/objects/${id.slice(0, 2)}/${'a'.repeat(20_000)}`,
  ]
  for (const target of targets) {
    const r = await rawRequest(ro.url, `GET ${target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`)
    assert.ok(r.status >= 400 && r.status < 500, `${target.slice(0, 80)} → ${r.status}`)
    assert.not.ok(r.text.includes(MARKER), `${target.slice(0, 80)} leaked config.json`)
    assert.not.ok(r.text.includes('root:'), `${target.slice(0, 80)} leaked /etc/passwd`)
    assert.not.match(r.text, /Index of|<a href/i, `${target.slice(0, 80)} listed a directory`)
  }
  // absolute-form targets and garbage request lines
  for (const line of ['GET http://x/config.json HTTP/1.1', 'GET config.json HTTP/1.1', 'GET /objects/../config.json HTTP/1.0']) {
    const r = await rawRequest(ro.url, `${line}\r\nHost: x\r\nConnection: close\r\n\r\n`)
    assert.ok(r.status >= 400 && r.status < 500, `${line} → ${r.status}`)
    assert.not.ok(r.text.includes(MARKER), `${line} leaked config.json`)
  }
  // uppercase and malformed ids are 400 (malformed), not 404 (missing)
  assert.is((await request(ro.url, `/objects/${id.slice(0, 2).toUpperCase()}/${id.slice(2)}`)).status, 400)
  assert.is((await request(ro.url, '/config.json')).status, 404)
  // the server still answers normally afterwards
  assert.is((await request(ro.url, objPath(id))).status, 200)
})

// ---------------------------------------------------------------- writes

test('uploads need the token: 401 without, 403 wrong, 405 on a read-only server; nothing stored', async () => {
  const data = randomBytes(64 * K)
  const id = hash(data)
  const cases = [
    [rw, {}, 401],
    [rw, {authorization: 'Bearer wrong-token'}, 403],
    [rw, {authorization: `Bearer ${TOKEN}x`}, 403],
    [rw, {authorization: `Basic ${Buffer.from('u:' + TOKEN).toString('base64')}`}, 401],
    [ro, {authorization: `Bearer ${TOKEN}`}, 405],
  ]
  for (const [srv, headers, want] of cases) {
    const r = await request(srv.url, objPath(id), {method: 'PUT', headers, body: data})
    assert.is(r.status, want, JSON.stringify(headers))
    if (want === 401) assert.match(r.headers['www-authenticate'] ?? '', /^Bearer/)
    if (want === 405) assert.is(r.headers.allow, 'GET, HEAD')
    assert.not.ok(r.body.includes(TOKEN), 'the token is never echoed')
  }
  for (const p of ['/refs/disk/v1', manPath(imageId)]) {
    assert.is((await request(rw.url, p, {method: 'PUT', body: imageId})).status, 401, p)
    assert.is((await request(ro.url, p, {method: 'PUT', headers: {authorization: `Bearer ${TOKEN}`}, body: imageId})).status, 405, p)
  }
  assert.not.ok(existsSync(path.join(S.store, objPath(id))), 'nothing stored')
})

test('object uploads: 201 new, 200 present, 400 for bytes that do not hash to the id, 413 over 4 MiB + 4 KiB (the largest object)', async () => {
  const auth = {authorization: `Bearer ${TOKEN}`}
  const data = randomBytes(100 * K)
  const id = hash(data)
  const r1 = await request(rw.url, objPath(id), {method: 'PUT', headers: auth, body: data})
  assert.is(r1.status, 201)
  assert.ok(readFileSync(path.join(S.store, objPath(id))).equals(data))
  const r2 = await request(rw.url, objPath(id), {method: 'PUT', headers: auth, body: data})
  assert.is(r2.status, 200)
  // a mismatch stores nothing
  const other = randomBytes(100 * K)
  const claimed = hash(randomBytes(32))
  const bad = await request(rw.url, objPath(claimed), {method: 'PUT', headers: auth, body: other})
  assert.is(bad.status, 400)
  assert.not.ok(existsSync(path.join(S.store, objPath(claimed))))
  assert.not.ok(existsSync(path.join(S.store, objPath(hash(other)))))
  // flip one byte of a valid upload
  const flipped = Buffer.from(data)
  flipped[500] ^= 1
  const id2 = hash(randomBytes(8))
  assert.is((await request(rw.url, objPath(id2), {method: 'PUT', headers: auth, body: flipped})).status, 400)
  // all-zero chunks are never stored (manifests mark them)
  const zeros = Buffer.alloc(64 * K)
  assert.is((await request(rw.url, objPath(hash(zeros)), {method: 'PUT', headers: auth, body: zeros})).status, 400)
  assert.not.ok(existsSync(path.join(S.store, objPath(hash(zeros)))))
  // too large: declared length, and chunked without a length
  const big = randomBytes(OVER_OBJECT)
  const bigId = hash(big)
  const t1 = await request(rw.url, objPath(bigId), {method: 'PUT', headers: auth, body: big})
  assert.is(t1.status, 413)
  const t2 = await request(rw.url, objPath(bigId), {method: 'PUT', headers: auth, chunks: [big.subarray(0, 3 * M), big.subarray(3 * M)]})
  assert.is(t2.status, 413)
  assert.not.ok(existsSync(path.join(S.store, objPath(bigId))))
  // exactly 4 MiB is fine
  const max = randomBytes(4 * M)
  assert.is((await request(rw.url, objPath(hash(max)), {method: 'PUT', headers: auth, chunks: [max.subarray(0, M), max.subarray(M)]})).status, 201)
  // the server is still healthy on a kept-alive connection after refusing a body
  const agent = new http.Agent({keepAlive: true, maxSockets: 1})
  assert.is((await request(rw.url, objPath(bigId), {method: 'PUT', headers: auth, body: big, agent})).status, 413)
  assert.is((await request(rw.url, '/healthz', {agent})).status, 200)
  agent.destroy()
  fsckClean(S.store)
})

test('object batches: each object verified on its own, wrong bytes and all-zero chunks refused and named, the rest stored; bad bodies and tokens refused', async () => {
  const auth = {authorization: `Bearer ${TOKEN}`, 'content-type': 'application/vnd.vmi.object-batch'}
  const frame = (id, data, length = data.length) => {
    const head = Buffer.alloc(36)
    head.write(id, 0, 32, 'hex')
    head.writeUInt32BE(length, 32)
    return Buffer.concat([head, data])
  }
  const batch = (pairs) => Buffer.concat(pairs.map(([id, data]) => frame(id, data)))
  const at = (id) => path.join(S.store, objPath(id))
  const good = [randomBytes(100 * K), randomBytes(3 * K), randomBytes(128 * K)]
  // a lying client: a valid id (another content's) with these bytes
  const lie = randomBytes(50 * K)
  const lieId = hash(randomBytes(32))
  const zeros = Buffer.alloc(64 * K)
  const failuresBefore = metricSum((await request(rw.url, '/metrics')).body.toString(), 'vmi_verification_failures_total', {source: 'upload'})
  const r = await request(rw.url, '/v1/objects/batch', {
    method: 'POST',
    headers: auth,
    body: batch([[hash(good[0]), good[0]], [lieId, lie], [hash(good[1]), good[1]], [hash(zeros), zeros], [hash(good[2]), good[2]]]),
  })
  assert.is(r.status, 200, r.body.toString())
  const a = JSON.parse(r.body)
  assert.is(a.stored, 3)
  assert.is(a.present, 0)
  assert.equal(a.refused.map((x) => x.id).sort(), [lieId, hash(zeros)].sort())
  assert.match(a.refused.find((x) => x.id === lieId).reason, /do not hash to its id/)
  for (const g of good) assert.ok(readFileSync(at(hash(g))).equals(g))
  for (const id of [lieId, hash(lie), hash(zeros)]) assert.not.ok(existsSync(at(id)), `${id} was not stored`)
  assert.is(metricSum((await request(rw.url, '/metrics')).body.toString(), 'vmi_verification_failures_total', {source: 'upload'}), failuresBefore + 1)
  // the same again: all present
  const again = JSON.parse((await request(rw.url, '/v1/objects/batch', {method: 'POST', headers: auth, body: batch(good.map((g) => [hash(g), g]))})).body)
  assert.equal(again, {stored: 0, present: 3, refused: [], encodings: ["zstd"]})
  // malformed bodies are 400: cut inside a frame, a zero-length frame, a frame over 4 MiB + 4 KiB
  const fresh = randomBytes(20 * K)
  const cut = batch([[hash(fresh), fresh]])
  for (const [what, body] of [
    ['cut short', cut.subarray(0, cut.length - 7)],
    ['a zero-length frame', frame(hash(Buffer.alloc(0)), Buffer.alloc(0))],
    ['a frame over 4 MiB + 4 KiB', frame(hash(fresh), fresh, OVER_OBJECT)],
  ]) {
    const b = await request(rw.url, '/v1/objects/batch', {method: 'POST', headers: auth, body})
    assert.is(b.status, 400, what)
    assert.match(b.body.toString(), /malformed object batch/, what)
  }
  assert.not.ok(existsSync(at(hash(fresh))))
  // a body over 64 MiB is 413: declared, or sent without a length (refused once the count passes the limit)
  const max = randomBytes(4 * M)
  const maxFrame = frame(hash(max), max)
  const huge = await request(rw.url, '/v1/objects/batch', {method: 'POST', headers: auth, chunks: Array(17).fill(maxFrame)})
  assert.is(huge.status, 413)
  const declared = await request(rw.url, '/v1/objects/batch', {method: 'POST', headers: {...auth, 'content-length': String(64 * M + 1)}, body: Buffer.alloc(0)}).catch((err) => ({status: err.code}))
  assert.is(declared.status, 413)
  // no token, a wrong token, a read-only server: nothing stored
  const body = batch([[hash(fresh), fresh]])
  assert.is((await request(rw.url, '/v1/objects/batch', {method: 'POST', headers: {'content-type': auth['content-type']}, body})).status, 401)
  assert.is((await request(rw.url, '/v1/objects/batch', {method: 'POST', headers: {...auth, authorization: 'Bearer nope'}, body})).status, 403)
  assert.is((await request(ro.url, '/v1/objects/batch', {method: 'POST', headers: auth, body})).status, 405)
  assert.is((await request(rw.url, '/v1/objects/batch', {method: 'GET', headers: auth})).status, 405)
  assert.not.ok(existsSync(at(hash(fresh))))
  fsckClean(S.store)
})

test('pushing an image: manifest before its chunks is 409, then chunks, manifest, ref; the image exports identically', async () => {
  const auth = {authorization: `Bearer ${TOKEN}`}
  const src = path.join(T.dir, 'pushed.raw')
  await makeImage(src, [{kind: 'random', size: 640 * K, seed: 'pushed'}, {kind: 'zero', size: 128 * K}, {kind: 'random', size: 64 * K, seed: 'p2'}])
  const id = ok(exec(['import', src, 'pushed:v1', '--chunk-size', '64K', '--quiet'], {store: T.store}), 'import').stdout.trim()
  const mbytes = readFileSync(path.join(T.store, manPath(id)))
  const chunks = [...new Set(JSON.parse(mbytes).chunks.filter((c) => typeof c === 'string'))]
  assert.is(chunks.length, 11)
  // ref before the manifest: 409
  assert.is((await request(rw.url, '/refs/pushed/v1', {method: 'PUT', headers: auth, body: id + '\n'})).status, 409)
  // manifest before the chunks: 409 {"missing": n}
  const m1 = await request(rw.url, manPath(id), {method: 'PUT', headers: auth, body: mbytes})
  assert.is(m1.status, 409)
  assert.equal(JSON.parse(m1.body), {missing: chunks.length})
  assert.not.ok(existsSync(path.join(S.store, manPath(id))))
  for (const c of chunks.slice(0, 5)) assert.is((await request(rw.url, objPath(c), {method: 'PUT', headers: auth, body: readFileSync(path.join(T.store, objPath(c)))})).status, 201)
  assert.equal(JSON.parse((await request(rw.url, manPath(id), {method: 'PUT', headers: auth, body: mbytes})).body), {missing: chunks.length - 5})
  for (const c of chunks.slice(5)) assert.is((await request(rw.url, objPath(c), {method: 'PUT', headers: auth, body: readFileSync(path.join(T.store, objPath(c)))})).status, 201)
  // a manifest under the wrong id, or not a manifest at all: 400
  assert.is((await request(rw.url, manPath(imageId), {method: 'PUT', headers: auth, body: mbytes})).status, 400)
  const junk = Buffer.from('{"hello":1}')
  assert.is((await request(rw.url, manPath(hash(junk)), {method: 'PUT', headers: auth, body: junk})).status, 400)
  assert.is((await request(rw.url, manPath(id), {method: 'PUT', headers: auth, body: mbytes})).status, 201)
  assert.is((await request(rw.url, manPath(id), {method: 'PUT', headers: auth, body: mbytes})).status, 200)
  // refs: the body must be an id whose manifest is here
  assert.is((await request(rw.url, '/refs/pushed/v1', {method: 'PUT', headers: auth, body: 'not an id'})).status, 400)
  assert.is((await request(rw.url, '/refs/pushed/v1', {method: 'PUT', headers: auth, body: hash(junk)})).status, 409)
  assert.is((await request(rw.url, '/refs/pushed/v1', {method: 'PUT', headers: auth, body: id + '\n'})).status, 200)
  assert.is((await request(rw.url, '/refs/pushed/v1')).body.toString(), id + '\n')
  const out = path.join(T.dir, 'out.raw')
  ok(exec(['export', 'pushed:v1', out], {store: S.store}), 'export')
  assert.is(await sha256File(out), await sha256File(src))
  fsckClean(S.store)
  assert.ok(!(await listFiles(path.join(S.store, 'locks'))).some((f) => f.endsWith('.json')), 'no write lock left behind')
})

// ---------------------------------------------------------------- metrics

test('/metrics counts requests, bytes, hits and misses, and uploads', async () => {
  const before = await metrics(ro.url)
  for (const name of [
    'vmi_http_requests_total',
    'vmi_served_bytes_total',
    'vmi_object_requests_total',
    'vmi_verification_failures_total',
    'vmi_upstream_errors_total',
    'vmi_uploads_total',
  ])
    assert.match(before, new RegExp(`^# TYPE ${name} counter$`, 'm'), name)
  // every documented label of vmi_uploads_total is there before its first event (PROTOCOL.md "Metrics")
  for (const result of ['stored', 'exists', 'invalid', 'too_large', 'conflict', 'denied', 'error']) assert.is(metric(before, 'vmi_uploads_total', {result}), 0, `uploads ${result}`)
  const get200 = {route: 'objects', method: 'GET', status: '200'}
  const picks = objectIds.slice(0, 4)
  let size = 0
  for (const id of picks) size += (await request(ro.url, objPath(id))).body.length
  const absent = hash(Buffer.from('absent'))
  await request(ro.url, objPath(absent))
  await request(ro.url, manPath(imageId))
  const after = await metrics(ro.url)
  const d = (name, labels) => (metric(after, name, labels) ?? 0) - (metric(before, name, labels) ?? 0)
  assert.is(d('vmi_http_requests_total', get200), 4)
  assert.is(d('vmi_http_requests_total', {route: 'objects', method: 'GET', status: '404'}), 1)
  assert.is(d('vmi_http_requests_total', {route: 'manifests', method: 'GET', status: '200'}), 1)
  assert.is(d('vmi_served_bytes_total', {kind: 'objects'}), size)
  assert.is(d('vmi_served_bytes_total', {kind: 'manifests'}), readFileSync(path.join(S.store, manPath(imageId))).length)
  assert.is(d('vmi_object_requests_total', {result: 'hit'}), 4)
  assert.is(d('vmi_object_requests_total', {result: 'miss'}), 1)
  assert.ok(metric(after, 'vmi_http_requests_total', {route: 'metrics', method: 'GET', status: '200'}) >= 1)
  // the uploads and the refused ones of the tests above, on the push server
  const w = await metrics(rw.url)
  assert.ok(metric(w, 'vmi_uploads_total', {result: 'stored'}) >= 14, 'stored uploads')
  assert.ok(metric(w, 'vmi_uploads_total', {result: 'exists'}) >= 2, 'repeated uploads')
  assert.ok(metric(w, 'vmi_uploads_total', {result: 'denied'}) >= 5, 'denied uploads')
  assert.ok(metric(w, 'vmi_uploads_total', {result: 'too_large'}) >= 3, 'oversized uploads')
  assert.ok(metric(w, 'vmi_uploads_total', {result: 'conflict'}) >= 3, '409s')
  assert.ok(metric(w, 'vmi_verification_failures_total', {source: 'upload'}) >= 2, 'hash mismatches')
  assert.ok(metric(w, 'vmi_http_requests_total', {route: 'objects', method: 'PUT', status: '401'}) >= 2)
  // --log writes one line per request: method, path, status, bytes, ms
  assert.match(rw.stderr(), /PUT \/objects\/[0-9a-f]{2}\/[0-9a-f]{62} 201 \d+ [\d.]+ms/)
  assert.not.ok(rw.stderr().includes(TOKEN), 'the token never reaches the log')
})

// ---------------------------------------------------------------- fetch-through

test('fetch-through: a peer started with --seed fetches a chunk once from the seed, stores and serves it', async () => {
  const b = await serve(E.store, ['--seed', ro.url])
  try {
    const [x, y] = [objectIds[1], objectIds[2]]
    // without the header: a plain 404, nothing fetched
    const aBefore = await metrics(ro.url)
    assert.is((await request(b.url, objPath(x))).status, 404)
    assert.is((await request(b.url, objPath(x), {method: 'HEAD', headers: {'x-vmi-fetch': 'upstream'}})).status, 404)
    assert.not.ok(existsSync(path.join(E.store, objPath(x))))
    const r = await request(b.url, objPath(x), {headers: {'x-vmi-fetch': 'upstream'}})
    assert.is(r.status, 200)
    assert.ok(r.body.equals(readFileSync(path.join(S.store, objPath(x)))), 'right bytes')
    assert.is(r.headers.etag, `"${x}"`)
    assert.ok(readFileSync(path.join(E.store, objPath(x))).equals(r.body), 'the peer kept a copy')
    // now a local hit: no header needed
    assert.is((await request(b.url, objPath(x))).status, 200)
    // 20 at once for one chunk: the seed sends it once
    const rs = await Promise.all(Array.from({length: 20}, () => request(b.url, objPath(y), {headers: {'x-vmi-fetch': 'upstream'}})))
    const want = readFileSync(path.join(S.store, objPath(y)))
    for (const q of rs) {
      assert.is(q.status, 200)
      assert.ok(q.body.equals(want))
    }
    const aAfter = await metrics(ro.url)
    const d = (labels) => metric(aAfter, 'vmi_http_requests_total', labels) - (metric(aBefore, 'vmi_http_requests_total', labels) ?? 0)
    assert.is(d({route: 'objects', method: 'GET', status: '200'}), 2, 'the seed served x once and y once')
    assert.is(metric(aAfter, 'vmi_served_bytes_total', {kind: 'objects'}) - metric(aBefore, 'vmi_served_bytes_total', {kind: 'objects'}), want.length + r.body.length)
    const bm = await metrics(b.url)
    assert.is(metric(bm, 'vmi_fetched_bytes_total', {source: 'seed'}), want.length + r.body.length)
    // absent at the seed too: 404, and the peer does not invent it
    const absent = hash(Buffer.from('nowhere'))
    assert.is((await request(b.url, objPath(absent), {headers: {'x-vmi-fetch': 'upstream'}})).status, 404)
    assert.is(metric(await metrics(b.url), 'vmi_upstream_errors_total'), 0)
    fsckClean(E.store)
  } finally {
    assert.is((await b.stop()).code, 0)
  }
})

/**
 * A fake upstream on 127.0.0.1 answering with `handler`, and a vmi serve with it as --seed
 * over an empty store: {c, fake, store} (the caller stops c, closes fake, cleans store up).
 */
async function serveWithFakeUpstream(handler) {
  const fake = http.createServer(handler)
  await new Promise((r) => fake.listen(0, '127.0.0.1', r))
  const store = tmpStore()
  const c = await serve(store.store, ['--seed', `http://127.0.0.1:${fake.address().port}`])
  return {c, fake, store}
}

test('fetch-through: wrong bytes or errors from the upstream are a generic 502, never stored', async () => {
  const good = randomBytes(64 * K)
  const liar = hash(randomBytes(16)) // the fake upstream answers this id with `good`
  const broken = hash(randomBytes(16)) // and this one with 500
  let hits = 0
  const {c, fake, store: e2} = await serveWithFakeUpstream((req, res) => {
    hits++
    if (req.url === objPath(liar)) return res.end(good)
    if (req.url === objPath(broken)) {
      res.statusCode = 500
      return res.end('secret internal detail')
    }
    res.statusCode = 404
    res.end()
  })
  try {
    const r1 = await request(c.url, objPath(liar), {headers: {'x-vmi-fetch': 'upstream'}})
    assert.is(r1.status, 502)
    assert.not.ok(r1.body.includes(good.subarray(0, 64)), 'the bad bytes are not relayed')
    const r2 = await request(c.url, objPath(broken), {headers: {'x-vmi-fetch': 'upstream'}})
    assert.is(r2.status, 502)
    assert.not.match(r2.body.toString(), /secret internal detail/)
    assert.not.ok(existsSync(path.join(e2.store, objPath(liar))))
    assert.not.ok(existsSync(path.join(e2.store, objPath(broken))))
    const m = await metrics(c.url)
    assert.is(metric(m, 'vmi_upstream_errors_total'), 2)
    assert.is(metric(m, 'vmi_verification_failures_total', {source: 'seed'}), 1)
    assert.ok(hits >= 2)
    assert.match(c.stderr(), /fetch-through of [0-9a-f]{64}/, 'details go to the log')
  } finally {
    await c.stop()
    fake.close()
    e2.cleanup()
  }
})

test('fetch-through: an upstream that sends wrong bytes for every chunk costs the log three lines and a sum, not a line a chunk', async () => {
  const good = randomBytes(64 * K)
  const liars = Array.from({length: 20}, () => hash(randomBytes(16)))
  const {c, fake, store: e2} = await serveWithFakeUpstream((req, res) => {
    if (liars.some((id) => req.url === objPath(id))) return res.end(good)
    res.statusCode = 404
    res.end()
  })
  try {
    for (const id of liars) assert.is((await request(c.url, objPath(id), {headers: {'x-vmi-fetch': 'upstream'}})).status, 502)
    assert.is(metric(await metrics(c.url), 'vmi_verification_failures_total', {source: 'seed'}), 20, 'every one counted')
  } finally {
    await c.stop()
    fake.close()
    e2.cleanup()
  }
  const lines = c.stderr().split('\n')
  const each = lines.filter((l) => /fetch-through of [0-9a-f]{64} failed: seed .* sent wrong bytes/.test(l))
  assert.is(each.length, 3, c.stderr())
  const sum = lines.filter((l) => /fetch-through: 17 more chunks with wrong bytes from .* not shown \(the last: /.test(l))
  assert.is(sum.length, 1, c.stderr())
})

// ---------------------------------------------------------------- lifecycle

test('SIGTERM: stops accepting, lets an in-flight upload finish, exits 0; VMI_PUSH_TOKEN enables pushes', async () => {
  const g = tmpStore()
  const token = 'env-token-' + randomBytes(4).toString('hex')
  const s = await serve(g.store, [], {env: {VMI_PUSH_TOKEN: token}})
  try {
    const data = randomBytes(2 * M)
    const id = hash(data)
    const u = new URL(s.url)
    let slowReq
    const answer = new Promise((resolve, reject) => {
      slowReq = http.request(
        {host: u.hostname, port: u.port, method: 'PUT', path: objPath(id), agent: false, headers: {authorization: `Bearer ${token}`, 'content-length': data.length}},
        (res) => {
          res.resume()
          res.on('end', () => resolve(res.statusCode))
        },
      )
      slowReq.on('error', reject)
      slowReq.write(data.subarray(0, M))
    }).catch((err) => `failed: ${err.code ?? err.message}`)
    await sleep(300)
    s.child.kill('SIGTERM')
    await sleep(500)
    assert.is(s.child.exitCode, null, 'still running while a request is in flight')
    const refused = await request(s.url, '/healthz').then(
      (r) => `answered ${r.status}`,
      (err) => err.code,
    )
    assert.is(refused, 'ECONNREFUSED', 'no new connections once shutting down')
    slowReq.end(data.subarray(M))
    assert.is(await answer, 201)
    const exit = await s.exited
    assert.equal(exit, {code: 0, signal: null}, s.stderr())
    assert.ok(readFileSync(path.join(g.store, objPath(id))).equals(data), 'the upload completed')
    assert.match(s.stderr(), /shutting down/)
  } finally {
    await s.stop()
    g.cleanup()
  }
})

test('slow clients are disconnected (in-process server, short request timeout)', async () => {
  const t = tmpDir()
  const store = await LocalStore.open(path.join(t.dir, 'store'))
  const lines = []
  const srv = await startServer(store, {port: 0, requestTimeoutMs: 300, pushToken: 'tok', log: (l) => lines.push(l)})
  try {
    assert.match(srv.url, /^http:\/\/127\.0\.0\.1:\d+$/)
    assert.is((await request(srv.url, '/healthz')).status, 200, 'fast clients are fine')
    const u = new URL(srv.url)
    const closedAfter = (text) =>
      new Promise((resolve) => {
        const start = Date.now()
        const sock = net.connect({host: u.hostname, port: Number(u.port)}, () => text && sock.write(text))
        let got = ''
        sock.on('data', (b) => (got += b))
        sock.on('error', () => {})
        sock.on('close', () => resolve({ms: Date.now() - start, got}))
        setTimeout(() => sock.destroy(), 5000)
      })
    const cases = [
      ['no bytes at all', ''],
      ['half a request line', 'GET /heal'],
      ['headers never finished', 'GET /healthz HTTP/1.1\r\nHost: x\r\n'],
      ['a body that stops', `PUT ${objPath(hash(Buffer.from('z')))} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer tok\r\nContent-Length: 1000\r\n\r\n0123456789`],
    ]
    const results = await Promise.all(cases.map(([, text]) => closedAfter(text)))
    cases.forEach(([what], i) => {
      assert.ok(results[i].ms < 3000, `${what}: disconnected after ${results[i].ms} ms`)
      assert.not.match(results[i].got, /^HTTP\/1\.1 2/, `${what}: no success answer`)
    })
    assert.is((await request(srv.url, '/healthz')).status, 200, 'still serving')
    assert.ok(lines.some((l) => /^GET \/healthz 200 3 /.test(l)), `request log lines: ${lines.join(' | ')}`)
  } finally {
    await srv.close({graceMs: 1000})
    t.cleanup()
  }
})

test('chunk GETs: clients that never read hold bounded memory while others are served; a planted oversized object or FIFO is not served', async () => {
  const t = tmpDir()
  const store = await LocalStore.open(path.join(t.dir, 'store'))
  const big = randomBytes(4 * M) // the largest chunk there is
  const bigId = hash(big)
  await store.putObject(bigId, big)
  const small = randomBytes(100 * K)
  const smallId = hash(small)
  await store.putObject(smallId, small)
  // planted by hand: objects over the chunk size cap, and a FIFO
  const oversized = hash(Buffer.from('oversized'))
  const oversized2 = hash(Buffer.from('oversized too'))
  const fifo = hash(Buffer.from('fifo'))
  for (const id of [oversized, oversized2, fifo]) spawnSync('mkdir', ['-p', path.dirname(store.layout.objectPath(id))])
  for (const id of [oversized, oversized2]) writeFileSync(store.layout.objectPath(id), Buffer.alloc(OVER_OBJECT, 1))
  assert.is(spawnSync('mkfifo', [store.layout.objectPath(fifo)]).status, 0)
  // an upstream that has the real chunk behind the oversized file's id
  const up = await LocalStore.open(path.join(t.dir, 'up'))
  await up.putObject(oversized, Buffer.from('oversized'))
  const upSrv = await startServer(up, {port: 0})
  const lines = []
  const srv = await startServer(store, {port: 0, log: (l) => lines.push(l), upstream: new HttpStore(upSrv.url, {kind: 'seed'})})
  const stalled = []
  try {
    assert.is((await request(srv.url, objPath(oversized))).status, 404, 'oversized: not served')
    assert.is((await request(srv.url, objPath(fifo))).status, 404, 'FIFO: not served, no hang')
    assert.ok(lines.some((l) => l.includes(`not serving chunk ${oversized}`)), lines.join(' | '))
    const through = await request(srv.url, objPath(oversized), {headers: {'x-vmi-fetch': 'upstream'}})
    assert.is(through.status, 200, 'asked to fetch through, it fetches a good copy')
    assert.is(through.body.toString(), 'oversized')
    // the corrupt copy was moved aside and the good one kept: a plain GET now serves it
    const after = await request(srv.url, objPath(oversized))
    assert.is(after.status, 200, 'repaired by the fetch-through')
    assert.is(after.body.toString(), 'oversized')
    global.gc?.()
    const rss0 = process.memoryUsage().rss
    // 32 connections, each with 8 pipelined GETs of the 4 MiB chunk, reading nothing
    stalled.push(...pipelineUnread(srv.url, objPath(bigId), 32, 8))
    await sleep(1500)
    // past the bound, chunks stream from their files: still no corrupt object served, no hang on the FIFO
    assert.is((await request(srv.url, objPath(oversized2))).status, 404, 'oversized, streaming path: not served')
    assert.is((await request(srv.url, objPath(fifo))).status, 404, 'FIFO, streaming path: not served, no hang')
    const r1 = await request(srv.url, objPath(bigId))
    assert.is(r1.status, 200)
    assert.ok(r1.body.equals(big), 'the 4 MiB chunk arrives whole while 32 clients stall')
    const r2 = await request(srv.url, objPath(smallId))
    assert.ok(r2.body.equals(small))
    const grown = (process.memoryUsage().rss - rss0) / M
    // the handler runs for every pipelined request, read or not: chunks held in memory
    // without a bound would be 32 × 8 × 4 MiB = 1 GiB here (measured); the server holds
    // at most 64 MiB so and streams the rest (~200 MiB in all measured, streaming alone ~140)
    assert.ok(grown < 400, `RSS grew ${grown.toFixed(0)} MiB with 32 stalled clients`)
  } finally {
    for (const s of stalled) s.destroy()
    await srv.close({graceMs: 1000})
    await upSrv.close({graceMs: 1000})
    t.cleanup()
  }
})

test('clients that pipeline chunk GETs and hang up unread: the server closes every object file it opened for them and counts no request in flight', async () => {
  const t = tmpDir()
  const store = await LocalStore.open(path.join(t.dir, 'store'))
  const big = randomBytes(4 * M)
  const id = hash(big)
  await store.putObject(id, big)
  const file = realpathSync(store.layout.objectPath(id))
  const srv = await startServer(store, {port: 0})
  /** Descriptors of this process open on the object file (the server runs here). */
  const openOnFile = () =>
    readdirSync('/proc/self/fd').filter((fd) => {
      try {
        return readlinkSync(`/proc/self/fd/${fd}`) === file
      } catch {
        return false
      }
    }).length
  const inFlight = async () => metricSum(await srv.metrics(), 'vmi_http_requests_in_flight')
  const socks = []
  try {
    // 8 connections × 8 pipelined GETs of the 4 MiB chunk, reading nothing: the first
    // 64 MiB of replies are held in memory, the rest stream from the object file
    socks.push(...pipelineUnread(srv.url, objPath(id), 8, 8))
    assert.ok(await until(async () => (await inFlight()) === 64, {timeoutMs: 20_000}), `${await inFlight()} of 64 requests reached the handler`)
    assert.ok(openOnFile() > 0, 'past the memory bound, replies stream from the object file')
    for (const sock of socks) sock.destroy()
    // a reply queued behind another on a connection that went away gets no 'close' from Node 20
    const settled = await until(async () => (await inFlight()) === 0 && openOnFile() === 0, {timeoutMs: 5000})
    assert.ok(settled, `after the clients hung up: ${await inFlight()} requests still in flight, ${openOnFile()} descriptors still open on the object file`)
    assert.is((await request(srv.url, objPath(id))).body.equals(big), true, 'still serving')
  } finally {
    for (const sock of socks) sock.destroy()
    // (a request stuck in flight holds close() for graceMs on a timer that keeps no process alive)
    await Promise.race([srv.close({graceMs: 1000}), sleep(2000)])
    t.cleanup()
  }
})

test('CLI refuses bad --listen, a busy port and a missing token file', async () => {
  const r1 = exec(['serve', '--listen', 'nonsense'], {store: S.store})
  assert.is(r1.status, 2, r1.stderr)
  assert.match(r1.stderr, /HOST:PORT/)
  const r2 = exec(['serve', '--listen', '127.0.0.1:99999'], {store: S.store})
  assert.is(r2.status, 2)
  const port = new URL(ro.url).port
  const r3 = exec(['serve', '--listen', `127.0.0.1:${port}`], {store: S.store, timeout: 20_000})
  assert.is(r3.status, 2, r3.stderr)
  assert.match(r3.stderr, /EADDRINUSE/)
  const r4 = exec(['serve', '--push-token-file', path.join(S.dir, 'nope')], {store: S.store})
  assert.is(r4.status, 3, r4.stderr)
  assert.is(r4.stdout, '')
  const r5 = exec(['serve', '--push-token', 'a', '--push-token-file', 'b'], {store: S.store})
  assert.is(r5.status, 2)
  const h = exec(['serve', '--help'])
  assert.is(h.status, 0)
  assert.match(h.stdout, /EXAMPLES/)
  assert.match(h.stdout, /--seed/)
})

test('TLS: --tls-cert/--tls-key serve https', async () => {
  if (!hasCommand('openssl')) return skip('openssl is not installed')
  const t = tmpDir()
  try {
    const cert = path.join(t.dir, 'cert.pem')
    const key = path.join(t.dir, 'key.pem')
    const g = spawnSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=127.0.0.1'])
    assert.is(g.status, 0, String(g.stderr))
    const s = await serve(S.store, ['--tls-cert', cert, '--tls-key', key])
    try {
      assert.match(s.url, /^https:\/\//)
      const r = await request(s.url, objPath(objectIds[0]), {client: https})
      assert.is(r.status, 200)
      assert.ok(r.body.equals(readFileSync(path.join(S.store, objPath(objectIds[0])))))
      const c = await new HttpStore(s.url, {insecure: true}).get(objectIds[0])
      assert.ok(c.equals(r.body))
    } finally {
      assert.is((await s.stop()).code, 0)
    }
  } finally {
    t.cleanup()
  }
})

// ---------------------------------------------------------------- nginx

test('a store directory under nginx answers the read routes like vmi serve', async () => {
  if (!hasCommand('nginx')) return skip('nginx is not installed (scripts/install-deps.sh installs nginx-light)')
  const ng = await startNginx(S.store)
  try {
    const files = (await listFiles(S.store)).filter((f) => /^(objects|manifests|refs)\//.test(f))
    const absent = hash(Buffer.from('absent'))
    const targets = [...files.map((f) => '/' + f), objPath(absent), manPath(absent), '/refs/disk/nope']
    let bytes = 0
    for (const p of targets) {
      const a = await request(ro.url, p)
      const b = await request(ng.url, p)
      assert.is(b.status, a.status, `${p}: nginx ${b.status}, vmi ${a.status}`)
      if (a.status !== 200) continue
      bytes += b.body.length
      assert.ok(b.body.equals(a.body), `${p}: bodies differ`)
      assert.is(b.headers['content-type'].split(';')[0], a.headers['content-type'].split(';')[0], `${p}: content type`)
      assert.is(b.headers['cache-control'], a.headers['cache-control'], `${p}: cache-control`)
      const h = await request(ng.url, p, {method: 'HEAD'})
      assert.is(h.status, 200)
      assert.is(Number(h.headers['content-length']), a.body.length)
    }
    const log = ng.requests()
    assert.is(log.filter((l) => l.method === 'GET' && l.status === 200).reduce((n, l) => n + l.bytes, 0), bytes, 'the access log accounts for every body byte')
    assert.is(ng.bytesServed(), log.reduce((n, l) => n + l.bytes, 0))
    assert.ok(ng.bytesServed() >= bytes)
    // the protocol's client reads through nginx too (HEAD fallback for the batch check)
    const store = new HttpStore(ng.url)
    assert.ok((await store.get(objectIds[0])).equals(readFileSync(path.join(S.store, objPath(objectIds[0])))))
    assert.equal(await store.missing([objectIds[0], absent]), [absent])
    assert.is(await store.getRef('disk', 'v1'), imageId)
    for (const p of ['/config.json', '/objects/../config.json', '/locks/', '/objects/'])
      assert.not.ok((await request(ng.url, p)).body.includes(MARKER), `nginx leaked config.json at ${p}`)
  } finally {
    await ng.close()
  }
})

test.run()
