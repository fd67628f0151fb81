// push / pull / peers through real `vmi serve` processes, real nginx, and
// hostile peers (wrong bytes, stalls) on 127.0.0.1.
import {test} from 'uvu'
import * as assert from 'uvu/assert'
import http from 'node:http'
import {promises as fsp} from 'node:fs'
import path from 'node:path'
import {exec, execAsync, fsckClean, hasCommand, listFiles, makeImage, sha256File, skip, spawnCli, tmpStore} from '../helpers/index.js'
import {metricSum, startServe} from '../helpers/serve.js'

const M = 1024 * 1024
const TOKEN = 'test-token-0123456789'

function ok(r, what) {
  assert.is(r.status, 0, `${what} failed (exit ${r.status}): ${r.stderr}`)
  return r
}

/** A seed store holding image `app:v1`, served by vmi serve with a push token. */
async function seedWithImage(t, layout) {
  const src = path.join(t.dir, 'src.raw')
  await makeImage(src, layout)
  const build = path.join(t.dir, 'build')
  ok(exec(['import', src, 'app:v1', '--chunk-size', '64K'], {store: build}), 'import')
  const seedStore = path.join(t.dir, 'seed')
  const seed = await startServe(seedStore, ['--push-token', TOKEN])
  const push = ok(exec(['push', 'app:v1', seed.url, '--json'], {store: build, env: {VMI_PUSH_TOKEN: TOKEN}}), 'push')
  return {src, build, seedStore, seed, push: JSON.parse(push.stdout)}
}

test('push → pull round trip is byte-identical; a re-push sends nothing; wrong tokens are refused', async () => {
  const t = tmpStore()
  let s
  try {
    s = await seedWithImage(t, [{kind: 'random', size: 3 * M, seed: 1}, {kind: 'zero', size: 2 * M}, {kind: 'repeat', size: M}])
    assert.is(s.push.uploadedChunks, 48, '3 MiB of distinct 64K chunks; zeros and repeats are not sent')
    const again = JSON.parse(ok(exec(['push', 'app:v1', s.seed.url, '--json'], {store: s.build, env: {VMI_PUSH_TOKEN: TOKEN}}), 'push again').stdout)
    assert.is(again.uploadedChunks, 0)
    assert.is(again.alreadyThere, 48)
    const bad = exec(['push', 'app:v1', s.seed.url, '--as', 'app:evil'], {store: s.build, env: {VMI_PUSH_TOKEN: 'wrong'}})
    assert.is(bad.status, 10, bad.stderr)
    assert.match(bad.stderr, /refused|403/)
    const none = exec(['push', 'app:v1', s.seed.url, '--as', 'app:evil'], {store: s.build})
    assert.is(none.status, 10, none.stderr)
    const host = path.join(t.dir, 'host')
    const r = JSON.parse(ok(exec(['pull', 'app:v1', s.seed.url, '--json'], {store: host}), 'pull').stdout)
    assert.is(r.fromChunks.seed, 48)
    assert.is(r.fromBytes.seed, 3 * M)
    const out = path.join(t.dir, 'out.raw')
    ok(exec(['export', 'app:v1', out], {store: host}), 'export')
    assert.is(await sha256File(out), await sha256File(s.src))
    // pull again: everything local
    const human = ok(exec(['pull', 'app:v1', s.seed.url], {store: host}), 'pull again').stdout
    assert.match(human, /local 3\.0 MiB \(48\), peers 0 B \(0\), seed 0 B \(0\)/)
    fsckClean(host)
    fsckClean(s.seedStore)
  } finally {
    await s?.seed.stop()
    t.cleanup()
  }
})

