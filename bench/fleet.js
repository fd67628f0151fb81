#!/usr/bin/env node
// @ts-check
// vmi fleet benchmark in the lab: `node bench/fleet.js` (or `npm run bench -- --only fleet`): N
// hosts in their own network namespaces on shaped links fill at once (vmi with peers, from the
// seed alone, curl), and churn; see bench/README.md, "Fleet benchmark". Writes
// bench/results/<date>-fleet.md and latest-fleet.json; never fails on a missed goal.
import {promises as fsp} from 'node:fs'
import path from 'node:path'
import {startLab} from '../test/helpers/lab.js'
import {bytesHuman, f, int} from './lib/format.js'
import {allocatedBytes, ensureSyntheticImage} from './lib/image.js'
import {cpuOf, countFiles} from './lib/measure.js'
import {
  BIN,
  BUILD,
  cpuWindow,
  ENV_NOTE,
  listObjects,
  metricSum,
  MiB,
  numberList,
  parseOptions,
  prepare,
  RENDER,
  rerenderAndExit,
  servedObjectBytes,
  sleep,
  startRun,
  vmiEnv,
  vmiTimed,
} from './lib/common.js'
import {renderFleetReport} from './lib/fleet-report.js'
import {labSettings, sampleRun, SERVE_PORT, skipWithoutLab, startHostServe, startLabSeed, timedIn} from './lib/lab-run.js'

const opts = parseOptions(
  'fleet',
  {
    hosts: ['--hosts LIST', [1, 2, 4, 8, 16], numberList, 'fleet sizes for the fill'],
    // network-bound at N = 16 on 2 cores (bench/README.md, "Fleet benchmark": at 200 Mbit/s the 16-host fill saturates the cores)
    rate: ['--rate R', '36mbit', String, "every host's link, both directions"],
    seedRate: ['--seed-rate R', undefined, String, "the seed's link (default: --rate)"],
    sizeMiB: ['--size-mib N', 128, Number, 'image size; half of it is unique non-zero chunks'],
    reps: ['--reps N', 3, Number, 'runs of the vmi contender per fleet size, min–median–max reported; anchors run once'],
    churnHosts: ['--churn-hosts N', 8, Number, 'fleet size for the churn scenarios'],
    churn: ['--no-churn', true, false, 'skip the churn scenarios'],
    anchors: ['--no-anchors', true, false, 'skip curl and the pulls from the seed alone'],
    build: BUILD,
    render: RENDER,
  },
  (o) => {
    const okN = (n) => Number.isInteger(n) && n >= 1 && n <= 64
    return (!o.hosts.every(okN) || !okN(o.churnHosts) || o.churnHosts < 3 || !Number.isInteger(o.reps) || o.reps < 1 || !(o.sizeMiB >= 8 && o.sizeMiB % 8 === 0)) && `bad --hosts, --churn-hosts (3-64), --reps or --size-mib (a multiple of 8)`
  },
  ENV_NOTE,
)

/** Goals from the issue (ratios; the report marks each met or missed). */
const GOALS = {limitRatio: 1.3, flatRatio: 1.15, seedEgress: 1.02, vsCurl: 10, churnSeedEgress: 1.25, cpuVsDirect: 1.5}

if (opts.render) await rerenderAndExit('fleet', opts.render, renderFleetReport)

skipWithoutLab('fleet')
const run = await startRun('fleet', {build: opts.build, tools: ['curl', 'nginx']})
const {log, workDir, discard, dist} = run
const settings = labSettings()

// ----------------------------------------------------------------- the image and the seed store

