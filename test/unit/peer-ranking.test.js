// PeerRanking: the order a fetch chain asks its peers for a chunk, and the
// peer each chunk is bulk-fetched from (its owner while up, else the next
// one up in its order).
import {test} from 'uvu'
import * as assert from 'uvu/assert'
import {randomBytes} from 'node:crypto'
import {PeerRanking} from '../../dist/peer/peer-ranking.js'
import {balancedOwners, rankPeers} from '../../dist/peer/rendezvous.js'
import {hash} from '../../dist/store/hash.js'

const peers = (n) => Array.from({length: n}, (_, i) => ({name: `peer ${i}`, url: `http://10.0.0.${i + 1}:7070/`, downSince: undefined}))
const ids = (n) => Array.from({length: n}, () => hash(randomBytes(16)))

/** A ranking with owner hashing over `n` peers and `m` chunks it knows, and the owners balancedOwners gives them. */
function balanced(n, m) {
  const ps = peers(n)
  const chunks = ids(m)
  const r = new PeerRanking(ps, true)
  r.setChunks(chunks)
  return {ps, chunks, r, owners: balancedOwners(chunks, ps)}
}

test('owner hashing, chunks known: the balanced owner first, then the others by rank, each once', () => {
  const {ps, chunks, r, owners} = balanced(5, 200)
  for (const id of chunks) {
    const order = [...r.order(id)]
    assert.is(order[0], owners.get(id))
    assert.equal(order.slice(1), rankPeers(ps, id).filter((p) => p !== owners.get(id)))
  }
})

test('owner hashing, chunks not known: the rendezvous order', () => {
  const ps = peers(4)
  const r = new PeerRanking(ps, true)
  for (const id of ids(20)) assert.equal([...r.order(id)], rankPeers(ps, id))
})

test('without owner hashing: the peers as listed, and the first one up for every chunk', () => {
  const ps = peers(3)
  const r = new PeerRanking(ps, false)
  const [id] = ids(1)
  assert.equal([...r.order(id)], ps)
  ps[0].downSince = Date.now()
  assert.is(r.firstUp()(id), ps[1])
})

test('firstUp: the owner while it is up, else the next peer up in the chunk order; undefined with every peer down', () => {
  const {ps, chunks, r, owners} = balanced(4, 64)
  for (const id of chunks) assert.is(r.firstUp()(id), owners.get(id))
  const down = ps[2]
  down.downSince = Date.now()
  const pick = r.firstUp()
  for (const id of chunks) {
    const want = [...r.order(id)].find((p) => p !== down)
    assert.is(pick(id), want)
  }
  for (const p of ps) p.downSince = Date.now()
  assert.is(r.firstUp(), undefined)
})

test('setPeers balances the owners over the new list', () => {
  const chunks = ids(100)
  const r = new PeerRanking(peers(2), true)
  r.setChunks(chunks)
  const more = peers(6)
  r.setPeers(more)
  assert.is(r.list, more)
  const owners = balancedOwners(chunks, more)
  for (const id of chunks) assert.is([...r.order(id)][0], owners.get(id))
})

test.run()
