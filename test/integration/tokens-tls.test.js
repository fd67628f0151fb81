// Push tokens and TLS trust through the real CLI against a real `vmi serve`:
// a push without a token stops before its first request and says how to give
// one; one family of token flags (--token/--token-file) for push and serve;
// `remote add` checks its files; an untrusted certificate names --ca-cert and
// --insecure, and --ca-cert (or $VMI_CA_CERT, or a remote's caCert) trusts a
// private CA in pull, push, mount and serve --seed.
import {test} from 'uvu'
import * as assert from 'uvu/assert'
import {spawnSync} from 'node:child_process'
import {mkdirSync, readdirSync, readFileSync, writeFileSync} from 'node:fs'
import path from 'node:path'
import {exec, execAsync, fsckCleanAsync, hasCommand, makeImage, sha256File, skip, tmpDir} from '../helpers/index.js'
import {metricSum, startServe} from '../helpers/serve.js'
import {sh, tmpfs} from '../helpers/tmpfs.js'

const M = 1024 * 1024
const T = tmpDir('vmi-tls-')
const SRC = path.join(T.dir, 'src.raw')
const STORE = path.join(T.dir, 'store')
const TOKEN_FILE = path.join(T.dir, 'token')
let ready = false

async function fixture() {
  if (ready) return
  ready = true
  await makeImage(SRC, [{kind: 'random', size: M, seed: 'tokens-tls'}])
  const r = exec(['import', SRC, 'img:1', '--chunk-size', '64K'], {store: STORE})
  assert.is(r.status, 0, r.stderr)
  writeFileSync(TOKEN_FILE, 's3cret\n')
}

/** Requests the server answered with this method (its /metrics). */
async function requestsByMethod(s, method) {
  return metricSum(await s.metrics(), 'vmi_http_requests_total', {method})
}

/** A store dir to serve (created by an import of nothing: `vmi remote ls` creates it). */
function emptyStore(name) {
  const dir = path.join(T.dir, name)
  assert.is(exec(['remote', 'ls'], {store: dir}).status, 0)
  return dir
}

test('a push without a token stops before any request, exit 10, naming every way to give one', async () => {
  await fixture()
  const seed = emptyStore('seed-no-token')
  // the old flag name: this test runs unchanged against vmi before --token-file
  const s = await startServe(seed, ['--push-token-file', TOKEN_FILE])
  try {
    const r = await execAsync(['push', 'img:1', s.url], {store: STORE})
    assert.is(r.status, 10, r.stderr)
    assert.is(r.stdout, '')
    for (const words of ['--token', 'VMI_PUSH_TOKEN', '--token-file', 'vmi remote add']) assert.ok(r.stderr.includes(words), `stderr names ${words}: ${r.stderr}`)
    assert.is(await requestsByMethod(s, 'PUT'), 0, 'no PUT reached the seed')
    assert.is(await requestsByMethod(s, 'POST'), 0, 'not even the missing-check')
    // --json carries the hint too
    const j = await execAsync(['push', 'img:1', s.url, '--json'], {store: STORE})
    assert.is(j.status, 10)
    assert.match(JSON.parse(j.stderr.trim().split('\n').pop()).error.hint, /--token-file/)
  } finally {
    await s.stop()
  }
})

