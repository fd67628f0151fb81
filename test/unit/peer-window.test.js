// A pull's bulk path keeps one pipelining window for all its peer
// connections together (chain-bulk.ts, PEER_WINDOW_BYTES): with many owners
// each connection asks for few chunks at a time, with one its connections
// ask for many.
// The peers here are scripted servers on 127.0.0.1 that hold every answer a
// little while and record, per connection, the most requests they had
// received and not yet answered.
import {test} from 'uvu'
import * as assert from 'uvu/assert'
import net from 'node:net'
import {randomBytes} from 'node:crypto'
import {mkdtempSync, rmSync} from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {FetchChain} from '../../dist/peer/chain.js'
import {openRemote} from '../../dist/peer/factory.js'
import {PEER_WINDOW_BYTES, peerWindowBytes} from '../../dist/peer/chain-bulk.js'
import {LocalStore} from '../../dist/store/local-store.js'
import {hash} from '../../dist/store/hash.js'

const CHUNK = 128 * 1024

/** A peer that has every chunk in `bodies`, answers each request `holdMs` after the one before, and records the deepest pipeline per connection. */
async function holdingPeer(bodies, holdMs = 15) {
  const depths = []
  const sockets = new Set()
  const server = net.createServer((sock) => {
    sockets.add(sock)
    sock.on('close', () => sockets.delete(sock))
    sock.on('error', () => {})
    const conn = depths.push(0) - 1
    const waiting = []
    let buf = ''
    let timer
    const answerNext = () => {
      timer = undefined
      const id = waiting.shift()
      if (id === undefined) return
      const body = bodies.get(id)
      const head = body ? `HTTP/1.1 200 OK\r\ncontent-length: ${body.length}\r\n\r\n` : 'HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n'
      sock.write(body ? Buffer.concat([Buffer.from(head, 'latin1'), body]) : head)
      if (waiting.length > 0) timer = setTimeout(answerNext, holdMs)
    }
    sock.on('data', (d) => {
      buf += d.toString('latin1')
      let end
      while ((end = buf.indexOf('\r\n\r\n')) >= 0) {
        const m = /^GET \S*\/objects\/([0-9a-f]{2})\/([0-9a-f]{62}) HTTP\/1\.1/.exec(buf.slice(0, end))
        buf = buf.slice(end + 4)
        waiting.push(m ? m[1] + m[2] : '')
        depths[conn] = Math.max(depths[conn], waiting.length)
      }
      timer ??= setTimeout(answerNext, holdMs)
    })
  })
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    depths,
    close: () => {
      for (const s of sockets) s.destroy()
      return new Promise((resolve) => server.close(resolve))
    },
  }
}

/** Pull `count` random chunks of CHUNK bytes through a chain over `peerCount` holding peers; the peers' recorded depths. */
async function pullFrom(peerCount, count) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'vmi-peer-window-'))
  const bodies = new Map()
  for (let i = 0; i < count; i++) {
    const body = randomBytes(CHUNK)
    bodies.set(hash(body), body)
  }
  const peers = []
  try {
    for (let i = 0; i < peerCount; i++) peers.push(await holdingPeer(bodies))
    const store = await LocalStore.open(path.join(dir, 'store'))
    const chain = new FetchChain(store, {peers: peers.map((p) => openRemote(p.url, {kind: 'peer'}))})
    chain.setChunks(bodies.keys())
    await chain.fetchMany([...bodies].map(([id, b]) => ({id, length: b.length})))
    for (const id of bodies.keys()) assert.ok(await store.hasObject(id), `chunk ${id} stored`)
    assert.is(chain.stats.chunks.peer, count, 'every chunk came from a peer')
    assert.is(chain.stats.sourceErrors, 0)
    return peers.map((p) => p.depths)
  } finally {
    await Promise.all(peers.map((p) => p.close()))
    rmSync(dir, {recursive: true, force: true})
  }
}

test('the window per peer connection: the total shared out, never below two chunks or above one seed connection', () => {
  assert.is(peerWindowBytes(1, CHUNK), PEER_WINDOW_BYTES)
  assert.is(peerWindowBytes(2, CHUNK), PEER_WINDOW_BYTES / 2)
  assert.is(peerWindowBytes(16, CHUNK), PEER_WINDOW_BYTES / 16)
  assert.is(peerWindowBytes(32, CHUNK), 2 * CHUNK)
  assert.is(peerWindowBytes(0, CHUNK), PEER_WINDOW_BYTES)
})

test('sixteen owners: each connection has at most two chunks asked at once', async () => {
  const depths = await pullFrom(16, 128)
  const all = depths.flat()
  assert.ok(all.length >= 16, `${all.length} connections`)
  const deepest = Math.max(...all)
  // balanced owners: 8 chunks each; a window per connection of 4 MiB asked for all 8 at once
  assert.ok(deepest <= 2, `a peer had ${deepest} requests outstanding on one connection (${JSON.stringify(depths)})`)
})

test('one owner: its connections (one per writer thread) keep the whole window asked between them, and no more', async () => {
  const depths = await pullFrom(1, 48)
  const total = depths.flat().reduce((a, b) => a + b, 0)
  const whole = PEER_WINDOW_BYTES / CHUNK
  // each connection had half the chunks or fewer: 24 or more of them were asked at once, 32 at the most
  assert.ok(total >= 24 && total <= whole, `the peer saw ${total} requests outstanding over ${depths.flat().length} connections (the window holds ${whole} chunks): ${JSON.stringify(depths)}`)
})

test.run()