const spec = {
  generator: 'vmi-bench-fleet/1',
  size: opts.sizeMiB * MiB,
  align: MiB,
  seed: 'vmi-bench-fleet-2026',
  minRegion: 4 * MiB,
  maxRegion: 4 * MiB,
  weights: {random: 0.5, zero: 0.5, repeat: 0},
  pattern: ['random', 'zero'],
}
const built = await ensureSyntheticImage(spec, log)
const image = {file: built.file, size: spec.size, spec, composition: built.composition, allocated: await allocatedBytes(built.file)}
const seedStore = path.join(workDir, 'seed')
{
  const r = await vmiTimed(['import', image.file, 'bench:fleet', '--json'], seedStore, {scratch: workDir})
  image.id = r.json.id
  image.uniqueBytes = r.json.newBytes
  image.chunks = r.json.newChunks
  image.chunkSize = r.json.chunkSize
  image.objects = (await listObjects(seedStore)).map((o) => o.id)
  log(`image ${bytesHuman(image.size)}: ${int(image.chunks)} distinct non-zero chunks of ${image.chunkSize / 1024} KiB = ${bytesHuman(image.uniqueBytes)} (imported in ${f(r.wall)} s)`)
}
const U = image.uniqueBytes

// ----------------------------------------------------------------- the lab

const maxHosts = Math.max(...opts.hosts, opts.churn ? opts.churnHosts : 0)
const lab = await startLab({hosts: maxHosts, hostRate: opts.rate, seedRate: opts.seedRate ?? opts.rate})
const rate = lab.hosts[0].rate
const seedRate = lab.seed.rate
log(`lab ${lab.id}: seed + ${maxHosts} hosts, links ${f(rate / 1e6, 0)} Mbit/s (seed ${f(seedRate / 1e6, 0)} Mbit/s), tbf both ways${lab.swept.length ? `; swept ${lab.swept.length} stale namespaces` : ''}`)
const {serve: seedServe, nginx, rawUrl} = await startLabSeed(lab, seedStore, image.file)
log(`seed ${lab.seed.ip}: vmi serve ${seedServe.url}, nginx ${nginx.url} (${nginx.version}) over the same store`)

/** Seconds the slowest necessary transfer takes at link rate: every host receives U, the seed sends U at least once. */
const limitSeconds = Math.max((U * 8) / seedRate, (U * 8) / rate)

// ----------------------------------------------------------------- one fleet run

/** Start `vmi serve --seed SEED` on each host (outside the timed window). */
async function startHostServes(hosts, stores) {
  return Promise.all(hosts.map((h, i) => startHostServe(h, stores[i], seedServe.url)))
}

/**
 * Run one fill: every host of `hosts` gets the image at once by `kind`.
 * `scenario(ctx)` (churn) runs alongside and may cut links or start late
 * hosts; it returns when its part is done. Returns the run's record.
 */
