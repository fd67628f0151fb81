#!/usr/bin/env node
// @ts-check
// vmi compression benchmark (issue 18): `node bench/compress.js` (or `npm run bench -- --only
// compress`). The Debian boot image's chunks, raw and compressed (docs/FORMAT.md "Compressed
// objects"), moved on loopback and over the fleet lab's shaped links:
//   1. loopback: push to an empty vmi serve with and without compression, against cp of the raw
//      file; pull from a vmi serve whose store holds the chunks raw, and one holding them
//      compressed, against curl of the raw file from nginx;
//   2. lab, at each --rates: one host pulls from the compressed seed, from the raw seed
//      compressing on send (vmi serve --compress-sends auto, the default) and from the raw seed
//      sending raw (--compress-sends never), against curl of the raw file from nginx on the seed
//      and the physical limit (bytes ÷ link rate);
//   3. lab, at each rate: --hosts hosts fill at once with peers and owners (every host runs
//      `vmi serve --seed` and pulls with every host as a peer), from each of the three seeds (the
//      hosts' serves with the seed's --compress-sends).
// Each A/B pair runs alternately, the order flipped every repetition; min–median–max reported.
// Writes bench/results/<date>-compress.md and latest-compress.json; never fails on a missed goal.
import {promises as fsp} from 'node:fs'
import path from 'node:path'
import {labUnavailable, startLab} from '../test/helpers/lab.js'
import {bytesHuman, f, int} from './lib/format.js'
import {cpuOf, runTimed} from './lib/measure.js'
import {
  BIN,
  BUILD,
  cpuWindow,
  ENV_NOTE,
  parseOptions,
  prepare,
  RENDER,
  requireBootImage,
  rerenderAndExit,
  servedObjectBytes,
  startNginx,
  startRun,
  startServe,
  vmiEnv,
  vmiTimed,
} from './lib/common.js'
import {renderCompressReport} from './lib/compress-report.js'
import {labSettings, SERVE_PORT, startHostServe, timedIn} from './lib/lab-run.js'

const opts = parseOptions(
  'compress',
  {
    reps: ['--reps N', 3, Number, 'repetitions of each A/B pair (alternating), min–median–max reported'],
    rates: ['--rates LIST', '200mbit,1gbit', String, 'lab link rates (single-host pull and fill at each)'],
    hosts: ['--hosts N', 4, Number, 'fleet size for the fill'],
    lab: ['--no-lab', true, false, 'loopback only'],
    build: BUILD,
    render: RENDER,
  },
  (o) => (!Number.isInteger(o.reps) || o.reps < 1 || !Number.isInteger(o.hosts) || o.hosts < 2 || o.hosts > 16) && 'bad --reps or --hosts (2-16)',
  ENV_NOTE,
)

/** Goals from issue 18 (ratios; the report marks each met or missed). */
const GOALS = {labVsRaw: 2.5, labVsCurl: 6, loopbackSlowdown: 1.1}
const TOKEN = 'bench-compress-token'

if (opts.render) await rerenderAndExit('compress', opts.render, renderCompressReport)

const run = await startRun('compress', {build: opts.build, tools: ['curl', 'nginx']})
const {log, workDir, discard} = run
const settings = labSettings()
const boot = requireBootImage('compress', log)

// ----------------------------------------------------------------- the two seed stores

