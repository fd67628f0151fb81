// What a pull says about its sources, through the real CLI: one dead peer
// (a closed port on 127.0.0.1) of two costs one warning line, not one per
// chunk; `--verbose` lists every peer and the seed, up or down and what each
// sent; `--json` carries the same as `sources`. With a chunk's owner down, the
// next peer up fetches it through. A pull from a dozen peers prints nothing
// but its summary; one from four dozen keeps at most 32 of them busy at once.
// A live peer failing every chunk costs a few warning lines and one sum, not
// a line per chunk.
import {test} from 'uvu'
import * as assert from 'uvu/assert'
import http from 'node:http'
import path from 'node:path'
import {balancedOwners} from '../../dist/index.js'
import {execAsync, freePort, makeImage, tmpStore} from '../helpers/index.js'
import {forwarder, objectIds, seedImage} from '../helpers/peers.js'
import {startServe} from '../helpers/serve.js'

test('one dead peer of two: one warning line; --verbose and --json say which sources are up and what each sent', async () => {
  const t = tmpStore()
  const servers = []
  try {
    // 64 chunks: about half of them owned by the dead peer
    const {seed} = await seedImage(t.dir, 'pull-sources', servers)
    const peerStore = path.join(t.dir, 'peer')
    assert.is((await execAsync(['pull', 'app:v1', seed.url], {store: peerStore})).status, 0)
    const peer = await startServe(peerStore)
    servers.push(peer)
    const dead = `http://127.0.0.1:${await freePort()}`
    const args = ['pull', 'app:v1', seed.url, '--peer', dead, '--peer', peer.url]

    for (const bulk of [[], ['--no-bulk']]) {
      const r = await execAsync([...args, ...bulk], {store: path.join(t.dir, `host${bulk.length}`)})
      assert.is(r.status, 0, r.stderr)
      const lines = r.stderr.trim().split('\n')
      assert.is(lines.length, 2, `a warning and the summary, nothing per chunk (${bulk}):\n${r.stderr}`)
      assert.match(lines[0], new RegExp(`^warning: peer ${dead}/? is unreachable \\(ECONNREFUSED\\)`))
      assert.match(lines[1], /^pulled [0-9a-f]{12} as app:v1: 64 distinct chunks/)
      assert.match(r.stdout, /^local 0 B \(0\), peers \S+ MiB \(64\), seed 0 B \(0\)\n$/, 'the live peer gave everything')
    }

    // each --peer takes one value: before the image and seed, they stay arguments
    const first = await execAsync(['pull', '--peer', dead, '--peer', peer.url, 'app:v1', seed.url], {store: path.join(t.dir, 'host-first')})
    assert.is(first.status, 0, first.stderr)
    assert.match(first.stdout, /^local 0 B \(0\), peers \S+ MiB \(64\), seed 0 B \(0\)\n$/)

    const v = await execAsync([...args, '--verbose'], {store: path.join(t.dir, 'host-v')})
    assert.is(v.status, 0, v.stderr)
    assert.match(v.stderr, new RegExp(`  peer ${dead}/?: down since \\S+ \\(ECONNREFUSED\\), sent 0 chunks`))
    assert.match(v.stderr, new RegExp(`  peer ${peer.url}/?: up, sent 64 chunks`))
    assert.match(v.stderr, new RegExp(`  seed ${seed.url}/?: up, sent 0 chunks`))

    const j = await execAsync([...args, '--json'], {store: path.join(t.dir, 'host-j')})
    assert.is(j.status, 0, j.stderr)
    const {sources} = JSON.parse(j.stdout)
    assert.equal(
      sources.map((s) => [s.kind, s.up, s.chunks, s.downReason]),
      [
        ['peer', false, 0, 'ECONNREFUSED'],
        ['peer', true, 64, undefined],
        ['seed', true, 0, undefined],
      ],
    )
    assert.is(j.stderr.trim().split('\n').length, 1, `one JSON warning line:\n${j.stderr}`)
  } finally {
    for (const s of servers) await s.stop()
    t.cleanup()
  }
})

