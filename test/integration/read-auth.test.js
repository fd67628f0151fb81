// Read authorization on `vmi serve` (docs/SECURITY.md), with real TLS and
// certificates made by openssl in the test (test/helpers/pki.js):
// - --client-ca: a client without a certificate, with one from another CA,
//   or with an expired one is refused at the handshake, every route, and
//   nothing is served; with a good one pull, mount, push and serve's
//   fetch-through work;
// - --read-token-file: every route answers 401 without a token and 403 with
//   a wrong one, nothing served or stored; the read token, or the push
//   token, reads; clients send it from a flag, $VMI_READ_TOKEN or the remote;
// - a non-loopback --listen without either needs --allow-anonymous-read
//   (exit 2 otherwise), in a network namespace this test creates.
import {test} from 'uvu'
import * as assert from 'uvu/assert'
import {spawnSync} from 'node:child_process'
import {randomBytes} from 'node:crypto'
import {existsSync, readdirSync, readFileSync, writeFileSync} from 'node:fs'
import https from 'node:https'
import path from 'node:path'
import {exec, execAsync, freePort, fsckCleanAsync, hasCommand, isRoot, makeImage, sha256File, skip, tmpDir} from '../helpers/index.js'
import {makePki} from '../helpers/pki.js'
import {metricSum, startServe} from '../helpers/serve.js'

const M = 1024 * 1024
const T = tmpDir('vmi-read-auth-')
const SRC = path.join(T.dir, 'src.raw')
const STORE = path.join(T.dir, 'store')
const PUSH_TOKEN = path.join(T.dir, 'push-token')
const READ_TOKEN = path.join(T.dir, 'read-token')
let fx

async function fixture() {
  if (fx) return fx
  await makeImage(SRC, [{kind: 'random', size: M, seed: 'read-auth'}])
  const r = exec(['import', SRC, 'img:1', '--chunk-size', '64K'], {store: STORE})
  assert.is(r.status, 0, r.stderr)
  writeFileSync(PUSH_TOKEN, 'push-s3cret\n')
  writeFileSync(READ_TOKEN, 'read-s3cret\n')
  const id = JSON.parse(exec(['inspect', 'img:1', '--json'], {store: STORE}).stdout).id
  const shard = readdirSync(path.join(STORE, 'objects')).find((d) => d.length === 2)
  const chunk = shard + readdirSync(path.join(STORE, 'objects', shard))[0]
  fx = {id, chunk, chunkBytes: readFileSync(path.join(STORE, 'objects', shard, chunk.slice(2))), pki: hasCommand('openssl') ? makePki(path.join(T.dir, 'pki')) : undefined}
  return fx
}

/** Every route of the wire protocol, as [method, path, body]: reads, the missing-check, uploads, health, metrics. */
function routes({id, chunk, chunkBytes}) {
  const sh = (dir, x) => `/${dir}/${x.slice(0, 2)}/${x.slice(2)}`
  return [
    ['GET', '/v1/refs'],
    ['GET', '/refs/img/1'],
    ['GET', sh('manifests', id)],
    ['HEAD', sh('manifests', id)],
    ['GET', sh('objects', chunk)],
    ['HEAD', sh('objects', chunk)],
    ['GET', sh('profiles', id)],
    ['POST', '/v1/objects/missing', JSON.stringify({ids: [chunk]})],
    ['PUT', sh('objects', chunk), chunkBytes],
    ['PUT', '/refs/stolen/1', id + '\n'],
    ['GET', '/healthz'],
    ['GET', '/metrics'],
  ]
}

/** One request through node:https with the given TLS client options: {status, body} or {error}. */
function httpsRequest(url, method, body, tlsOpts, headers = {}) {
  return new Promise((resolve) => {
    const req = https.request(url, {method, headers, agent: false, ...tlsOpts}, (res) => {
      const parts = []
      res.on('data', (d) => parts.push(d))
      res.on('end', () => resolve({status: res.statusCode, body: Buffer.concat(parts)}))
      res.on('error', (error) => resolve({error}))
    })
    req.on('error', (error) => resolve({error}))
    req.end(body)
  })
}

/** The seed's request count (but its /metrics, which this asks), read through its open health listener. */
async function requestCount(healthUrl) {
  const text = await (await fetch(`${healthUrl}/metrics`)).text()
  return metricSum(text, 'vmi_http_requests_total') - metricSum(text, 'vmi_http_requests_total', {route: 'metrics'})
}

/** A served image's bytes: export from `store` and compare with the source. */
async function assertSameImage(store, what) {
  const out = path.join(T.dir, `out-${randomBytes(4).toString('hex')}.raw`)
  const e = exec(['export', 'img:1', out], {store})
  assert.is(e.status, 0, `${what}: ${e.stderr}`)
  assert.is(await sha256File(out), await sha256File(SRC), what)
}