test('push sends object batches; a chunk corrupt in the local store is refused by the seed and named (exit 8), --verify stops it before it goes; a server without batches gets one PUT per chunk', async () => {
  const t = tmpStore()
  let seed
  let seed2
  let proxy
  try {
    const src = path.join(t.dir, 'src.raw')
    await makeImage(src, [{kind: 'random', size: 3 * M, seed: 7}, {kind: 'zero', size: M}])
    const build = path.join(t.dir, 'build')
    ok(exec(['import', src, 'app:v1', '--chunk-size', '64K'], {store: build}), 'import')
    const seedStore = path.join(t.dir, 'seed')
    seed = await startServe(seedStore, ['--push-token', TOKEN])
    const env = {VMI_PUSH_TOKEN: TOKEN}
    // one chunk flipped in the build store (its file only: the store's index does not know)
    const rel = (await listFiles(path.join(build, 'objects'))).sort()[5]
    const victim = path.join(build, 'objects', rel)
    const victimId = rel.replace('/', '')
    const good = await fsp.readFile(victim)
    const bad = Buffer.from(good)
    bad[100] ^= 1
    await fsp.chmod(victim, 0o644)
    await fsp.writeFile(victim, bad)
    const r = exec(['push', 'app:v1', seed.url], {store: build, env})
    assert.is(r.status, 8, r.stderr)
    assert.match(r.stderr, new RegExp(victimId))
    const verified = exec(['push', 'app:v1', seed.url, '--verify', '--as', 'app:verified'], {store: build, env})
    assert.is(verified.status, 8, verified.stderr)
    assert.match(verified.stderr, new RegExp(victimId))
    const seedFiles = await listFiles(path.join(seedStore, 'objects'))
    assert.not.ok(seedFiles.some((f) => f.endsWith(victimId.slice(2))), 'the corrupt chunk is not on the seed')
    assert.is((await listFiles(path.join(seedStore, 'refs'))).length, 0, 'no ref on the seed')
    const batches = metricSum(await seed.metrics(), 'vmi_http_requests_total', {route: 'v1/objects/batch'})
    assert.ok(batches >= 1, 'chunks went in object batches')
    assert.is(metricSum(await seed.metrics(), 'vmi_http_requests_total', {route: 'objects', method: 'PUT'}), 0, 'no chunk went in a PUT of its own')
    // mended: the push completes, and a pull gets the image back byte-identical
    await fsp.writeFile(victim, good)
    const done = JSON.parse(ok(exec(['push', 'app:v1', seed.url, '--json'], {store: build, env}), 'push').stdout)
    assert.is(done.uploadedChunks + done.alreadyThere, 48)
    fsckClean(seedStore)
    // an older vmi serve (no batch route: 404) behind a proxy: one PUT per chunk
    seed2 = await startServe(path.join(t.dir, 'seed2'), ['--push-token', TOKEN])
    const target = new URL(seed2.url)
    const seen = {batch: 0, put: 0}
    proxy = http.createServer((req, res) => {
      if (req.url === '/v1/objects/batch') {
        seen.batch++
        req.resume()
        return req.on('end', () => res.writeHead(404).end('not found\n'))
      }
      if (req.method === 'PUT' && req.url.startsWith('/objects/')) seen.put++
      const up = http.request({host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers}, (ur) => {
        res.writeHead(ur.statusCode, ur.headers)
        ur.pipe(res)
      })
      up.on('error', () => res.destroy())
      req.pipe(up)
    })
    await new Promise((resolve) => proxy.listen(0, '127.0.0.1', resolve))
    // (the proxy runs in this process: the CLI runs without blocking it)
    const viaProxy = JSON.parse(ok(await execAsync(['push', 'app:v1', `http://127.0.0.1:${proxy.address().port}`, '--json'], {store: build, env}), 'push to an older server').stdout)
    assert.is(viaProxy.uploadedChunks, 48)
    assert.is(seen.put, 48)
    assert.ok(seen.batch >= 1 && seen.batch <= 2, `asked for batches ${seen.batch} times, then stopped`)
    const host = path.join(t.dir, 'host')
    ok(exec(['pull', 'app:v1', seed2.url], {store: host}), 'pull')
    const out = path.join(t.dir, 'out.raw')
    ok(exec(['export', 'app:v1', out], {store: host}), 'export')
    assert.is(await sha256File(out), await sha256File(src))
    fsckClean(path.join(t.dir, 'seed2'))
  } finally {
    proxy?.close()
    await seed?.stop()
    await seed2?.stop()
    t.cleanup()
  }
})

test('remote add origin makes pull and push default to it', async () => {
  const t = tmpStore()
  let s
  try {
    s = await seedWithImage(t, [{kind: 'random', size: M, seed: 2}])
    const host = path.join(t.dir, 'host')
    ok(exec(['remote', 'add', 'origin', s.seed.url], {store: host}), 'remote add')
    const ls = JSON.parse(ok(exec(['remote', 'ls', '--json'], {store: host}), 'remote ls').stdout)
    assert.equal(ls.remotes, [{name: 'origin', url: s.seed.url}])
    ok(exec(['pull', 'app:v1'], {store: host}), 'pull from origin')
    const none = exec(['pull', 'app:v1', 'nosuch'], {store: host})
    assert.is(none.status, 3, 'an unknown remote name is not found (README exit codes)')
    assert.match(none.stderr, /no remote named "nosuch"/)
  } finally {
    await s?.seed.stop()
    t.cleanup()
  }
})