const image = {file: boot.file, size: (await fsp.stat(boot.file)).size}
const rawSeed = path.join(workDir, 'seed-raw')
const zSeed = path.join(workDir, 'seed-zstd')
{
  const r = await vmiTimed(['import', image.file, 'bench:compress', '--json'], rawSeed, {scratch: workDir})
  Object.assign(image, {id: r.json.id, chunks: r.json.newChunks, uniqueBytes: r.json.newBytes, chunkSize: r.json.chunkSize})
  log(`Debian image ${bytesHuman(image.size)}: ${int(image.chunks)} distinct non-zero chunks = ${bytesHuman(image.uniqueBytes)}`)
  // the compressed seed: the image pushed to a vmi serve over an empty store (what a CI build does
  // across a link; --compress, since a push to a serve on this machine sends the chunks as they rest)
  const s = await startServe(zSeed, ['--token', TOKEN])
  const p = await vmiTimed(['push', 'bench:compress', s.url, '--token', TOKEN, '--compress', '--json'], rawSeed, {scratch: workDir})
  await s.stop()
  image.compressedBytes = p.json.uploadedBytes
  log(`compressed seed: ${bytesHuman(p.json.uploadedBytes)} for ${bytesHuman(p.json.uploadedChunkBytes)} (${f((100 * p.json.uploadedBytes) / p.json.uploadedChunkBytes, 1)} %)`)
}
const fsckZ = (await vmiTimed(['fsck', '--json'], zSeed, {scratch: workDir})).json
image.compressedObjects = fsckZ.compressedObjects
image.storedBytes = fsckZ.objectBytes

/** Each of `fns` `reps` times, the order rotated every repetition; their results in the order of `fns`. @template T @param {(() => Promise<T>)[]} fns */
async function rotate(fns) {
  const out = fns.map(() => /** @type {T[]} */ ([]))
  for (let r = 0; r < opts.reps; r++) for (let k = 0; k < fns.length; k++) {
    const i = (k + r) % fns.length
    out[i].push(await fns[i]())
  }
  return out
}

/** Alternate `a` and `b` `reps` times (b first on odd repetitions). @template T @param {() => Promise<T>} a @param {() => Promise<T>} b */
async function alternate(a, b) {
  const A = []
  const B = []
  for (let r = 0; r < opts.reps; r++) {
    if (r % 2 === 0) A.push(await a()), B.push(await b())
    else B.push(await b()), A.push(await a())
  }
  return [A, B]
}

const fresh = (label) => path.join(workDir, `${label}-${Math.random().toString(36).slice(2, 8)}`)

// ----------------------------------------------------------------- 1. loopback

log(`loopback: push (compressed, raw) and pull (compressed seed, raw seed), ${opts.reps}× alternating; cp and curl anchors`)
const loop = {}
{
  /** Push to an empty vmi serve; `raw`: --no-compress. */
  const push = async (raw) => {
    const target = fresh('push-target')
    const s = await startServe(target, ['--token', TOKEN])
    await prepare({dirs: [path.join(rawSeed, 'objects')]}, settings)
    const w = cpuWindow([s.pid])
    const r = await vmiTimed(['push', 'bench:compress', s.url, '--token', TOKEN, '--json', raw ? '--no-compress' : '--compress'], rawSeed, {scratch: workDir})
    const c = w.end(cpuOf(r))
    await s.stop()
    await discard(target)
    const x = {wall: r.wall, clientCpu: cpuOf(r), serverCpu: c.serverCpu, othersCores: c.othersCores, sentBytes: r.json.uploadedBytes, compressed: r.json.compressed}
    log(`  push ${raw ? 'raw       ' : 'compressed'}: ${f(x.wall)} s, ${bytesHuman(x.sentBytes)} sent, CPU client ${f(x.clientCpu)} s, server ${f(x.serverCpu)} s`)
    return x
  }
  const cp = async () => {
    const out = fresh('cp.raw')
    await prepare({files: [image.file]}, settings)
    const r = await runTimed('cp', ['--sparse=always', image.file, out], {scratch: workDir})
    await discard(out)
    return {wall: r.wall}
  }
  const [pz, pr] = await alternate(() => push(false), () => push(true))
  const cps = []
  for (let r = 0; r < opts.reps; r++) cps.push(await cp())
  loop.push = {compressed: pz, raw: pr, cp: cps}

  const sRaw = await startServe(rawSeed)
  const sZ = await startServe(zSeed)
  const nginx = await startNginx(rawSeed, {rawFile: image.file})
  const pull = async (serve, seedStore, label) => {
    const host = fresh('pull-host')
    await prepare({dirs: [path.join(seedStore, 'objects')]}, settings)
    const served0 = await servedObjectBytes(serve)
    const w = cpuWindow([serve.pid])
    const r = await vmiTimed(['pull', 'bench:compress', serve.url, '--json'], host, {scratch: workDir})
    const c = w.end(cpuOf(r))
    const servedBytes = (await servedObjectBytes(serve)) - served0
    await discard(host)
    const x = {wall: r.wall, clientCpu: cpuOf(r), serverCpu: c.serverCpu, othersCores: c.othersCores, servedBytes}
    log(`  pull from the ${label} seed: ${f(x.wall)} s, ${bytesHuman(servedBytes)} served, CPU client ${f(x.clientCpu)} s, server ${f(x.serverCpu)} s`)
    return x
  }
  const [lz, lr] = await alternate(() => pull(sZ, zSeed, 'compressed'), () => pull(sRaw, rawSeed, 'raw'))
  const curls = []
  for (let r = 0; r < opts.reps; r++) {
    const out = fresh('curl.raw')
    await prepare({files: [image.file]}, settings)
    const c = await runTimed('curl', ['-sSf', '-o', out, `${nginx.url}/raw/${path.basename(image.file)}`], {scratch: workDir})
    await discard(out)
    curls.push({wall: c.wall})
  }
  loop.pull = {compressed: lz, raw: lr, curl: curls}
  await sRaw.stop()
  await sZ.stop()
  await nginx.close()
}