test('mutual TLS: no client certificate, another CA\'s, or an expired one is refused on every route and nothing is served; a good one pulls, mounts and pushes', async () => {
  const f = await fixture()
  if (!f.pki) return skip('openssl is not installed')
  const {pki} = f
  const healthPort = await freePort()
  const seedStore = path.join(T.dir, 'mtls-seed')
  assert.is(exec(['remote', 'ls'], {store: seedStore}).status, 0)
  const tlsArgs = ['--tls-cert', pki.server.cert, '--tls-key', pki.server.key]
  const s = await startServe(seedStore, [...tlsArgs, '--client-ca', pki.ca, '--token-file', PUSH_TOKEN, '--health-listen', `127.0.0.1:${healthPort}`])
  const healthUrl = `http://127.0.0.1:${healthPort}`
  try {
    // push needs the client certificate as well as the push token
    const p0 = await execAsync(['push', 'img:1', s.url, '--token-file', PUSH_TOKEN, '--ca-cert', pki.ca], {store: STORE})
    assert.is(p0.status, 9, p0.stderr)
    assert.match(p0.stderr, /--tls-client-cert/, 'the hint names the flag')
    assert.is(await requestCount(healthUrl), 0, 'the refused push reached no route')
    const clientFlags = ['--tls-client-cert', pki.client.cert, '--tls-client-key', pki.client.key]
    const p1 = await execAsync(['push', 'img:1', s.url, '--token-file', PUSH_TOKEN, '--ca-cert', pki.ca, ...clientFlags], {store: STORE})
    assert.is(p1.status, 0, p1.stderr)
    const afterPush = await requestCount(healthUrl)
    assert.ok(afterPush > 0)

    // every route, with each bad identity: the handshake fails, no HTTP answer at all
    const ca = readFileSync(pki.ca)
    const bad = {
      'no certificate': {ca},
      'another CA': {ca, cert: readFileSync(pki.foreign.cert), key: readFileSync(pki.foreign.key)},
      'expired': {ca, cert: readFileSync(pki.expired.cert), key: readFileSync(pki.expired.key)},
    }
    for (const [who, tlsOpts] of Object.entries(bad)) {
      for (const [method, p, body] of routes(f)) {
        const r = await httpsRequest(s.url + p, method, body, tlsOpts, {authorization: 'Bearer push-s3cret'})
        assert.ok(r.error, `${who}: ${method} ${p} got HTTP ${r.status} ${r.body?.toString().slice(0, 80)}`)
      }
    }
    // and through the CLI: pull and mount refuse, the host gets nothing
    for (const [who, flags] of [
      ['no certificate', []],
      ['another CA', ['--tls-client-cert', pki.foreign.cert, '--tls-client-key', pki.foreign.key]],
      ['expired', ['--tls-client-cert', pki.expired.cert, '--tls-client-key', pki.expired.key]],
    ]) {
      const host = path.join(T.dir, `mtls-bad-${who.replace(/ /g, '-')}`)
      const r = await execAsync(['pull', 'img:1', s.url, '--ca-cert', pki.ca, ...flags], {store: host})
      assert.is(r.status, 9, `${who}: ${r.stderr}`)
      // refused at the handshake (no certificate) or right after it (TLS 1.3: a reset): either way the hint names the client certificate
      assert.match(r.stderr, /hint: .*client certificate/, `${who}: ${r.stderr}`)
      assert.is(r.stdout, '')
      const out = path.join(T.dir, `mtls-bad-mount-${who.replace(/ /g, '-')}.raw`)
      const m = await execAsync(['mount', 'img:1', s.url, '--ca-cert', pki.ca, ...flags, '--read-only', '--exec', `qemu-img convert -f raw -O raw {nbd} ${out}`], {store: host})
      assert.is(m.status, 9, `${who} mount: ${m.stderr}`)
      assert.not.ok(existsSync(out), `${who}: the mount served nothing`)
    }
    // a client certificate whose key is not its own is a usage error before any request
    const k = await execAsync(['pull', 'img:1', s.url, '--ca-cert', pki.ca, '--tls-client-cert', pki.client.cert, '--tls-client-key', pki.foreign.key], {store: path.join(T.dir, 'mtls-mismatch')})
    assert.is(k.status, 2, k.stderr)
    assert.is(await requestCount(healthUrl), afterPush, 'no refused client reached any route')
    const served = metricSum(await (await fetch(`${healthUrl}/metrics`)).text(), 'vmi_served_bytes_total')

    // a good certificate: pull (flag, environment, remote) and mount
    for (const [name, args, env] of [
      ['flag', ['pull', 'img:1', s.url, '--ca-cert', pki.ca, ...clientFlags], {}],
      ['env', ['pull', 'img:1', s.url, '--ca-cert', pki.ca], {VMI_TLS_CLIENT_CERT: pki.client.cert, VMI_TLS_CLIENT_KEY: pki.client.key}],
      ['remote', ['pull', 'img:1'], {}],
    ]) {
      const host = path.join(T.dir, `mtls-good-${name}`)
      if (name === 'remote') assert.is(exec(['remote', 'add', 'origin', s.url, '--ca-cert', pki.ca, ...clientFlags], {store: host}).status, 0)
      const r = await execAsync(args, {store: host, env})
      assert.is(r.status, 0, `${name}: ${r.stderr}`)
      await assertSameImage(host, name)
    }
    assert.ok(metricSum(await (await fetch(`${healthUrl}/metrics`)).text(), 'vmi_served_bytes_total') > served)
    if (hasCommand('qemu-img')) {
      const out = path.join(T.dir, 'mtls-mount.raw')
      const m = await execAsync(['mount', 'img:1', s.url, '--ca-cert', pki.ca, ...clientFlags, '--read-only', '--exec', `qemu-img convert -f raw -O raw {nbd} ${out}`], {store: path.join(T.dir, 'mtls-mount')})
      assert.is(m.status, 0, m.stderr)
      assert.is(await sha256File(out), await sha256File(SRC))
    } else skip('mount through mutual TLS (qemu-img is not installed)')

    // serve's fetch-through shows its client certificate to the seed; without one the seed refuses it (502)
    for (const [who, flags, want] of [
      ['with a certificate', clientFlags, 200],
      ['without', [], 502],
    ]) {
      const peer = await startServe(path.join(T.dir, `mtls-peer-${want}`), ['--seed', s.url, '--ca-cert', pki.ca, ...flags])
      try {
        const res = await fetch(`${peer.url}/objects/${f.chunk.slice(0, 2)}/${f.chunk.slice(2)}`, {headers: {'x-vmi-fetch': 'upstream'}})
        const body = Buffer.from(await res.arrayBuffer())
        assert.is(res.status, want, `fetch-through ${who}`)
        if (want === 200) assert.ok(body.equals(f.chunkBytes))
      } finally {
        await peer.stop()
      }
    }
    await fsckCleanAsync(seedStore)
  } finally {
    await s.stop()
  }
})

