#!/usr/bin/env node
// @ts-check
// A simulation (not a measurement) of owner hashing for 1 to 1,000 hosts:
// `node bench/sim.js` or `npm run bench -- --only sim`. See bench/README.md,
// "Owner-hashing simulation", and docs/PERFORMANCE.md for what it shows.
//
// The owner of each chunk is chosen by the REAL owner function
// (balancedOwners of vmi's public API, as the fetch chain calls it), over
// synthetic chunk ids (BLAKE3 of a seeded string, like real ids) and the chunk
// count and size of the Debian image in bench/results/latest-dist.json.
// Everything else is a model of what src/peer/chain.ts and src/peer/server.ts
// do, in discrete time steps; its rules are written once, as the doc states them
// ("Model and assumptions", simSection in bench/lib/perf-doc.js), and at the code
// of simulate() below.
// Not modelled: CPU, disk, TCP dynamics, HTTP errors other than a departed
// peer, the chain's peerDownMs expiry (a departed peer stays skipped), and a
// host leaving while its own pull still needs it (it simply stops).
import {promises as fsp, readFileSync} from 'node:fs'
import path from 'node:path'
import {pathToFileURL} from 'node:url'
import {KiB, loadVmi, numberList, parseOptions, RESULTS, rng, ROOT, shuffleInPlace} from './lib/common.js'

export {rng}

export const DEFAULTS = Object.freeze({
  seed: 'vmi-sim-2026',
  hosts: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1000],
  leavePercents: [1, 5, 10, 25],
  joinPercents: [1, 5, 10, 25],
  churnHosts: 1000,
  window: 8, // vmi pull --concurrency default
  bootWindow: 4, // a booting guest reads a few chunks at a time; the profile prefetch ran 4 at a time when latest-sim.json was made (16 since mount's --prefetch-concurrency)
  linkBytesPerSecond: 125e6, // 1 Gbit/s, to turn ticks into seconds (stated, not measured)
  rttSeconds: 0.0002, // LAN round trip, for the cost of a 404 (stated, not measured)
  leaveAt: [0.1, 0.5], // hosts leave when the fleet has received this share of its chunks (early, mid-pull)
})

// ----------------------------------------------------------------- the real owner choice

/** The rendezvous ranking and hash of vmi's public API (dist/index.js), as vmi itself uses them. */
export async function loadRendezvous() {
  const vmi = await loadVmi()
  return {rankPeers: vmi.rankPeers, balancedOwners: vmi.balancedOwners, ownerSlack: vmi.OWNER_SLACK, rendezvousScore: vmi.rendezvousScore, hash: vmi.hash, hashBackend: vmi.activeHashBackend(), module: 'dist/index.js'}
}

/** @typedef {Awaited<ReturnType<typeof loadRendezvous>>} Rendezvous */

/** `count` chunk ids: BLAKE3 hex of a seeded string (uniform like real ids). @param {Rendezvous} rv @param {number} count @param {string} seed */
export function chunkIds(rv, count, seed) {
  return Array.from({length: count}, (_, i) => rv.hash(Buffer.from(`${seed}/chunk/${i}`)))
}

/** Peer URLs of the simulated hosts, in the form `vmi serve` prints. */
export function peerUrls(count) {
  return Array.from({length: count}, (_, i) => `http://10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}:7070`)
}

/**
 * For every chunk, the universe of peers in rank order (indices into `urls`),
 * from rankPeers itself. rankPeers orders by a per-(peer, id) score, so the
 * ranking of any sub-list is this order with the absent peers skipped (the
 * unit test checks that against rankPeers on sub-lists).
 * @param {Rendezvous} rv @param {string[]} urls @param {string[]} ids
 */
export function universeRanking(rv, urls, ids) {
  const peers = urls.map((url, i) => ({url, i}))
  return ids.map((id) => Int32Array.from(rv.rankPeers(peers, id), (p) => p.i))
}

/**
 * What simulate() needs: the universe ranking (for the walk past departed
 * owners), and the real balancedOwners over the image's chunk ids and a
 * peer list's URLs (each view's owners, as every host computes them).
 * @param {Rendezvous} rv @param {string[]} urls @param {string[]} ids @param {number} chunkBytes
 */