test('a dead owner: the next peer up fetches its chunks through, chunk by chunk as in bulk, and the host never asks the seed', async () => {
  const t = tmpStore()
  const servers = []
  try {
    // 64 chunks over three peers: about a third owned by the dead one
    const {seed} = await seedImage(t.dir, 'pull-dead-owner', servers)
    const dead = `http://127.0.0.1:${await freePort()}`
    for (const bulk of [['--no-bulk'], []]) {
      // owners with empty stores: whatever they send, they fetched through from the seed
      const a = await startServe(path.join(t.dir, `a${bulk.length}`), ['--seed', seed.url])
      const b = await startServe(path.join(t.dir, `b${bulk.length}`), ['--seed', seed.url])
      servers.push(a, b)
      const r = await execAsync(['pull', 'app:v1', seed.url, '--peer', dead, '--peer', a.url, '--peer', b.url, '--json', ...bulk], {store: path.join(t.dir, `host${bulk.length}`)})
      assert.is(r.status, 0, r.stderr)
      assert.equal(JSON.parse(r.stdout).fromChunks, {local: 0, peer: 64, seed: 0}, `every chunk through a live peer (${bulk})`)
    }
  } finally {
    for (const s of servers) await s.stop()
    t.cleanup()
  }
})

test('a pull from twelve peers prints its summary and nothing else (no listener-leak warning)', async () => {
  const t = tmpStore()
  const servers = []
  try {
    // the pull asks each owner over its own connection: more than ten owners is what used to warn
    const {seed, seedStore} = await seedImage(t.dir, 'pull-twelve-peers', servers)
    const peer = await startServe(path.join(t.dir, 'peer'), ['--seed', seed.url])
    servers.push(peer)
    const ids = await objectIds(seedStore)
    assert.is(ids.length, 64)
    // 64 chunks over 12 peers leave one without a chunk about once in 20 (the ports vary):
    // another peer is added until at least twelve own some
    const peers = []
    let owned
    while (peers.length < 12 || owned.size < 12) {
      const p = await forwarder(peer.url)
      peers.push(p)
      servers.push(p)
      owned = new Map()
      // the URLs in their normal form, as the pull ranks them (PROTOCOL.md, "Owner hashing")
      const listed = peers.map((p) => ({url: new URL(p.url).href}))
      for (const o of balancedOwners(ids, listed).values()) owned.set(o.url, (owned.get(o.url) ?? 0) + 1)
    }
    const r = await execAsync(['pull', 'app:v1', seed.url, ...peers.flatMap((p) => ['--peer', p.url]), '--json'], {store: path.join(t.dir, 'host')})
    assert.is(r.status, 0, r.stderr)
    assert.is(r.stderr, '', 'nothing on stderr with --json')
    const out = JSON.parse(r.stdout)
    assert.equal(out.fromChunks, {local: 0, peer: 64, seed: 0})
    // each chunk came from its owner (PROTOCOL.md, "Owner hashing")
    const sent = Object.fromEntries(out.sources.filter((s) => s.kind === 'peer' && s.chunks > 0).map((s) => [s.url, s.chunks]))
    assert.equal(sent, Object.fromEntries(owned), 'every owner sent what it owns')
  } finally {
    for (const s of servers) await s.stop()
    t.cleanup()
  }
})

test('a pull from 48 peers holds at most 32 bulk connections open at once, and each chunk still comes from its owner', async () => {
  const t = tmpStore()
  const servers = []
  try {
    const {seed, seedStore} = await seedImage(t.dir, 'pull-48-peers', servers, 8192)
    const peer = await startServe(path.join(t.dir, 'peer'), ['--seed', seed.url])
    servers.push(peer)
    // every connection is held 200 ms before it is answered, so that connections opened together overlap
    const open = {now: 0, max: 0}
    const peers = []
    for (let i = 0; i < 48; i++) {
      const p = await forwarder(peer.url, {delayMs: 200, open})
      peers.push(p)
      servers.push(p)
    }
    const ids = await objectIds(seedStore)
    const listed = peers.map((p) => ({url: new URL(p.url).href}))
    const owned = new Map()
    for (const o of balancedOwners(ids, listed).values()) owned.set(o.url, (owned.get(o.url) ?? 0) + 1)
    assert.ok(owned.size > 36, `${owned.size} owners: enough to need more connections than the bound`)
    const r = await execAsync(['pull', 'app:v1', seed.url, ...peers.flatMap((p) => ['--peer', p.url]), '--json'], {store: path.join(t.dir, 'host')})
    assert.is(r.status, 0, r.stderr)
    const out = JSON.parse(r.stdout)
    assert.equal(out.fromChunks, {local: 0, peer: 128, seed: 0})
    const sent = Object.fromEntries(out.sources.filter((s) => s.kind === 'peer' && s.chunks > 0).map((s) => [s.url, s.chunks]))
    assert.equal(sent, Object.fromEntries(owned), 'every owner sent what it owns')
    // 32, and at most a couple more: a connection the pull has closed is counted until its close reaches the forwarder
    assert.ok(open.max <= 34, `${open.max} connections open at once (${owned.size} owners)`)
    assert.ok(open.max >= 16, `${open.max} connections open at once: the pull still fetches from many owners at a time`)
  } finally {
    for (const s of servers) await s.stop()
    t.cleanup()
  }
})