test('push --token-file and serve --token/--token-file (and the old --push-token names) work together', async () => {
  await fixture()
  // serve --token, push --token-file
  const seedA = emptyStore('seed-token')
  const a = await startServe(seedA, ['--token', 's3cret'])
  try {
    const r = await execAsync(['push', 'img:1', a.url, '--token-file', TOKEN_FILE], {store: STORE})
    assert.is(r.status, 0, r.stderr)
    assert.ok(await requestsByMethod(a, 'PUT') > 0)
    // a wrong token: refused (exit 10), with the hint
    const wrong = path.join(T.dir, 'wrong-token')
    writeFileSync(wrong, 'nope\n')
    const w = await execAsync(['push', 'img:1', a.url, '--token-file', wrong, '--as', 'img:2'], {store: STORE})
    assert.is(w.status, 10, w.stderr)
    assert.match(w.stderr, /403/)
    assert.match(w.stderr, /--token-file/)
  } finally {
    await a.stop()
  }
  await fsckCleanAsync(seedA)
  // the old name still works
  const seedB = emptyStore('seed-old-name')
  const b = await startServe(seedB, ['--push-token', 's3cret'])
  try {
    const r = await execAsync(['push', 'img:1', b.url], {store: STORE, env: {VMI_PUSH_TOKEN: 's3cret'}})
    assert.is(r.status, 0, r.stderr)
  } finally {
    await b.stop()
  }
  // flags that exclude each other, and an empty token file
  const both = exec(['push', 'img:1', 'http://127.0.0.1:9', '--token', 'a', '--token-file', TOKEN_FILE], {store: STORE})
  assert.is(both.status, 2, both.stderr)
  const empty = path.join(T.dir, 'empty-token')
  writeFileSync(empty, '\n')
  const e = exec(['serve', '--token-file', empty], {store: STORE})
  assert.is(e.status, 2, e.stderr)
  assert.match(e.stderr, /empty/)
  // help names the new flags
  const h = exec(['serve', '--help'])
  assert.match(h.stdout, /--token-file/)
  assert.match(exec(['push', '--help']).stdout, /--token-file/)
})

test('remote add refuses a token file or CA file that is missing, empty or unreadable, and leaves the config as it was', async () => {
  await fixture()
  const store = emptyStore('remote-add')
  assert.is(exec(['remote', 'add', 'origin', 'http://127.0.0.1:7070'], {store}).status, 0)
  const config = path.join(store, 'config.json')
  const before = readFileSync(config, 'utf8')
  const empty = path.join(T.dir, 'empty')
  writeFileSync(empty, '')
  const dir = path.join(T.dir, 'a-directory')
  mkdirSync(dir, {recursive: true})
  const notPem = path.join(T.dir, 'not-pem')
  writeFileSync(notPem, 'hello\n')
  const cases = [
    [['--token-file', path.join(T.dir, 'nonexistent')], 3, /does not exist/],
    [['--token-file', empty], 2, /empty/],
    [['--token-file', dir], 2, /cannot read/],
    [['--ca-cert', path.join(T.dir, 'nonexistent.pem')], 3, /does not exist/],
    [['--ca-cert', notPem], 2, /no PEM certificate/],
  ]
  for (const [flags, code, msg] of cases) {
    const r = exec(['remote', 'add', 'origin', 'http://10.9.9.9:7070', ...flags], {store})
    assert.is(r.status, code, `${flags.join(' ')}: ${r.stderr}`)
    assert.match(r.stderr, msg)
    assert.is(r.stdout, '')
    assert.is(readFileSync(config, 'utf8'), before, `${flags.join(' ')}: config unchanged`)
  }
  // a good one is stored as an absolute path
  const ok = exec(['remote', 'add', 'origin', 'http://10.9.9.9:7070', '--token-file', path.relative(T.dir, TOKEN_FILE)], {store, cwd: T.dir})
  assert.is(ok.status, 0, ok.stderr)
  assert.is(JSON.parse(readFileSync(config, 'utf8')).remotes.origin.tokenFile, TOKEN_FILE)
})

// ---- TLS: a test CA, a server certificate it signs for 127.0.0.1

let pki
function makePki() {
  if (pki) return pki
  const d = path.join(T.dir, 'pki')
  mkdirSync(d, {recursive: true})
  const f = (n) => path.join(d, n)
  const run = (args) => {
    const r = spawnSync('openssl', args, {cwd: d})
    assert.is(r.status, 0, `openssl ${args.join(' ')}: ${r.stderr}`)
  }
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes']
  run(['req', '-x509', ...ec, '-keyout', f('ca.key'), '-out', f('ca.pem'), '-days', '2', '-subj', '/CN=vmi test CA'])
  run(['req', ...ec, '-keyout', f('server.key'), '-out', f('server.csr'), '-subj', '/CN=127.0.0.1'])
  writeFileSync(f('ext'), 'subjectAltName=IP:127.0.0.1\n')
  run(['x509', '-req', '-in', f('server.csr'), '-CA', f('ca.pem'), '-CAkey', f('ca.key'), '-CAcreateserial', '-out', f('server.pem'), '-days', '2', '-extfile', f('ext')])
  pki = {ca: f('ca.pem'), cert: f('server.pem'), key: f('server.key')}
  return pki
}