export function simContext(rv, urls, ids, chunkBytes) {
  const ranking = universeRanking(rv, urls, ids)
  /** @param {number[]} list universe indices */
  const owners = (list) => {
    const m = rv.balancedOwners(ids, list.map((u) => ({url: urls[u], u})))
    return Int32Array.from(ids, (id) => m.get(id)?.u ?? -1)
  }
  return {ranking, chunkBytes, owners}
}

// ----------------------------------------------------------------- one simulation

/**
 * Simulate one fleet. `ctx` = simContext(…); `p`:
 *   members: universe indices of the hosts (default 0..hosts-1)
 *   views: array of Int32Array peer lists (universe indices); hostView[i] = which one host i uses
 *   workload: chunk indices every host fetches, in order
 *   window (requests in flight per host), seed (string), label (names the run's random streams)
 *   leave: {fraction: share of hosts that leave, atFraction: when (share of all chunk deliveries done), updateViews: do the others learn at once}
 *   rttTicks: cost of one 404 / refused connection in ticks
 */
export function simulate(ctx, p) {
  const {ranking, chunkBytes} = ctx
  const rnd = rng(`${p.seed}/run/${p.label ?? ''}`)
  const members = p.members
  const H = members.length
  const SEED = H // node index of the seed
  const work = p.workload
  const W = work.length
  const C = ranking.length
  const U = ranking[0]?.length ?? 0
  const window = p.window ?? 8
  const rttTicks = p.rttTicks ?? 0.1
  const hostOfU = new Int32Array(U).fill(-1)
  members.forEach((u, h) => (hostOfU[u] = h))

  // peer lists: membership bitmaps over the universe, and an owner cache per (view, chunk)
  const views = []
  const addView = (list) => {
    const inView = new Uint8Array(U)
    for (const u of list) inView[u] = 1
    // the owners every host with this list computes (balancedOwners), as hosts (-1: none)
    const owner = ctx.owners(list).map((u) => (u < 0 ? -1 : hostOfU[u]))
    views.push({inView, owner})
    return views.length - 1
  }
  for (const v of p.views) addView(v)
  const hostView = Int32Array.from(p.hostView)
  const ownerIn = (v, c) => views[v].owner[c]

  const has = new Uint8Array((H + 1) * C) // H hosts + the seed
  for (let c = 0; c < C; c++) has[SEED * C + c] = 1
  const alive = new Uint8Array(H + 1).fill(1)
  const next = new Int32Array(H) // position in the workload
  const inflight = new Int32Array(H)
  const done = new Int32Array(H)
  const finish = new Float64Array(H).fill(-1)
  const knownDown = new Uint8Array(H * H) // h*H + d: host h already found the departed host d unreachable (skipped since)

  // counters
  const uploads = new Float64Array(H + 1) // chunks sent over the network, per node
  let seedThrough = 0 // seed → owner (fetch-through)
  let seedDirect = 0 // seed → a host itself (no peers, or none of its peers left up)
  let refused = 0
  let retries = 0

  // queues: per sender an array of jobs {to, c, kind} with a head index
  const queue = Array.from({length: H + 1}, () => ({jobs: [], head: 0}))
  const active = new Set()
  const enqueue = (from, job) => {
    queue[from].jobs.push(job)
    active.add(from)
  }
  const pending = new Map() // owner*C + c → waiting hosts (single flight at the owner)
  const delayed = new Map() // tick → [{h, c, owner}]: asks past a departed owner, due once its refused connections are paid
  const toIssue = [] // hosts that may issue more requests
  const retryNow = [] // {h, c} asked again (their source left)

  const totalNeeded = W * H
  let tick = 0
  let leftAt
  const leave = p.leave
  let departed = []

  let incomplete = W > 0 ? H : 0 // hosts still pulling
  let totalDone = 0
  const complete = (h, c) => {
    inflight[h]--
    done[h]++
    totalDone++
    if (done[h] === W) {
      finish[h] = tick + 1
      incomplete--
    }
    toIssue.push(h)
  }

  /** Ask for chunk c on behalf of host h (its window slot is already counted). */
  const request = (h, c) => {
    if (has[h * C + c]) return complete(h, c)
    const v = hostView[h]
    const o = ownerIn(v, c)
    if (o < 0) {
      // no peers at all: straight to the seed
      seedDirect++
      return enqueue(SEED, {to: h, c, kind: 'direct'})
    }
    if (alive[o]) return askOwner(h, o, c)
    // The owner on h's list has left: its connection is refused (once per host,
    // whose circuit breaker then marks it down), and the next peer up on h's list
    // is the owner, asked with fetch-through as the fetch chain does.
    let trips = 0
    if (!knownDown[h * H + o]) {
      knownDown[h * H + o] = 1
      refused++
      trips++
    }
    const n = nextOwner(h, c, views[v].inView)
    trips += n.trips
    const wait = Math.floor(trips * rttTicks + 1e-9)
    if (wait > 0) {
      // pay for the refused connections first, then ask
      const t = tick + wait
      if (!delayed.has(t)) delayed.set(t, [])
      delayed.get(t).push({h, c, owner: n.owner})
      return
    }
    askNext(h, c, n.owner)
  }

  /** The first peer up on h's list for chunk c past the departed ones (each found refused once), or -1: none left. */
  const nextOwner = (h, c, inView) => {
    let trips = 0
    for (const u of ranking[c]) {
      if (!inView[u]) continue
      const q = hostOfU[u]
      if (q < 0) continue
      if (alive[q]) return {owner: q, trips}
      if (!knownDown[h * H + q]) {
        knownDown[h * H + q] = 1
        refused++
        trips++
      }
    }
    return {owner: -1, trips}
  }

  /** Ask `owner` (from nextOwner) for chunk c, or the seed when no peer is left; ask again if it left meanwhile. */
  const askNext = (h, c, owner) => {
    if (owner < 0) {
      seedDirect++
      enqueue(SEED, {to: h, c, kind: 'direct'})
    } else if (alive[owner]) askOwner(h, owner, c)
    else request(h, c)
  }

  const askOwner = (h, o, c) => {
    if (has[o * C + c]) {
      if (o === h) return complete(h, c)
      return enqueue(o, {to: h, c, kind: 'peer'})
    }
    const key = o * C + c
    let waiters = pending.get(key)
    if (!waiters) {
      pending.set(key, (waiters = []))
      seedThrough++
      enqueue(SEED, {to: o, c, kind: 'through'})
    }
    waiters.push(h)
  }

  const deliver = (job) => {
    const {to, c, kind} = job
    has[to * C + c] = 1
    if (kind === 'through') {
      const key = to * C + c
      const waiters = pending.get(key) ?? []
      pending.delete(key)
      for (const w of waiters) {
        if (!alive[w]) continue
        if (w === to) complete(to, c)
        else enqueue(to, {to: w, c, kind: 'peer'})
      }
    } else complete(to, c)
  }

  const issue = (h) => {
    if (!alive[h]) return
    while (inflight[h] < window && next[h] < W) {
      const c = work[next[h]++]
      inflight[h]++
      request(h, c)
    }
  }

  const depart = () => {
    const n = Math.round(leave.fraction * H)
    const order = shuffleInPlace(Array.from({length: H}, (_, i) => i), rng(`${p.seed}/leave/${p.label ?? ''}`))
    departed = order.slice(0, n)
    for (const d of departed) {
      alive[d] = 0
      if (done[d] < W) incomplete--
    }
    leftAt = tick
    // everything queued at or for a departed host is lost; its waiters ask again
    for (let s = 0; s <= H; s++) {
      const Q = queue[s]
      const keep = []
      for (let i = Q.head; i < Q.jobs.length; i++) {
        const j = Q.jobs[i]
        if (!alive[j.to]) continue
        if (!alive[s]) {
          retries++
          retryNow.push({h: j.to, c: j.c})
          continue
        }
        keep.push(j)
      }
      Q.jobs = keep
      Q.head = 0
      if (!keep.length) active.delete(s)
    }
    for (const [key, waiters] of pending) {
      const o = Math.floor(key / C)
      if (alive[o]) continue
      pending.delete(key)
      for (const w of waiters)
        if (alive[w]) {
          retries++
          retryNow.push({h: w, c: key % C})
        }
    }
    for (const [t, list] of delayed) delayed.set(t, list.filter((r) => alive[r.h]))
    if (leave.updateViews) {
      // every remaining host learns the new peer list at once (e.g. a membership service)
      const remap = new Map()
      for (let h = 0; h < H; h++) {
        if (!alive[h]) continue
        const v = hostView[h]
        if (!remap.has(v)) {
          const list = []
          for (let u = 0; u < U; u++) if (views[v].inView[u] && (hostOfU[u] < 0 || alive[hostOfU[u]])) list.push(u)
          remap.set(v, addView(list))
        }
        hostView[h] = remap.get(v)
      }
    }
  }

  for (let h = 0; h < H; h++) toIssue.push(h)
  const order = []
  const busyRecv = new Int32Array(H + 1).fill(-1)
  const maxTicks = p.maxTicks ?? 50 * W * Math.max(1, H)
  while (true) {
    if (leave && leftAt === undefined && totalDone >= leave.atFraction * totalNeeded) depart()
    // requests that became due
    const due = delayed.get(tick)
    if (due) {
      delayed.delete(tick)
      for (const r of due) if (alive[r.h]) askNext(r.h, r.c, r.owner)
    }
    while (retryNow.length) {
      const r = retryNow.shift()
      if (alive[r.h]) request(r.h, r.c)
    }
    while (toIssue.length) issue(toIssue.pop())
    if (incomplete <= 0) break
    if (tick >= maxTicks) throw new Error(`simulation did not finish in ${maxTicks} ticks (${p.label})`)
    // transfers of this tick: senders in a shuffled order, one chunk each, one per receiver
    order.length = 0
    for (const s of active) order.push(s)
    shuffleInPlace(order, rnd)
    const sent = []
    for (const s of order) {
      const Q = queue[s]
      const lim = Math.min(Q.jobs.length, Q.head + 64)
      for (let i = Q.head; i < lim; i++) {
        const j = Q.jobs[i]
        if (busyRecv[j.to] === tick) continue
        busyRecv[j.to] = tick
        Q.jobs[i] = Q.jobs[Q.head]
        Q.jobs[Q.head] = j
        Q.head++
        uploads[s]++
        sent.push(j)
        break
      }
      if (Q.head >= Q.jobs.length) {
        Q.jobs = []
        Q.head = 0
        active.delete(s)
      } else if (Q.head > 4096 && Q.head * 2 > Q.jobs.length) {
        Q.jobs = Q.jobs.slice(Q.head)
        Q.head = 0
      }
    }
    for (const j of sent) deliver(j)
    tick++
    // nothing to send but asks still waiting on refused connections: jump to the next one due
    if (!active.size && !retryNow.length && !toIssue.length && delayed.size) tick = Math.max(tick, Math.min(...delayed.keys()))
  }

  // results
  const survivors = []
  for (let h = 0; h < H; h++) if (alive[h]) survivors.push(h)
  const hostUploads = survivors.map((h) => uploads[h])
  const seedChunks = uploads[SEED]
  const workBytes = W * chunkBytes
  // per-owner balance over the initial consistent view (view of host 0)
  const owned = new Float64Array(H)
  for (const c of work) {
    const o = ownerIn(p.hostView[0], c)
    if (o >= 0) owned[o]++
  }
  const ownedAll = Array.from(owned)
  return {
    label: p.label,
    hosts: H,
    survivors: survivors.length,
    departed: departed.length,
    chunks: W,
    uniqueBytes: workBytes,
    seedChunks,
    seedBytes: seedChunks * chunkBytes,
    seedRatio: seedChunks / W,
    extraSeedBytes: (seedChunks - W) * chunkBytes,
    seedThrough,
    seedDirect,
    refused,
    retries,
    served: summary(hostUploads),
    owned: summary(ownedAll),
    ticks: tick,
    finish: summary(survivors.map((h) => finish[h])),
    leftAtTick: leftAt,
  }
}