// ----------------------------------------------------------------- 2 and 3. the lab

const lab = {rates: [], fills: [], skipped: undefined}
const labWhy = opts.lab ? labUnavailable() : '--no-lab given'
if (labWhy) {
  lab.skipped = labWhy
  log(`lab: skipped (${labWhy})`)
} else {
  const rates = opts.rates.split(',').filter(Boolean)
  for (const rate of rates) {
    const hosts = opts.hosts
    const L = await startLab({hosts, hostRate: rate, seedRate: rate})
    const bps = L.hosts[0].rate
    log(`lab ${L.id} at ${f(bps / 1e6, 0)} Mbit/s: seed + ${hosts} host(s)`)
    const sRaw = await startServe(rawSeed, ['--compress-sends', 'never'], {netns: L.seed.ns, listen: `${L.seed.ip}:${SERVE_PORT}`})
    const sZ = await startServe(zSeed, [], {netns: L.seed.ns, listen: `${L.seed.ip}:${SERVE_PORT + 1}`})
    // the raw store again, compressing on send (the default, auto: the host is not on a loopback address)
    const sSent = await startServe(rawSeed, [], {netns: L.seed.ns, listen: `${L.seed.ip}:${SERVE_PORT + 2}`})
    const nginx = await startNginx(rawSeed, {rawFile: image.file, netns: L.seed.ns, host: L.seed.ip, port: 8080})
    const rawUrl = `${nginx.url}/raw/${path.basename(image.file)}`
    const h = L.hosts[0]
    const one = async (serve, seedStore, label) => {
      const host = fresh('lab-host')
      await prepare({dirs: [path.join(seedStore, 'objects')]}, settings)
      const tx0 = L.counters(L.seed).tx
      const w = cpuWindow([serve.pid])
      const t = timedIn(h, [process.execPath, BIN, 'pull', image.id, serve.url, '--json'], {env: vmiEnv(host), tStart: performance.now(), scratch: workDir})
      const r = await t.done
      const c = w.end(cpuOf(r))
      const wireBytes = L.counters(L.seed).tx - tx0
      if (r.status !== 0) throw new Error(`pull in the lab failed: ${r.stderr}`)
      await discard(host)
      const x = {wall: r.wall, wireBytes, clientCpu: cpuOf(r), serverCpu: c.serverCpu}
      log(`  1 host, ${label} seed: ${f(x.wall)} s, ${bytesHuman(wireBytes)} on the seed's link, CPU client ${f(x.clientCpu)} s, seed ${f(x.serverCpu)} s`)
      return x
    }
    const [z, sent, raw] = await rotate([() => one(sZ, zSeed, 'compressed'), () => one(sSent, rawSeed, 'raw, compressed on send'), () => one(sRaw, rawSeed, 'raw')])
    // the anchor: curl of the raw file (sparse holes go over the wire as zeros), once
    const tx0 = L.counters(L.seed).tx
    const c = await timedIn(h, ['curl', '-sSf', '-o', '/dev/null', rawUrl], {env: process.env, tStart: performance.now(), scratch: workDir}).done
    const curl = {wall: c.wall, wireBytes: L.counters(L.seed).tx - tx0}
    log(`  1 host, curl of the raw file: ${f(curl.wall)} s, ${bytesHuman(curl.wireBytes)}`)
    const point = {rateBits: bps, compressed: z, sent, raw, curl}
    lab.rates.push(point)
    lab.fills.push(await fleetFill(L, sRaw, sZ, sSent))
    await sSent.stop()
    await sRaw.stop()
    await sZ.stop()
    await nginx.close()
    await L.close()
  }
}