/** @param {string} kind @param {any[]} hosts @param {{label?: string, scenario?: (ctx: any) => Promise<any>, late?: any[]}} [o] */
async function fill(kind, hosts, {label = kind, scenario, late = []} = {}) {
  const stores = hosts.map((h, i) => path.join(workDir, `${kind}-${hosts.length}-${i}-${Math.random().toString(36).slice(2, 8)}`))
  // a late host's serve is started by the scenario, with its pull
  const serves = kind === 'peers' ? await startHostServes(hosts.filter((h) => !late.includes(h)), stores.filter((_, i) => !late.includes(hosts[i]))) : []
  if (kind === 'peers') for (const [i, h] of hosts.entries()) if (late.includes(h)) serves.splice(i, 0, undefined)
  const peerArgs = kind === 'peers' ? hosts.flatMap((h) => ['--peer', `http://${h.ip}:${SERVE_PORT}`]) : []
  const argvFor = (i) => {
    if (kind === 'curl') return ['curl', '-sSf', '-o', path.join(stores[i], 'image.raw'), rawUrl]
    if (kind === 'seedAlone') return [process.execPath, BIN, 'pull', image.id, nginx.url, '--json']
    return [process.execPath, BIN, 'pull', image.id, seedServe.url, ...peerArgs, '--json']
  }
  if (kind === 'curl') for (const s of stores) await fsp.mkdir(s, {recursive: true})
  const prep = await prepare(kind === 'curl' ? {files: [image.file]} : {dirs: [path.join(seedStore, 'objects')]}, settings)
  const pids = [seedServe.pid, nginx.pid, ...serves.filter(Boolean).map((s) => s.pid)]
  const w = cpuWindow(pids)
  const wSeed = cpuWindow([seedServe.pid, nginx.pid])
  const tx0 = lab.counters(lab.seed).tx
  const served0 = await servedObjectBytes(seedServe)
  const tStart = performance.now()
  // where the time goes (vmi with peers: the seed's link carries one copy)
  const sampler = kind === 'peers' ? sampleRun(lab, tStart, {uniqueBytes: U, cores: run.machine.cores}) : undefined
  const running = hosts.map((h, i) => (late.includes(h) ? undefined : timedIn(h, argvFor(i), {env: vmiEnv(stores[i]), tStart, scratch: workDir})))
  const ctx = {
    tStart,
    stores,
    serves,
    children: running,
    /** Start host i now (a late joiner). */
    start: (i) => (running[i] = timedIn(hosts[i], argvFor(i), {env: vmiEnv(stores[i]), tStart, scratch: workDir})),
  }
  const scenarioDone = scenario ? scenario(ctx) : Promise.resolve({})
  const events = await scenarioDone
  const results = await Promise.all(running.map((r) => r.done))
  const timeline = await sampler?.stop()
  const wall = Math.max(...results.filter((r) => !events.excluded?.includes(r.host)).map((r) => r.endedAt))
  const childCpu = results.reduce((a, r) => a + cpuOf(r), 0)
  const unmeasured = results.filter((r) => Number.isNaN(cpuOf(r)))
  if (unmeasured.length) log(`  the CPU of ${unmeasured.length} of ${results.length} clients was not measured (${unmeasured[0].cpuLost}): this run's client CPU and "others" are unknown`)
  const cpu = w.end(childCpu)
  const seedCpu = wSeed.end().serverCpu
  const seedWireBytes = lab.counters(lab.seed).tx - tx0
  const seedServedBytes = (await servedObjectBytes(seedServe)) - served0
  const hostServed = []
  const fetchedThrough = []
  for (const s of serves) {
    const m = (await s?.metrics().catch(() => '')) ?? ''
    hostServed.push(metricSum(m, 'vmi_served_bytes_total', {kind: 'objects'}))
    fetchedThrough.push(metricSum(m, 'vmi_fetched_bytes_total'))
  }
  // every finished host has the whole image: vmi verified each chunk on arrival, fsck checks the store; curl's file has the size
  const failures = []
  const counted = results.filter((r) => !events.excluded?.includes(r.host))
  for (const [i, r] of results.entries()) {
    if (events.excluded?.includes(r.host)) continue
    if (r.status !== 0) failures.push(`${r.host}: exit ${r.status}: ${r.stderr.trim().split('\n').pop()}`)
    else if (kind === 'curl') {
      const got = (await fsp.stat(path.join(stores[i], 'image.raw'))).size
      if (got !== image.size) failures.push(`${r.host}: curl wrote ${got} bytes`)
    } else {
      const n = r.json ? r.json.fromChunks.local + r.json.fromChunks.peer + r.json.fromChunks.seed : -1
      if (n !== image.chunks) failures.push(`${r.host}: the pull reports ${n} chunks, the image has ${image.chunks}`)
    }
  }
  let fsckFailures = 0
  if (kind !== 'curl' && scenario) {
    // churn: every finished store verified end to end (every object re-hashed, manifest and ref checked)
    for (const [i, r] of results.entries()) {
      if (events.excluded?.includes(r.host) || r.status !== 0) continue
      const c = await vmiTimed(['fsck', '--json'], stores[i], {scratch: workDir, allowFail: true})
      if (c.status !== 0) fsckFailures++
    }
  }
  for (const s of serves) await s?.stop()
  for (const s of stores) await discard(s)
  const sumChunks = (k) => counted.reduce((a, r) => a + (r.json?.fromChunks?.[k] ?? 0), 0)
  return {
    kind,
    label,
    hosts: hosts.length,
    wall,
    seedWireBytes,
    // vmi serve's own count of chunk bytes when it is the seed; nginx's link bytes otherwise
    seedBytes: kind === 'peers' ? seedServedBytes : seedWireBytes,
    seedRatio: (kind === 'peers' ? seedServedBytes : seedWireBytes) / U,
    hostServedBytes: hostServed,
    fetchedThroughBytes: fetchedThrough.reduce((a, b) => a + b, 0),
    chunksFrom: {local: sumChunks('local'), peer: sumChunks('peer'), seed: sumChunks('seed')},
    sourceErrors: counted.reduce((a, r) => a + (r.json?.sourceErrors ?? 0), 0),
    clientCpu: childCpu,
    hostServeCpu: cpu.serverCpu - seedCpu,
    seedCpu,
    busyCores: cpu.busyCores,
    irqCores: cpu.irqCores,
    othersCores: cpu.othersCores,
    stealCores: cpu.stealCores,
    failures,
    fsckFailures,
    events,
    timeline,
    perHost: results.map((r) => ({host: r.host, status: r.status, wall: r.wall, startedAt: r.startedAt, endedAt: r.endedAt, cpu: cpuOf(r), seconds: r.json?.seconds, fromChunks: r.json?.fromChunks, sourceErrors: r.json?.sourceErrors})),
    ...prep,
  }
}