test('TLS: a certificate from a private CA fails clearly without --ca-cert, and pull, push, mount and serve --seed trust it with --ca-cert', async () => {
  if (!hasCommand('openssl')) return skip('openssl is not installed')
  await fixture()
  const {ca, cert, key} = makePki()
  const seed = emptyStore('tls-seed')
  const s = await startServe(seed, ['--tls-cert', cert, '--tls-key', key, '--token-file', TOKEN_FILE])
  try {
    assert.match(s.url, /^https:/)
    // push: refused without the CA, accepted with it
    const p0 = await execAsync(['push', 'img:1', s.url, '--token-file', TOKEN_FILE], {store: STORE})
    assert.is(p0.status, 9, p0.stderr)
    assert.match(p0.stderr, /not trusted/)
    assert.match(p0.stderr, /--ca-cert/)
    assert.match(p0.stderr, /--insecure/)
    const p1 = await execAsync(['push', 'img:1', s.url, '--token-file', TOKEN_FILE, '--ca-cert', ca], {store: STORE})
    assert.is(p1.status, 0, p1.stderr)

    // pull: the same; then with --ca-cert, $VMI_CA_CERT and a remote's caCert
    const h0 = path.join(T.dir, 'tls-host0')
    const r0 = await execAsync(['pull', 'img:1', s.url], {store: h0})
    assert.is(r0.status, 9, r0.stderr)
    assert.is(r0.stdout, '')
    assert.match(r0.stderr, /DEPTH_ZERO|UNABLE_TO|SELF_SIGNED|not trusted/)
    assert.match(r0.stderr, /--ca-cert FILE/)
    assert.match(r0.stderr, /--insecure/)
    for (const [name, args, env] of [
      ['flag', ['pull', 'img:1', s.url, '--ca-cert', ca], {}],
      ['env', ['pull', 'img:1', s.url], {VMI_CA_CERT: ca}],
      ['remote', ['pull', 'img:1'], {}],
    ]) {
      const host = path.join(T.dir, `tls-host-${name}`)
      if (name === 'remote') assert.is(exec(['remote', 'add', 'origin', s.url, '--ca-cert', ca], {store: host}).status, 0)
      const r = await execAsync(args, {store: host, env})
      assert.is(r.status, 0, `${name}: ${r.stderr}`)
      assert.match(r.stdout, /seed 1\.0 MiB/, name)
      const out = path.join(T.dir, `tls-out-${name}.raw`)
      assert.is(exec(['export', 'img:1', out], {store: host}).status, 0)
      assert.is(await sha256File(out), await sha256File(SRC))
    }
    // a CA bundle that is not this server's: still refused
    const otherCa = path.join(T.dir, 'other-ca.pem')
    const g = spawnSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', path.join(T.dir, 'other.key'), '-out', otherCa, '-days', '1', '-subj', '/CN=other'])
    assert.is(g.status, 0)
    const r1 = await execAsync(['pull', 'img:1', s.url, '--ca-cert', otherCa], {store: path.join(T.dir, 'tls-host1')})
    assert.is(r1.status, 9, r1.stderr)

    // serve --seed over https: its fetch-through trusts the CA with --ca-cert, and fails without it
    for (const [withCa, status] of [
      [true, 200],
      [false, 502],
    ]) {
      const peerStore = emptyStore(`tls-peer-${withCa}`)
      const peer = await startServe(peerStore, ['--seed', s.url, ...(withCa ? ['--ca-cert', ca] : [])])
      try {
        const chunk = firstChunk(STORE)
        const res = await fetch(`${peer.url}/objects/${chunk.slice(0, 2)}/${chunk.slice(2)}`, {headers: {'x-vmi-fetch': 'upstream'}})
        await res.arrayBuffer()
        assert.is(res.status, status, `fetch-through ${withCa ? 'with' : 'without'} --ca-cert`)
      } finally {
        await peer.stop()
      }
    }

    // mount: lazy reads through the https seed with --ca-cert
    if (!hasCommand('nbdcopy')) skip('nbdcopy is not installed: mount --ca-cert not exercised')
    else {
      const mountOut = path.join(T.dir, 'tls-mount.raw')
      const host = path.join(T.dir, 'tls-host-mount')
      const m = await execAsync(['mount', 'img:1', s.url, '--ca-cert', ca, '--read-only', '--prefetch', 'none', '--exec', `nbdcopy {nbd} ${mountOut}`], {store: host})
      assert.is(m.status, 0, m.stderr)
      assert.is(await sha256File(mountOut), await sha256File(SRC))
    }
  } finally {
    await s.stop()
  }
})