function summary(xs) {
  if (!xs.length) return {n: 0}
  let sum = 0
  let max = -Infinity
  let min = Infinity
  for (const x of xs) {
    sum += x
    if (x > max) max = x
    if (x < min) min = x
  }
  const mean = sum / xs.length
  return {n: xs.length, mean, max, min, maxOverMean: mean > 0 ? max / mean : undefined}
}

// ----------------------------------------------------------------- the input: what image

/** Chunk count and size of the image the distribution (and mount) benchmark used, else a stated synthetic one. */
export function imageInput(resultsDir = RESULTS) {
  let dist
  let mount
  try {
    dist = JSON.parse(readFileSync(path.join(resultsDir, 'latest-dist.json'), 'utf8'))
  } catch {}
  try {
    mount = JSON.parse(readFileSync(path.join(resultsDir, 'latest-mount.json'), 'utf8'))
  } catch {}
  const j = dist?.image?.importJson
  /** @type {Record<string, any>} */
  let input
  if (j?.newChunks && j.chunkSize) {
    input = {
      source: 'bench/results/latest-dist.json',
      sourceStartedAt: dist.startedAt,
      image: dist.image.name,
      chunkSize: j.chunkSize,
      chunks: j.newChunks,
      uniqueBytes: j.newBytes,
      virtualSize: j.virtualSize,
      allChunks: j.chunks,
      zeroChunks: j.zeroChunks,
    }
  } else {
    input = {source: 'synthetic (no bench/results/latest-dist.json)', image: 'synthetic: 2,469 distinct non-zero chunks of 256 KiB', chunkSize: 256 * KiB, chunks: 2469, uniqueBytes: 2469 * 256 * KiB}
  }
  const boot = mount?.boots?.runs?.nbdkitLog?.footprint?.perChunkSize?.[input.chunkSize]?.nonZero ?? mount?.boots?.profile?.chunks
  input.bootChunks = boot ?? Math.round(input.chunks * 0.1)
  input.bootSource = boot ? `the chunks the measured boot touched, from bench/results/latest-mount.json, run of ${mount.startedAt.slice(0, 10)}` : 'assumed: 10 % of the chunks, as there is no bench/results/latest-mount.json'
  // simulated ids have a uniform size: the image's average chunk (exact when every chunk is full)
  input.chunkBytes = Math.round(input.uniqueBytes / input.chunks)
  return input
}