test('read token: every route refuses no token (401) and a wrong one (403), nothing served or stored; the read token or the push token reads', async () => {
  const f = await fixture()
  const seedStore = path.join(T.dir, 'token-seed')
  assert.is(exec(['remote', 'ls'], {store: seedStore}).status, 0)
  const healthPort = await freePort()
  const s = await startServe(seedStore, ['--read-token-file', READ_TOKEN, '--token-file', PUSH_TOKEN, '--health-listen', `127.0.0.1:${healthPort}`])
  const healthUrl = `http://127.0.0.1:${healthPort}`
  try {
    // the push token reads too: push checks what the seed lacks, then uploads
    const p = await execAsync(['push', 'img:1', s.url, '--token-file', PUSH_TOKEN], {store: STORE})
    assert.is(p.status, 0, p.stderr)
    const before = readdirSync(path.join(seedStore, 'refs'))
    const servedBefore = metricSum(await (await fetch(`${healthUrl}/metrics`)).text(), 'vmi_served_bytes_total')
    for (const [auth, status] of [
      [undefined, 401],
      ['Bearer wrong', 403],
      ['Basic cmVhZC1zM2NyZXQ=', 401],
    ]) {
      for (const [method, p2, body] of [...routes(f), ['GET', `/objects/${f.chunk.slice(0, 2)}/${f.chunk.slice(2)}`, undefined, {'x-vmi-fetch': 'upstream'}]]) {
        const headers = auth ? {authorization: auth} : {}
        const res = await fetch(s.url + p2, {method, headers, body})
        const text = await res.text()
        assert.is(res.status, status, `${auth ?? 'no token'}: ${method} ${p2}: ${text}`)
        assert.not.ok(text.includes(f.id), `${method} ${p2} leaked the manifest id`)
        if (status === 401) assert.match(res.headers.get('www-authenticate') ?? '', /^Bearer/)
      }
    }
    assert.equal(readdirSync(path.join(seedStore, 'refs')), before, 'no ref was stored')
    assert.is(metricSum(await (await fetch(`${healthUrl}/metrics`)).text(), 'vmi_served_bytes_total'), servedBefore, 'not a byte served')
    // the health listener answers /healthz and /metrics to anyone, and nothing else
    assert.is((await fetch(`${healthUrl}/healthz`)).status, 200)
    assert.is((await fetch(`${healthUrl}/v1/refs`)).status, 404)
    assert.is((await fetch(`${healthUrl}/manifests/${f.id.slice(0, 2)}/${f.id.slice(2)}`)).status, 404)

    // the read token reads; it does not push
    const list = await fetch(`${s.url}/v1/refs`, {headers: {authorization: 'Bearer read-s3cret'}})
    assert.is(list.status, 200)
    assert.ok((await list.text()).includes(f.id))
    const put = await fetch(`${s.url}/refs/stolen/1`, {method: 'PUT', headers: {authorization: 'Bearer read-s3cret'}, body: f.id})
    assert.is(put.status, 403)
    assert.is((await fetch(`${s.url}/v1/refs`, {headers: {authorization: 'Bearer push-s3cret'}})).status, 200, 'the push token reads')

    // the CLI: no token → exit 10 with the hint; the flag, the variable and the remote's file work
    const r0 = await execAsync(['pull', 'img:1', s.url], {store: path.join(T.dir, 'token-none')})
    assert.is(r0.status, 10, r0.stderr)
    assert.match(r0.stderr, /--read-token-file/)
    const wrong = path.join(T.dir, 'wrong-token')
    writeFileSync(wrong, 'nope\n')
    const r1 = await execAsync(['pull', 'img:1', s.url, '--read-token-file', wrong], {store: path.join(T.dir, 'token-wrong')})
    assert.is(r1.status, 10, r1.stderr)
    for (const [name, args, env] of [
      ['flag', ['pull', 'img:1', s.url, '--read-token-file', READ_TOKEN], {}],
      ['env', ['pull', 'img:1', s.url], {VMI_READ_TOKEN: 'read-s3cret'}],
      ['remote', ['pull', 'img:1'], {}],
    ]) {
      const host = path.join(T.dir, `token-good-${name}`)
      if (name === 'remote') assert.is(exec(['remote', 'add', 'origin', s.url, '--read-token-file', READ_TOKEN], {store: host}).status, 0)
      const r = await execAsync(args, {store: host, env})
      assert.is(r.status, 0, `${name}: ${r.stderr}`)
      await assertSameImage(host, name)
    }
    await fsckCleanAsync(seedStore)
  } finally {
    await s.stop()
  }
})