/** 3. every host of the lab fills at once with peers and owners, from each seed. */
async function fleetFill(L, sRaw, sZ, sSent) {
  const fill = async (serve, seedStore, label, serveArgs = []) => {
    const stores = L.hosts.map(() => fresh('fill-host'))
    const serves = await Promise.all(L.hosts.map((h, i) => startHostServe(h, stores[i], serve.url, serveArgs)))
    const peers = L.hosts.flatMap((h) => ['--peer', `http://${h.ip}:${SERVE_PORT}`])
    await prepare({dirs: [path.join(seedStore, 'objects')]}, settings)
    const served0 = await servedObjectBytes(serve)
    const tx0 = L.counters(L.seed).tx
    const w = cpuWindow([serve.pid, ...serves.map((s) => s.pid)])
    const tStart = performance.now()
    const results = await Promise.all(L.hosts.map((h, i) => timedIn(h, [process.execPath, BIN, 'pull', image.id, serve.url, ...peers, '--json'], {env: vmiEnv(stores[i]), tStart, scratch: workDir}).done))
    const clientCpu = results.reduce((a, r) => a + cpuOf(r), 0)
    const cpu = w.end(clientCpu)
    const failures = results.filter((r) => r.status !== 0).map((r) => `${r.host}: ${r.stderr.trim().split('\n').pop()}`)
    const seedServed = (await servedObjectBytes(serve)) - served0
    const seedWire = L.counters(L.seed).tx - tx0
    for (const s of serves) await s.stop()
    for (const s of stores) await discard(s)
    const x = {hosts: L.hosts.length, wall: Math.max(...results.map((r) => r.endedAt)), seedServed, seedWire, clientCpu, serverCpu: cpu.serverCpu, busyCores: cpu.busyCores, failures}
    log(`  fill, ${x.hosts} hosts, ${label} seed: ${f(x.wall)} s, seed served ${bytesHuman(seedServed)} (${bytesHuman(seedWire)} on its link), CPU clients ${f(clientCpu)} s, serves ${f(cpu.serverCpu)} s${failures.length ? `; FAILURES ${failures.join('; ')}` : ''}`)
    return x
  }
  const [z, sent, raw] = await rotate([
    () => fill(sZ, zSeed, 'compressed'),
    () => fill(sSent, rawSeed, 'raw, compressed on send'),
    () => fill(sRaw, rawSeed, 'raw', ['--compress-sends', 'never']),
  ])
  return {rateBits: L.hosts[0].rate, compressed: z, sent, raw}
}

await run.finish({image, loop, lab, goals: GOALS, reps: opts.reps}, renderCompressReport)
process.exit(0)
