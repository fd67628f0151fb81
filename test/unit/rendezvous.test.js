// Owner hashing (src/peer/rendezvous.ts) against its statement in
// docs/PROTOCOL.md, "Owner hashing": every host must compute the same owners.
import {createHash} from 'node:crypto'
import {test} from 'uvu'
import * as assert from 'uvu/assert'
import {balancedOwners, hash, OWNER_SLACK, rankPeers, rendezvousScore} from '../../dist/index.js'
import {ownerPicker, walkRanked} from '../../dist/peer/rendezvous.js'

// The function as PROTOCOL.md states it, written out with BigInt arithmetic
// (not the 32-bit tricks of the implementation), so that the two are checked
// against each other.
const M32 = 0xffffffffn
function fmix32Spec(x) {
  let h = BigInt(x)
  h ^= h >> 16n
  h = (h * 0x85ebca6bn) & M32
  h ^= h >> 13n
  h = (h * 0xc2b2ae35n) & M32
  h ^= h >> 16n
  return Number(h)
}
const peerKeySpec = (url) => Number.parseInt(hash(Buffer.from(url, 'utf8')).slice(0, 8), 16)
const weightSpec = (url, id) => fmix32Spec((BigInt(Number.parseInt(id.slice(0, 8), 16)) ^ BigInt(peerKeySpec(url))) & M32)

const ids = Array.from({length: 4096}, (_, i) => hash(Buffer.from(`rendezvous-test-${i}`)))
const urls = Array.from({length: 64}, (_, i) => `http://10.1.${i >> 8}.${i & 255}:7070`)
const peers = urls.map((url) => ({url}))

test('the weight is fmix32(chunk key XOR peer key), as PROTOCOL.md states it', () => {
  for (const id of ids.slice(0, 200)) for (const url of urls.slice(0, 8)) assert.is(rendezvousScore(url, id), weightSpec(url, id), `${url} ${id}`)
  // one fixed vector, so that a change of the hash underneath shows too
  const id = createHash('sha256').update('fixed').digest('hex') // any 64 hex digits
  assert.is(rendezvousScore('http://10.0.0.1:7070', id), weightSpec('http://10.0.0.1:7070', id))
})

test('peers rank by weight, highest first; the owner picker agrees with the ranking', () => {
  const pick = ownerPicker(peers)
  for (const id of ids.slice(0, 500)) {
    const ranked = rankPeers(peers, id)
    const w = ranked.map((p) => weightSpec(p.url, id))
    for (let i = 1; i < w.length; i++) assert.ok(w[i - 1] >= w[i], `descending weights for ${id}`)
    assert.is(pick(id), ranked[0])
    assert.equal([...walkRanked(peers, id)], ranked)
  }
  assert.is(ownerPicker([])(ids[0]), undefined)
})

test('equal weights go by URL, whatever the list order', () => {
  // the same URL twice weighs the same: the tie is broken by URL, so the order is stable
  const a = {url: 'http://10.0.0.2:7070', n: 1}
  const b = {url: 'http://10.0.0.2:7070', n: 2}
  const c = {url: 'http://10.0.0.1:7070', n: 3}
  for (const id of ids.slice(0, 50)) {
    const one = rankPeers([a, b, c], id).map((p) => p.url)
    const two = rankPeers([c, b, a], id).map((p) => p.url)
    assert.equal(one, two)
    assert.is(ownerPicker([a, c])(id).url, ownerPicker([c, a])(id).url)
    assert.equal([...walkRanked([c, b, a], id)].map((p) => p.url), one)
  }
})

test('a peer leaving moves only the chunks it owned; the others keep their owner', () => {
  const gone = urls[5]
  const rest = peers.filter((p) => p.url !== gone)
  let moved = 0
  for (const id of ids) {
    const before = rankPeers(peers, id)
    const after = rankPeers(rest, id)
    if (before[0].url === gone) {
      moved++
      assert.is(after[0], before[1], 'its chunks go to their second-ranked peer')
    } else assert.is(after[0], before[0])
  }
  assert.ok(moved > 0)
})