// ----------------------------------------------------------------- the suite

/** Everything docs/PERFORMANCE.md shows. Deterministic for a given seed and input. */
/** @param {Record<string, any>} [opts] */
export async function runSuite(opts = {}) {
  const o = {...DEFAULTS, ...opts}
  const t0 = performance.now()
  const rv = opts.rv ?? (await loadRendezvous())
  const input = opts.input ?? imageInput(opts.resultsDir)
  const log = opts.log ?? (() => {})
  const C = input.chunks
  const urls = peerUrls(Math.max(...o.hosts, o.churnHosts))
  const ids = chunkIds(rv, C, o.seed)
  const tRank = performance.now()
  const ctx = simContext(rv, urls, ids, input.chunkBytes)
  const rankSeconds = (performance.now() - tRank) / 1000
  log(`ranked ${urls.length} peers for ${C} chunks with rankPeers (${rv.module}) in ${(rankSeconds).toFixed(1)} s`)
  const tickSeconds = input.chunkBytes / o.linkBytesPerSecond
  const rttTicks = o.rttSeconds / tickSeconds
  const seq = (n, from = 0) => Array.from({length: n}, (_, i) => from + i)
  const all = Array.from({length: C}, (_, i) => i)
  const bootSet = shuffleInPlace([...all], rng(`${o.seed}/boot`)).slice(0, Math.min(C, input.bootChunks))
  const base = (n, extra = {}) => ({seed: o.seed, members: seq(n), views: [seq(n)], hostView: new Int32Array(n), rttTicks, ...extra})

  const sweep = []
  for (const n of o.hosts) {
    const pull = simulate(ctx, base(n, {label: `pull-${n}`, workload: all, window: o.window}))
    const boot = simulate(ctx, base(n, {label: `boot-${n}`, workload: bootSet, window: o.bootWindow}))
    sweep.push({hosts: n, pull, boot})
    log(`${n} host(s): pull seed ${pull.seedRatio.toFixed(3)}× unique, ${pull.ticks} ticks; owned max/mean ${pull.owned.maxOverMean?.toFixed(2)}; boot seed ${boot.seedRatio.toFixed(3)}×`)
  }

  const N = o.churnHosts
  const leave = []
  for (const at of o.leaveAt)
    for (const pct of o.leavePercents)
      for (const updateViews of [true, false]) {
        const r = simulate(ctx, base(N, {label: `leave-${at}-${pct}-${updateViews ? 'updated' : 'stale'}`, workload: all, window: o.window, leave: {fraction: pct / 100, atFraction: at, updateViews}}))
        leave.push({percent: pct, at, lists: updateViews ? 'updated' : 'stale', ...r})
        log(`${pct} % of ${N} hosts leave at ${Math.round(at * 100)} % of the pull, peer lists ${updateViews ? 'updated' : 'stale'}: seed ${r.seedRatio.toFixed(3)}× unique (${r.seedDirect} chunks straight to hosts), ${r.refused} refused connections, ${r.ticks} ticks`)
      }

  // a fleet of N where the last J joined lately: they know every host, the
  // established hosts' lists do not name them yet
  const join = []
  for (const pct of o.joinPercents) {
    const J = Math.round((pct / 100) * N)
    const old = N - J
    const hostView = Int32Array.from(seq(N), (h) => (h < old ? 0 : 1))
    const r = simulate(ctx, {seed: o.seed, label: `join-${pct}`, members: seq(N), views: [seq(old), seq(N)], hostView, rttTicks, workload: all, window: o.window})
    // what balanced owners predict: one more seed fetch per chunk whose owner differs between the two lists
    const before = ctx.owners(seq(old))
    const after = ctx.owners(seq(N))
    let predicted = 0
    for (let c = 0; c < C; c++) if (before[c] !== after[c]) predicted++
    join.push({percent: pct, newcomers: J, established: old, predictedExtraChunks: predicted, ...r})
    log(`${J} newcomers (${pct} % of ${N}) missing from the established hosts' lists: seed ${r.seedRatio.toFixed(3)}× unique (+${r.seedChunks - C} chunks; predicted ${predicted})`)
  }

  return {
    kind: 'simulation',
    generatedBy: 'bench/sim.js',
    seed: o.seed,
    rendezvous: {module: rv.module, function: 'balancedOwners', slack: rv.ownerSlack, hashBackend: rv.hashBackend, rankSeconds},
    input,
    model: {
      tickSeconds,
      linkBytesPerSecond: o.linkBytesPerSecond,
      rttSeconds: o.rttSeconds,
      rttTicks,
      window: o.window,
      bootWindow: o.bootWindow,
      leaveAt: o.leaveAt,
      churnHosts: N,
      bootChunks: bootSet.length,
    },
    sweep,
    leave,
    join,
    seconds: (performance.now() - t0) / 1000,
  }
}

