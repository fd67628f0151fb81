// Invariants of the owner-hashing simulation (bench/sim.js), which runs on the
// real rankPeers from dist/peer/rendezvous.js.
import {test} from 'uvu'
import * as assert from 'uvu/assert'
import {chunkIds, loadRendezvous, peerUrls, rng, simContext, simulate} from '../../bench/sim.js'

const rv = await loadRendezvous()
const seq = (n, from = 0) => Array.from({length: n}, (_, i) => from + i)
const CS = 256 * 1024

const C = 400
const ids = chunkIds(rv, C, 'unit')
const urls = peerUrls(64)
const ctx = simContext(rv, urls, ids, CS)
const ranking = ctx.ranking
const fleet = (n, extra = {}) => ({seed: 'unit', label: `n${n}`, members: seq(n), views: [seq(n)], hostView: new Int32Array(n), workload: seq(C), window: 8, rttTicks: 0.1, ...extra})

test('the owner order of any peer sub-list is the universe ranking with absent peers skipped (as rankPeers gives it)', () => {
  const rnd = rng('subsets')
  const peers = urls.map((url, i) => ({url, i}))
  for (let trial = 0; trial < 40; trial++) {
    const sub = peers.filter(() => rnd() < 0.3)
    if (!sub.length) continue
    const c = Math.floor(rnd() * C)
    const inSub = new Set(sub.map((p) => p.i))
    const expected = rv.rankPeers(sub, ids[c]).map((p) => p.i)
    const fromUniverse = [...ranking[c]].filter((i) => inSub.has(i))
    assert.equal(fromUniverse, expected)
  }
})

test('consistent peer lists, nobody leaves: the seed sends exactly the unique bytes, for any fleet size', () => {
  for (const n of [1, 2, 3, 8, 17, 64]) {
    const r = simulate(ctx, fleet(n))
    assert.is(r.seedChunks, C, `${n} hosts`)
    assert.is(r.seedBytes, C * CS)
    assert.is(r.uniqueBytes, C * CS)
    assert.is(r.seedDirect, 0)
    assert.is(r.finish.n, n)
    assert.ok(r.finish.min > 0)
    // every host gets every chunk over the network once, except those it owns (its own fetch-through)
    assert.is(Math.round(r.served.mean * n), (n - 1) * C)
    assert.is(Math.round(r.owned.mean * n), C)
  }
})

test('a boot working set (a subset, fewer in flight) also leaves the seed exactly once', () => {
  const work = seq(C).filter((c) => c % 7 === 3)
  const r = simulate(ctx, fleet(20, {workload: work, window: 4}))
  assert.is(r.seedChunks, work.length)
  assert.is(r.uniqueBytes, work.length * CS)
})

test('without peers every host fetches everything from the seed', () => {
  const r = simulate(ctx, fleet(5, {views: [[]]}))
  assert.is(r.seedChunks, 5 * C)
  assert.is(r.seedDirect, 5 * C)
})

test('ownership is balanced: no host owns more than the cap of balancedOwners', () => {
  const big = chunkIds(rv, 4000, 'balance')
  const c2 = simContext(rv, urls.slice(0, 8), big, CS)
  for (const n of [2, 4, 8]) {
    const r = simulate(c2, {seed: 'b', members: seq(n), views: [seq(n)], hostView: new Int32Array(n), workload: seq(4000), window: 8})
    const cap = Math.ceil(((1 + rv.ownerSlack) * 4000) / n)
    assert.ok(r.owned.max <= cap, `${n} hosts: max owned ${r.owned.max}, cap ${cap}`)
    assert.is(r.seedChunks, 4000)
  }
  const r = simulate(ctx, fleet(64))
  assert.ok(r.owned.max <= Math.ceil(((1 + rv.ownerSlack) * C) / 64), `64 hosts: max owned ${r.owned.max}`)
})

test('deterministic: the same seed gives the same result; other chunk ids give other owners', () => {
  const a = simulate(ctx, fleet(12, {leave: {fraction: 0.25, atFraction: 0.3, updateViews: false}}))
  const b = simulate(ctx, fleet(12, {leave: {fraction: 0.25, atFraction: 0.3, updateViews: false}}))
  assert.equal(a, b)
  assert.equal(chunkIds(rv, 5, 'unit'), ids.slice(0, 5))
  const other = simContext(rv, urls.slice(0, 12), chunkIds(rv, C, 'unit-2'), CS)
  const r = simulate(other, fleet(12))
  const r0 = simulate(ctx, fleet(12))
  assert.is(r.seedChunks, C)
  assert.not.equal({...r, label: ''}, {...r0, label: ''})
})

test('newcomers the established hosts do not know: one more seed fetch per chunk whose owner differs between the two lists', () => {
  const n = 40
  for (const J of [1, 4, 10]) {
    const old = n - J
    const r = simulate(ctx, {...fleet(n), views: [seq(old), seq(n)], hostView: Int32Array.from(seq(n), (h) => (h < old ? 0 : 1))})
    const before = ctx.owners(seq(old))
    const after = ctx.owners(seq(n))
    let predicted = 0
    for (let c = 0; c < C; c++) predicted += before[c] !== after[c] ? 1 : 0
    assert.is(r.seedChunks - C, predicted, `${J} newcomers`)
    assert.ok(predicted > 0)
  }
})

test('hosts leaving mid-pull: survivors finish; with stale lists too, the next peer up fetches through, so the seed sends nothing straight to a host', () => {
  for (const updateViews of [true, false]) {
    for (const atFraction of [0.05, 0.4]) {
      const r = simulate(ctx, fleet(30, {leave: {fraction: 0.2, atFraction, updateViews}}))
      assert.is(r.survivors, 24)
      assert.is(r.finish.n, 24)
      assert.ok(r.finish.min > 0)
      assert.ok(r.seedChunks >= C)
      assert.is(r.seedDirect, 0, `every chunk through an owner (${updateViews ? 'updated' : 'stale'} lists, leaving at ${atFraction})`)
      if (!updateViews) assert.ok(r.refused > 0, 'stale lists: the departed are found refused')
    }
  }
})

test.run()