const line = (x) =>
  `${x.hosts} host(s) ${x.label}: ${f(x.wall)} s (${f(x.wall / limitSeconds)}× the limit), seed sent ${f(x.seedRatio, 3)}× the unique bytes; ` +
  `CPU s: clients ${f(x.clientCpu)}, host serves ${f(x.hostServeCpu)}, seed ${f(x.seedCpu)}; machine busy ${f(x.busyCores)} of ${run.machine.cores} cores (irq ${f(x.irqCores)}, others ${f(x.othersCores)})` +
  (x.failures.length ? `; FAILURES: ${x.failures.join('; ')}` : '')

// ----------------------------------------------------------------- 1. fill

log(`fill: N = ${opts.hosts.join(', ')}; limit ${f(limitSeconds)} s (${bytesHuman(U)} at ${f(Math.min(rate, seedRate) / 1e6, 0)} Mbit/s); vmi ${opts.reps}× per N, anchors once`)
const fillRuns = []
for (const n of opts.hosts) {
  const hosts = lab.hosts.slice(0, n)
  const point = {hosts: n, peers: [], seedAlone: undefined, curl: undefined}
  for (let r = 0; r < opts.reps; r++) {
    const x = await fill('peers', hosts)
    point.peers.push(x)
    log(`  #${r + 1} ${line(x)}`)
  }
  if (opts.anchors) {
    for (const kind of ['seedAlone', 'curl']) {
      const x = await fill(kind, hosts)
      point[kind] = x
      log(`  ${line(x)}`)
    }
  }
  fillRuns.push(point)
}

// ----------------------------------------------------------------- 2. churn

/** Wait until a store holds `count` objects (or `ms` pass). */
async function waitObjects(store, count, ms) {
  const deadline = Date.now() + ms
  for (;;) {
    const n = await countFiles(path.join(store, 'objects'))
    if (n >= count || Date.now() > deadline) return n
    await sleep(50)
  }
}