// ----------------------------------------------------------------- command line

async function main(argv) {
  const {out, doc, ...opts} = parseOptions(
    'sim',
    {
      seed: ['--seed S', DEFAULTS.seed, String, 'seed of the chunk ids and of every random choice'],
      hosts: ['--hosts LIST', DEFAULTS.hosts, numberList, 'host counts of the sweep'],
      churnHosts: ['--churn-hosts N', DEFAULTS.churnHosts, Number, 'fleet size of the leave/join runs'],
      out: ['--out FILE', path.join(RESULTS, 'latest-sim.json'), (f) => path.resolve(f), 'where the JSON goes'],
      doc: ['--no-doc', true, false, 'do not re-render docs/PERFORMANCE.md'],
    },
    (o) => (!o.hosts.every((n) => Number.isInteger(n) && n >= 1 && n <= 4096) || !(Number.isInteger(o.churnHosts) && o.churnHosts >= 2)) && 'bad --hosts or --churn-hosts',
    "A simulation, not a measurement: owner hashing for N hosts pulling and booting the image of bench/results/latest-dist.json,\nwith the real rankPeers of vmi's API. Writes bench/results/latest-sim.json (or --out) and re-renders docs/PERFORMANCE.md.",
    argv,
  )
  const log = (m) => process.stderr.write(`bench sim: ${m}\n`)
  const R = await runSuite({...opts, log})
  await fsp.mkdir(path.dirname(out), {recursive: true})
  await fsp.writeFile(out, JSON.stringify(R, null, 2) + '\n')
  log(`wrote ${path.relative(process.cwd(), out)} in ${R.seconds.toFixed(1)} s`)
  if (doc && out === path.join(RESULTS, 'latest-sim.json')) {
    const {renderPerformanceDoc} = await import('./lib/perf-doc.js')
    const files = await renderPerformanceDoc({root: ROOT})
    log(`rendered ${files.doc} (${files.images.length} plots)`)
  }
  return 0
}

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) process.exitCode = await main(process.argv.slice(2))