/** A network namespace of this test's own with lo and a veth pair (both ends inside) at 10.78.0.1 (nothing leaves it). */
function makeNetns() {
  const ns = `vmi-readauth-${process.pid}`
  const run = (args) => spawnSync('ip', args, {encoding: 'utf8'})
  run(['netns', 'del', ns])
  for (const args of [
    ['netns', 'add', ns],
    ['-n', ns, 'link', 'set', 'lo', 'up'],
    ['-n', ns, 'link', 'add', 'v0', 'type', 'veth', 'peer', 'name', 'v1'],
    ['-n', ns, 'addr', 'add', '10.78.0.1/24', 'dev', 'v0'],
    ['-n', ns, 'link', 'set', 'v0', 'up'],
    ['-n', ns, 'link', 'set', 'v1', 'up'],
  ]) {
    const r = run(args)
    if (r.status !== 0) {
      run(['netns', 'del', ns])
      return {error: `ip ${args.join(' ')}: ${r.stderr.trim()}`}
    }
  }
  return {ns, close: () => run(['netns', 'del', ns])}
}

test('a non-loopback --listen without read authorization is refused (exit 2) unless --allow-anonymous-read, which warns', async () => {
  await fixture()
  const store = path.join(T.dir, 'anon')
  // refused before listening: nothing is bound, so any address will do
  for (const listen of ['0.0.0.0:0', ':0', '[::]:0', '10.78.0.1:0']) {
    const r = exec(['serve', '--listen', listen], {store})
    assert.is(r.status, 2, `${listen}: ${r.stderr}`)
    for (const w of ['--client-ca', '--read-token-file', '--allow-anonymous-read']) assert.ok(r.stderr.includes(w), `${listen}: names ${w}: ${r.stderr}`)
    assert.is(r.stdout, '')
  }
  if (!isRoot || !hasCommand('ip')) return skip('binding a non-loopback address needs root and ip (a network namespace)')
  const n = makeNetns()
  if (n.error) return skip(`no network namespace: ${n.error}`)
  try {
    const opts = {netns: n.ns, listen: '10.78.0.1:0'}
    const anon = await startServe(store, ['--allow-anonymous-read'], opts)
    await anon.stop()
    assert.match(anon.stderr(), /warning: .*without read authorization/)
    const tok = await startServe(store, ['--read-token-file', READ_TOKEN], opts)
    await tok.stop()
    assert.not.match(tok.stderr(), /warning/)
    // loopback needs nothing: 127.0.0.0/8 and ::1
    for (const listen of ['127.0.0.2:0', '[::1]:0']) {
      const l = await startServe(store, [], {netns: n.ns, listen})
      await l.stop()
      assert.not.match(l.stderr(), /warning/, listen)
    }
  } finally {
    n.close()
  }
})

test.after(() => T.cleanup())
test.run()