/**
 * fn({t, s, nginx}) with a seed holding app:v1 (vmi serve) and a plain nginx
 * serving the same store directory; everything stopped and removed after.
 */
async function withNginxSeed(layout, nginxOpts, fn) {
  if (!hasCommand('nginx')) return skip('nginx not installed')
  const {startNginx} = await import('../helpers/nginx.js')
  const t = tmpStore()
  let s
  let nginx
  try {
    s = await seedWithImage(t, layout)
    nginx = await startNginx(s.seedStore, nginxOpts)
    await fn({t, s, nginx})
  } finally {
    await nginx?.close()
    await s?.seed.stop()
    t.cleanup()
  }
}

test('a plain nginx serving a store directory is a read-only seed', () =>
  withNginxSeed([{kind: 'random', size: 2 * M, seed: 3}, {kind: 'zero', size: M}], {}, async ({t, s, nginx}) => {
    const host = path.join(t.dir, 'host')
    const r = JSON.parse(ok(exec(['pull', 'app:v1', nginx.url, '--json'], {store: host}), 'pull from nginx').stdout)
    assert.is(r.fromChunks.seed, 32)
    const out = path.join(t.dir, 'out.raw')
    ok(exec(['export', 'app:v1', out], {store: host}), 'export')
    assert.is(await sha256File(out), await sha256File(s.src))
    assert.ok(nginx.bytesServed() >= 2 * M, `nginx access log shows ${nginx.bytesServed()} bytes`)
    fsckClean(host)
  }))

test('pipelined pulls from nginx: a tiny keep-alive limit costs reconnections, never a chunk asked twice', () =>
  withNginxSeed(
    [{kind: 'random', size: 3 * M, seed: 5}, {kind: 'zero', size: M}, {kind: 'random', size: M, seed: 6}],
    {keepaliveRequests: 5},
    async ({t, s, nginx}) => {
      const host = path.join(t.dir, 'host')
      const r = JSON.parse(ok(exec(['pull', 'app:v1', nginx.url, '--json'], {store: host}), 'pull from nginx').stdout)
      assert.is(r.fromChunks.seed, 64)
      assert.is(r.sourceErrors, 0)
      const gets = nginx.requests().filter((q) => q.uri.startsWith('/objects/'))
      assert.is(gets.length, 64, 'nginx answered each chunk once (requests past its keep-alive limit were sent again, not lost or doubled)')
      assert.is(new Set(gets.map((q) => q.uri)).size, 64)
      assert.ok(gets.every((q) => q.status === 200))
      const out = path.join(t.dir, 'out.raw')
      ok(exec(['export', 'app:v1', out], {store: host}), 'export')
      assert.is(await sha256File(out), await sha256File(s.src))
      fsckClean(host)
      // the chunk-by-chunk path gives the same result
      const host2 = path.join(t.dir, 'host2')
      const r2 = JSON.parse(ok(exec(['pull', 'app:v1', nginx.url, '--json', '--no-bulk'], {store: host2}), 'pull --no-bulk').stdout)
      assert.is(r2.fromChunks.seed, 64)
      fsckClean(host2)
    },
  ))

test('pull by id from a peer while the seed is stopped', async () => {
  const t = tmpStore()
  let s
  let peer
  try {
    s = await seedWithImage(t, [{kind: 'random', size: 2 * M, seed: 4}])
    const host1 = path.join(t.dir, 'host1')
    ok(exec(['pull', 'app:v1', s.seed.url], {store: host1}), 'host1 pull')
    const id = s.push.id
    peer = await startServe(host1)
    await s.seed.stop()
    const host2 = path.join(t.dir, 'host2')
    const r = JSON.parse(ok(exec(['pull', id, s.seed.url, '--peer', peer.url, '--json'], {store: host2}), 'host2 pull').stdout)
    assert.is(r.fromChunks.peer, 32)
    assert.is(r.fromChunks.seed, 0)
    const out = path.join(t.dir, 'out.raw')
    ok(exec(['export', id, out], {store: host2}), 'export')
    assert.is(await sha256File(out), await sha256File(s.src))
    // by name the seed must be asked, and it is down: a clear error
    const byName = exec(['pull', 'app:v1', s.seed.url, '--peer', peer.url], {store: path.join(t.dir, 'host3')})
    assert.is(byName.status, 9, byName.stderr)
    assert.match(byName.stderr, /seed/)
  } finally {
    await peer?.stop()
    await s?.seed.stop()
    t.cleanup()
  }
})