test('ownership spreads evenly: 4,096 chunks over 16 peers, each within 25 % of the mean', () => {
  const sixteen = peers.slice(0, 16)
  const pick = ownerPicker(sixteen)
  const owned = new Map(sixteen.map((p) => [p, 0]))
  for (const id of ids) owned.set(pick(id), owned.get(pick(id)) + 1)
  const mean = ids.length / 16
  for (const [p, n] of owned) assert.ok(Math.abs(n - mean) <= 0.25 * mean, `${p.url} owns ${n} (mean ${mean})`)
})

test('a chunk key that is not hex is refused', () => {
  assert.throws(() => rendezvousScore('http://a', 'not-a-chunk-id'), /not a chunk id/)
})

// Balanced owners as PROTOCOL.md states them, written out from full rankings:
// round by round, every chunk not yet placed asks its next-ranked peer, in
// ascending id order; a peer takes it while it holds fewer than the cap.
function balancedSpec(chunkIds, list, slack) {
  const sorted = [...new Set(chunkIds)].sort()
  const cap = Math.ceil(((1 + slack) * sorted.length) / list.length)
  const load = new Map()
  const owner = new Map()
  const ranking = new Map(sorted.map((id) => [id, rankPeers(list, id)]))
  let open = sorted
  for (let k = 0; open.length > 0; k++) {
    const next = []
    for (const id of open) {
      const p = ranking.get(id)[k]
      if ((load.get(p) ?? 0) < cap) {
        load.set(p, (load.get(p) ?? 0) + 1)
        owner.set(id, p)
      } else next.push(id)
    }
    open = next
  }
  return owner
}

test('balanced owners: what PROTOCOL.md states, within the cap, whatever the order of ids and peers', () => {
  const chunks = ids.slice(0, 512)
  const sixteen = peers.slice(0, 16)
  const owners = balancedOwners(chunks, sixteen)
  // PROTOCOL.md: cap = ⌈C / P⌉, no slack (hosts must agree on owners: a contract, not a tunable)
  assert.is(OWNER_SLACK, 0)
  assert.equal(owners, balancedSpec(chunks, sixteen, 0))
  const cap = 512 / 16
  const load = new Map()
  for (const p of owners.values()) load.set(p, (load.get(p) ?? 0) + 1)
  assert.equal([...new Set(load.values())], [cap], `exactly ${cap} each: ${[...load.values()]}`)
  // plain rendezvous over the same input leaves an owner above the cap (else this test shows nothing)
  const plain = new Map()
  for (const id of chunks) plain.set(rankPeers(sixteen, id)[0], (plain.get(rankPeers(sixteen, id)[0]) ?? 0) + 1)
  assert.ok(Math.max(...plain.values()) > cap, `rendezvous alone: ${[...plain.values()]}`)
  // most chunks keep their first-ranked peer
  const kept = chunks.filter((id) => owners.get(id) === rankPeers(sixteen, id)[0]).length
  assert.ok(kept > 0.8 * chunks.length, `${kept} of ${chunks.length} keep their first-ranked peer`)
  // the same owners from shuffled ids (with repeats) and a reversed peer list
  const shuffled = [...chunks].reverse().concat(chunks.slice(0, 10))
  const again = balancedOwners(shuffled, [...sixteen].reverse())
  for (const id of chunks) assert.is(again.get(id), owners.get(id))
})

test('balanced owners, evenly (slack 0) and over more peers than chunks', () => {
  const even = balancedOwners(ids.slice(0, 160), peers.slice(0, 16), 0)
  const load = new Map()
  for (const p of even.values()) load.set(p, (load.get(p) ?? 0) + 1)
  assert.equal([...new Set(load.values())], [10])
  const few = balancedOwners(ids.slice(0, 5), peers)
  assert.is(few.size, 5)
  assert.is(new Set(few.values()).size, 5, 'one chunk each')
  assert.is(balancedOwners(ids.slice(0, 5), []).size, 0)
})

test.run()