test('serve refuses what it could not honour: a TLS key that is not the certificate\'s (exit 2), a push token on a store it cannot write (exit 6); tokens must be printable ASCII; a full store answers uploads 507 in words', async () => {
  if (!hasCommand('openssl')) return skip('openssl is not installed')
  await fixture()
  const {cert} = makePki()
  // an Ed25519 key for the EC certificate: OpenSSL loads the pair, and every handshake would fail
  const edKey = path.join(T.dir, 'ed25519.key')
  assert.is(spawnSync('openssl', ['genpkey', '-algorithm', 'ed25519', '-out', edKey]).status, 0)
  const bad = exec(['serve', '--listen', '127.0.0.1:0', '--tls-cert', cert, '--tls-key', edKey], {store: emptyStore('tls-mismatch')})
  assert.is(bad.status, 2, bad.stderr)
  assert.match(bad.stderr, /bad TLS certificate or key: .*not the certificate's/)

  const odd = path.join(T.dir, 'token-utf8')
  writeFileSync(odd, 't\u00f6k\u20ac\n')
  for (const argv of [['serve', '--listen', '127.0.0.1:0', '--token-file', odd], ['push', 'img:1', 'http://127.0.0.1:9', '--token-file', odd]]) {
    const r = exec(argv, {store: STORE})
    assert.is(r.status, 2, `${argv[0]}: ${r.stderr}`)
    assert.match(r.stderr, /must be printable ASCII/)
  }

  const t = tmpDir('vmi-ro-serve-')
  const fs = tmpfs(t.dir, '2m')
  if (fs.reason) {
    t.cleanup()
    return skip(`the read-only and full store cases: ${fs.reason}`)
  }
  let s
  try {
    const store = path.join(fs.mnt, 'store')
    assert.is(exec(['remote', 'ls'], {store}).status, 0)
    assert.is(sh('mount', ['-o', 'remount,ro', fs.mnt]), undefined)
    const ro = exec(['serve', '--listen', '127.0.0.1:0', '--token-file', TOKEN_FILE], {store})
    assert.is(ro.status, 6, ro.stderr)
    assert.match(ro.stderr, /cannot take pushes: serve it without a push token/)
    assert.is(sh('mount', ['-o', 'remount,rw', fs.mnt]), undefined)
    // 1 MiB of chunks into what is left of 2 MiB after a filler: the store fills mid-push
    writeFileSync(path.join(fs.mnt, 'filler'), Buffer.alloc(1536 * 1024, 1))
    s = await startServe(store, ['--token-file', TOKEN_FILE])
    const p = await execAsync(['push', 'img:1', s.url, '--token-file', TOKEN_FILE], {store: STORE})
    assert.is(p.status, 9, p.stderr)
    assert.match(p.stderr, /507.*store cannot be written: it is full/)
    assert.not.match(s.stderr(), /\n\s+at /, 'no stack in the server log')
  } finally {
    await s?.stop()
    fs.umount()
    t.cleanup()
  }
})

/** The id of one chunk in a store (objects/ab/cdef…). */
function firstChunk(store) {
  const objects = path.join(store, 'objects')
  for (const d of readdirSync(objects)) {
    const files = readdirSync(path.join(objects, d))
    if (files.length) return d + files[0]
  }
  throw new Error('no objects')
}

test.after(() => T.cleanup())
test.run()