/** A hostile peer: 'liar' answers every object with wrong bytes; 'staller' never answers. */
async function hostilePeer(kind) {
  const sockets = new Set()
  let hits = 0
  const server = http.createServer((req, res) => {
    hits++
    if (kind === 'liar') {
      const body = Buffer.alloc(65536, 0x41)
      res.writeHead(200, {'content-length': body.length})
      res.end(body)
    } else if (kind === 'truncating') {
      res.writeHead(200, {'content-length': 65536})
      res.write(Buffer.alloc(1000, 1))
      setTimeout(() => res.destroy(), 50)
    }
    // staller: never answers
  })
  server.on('connection', (s) => {
    sockets.add(s)
    s.on('close', () => sockets.delete(s))
  })
  await new Promise((r) => server.listen(0, '127.0.0.1', r))
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    hits: () => hits,
    close: () => new Promise((r) => {
      for (const s of sockets) s.destroy()
      server.close(r)
    }),
  }
}

test('lying, truncating and stalling peers never fail a pull nor store a bad chunk', async () => {
  const t = tmpStore()
  let s
  const peers = []
  try {
    s = await seedWithImage(t, [{kind: 'random', size: M, seed: 5}])
    for (const k of ['liar', 'truncating', 'staller']) peers.push(await hostilePeer(k))
    const host = path.join(t.dir, 'host')
    const args = ['pull', 'app:v1', s.seed.url, '--json', ...peers.flatMap((p) => ['--peer', p.url])]
    // async: this process serves the hostile peers, so it must not block
    const r = await execAsync(args, {store: host, env: {VMI_PEER_TIMEOUT_MS: '1500'}, timeout: 120_000})
    assert.is(r.status, 0, r.stderr)
    const j = JSON.parse(r.stdout)
    assert.is(j.fromChunks.seed, 16, 'every chunk came from the seed in the end')
    assert.ok(j.verificationFailures > 0, `the liar was caught: ${r.stdout}`)
    assert.ok(peers[0].hits() > 0 && peers[2].hits() > 0, 'hostile peers were asked')
    const out = path.join(t.dir, 'out.raw')
    ok(exec(['export', 'app:v1', out], {store: host}), 'export')
    assert.is(await sha256File(out), await sha256File(s.src))
    fsckClean(host)
  } finally {
    for (const p of peers) await p.close()
    await s?.seed.stop()
    t.cleanup()
  }
})

test('kill -9 mid-pull and mid-push: a re-run completes, fsck clean, no ref before completion', async () => {
  const t = tmpStore()
  let s
  try {
    s = await seedWithImage(t, [{kind: 'random', size: 48 * M, seed: 6}])
    const host = path.join(t.dir, 'host')
    for (let round = 0; round < 3; round++) {
      const child = spawnCli(['pull', 'app:v1', s.seed.url, '--concurrency', '2'], {store: host})
      // wait until some chunks have arrived, then kill
      for (let i = 0; i < 400; i++) {
        const n = (await listFiles(path.join(host, 'objects'))).length
        if (n > 50 * (round + 1) || child.exitCode !== null) break
        await new Promise((r) => setTimeout(r, 10))
      }
      child.kill('SIGKILL')
      await new Promise((r) => child.on('exit', r))
      const refs = await listFiles(path.join(host, 'refs'))
      if (refs.length > 0) break // it finished before the kill
      fsckClean(host)
    }
    ok(exec(['pull', 'app:v1', s.seed.url], {store: host}), 'pull after kills')
    const out = path.join(t.dir, 'out.raw')
    ok(exec(['export', 'app:v1', out], {store: host}), 'export')
    assert.is(await sha256File(out), await sha256File(s.src))
    fsckClean(host)

    // mid-push: a second seed, kill the push, push again
    const seed2Store = path.join(t.dir, 'seed2')
    const seed2 = await startServe(seed2Store, ['--push-token', TOKEN])
    try {
      const child = spawnCli(['push', 'app:v1', seed2.url, '--concurrency', '2'], {store: host, env: {VMI_PUSH_TOKEN: TOKEN}})
      for (let i = 0; i < 400; i++) {
        if ((await listFiles(path.join(seed2Store, 'objects'))).length > 100 || child.exitCode !== null) break
        await new Promise((r) => setTimeout(r, 10))
      }
      child.kill('SIGKILL')
      await new Promise((r) => child.on('exit', r))
      const partial = (await listFiles(path.join(seed2Store, 'refs'))).length
      const again = JSON.parse(ok(exec(['push', 'app:v1', seed2.url, '--json'], {store: host, env: {VMI_PUSH_TOKEN: TOKEN}}), 'push again').stdout)
      if (partial === 0) assert.ok(again.alreadyThere > 0, 'the re-run skipped what the killed push had sent')
      const h2 = path.join(t.dir, 'h2')
      ok(exec(['pull', 'app:v1', seed2.url], {store: h2}), 'pull from seed2')
      fsckClean(seed2Store)
    } finally {
      await seed2.stop()
    }
  } finally {
    await s?.seed.stop()
    t.cleanup()
  }
})