const churn = {}
if (opts.churn) {
  const n = opts.churnHosts
  const hosts = lab.hosts.slice(0, n)
  log(`churn at ${n} hosts (vmi, peers + owner hashing)`)

  // an owner's link is cut once it holds 40 % of its chunks' worth of the image
  churn.ownerDown = await fill('peers', hosts, {
    label: 'owner link cut mid-fill',
    scenario: async (ctx) => {
      const held = await waitObjects(ctx.stores[0], Math.round(0.4 * image.chunks), 120_000)
      const at = (performance.now() - ctx.tStart) / 1000
      lab.setLink(hosts[0], false)
      // the cut host cannot finish; the others are what is measured
      // bounded: a survivor that never finishes is reported as a failure, not waited for forever
      let timer
      await Promise.race([Promise.all(ctx.children.slice(1).map((c) => c.done)), new Promise((r) => (timer = setTimeout(r, 600_000)))])
      clearTimeout(timer)
      for (const c of ctx.children.slice(1)) if (c.child.exitCode === null) c.child.kill('SIGTERM')
      ctx.children[0].child.kill('SIGTERM')
      lab.setLink(hosts[0], true)
      return {cutAt: at, cutHost: hosts[0].name, heldAtCut: held, excluded: [hosts[0].name]}
    },
  })
  log(`  ${line(churn.ownerDown)}`)

  // the last host starts (serve and pull) when the others are halfway; everyone's list names it from the start
  const lateHost = hosts.at(-1)
  churn.lateJoin = await fill('peers', hosts, {
    label: 'a host joins late',
    late: [lateHost],
    scenario: async (ctx) => {
      await waitObjects(ctx.stores[0], Math.round(0.5 * image.chunks), 120_000)
      const at = (performance.now() - ctx.tStart) / 1000
      const again = await startHostServe(lateHost, ctx.stores.at(-1), seedServe.url)
      ctx.serves[ctx.serves.length - 1] = again
      ctx.start(hosts.length - 1)
      return {joinedAt: at, lateHost: lateHost.name}
    },
  })
  log(`  ${line(churn.lateJoin)}`)

  // the seed's link goes down for 10 s once the first host holds 30 % of the chunks
  churn.seedDown = await fill('peers', hosts, {
    label: "the seed's link down for 10 s",
    scenario: async (ctx) => {
      await waitObjects(ctx.stores[0], Math.round(0.3 * image.chunks), 120_000)
      const at = (performance.now() - ctx.tStart) / 1000
      lab.setLink(lab.seed, false)
      await sleep(10_000)
      lab.setLink(lab.seed, true)
      return {downAt: at, downFor: 10}
    },
  })
  log(`  ${line(churn.seedDown)}`)

  // one host's link is 10× slower than the rest (both directions)
  const slow = hosts.at(-1)
  lab.shape(slow, rate / 10)
  try {
    churn.slowHost = await fill('peers', hosts, {label: "one host's link 10× slower", scenario: async () => ({slowHost: slow.name, slowRate: rate / 10})})
  } finally {
    lab.shape(slow, rate)
  }
  log(`  ${line(churn.slowHost)}`)
}

// ----------------------------------------------------------------- the owner-hashing simulation's ownership, checked

// bench/sim.js picks owners with the real balancedOwners; here the same function over this
// lab's chunk ids and host URLs (in their normal form, as a pull ranks them) predicts how many
// chunk bytes each host serves in a fill (N × what it owns: every host's pull, its own
// included, asks the owner's serve); compared with each host serve's /metrics from the fill runs.
const {balancedOwners} = dist
const ownership = fillRuns
  .filter((p) => p.hosts >= 2)
  .map((p) => {
    const urls = lab.hosts.slice(0, p.hosts).map((h) => ({url: `http://${h.ip}:${SERVE_PORT}/`}))
    const owned = new Map(urls.map((u) => [u.url, 0]))
    for (const o of balancedOwners(image.objects, urls).values()) owned.set(o.url, owned.get(o.url) + 1)
    const predicted = urls.map((u) => (owned.get(u.url) * p.hosts * U) / image.chunks)
    const measured = p.peers[0].hostServedBytes
    const maxOverMean = (xs) => Math.max(...xs) / (xs.reduce((a, b) => a + b, 0) / xs.length)
    return {
      hosts: p.hosts,
      predictedMaxOverMean: maxOverMean(predicted),
      measuredMaxOverMean: maxOverMean(measured),
      worstHostError: Math.max(...measured.map((m, i) => Math.abs(m - predicted[i]) / predicted[i])),
      predicted,
      measured,
    }
  })

await seedServe.stop()
await nginx.close()
await lab.close()

// ----------------------------------------------------------------- results

await run.finish({
  reps: opts.reps,
  lab: {rate, seedRate, hosts: maxHosts, id: lab.id, shaping: 'tbf on both ends of every veth (uplink and downlink); no netem on this kernel: no latency or loss emulated'},
  image: {size: image.size, allocated: image.allocated, uniqueBytes: U, chunks: image.chunks, chunkSize: image.chunkSize, spec, composition: image.composition, id: image.id},
  limitSeconds,
  goals: GOALS,
  settings: {quietWaitMs: settings.quietWaitMs, pretouchBytes: settings.pretouchBytes},
  fill: fillRuns,
  churn: opts.churn ? churn : undefined,
  ownership,
  ownerFunction: 'balancedOwners',
}, renderFleetReport)

