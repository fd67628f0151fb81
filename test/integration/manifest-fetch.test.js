// Where a pull gets the manifest, through the real CLI: its peers are asked
// all at once (as a fleet starts none of them has it, and asking them in turn
// cost a round trip per peer before the seed), the first verified copy wins,
// a peer that sends wrong bytes is passed over, and the seed is asked only
// when no peer has it. The peers here are node:http servers that hold every
// manifest request until all of them have one (or 3 s have passed), so a
// pull that asks them one after another shows up as one request at a time.
import {test} from 'uvu'
import * as assert from 'uvu/assert'
import {readFileSync} from 'node:fs'
import http from 'node:http'
import path from 'node:path'
import {execAsync, tmpStore} from '../helpers/index.js'
import {seedImage} from '../helpers/peers.js'

const PEERS = 4
const HOLD_MS = 3000

/**
 * PEERS fake peers sharing one barrier per kind (manifests, profiles): each
 * such request is held until PEERS of its kind are in flight at once, or
 * HOLD_MS; then `answer(i, kind)` says what peer i sends (a Buffer, or
 * undefined for 404). Everything else is a 404.
 */
async function fakePeers(answer) {
  const kinds = {manifests: {inFlight: 0, max: 0, asked: 0, waiting: []}, profiles: {inFlight: 0, max: 0, asked: 0, waiting: []}}
  const servers = await Promise.all(
    Array.from({length: PEERS}, async (_, i) => {
      const s = http.createServer(async (req, res) => {
        // (a 404 with a length, as vmi serve sends it: the pull's quick GET takes no chunked body)
        const notFound = () => res.writeHead(404, {'Content-Length': 0}).end()
        const kind = req.url.split('/')[1]
        const state = kinds[kind]
        if (!state) return notFound()
        state.asked++
        state.max = Math.max(state.max, ++state.inFlight)
        if (state.inFlight >= PEERS) state.waiting.splice(0).forEach((go) => go())
        else await new Promise((go) => (state.waiting.push(go), setTimeout(go, HOLD_MS)))
        state.inFlight--
        const body = answer(i, kind)
        if (body) res.writeHead(200, {'Content-Type': 'application/octet-stream', 'Content-Length': body.length}).end(body)
        else notFound()
      })
      await new Promise((r) => s.listen(0, '127.0.0.1', r))
      return s
    }),
  )
  return {
    kinds,
    urls: servers.map((s) => `http://127.0.0.1:${s.address().port}`),
    close: () => Promise.all(servers.map((s) => new Promise((r) => (s.closeAllConnections(), s.close(r))))),
  }
}

async function pullWith(t, seed, urls, name) {
  const r = await execAsync(['pull', 'app:v1', seed.url, '--json', ...urls.flatMap((u) => ['--peer', u])], {store: path.join(t.dir, name)})
  assert.is(r.status, 0, r.stderr)
  return JSON.parse(r.stdout)
}

test('the peers are asked for the manifest all at once; none has it: the seed', async () => {
  const t = tmpStore()
  const servers = []
  let peers
  try {
    const {seed} = await seedImage(t.dir, 'manifest-fetch-1', servers, 1024)
    peers = await fakePeers(() => undefined)
    const pulled = await pullWith(t, seed, peers.urls, 'host')
    assert.is(peers.kinds.manifests.asked, PEERS, 'each peer asked once')
    assert.is(peers.kinds.manifests.max, PEERS, 'all of them at once')
    assert.match(pulled.manifestFrom, /seed/)
    // after the chunks, the boot profile is asked of them the same way
    assert.is(peers.kinds.profiles.asked, PEERS)
    assert.is(peers.kinds.profiles.max, PEERS)
  } finally {
    await peers?.close()
    for (const s of servers) await s.stop()
    t.cleanup()
  }
})

test('a peer that has the manifest gives it, one that sends wrong bytes is passed over; a peer that has the boot profile gives it', async () => {
  const t = tmpStore()
  const servers = []
  let peers
  try {
    const {seed, seedStore} = await seedImage(t.dir, 'manifest-fetch-2', servers, 1024)
    const id = JSON.parse((await execAsync(['inspect', 'app:v1', '--json'], {store: seedStore})).stdout).id
    const good = readFileSync(path.join(seedStore, 'manifests', id.slice(0, 2), id.slice(2)))
    const wrong = Buffer.from(good)
    wrong[wrong.length - 1] ^= 1
    // a boot profile of the image (FORMAT.md "Boot profiles"): its chunks 3 and 0, in that order
    const profile = Buffer.from(JSON.stringify({version: 1, chunkSize: 65536, chunks: [3, 0]}))
    // peer 0 lies, peer 2 has the manifest, peer 3 the profile, the others nothing
    peers = await fakePeers((i, kind) => (kind === 'profiles' ? (i === 3 ? profile : undefined) : i === 0 ? wrong : i === 2 ? good : undefined))
    const host = path.join(t.dir, 'host')
    const pulled = await pullWith(t, seed, peers.urls, 'host')
    assert.is(pulled.id, id)
    assert.is(peers.kinds.manifests.max, PEERS, 'all of them at once')
    assert.equal(JSON.parse(readFileSync(path.join(host, 'profiles', id.slice(0, 2), id.slice(2)), 'utf8')).chunks, [3, 0], 'the profile came from the peer that had it')
    assert.is(peers.kinds.profiles.max, PEERS)
    assert.match(pulled.manifestFrom, new RegExp(peers.urls[2].replace(/[.:/]/g, (c) => `\\${c}`)))
  } finally {
    await peers?.close()
    for (const s of servers) await s.stop()
    t.cleanup()
  }
})

test.run()