test('a peer that leaves mid-pull costs retries, not failures; peers can come from a peers file', async () => {
  const t = tmpStore()
  let s
  const serves = []
  try {
    s = await seedWithImage(t, [{kind: 'random', size: 24 * M, seed: 8}])
    for (let i = 0; i < 3; i++) serves.push(await startServe(path.join(t.dir, `p${i}`), ['--seed', s.seed.url]))
    const peersFile = path.join(t.dir, 'peers')
    await fsp.writeFile(peersFile, serves.map((p) => p.url).join('\n') + '\n# comment\n')
    const host = path.join(t.dir, 'host')
    const child = spawnCli(['pull', s.push.id, s.seed.url, '--json', '--peers-file', peersFile, '--concurrency', '2'], {store: host})
    let out = ''
    let err = ''
    child.stdout.on('data', (d) => (out += d))
    child.stderr.on('data', (d) => (err += d))
    // once the pull is under way, one peer dies
    for (let i = 0; i < 500 && (await listFiles(path.join(host, 'objects'))).length < 40; i++) await new Promise((r) => setTimeout(r, 10))
    await serves[1].stop('SIGKILL')
    const code = await new Promise((r) => child.on('exit', r))
    assert.is(code, 0, err)
    const j = JSON.parse(out)
    assert.is(j.fromChunks.peer + j.fromChunks.seed, 384, 'every chunk arrived')
    assert.ok(j.fromChunks.peer > 0, 'peers from the file were used')
    const outFile = path.join(t.dir, 'out.raw')
    ok(exec(['export', s.push.id, outFile], {store: host}), 'export')
    assert.is(await sha256File(outFile), await sha256File(s.src))
    fsckClean(host)
  } finally {
    for (const p of serves) await p.stop()
    await s?.seed.stop()
    t.cleanup()
  }
})

test('8 hosts pulling at once with owner hashing: the seed sends each chunk about once', async () => {
  const t = tmpStore()
  let s
  const serves = []
  try {
    s = await seedWithImage(t, [{kind: 'random', size: 16 * M, seed: 7}, {kind: 'zero', size: 4 * M}])
    const unique = 16 * M
    const before = metricSum(await s.seed.metrics(), 'vmi_served_bytes_total', {kind: 'objects'})
    const N = 8
    const stores = Array.from({length: N}, (_, i) => path.join(t.dir, `h${i}`))
    for (const st of stores) serves.push(await startServe(st, ['--seed', s.seed.url]))
    const peerArgs = serves.flatMap((p) => ['--peer', p.url])
    const pulls = stores.map((st) => {
      const child = spawnCli(['pull', s.push.id, s.seed.url, '--json', ...peerArgs], {store: st})
      let out = ''
      let err = ''
      child.stdout.on('data', (d) => (out += d))
      child.stderr.on('data', (d) => (err += d))
      return new Promise((resolve) => child.on('exit', (code) => resolve({code, out, err})))
    })
    const results = await Promise.all(pulls)
    for (const r of results) assert.is(r.code, 0, r.err)
    const after = metricSum(await s.seed.metrics(), 'vmi_served_bytes_total', {kind: 'objects'})
    const seedBytes = after - before
    console.log(`  8 hosts: seed sent ${seedBytes} bytes for ${unique} unique bytes (${(seedBytes / unique).toFixed(3)}x)`)
    assert.ok(seedBytes >= unique, 'the seed sent everything at least once')
    const summary = results.map((r) => {
      const j = JSON.parse(r.out)
      return `peer ${j.fromChunks.peer} seed ${j.fromChunks.seed} errors ${j.sourceErrors}`
    })
    assert.ok(seedBytes <= 1.02 * unique, `seed bytes ${seedBytes} within 1.02x of ${unique}; per host: ${summary.join('; ')}`)
    for (const st of stores.slice(0, 2)) fsckClean(st)
  } finally {
    for (const p of serves) await p.stop()
    await s?.seed.stop()
    t.cleanup()
  }
})

test.run()