test('a live peer that fails every chunk: three warning lines and one sum of the rest, not a line per chunk', async () => {
  const t = tmpStore()
  const servers = []
  // answers, but 503 to everything: not down (its breaker stays closed), so every chunk it owns fails there
  const failing = http.createServer((req, res) => res.writeHead(503, {'content-length': '0'}).end())
  await new Promise((r) => failing.listen(0, '127.0.0.1', r))
  const bad = `http://127.0.0.1:${failing.address().port}`
  try {
    const {seed} = await seedImage(t.dir, 'pull-failing-peer', servers)
    const r = await execAsync(['pull', 'app:v1', seed.url, '--peer', bad], {store: path.join(t.dir, 'host')})
    assert.is(r.status, 0, r.stderr)
    assert.match(r.stdout, /seed \S+ MiB \(64\)/, 'the seed gave every chunk')
    const warnings = r.stderr.split('\n').filter((l) => l.startsWith('warning: '))
    assert.ok(warnings.length <= 5, `a few lines, not one per chunk (${warnings.length}):\n${r.stderr}`)
    assert.match(warnings.at(-1), new RegExp(`^warning: \\d+ more failures from peer ${bad}/? not shown \\(the last: .*503`))

    // --json: the same lines as objects; the shown ones and the sums account for every failure
    const j = await execAsync(['pull', 'app:v1', seed.url, '--peer', bad, '--json'], {store: path.join(t.dir, 'host-j')})
    assert.is(j.status, 0, j.stderr)
    const lines = j.stderr.trim().split('\n').map((l) => JSON.parse(l).warning)
    assert.ok(lines.length <= 5, `${lines.length} JSON warning lines`)
    const shown = lines.filter((w) => w.suppressed === undefined)
    const sums = lines.filter((w) => w.suppressed !== undefined)
    assert.is(shown.length, 3)
    assert.ok(sums.length >= 1)
    for (const w of lines) assert.is(w.type, 'source-error')
    const failures = shown.length + sums.reduce((a, w) => a + w.suppressed, 0)
    assert.ok(failures >= 64, `every chunk failed at the peer at least once: ${failures}`)
  } finally {
    for (const s of servers) await s.stop()
    await new Promise((r) => failing.close(r))
    t.cleanup()
  }
})

test('a name spelled in hex (cafe) is pulled as cafe:latest from the seed when it is no local id prefix; one the seed lacks is not found (exit 3)', async () => {
  const t = tmpStore()
  let seed
  try {
    const src = path.join(t.dir, 'src.raw')
    await makeImage(src, [{kind: 'random', size: 256 * 1024, seed: 'hex-name'}])
    const seedStore = path.join(t.dir, 'seed')
    const imp = await execAsync(['import', src, 'cafe', '-q'], {store: seedStore})
    assert.is(imp.status, 0, imp.stderr)
    seed = await startServe(seedStore)
    const r = await execAsync(['pull', 'cafe', seed.url, '--json'], {store: t.store})
    assert.is(r.status, 0, r.stderr)
    assert.equal([JSON.parse(r.stdout).id, JSON.parse(r.stdout).ref], [imp.stdout.trim(), 'cafe:latest'])
    const none = await execAsync(['pull', 'beef', seed.url], {store: t.store})
    assert.is(none.status, 3, none.stderr)
    assert.match(none.stderr, /has no image beef:latest/)
  } finally {
    await seed?.stop()
    t.cleanup()
  }
})

test.run()
