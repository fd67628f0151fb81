#!/usr/bin/env node
// @ts-check
// vmi distribution benchmark: `node bench/dist.js` (or `npm run bench -- --only dist`): pull
// against curl, N hosts pulling at once, push against cp, serving under load, compression; what
// each measures is in bench/README.md, "Distribution benchmark". Writes bench/results/<date>-dist.md
// and latest-dist.json; never fails on a missed goal.
import {randomBytes} from 'node:crypto'
import {promises as fsp, writeFileSync} from 'node:fs'
import path from 'node:path'
import {bytesHuman, f, int, MB, mbps} from './lib/format.js'
import {allocatedBytes, ensureSyntheticImage} from './lib/image.js'
import {hashSpeed} from './lib/inproc.js'
import {cpuOf, GNU_TIME, median, runTimed, stats, summarizeRuns} from './lib/measure.js'
import {
  BUILD,
  cpuWindow,
  ensureBootImage,
  ENV_NOTE,
  GiB,
  KiB,
  listObjects,
  metricSum,
  MiB,
  numberList,
  parseOptions,
  prepare,
  prepMethod,
  prepSettings,
  RENDER,
  rerenderAndExit,
  ROOT,
  servedObjectBytes,
  shuffled,
  startNginx,
  startRun,
  startServe,
  vmiTimed,
  withServers,
} from './lib/common.js'
import {compressionStudy} from './lib/dist-compress.js'
import {renderDistReport} from './lib/dist-report.js'
import {pullComponents} from './lib/dist-inproc.js'

const opts = parseOptions(
  'dist',
  {
    reps: ['--reps N', 3, Number, 'repetitions of each pull/curl/push/cp/serve-load measurement, median reported; the N-host runs are done once each'],
    hosts: ['--hosts LIST', [1, 2, 4, 8], numberList, 'host counts for the fleet pull'],
    synthetic: ['--synthetic', false, true, 'use the 1.5 GiB synthetic image even when the Debian boot image is built'],
    compress: ['--no-compress', true, false, 'skip the compression study'],
    build: BUILD,
    render: RENDER,
  },
  (o) => (!Number.isInteger(o.reps) || o.reps < 1 || !o.hosts.every((n) => Number.isInteger(n) && n >= 1 && n <= 32)) && `bad --reps or --hosts`,
  ENV_NOTE,
)

const TARGETS = {pullVsCurl: 2, pushVsCp: 0.3, pushVsPull: 2, repushSeconds: 1, repushChanged: 16 * MiB}
const LOAD = {concurrency: 64, maxRequests: 20000, maxSeconds: 8, warmupSeconds: 2}
const TOKEN = 'bench-push-token'

if (opts.render) await rerenderAndExit('dist', opts.render, renderDistReport)

const run = await startRun('dist', {build: opts.build, tools: ['curl', 'nginx']})
const {log, startedAt, workDir, discard, trashStats, dist, machine} = run
const settings = prepSettings()

const tagged = (prep, r) => Object.assign(r, prep)

const summarize = (runs) => summarizeRuns(runs, ['serverCpu', 'othersCores', 'irqCores', 'stealCores'])

// ----------------------------------------------------------------- the image

/** @type {Record<string, any>} */
let image
{
  const boot = opts.synthetic ? {reason: '--synthetic given'} : ensureBootImage(log)
  if (boot.file) {
    image = {name: 'Debian boot image', kind: 'debian', file: boot.file, dir: boot.dir, info: boot.info}
  } else {
    const spec = {
      generator: 'vmi-bench-synthetic/1',
      size: 1.5 * GiB,
      align: MiB,
      seed: 'vmi-bench-dist-2026',
      minRegion: MiB,
      maxRegion: 48 * MiB,
      weights: {random: 0.35, zero: 0.5, repeat: 0.15},
    }
    const s = await ensureSyntheticImage(spec, log)
    image = {name: 'synthetic 1.5 GiB', kind: 'synthetic', file: s.file, spec, composition: s.composition, whyNotDebian: boot.reason}
  }
  image.size = (await fsp.stat(image.file)).size
  image.allocated = await allocatedBytes(image.file)
  log(`${image.name}: ${image.file} (${bytesHuman(image.size)}, ${bytesHuman(image.allocated)} allocated)`)
}

// the seed store: the image imported once (at the default chunk size)
const seedStore = path.join(workDir, 'seed')
{
  await prepare({files: [image.file]}, settings)
  const r = await vmiTimed(['import', image.file, 'bench:dist', '--json'], seedStore, {scratch: workDir})
  image.importJson = r.json
  image.id = r.json.id
  image.uniqueBytes = r.json.newBytes // distinct non-zero chunk bytes: what a host must receive
  image.objects = await listObjects(seedStore)
  log(`imported into the seed store in ${f(r.wall)} s: ${int(r.json.chunks)} chunks, ${int(r.json.zeroChunks)} zero, ${int(r.json.newChunks)} distinct non-zero (${bytesHuman(r.json.newBytes)})`)
}
const seedObjects = path.join(seedStore, 'objects')

// ----------------------------------------------------------------- component speeds (for "what bounds it")

log('component speeds: CLI start-up, hash')
await vmiTimed(['--version'], path.join(workDir, 'unused'), {scratch: workDir})
const startupRuns = []
for (let r = 0; r < 3; r++) {
  await prepare({}, settings)
  startupRuns.push((await vmiTimed(['--version'], path.join(workDir, 'unused'), {scratch: workDir})).wall)
}
const inproc = {startup: median(startupRuns), hash256: hashSpeed(dist, 256 * KiB)}

// ----------------------------------------------------------------- servers over the seed store

const nginx = await startNginx(seedStore, {rawFile: image.file})
const seedServe = await startServe(seedStore)
log(`seed: nginx ${nginx.url} (${nginx.version}, 1 worker) and vmi serve ${seedServe.url}, both over ${seedStore}`)
const rawUrl = `${nginx.url}/raw/${path.basename(image.file)}`

log('in-process split of a pull: HttpStore.get (general client + verify) and bare node:http GETs (8 in flight), pipelined GETs, hash, LocalStore.putObjectSync')
await prepare({dirs: [seedObjects]}, settings)
inproc.pull = await pullComponents(nginx.url, image.objects, {storeDir: path.join(workDir, 'inproc-store'), discard})
for (const k of ['httpStore', 'bareHttp', 'pipelined', 'hash', 'putObject']) log(`  ${k}: ${f(inproc.pull[k].wall)} s wall, ${f(inproc.pull[k].cpu)} s CPU`)

// ----------------------------------------------------------------- 1. pull vs curl

log(`pull vs curl, ${opts.reps} repetitions`)
const pullRuns = {curlFile: [], curlNull: [], pullNginx: [], pullServe: []}
/**
 * Repetition `r` of `label`: prepare (warming `warm`), then `run()` timed with our servers `pids`
 * (withServers); it gets how the machine looked at its start, and is logged.
 * @param {string} label @param {number} r @param {{files?: string[], dirs?: string[]}} warm @param {(number | undefined)[]} pids @param {() => Promise<Record<string, any>>} run
 */
async function measured(label, r, warm, pids, run) {
  const res = tagged(await prepare(warm, settings), await withServers(pids, run))
  log(`  ${label} #${r + 1}: ${f(res.wall)} s (${f(mbps(image.size, res.wall), 0)} MB/s of image), CPU ${f(cpuOf(res))} s, server CPU ${f(res.serverCpu)} s, irq ${f(res.irqCores)} cores, others ${f(res.othersCores)} cores`)
  return res
}
const rawWarm = {files: [image.file]}
const storeWarm = {dirs: [seedObjects]}
for (let r = 0; r < opts.reps; r++) {
  const dest = path.join(workDir, 'curl.raw')
  pullRuns.curlFile.push(await measured('curl → file', r, rawWarm, [nginx.pid], () => runTimed('curl', ['-sSf', '-o', dest, rawUrl], {scratch: workDir})))
  const got = (await fsp.stat(dest)).size
  if (got !== image.size) throw new Error(`curl wrote ${got} bytes, expected ${image.size}`)
  await fsp.rm(dest, {force: true})
  pullRuns.curlNull.push(await measured('curl → /dev/null', r, rawWarm, [nginx.pid], () => runTimed('curl', ['-sSf', '-o', '/dev/null', rawUrl], {scratch: workDir})))

  for (const [key, label, seed, pid] of [
    ['pullNginx', 'vmi pull ← nginx', nginx.url, nginx.pid],
    ['pullServe', 'vmi pull ← vmi serve', seedServe.url, seedServe.pid],
  ]) {
    const store = path.join(workDir, `pull-${key}-${r}`)
    const res = await measured(label, r, storeWarm, [pid], () => vmiTimed(['pull', image.id, seed, '--json'], store, {scratch: workDir}))
    if (res.json?.fromBytes?.seed !== image.uniqueBytes) throw new Error(`pull from ${seed} fetched ${res.json?.fromBytes?.seed} bytes from the seed, expected ${image.uniqueBytes}`)
    pullRuns[key].push(res)
    await discard(store)
  }
}
const pull = Object.fromEntries(Object.entries(pullRuns).map(([k, v]) => [k, summarize(v)]))

// ----------------------------------------------------------------- 2. N hosts at once

log(`fleet pull: ${opts.hosts.join(', ')} hosts at once (seed = vmi serve, 1 run each)`)
const fleet = []
for (const n of opts.hosts) {
  const hosts = []
  for (let i = 0; i < n; i++) {
    const store = path.join(workDir, `host-${n}-${i}`)
    hosts.push({store, serve: await startServe(store, ['--seed', seedServe.url])})
  }
  const peerArgs = hosts.flatMap((h) => ['--peer', h.serve.url])
  const p = await prepare({dirs: [seedObjects]}, settings)
  const before = await servedObjectBytes(seedServe)
  const w = cpuWindow([seedServe.pid, ...hosts.map((h) => h.serve.pid)])
  const wSeed = cpuWindow([seedServe.pid])
  const tStart = performance.now()
  const results = await Promise.all(
    hosts.map(async (h) => {
      const res = await vmiTimed(['pull', image.id, seedServe.url, ...peerArgs, '--json'], h.store, {scratch: workDir})
      res.endedAt = (performance.now() - tStart) / 1000
      return res
    }),
  )
  const wall = (performance.now() - tStart) / 1000
  const childCpu = results.reduce((a, r) => a + cpuOf(r), 0)
  const cpu = w.end(childCpu)
  const seedCpu = wSeed.end().serverCpu
  const seedBytes = (await servedObjectBytes(seedServe)) - before
  let fetchedThrough = 0
  for (const h of hosts) fetchedThrough += metricSum(await h.serve.metrics(), 'vmi_fetched_bytes_total')
  for (const h of hosts) await h.serve.stop()
  for (const h of hosts) await discard(h.store)
  const point = {
    hosts: n,
    wall,
    seedBytes,
    seedRatio: seedBytes / image.uniqueBytes,
    fetchedThroughBytes: fetchedThrough,
    pullCpu: childCpu,
    serveCpu: cpu.serverCpu,
    seedServeCpu: seedCpu,
    hostServeCpu: cpu.serverCpu - seedCpu,
    busyCores: cpu.busyCores,
    irqCores: cpu.irqCores,
    othersCores: cpu.othersCores,
    ...p,
    perHost: results.map((r) => ({wall: r.wall, endedAt: r.endedAt, cpu: cpuOf(r), rssBytes: r.rssBytes, fromBytes: r.json?.fromBytes, fromChunks: r.json?.fromChunks, sourceErrors: r.json?.sourceErrors, seconds: r.json?.seconds})),
  }
  fleet.push(point)
  log(
    `  ${n} host(s): ${f(wall)} s, seed sent ${bytesHuman(seedBytes)} = ${f(point.seedRatio, 3)}× the unique non-zero bytes; ` +
      `CPU s: pulls ${f(childCpu)}, host serves ${f(point.hostServeCpu)}, seed ${f(seedCpu)}; machine busy ${f(cpu.busyCores)} cores, irq ${f(cpu.irqCores)}, others ${f(cpu.othersCores)}`,
  )
}

// ----------------------------------------------------------------- 3. push vs cp

log(`push vs cp, ${opts.reps} repetitions`)
// the image with 16 MiB of it changed (new random bytes in the middle): a re-push sends only those chunks
const changed = path.join(workDir, 'changed.raw')
{
  await runTimed('cp', ['--sparse=always', image.file, changed], {scratch: workDir})
  const fh = await fsp.open(changed, 'r+')
  const at = Math.floor(image.size / 2 / MiB) * MiB
  await fh.write(randomBytes(TARGETS.repushChanged), 0, TARGETS.repushChanged, at)
  await fh.close()
  const r = await vmiTimed(['import', changed, 'bench:changed', '--json'], seedStore, {scratch: workDir})
  image.changedId = r.json.id
  image.changedNewBytes = r.json.newBytes
  await fsp.rm(changed, {force: true})
  log(`changed image: ${bytesHuman(TARGETS.repushChanged)} rewritten at ${bytesHuman(at)}: ${bytesHuman(r.json.newBytes)} of new chunks`)
}
const pushRuns = {cp: [], push: [], repush: [], pushCompress: []}
for (let r = 0; r < opts.reps; r++) {
  const dest = path.join(workDir, 'cp.raw')
  pushRuns.cp.push(await measured('cp', r, rawWarm, [], () => runTimed('cp', [image.file, dest], {scratch: workDir})))
  await fsp.rm(dest, {force: true})

  const target = path.join(workDir, `push-seed-${r}`)
  const serve = await startServe(target, [], {env: {VMI_PUSH_TOKEN: TOKEN}})
  const res = await measured('vmi push → empty vmi serve', r, storeWarm, [serve.pid], () => vmiTimed(['push', image.id, serve.url, '--json'], seedStore, {scratch: workDir, env: {VMI_PUSH_TOKEN: TOKEN}}))
  // the chunks' own bytes are all sent; to a serve on this machine they go as they rest by default (raw here)
  if (res.json?.uploadedChunkBytes !== image.uniqueBytes) throw new Error(`push uploaded ${res.json?.uploadedChunkBytes} bytes of chunks, expected ${image.uniqueBytes}`)
  image.pushSentBytes = res.json.uploadedBytes
  image.pushCompressed = res.json.compressed
  pushRuns.push.push(res)
  const again = await measured('vmi push of the changed image', r, storeWarm, [serve.pid], () => vmiTimed(['push', image.changedId, serve.url, '--json'], seedStore, {scratch: workDir, env: {VMI_PUSH_TOKEN: TOKEN}}))
  if (again.json?.uploadedChunkBytes !== image.changedNewBytes) throw new Error(`the re-push uploaded ${again.json?.uploadedChunkBytes} bytes of chunks, expected ${image.changedNewBytes}`)
  image.repushSentBytes = again.json.uploadedBytes
  pushRuns.repush.push(again)
  await serve.stop()
  await discard(target)

  // the same push compressing every chunk (what the default does for a seed across a link)
  const targetZ = path.join(workDir, `push-seed-z-${r}`)
  const serveZ = await startServe(targetZ, [], {env: {VMI_PUSH_TOKEN: TOKEN}})
  const z = await measured('vmi push --compress → empty vmi serve', r, storeWarm, [serveZ.pid], () => vmiTimed(['push', image.id, serveZ.url, '--compress', '--json'], seedStore, {scratch: workDir, env: {VMI_PUSH_TOKEN: TOKEN}}))
  if (z.json?.uploadedChunkBytes !== image.uniqueBytes || !z.json?.compressed) throw new Error(`push --compress uploaded ${z.json?.uploadedChunkBytes} bytes of chunks (compressed: ${z.json?.compressed}), expected ${image.uniqueBytes}`)
  image.pushCompressSentBytes = z.json.uploadedBytes
  pushRuns.pushCompress.push(z)
  await serveZ.stop()
  await discard(targetZ)
}
const push = Object.fromEntries(Object.entries(pushRuns).map(([k, v]) => [k, summarize(v)]))

// ----------------------------------------------------------------- 4. serve under 64 concurrent chunk GETs

log(`serve load: ${LOAD.concurrency} concurrent keep-alive chunk GETs (≤ ${LOAD.maxRequests} requests, ≤ ${LOAD.maxSeconds} s), vmi serve vs nginx, ${opts.reps} repetitions`)
const pathsFile = path.join(workDir, 'paths.txt')
writeFileSync(pathsFile, shuffled(image.objects.map((o) => o.path), 'vmi-bench-load').join('\n') + '\n')
const loadServe = await startServe(seedStore)
const loadRuns = {vmi: [], nginx: []}
for (let r = 0; r < opts.reps; r++) {
  for (const [key, srv] of /** @type {[string, {url: string, pid: number}][]} */ ([
    ['vmi', loadServe],
    ['nginx', nginx],
  ])) {
    const p = await prepare({dirs: [seedObjects]}, settings)
    const args = [
      path.join(ROOT, 'bench', 'lib', 'dist-load.js'),
      srv.url,
      pathsFile,
      ...Object.entries(LOAD).flatMap(([k, v]) => [`--${k.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase())}`, String(v)]),
    ]
    const res = tagged(p, await withServers([srv.pid], () => runTimed(process.execPath, args, {scratch: workDir})))
    res.load = JSON.parse(res.stdout)
    const L = res.load
    const bad = Object.keys(L.statuses).filter((s) => s !== '200').length + Object.keys(L.errors).length
    if (bad) log(`  WARNING: ${key}: statuses ${JSON.stringify(L.statuses)}, errors ${JSON.stringify(L.errors)}`)
    loadRuns[key].push(res)
    log(
      `  ${key} #${r + 1}: ${int(L.requests)} requests in ${f(L.seconds)} s = ${int(L.rps)}/s, ${f(L.bytesPerSecond / MB, 0)} MB/s, p50 ${f(L.latencyMs.p50)} ms, p99 ${f(L.latencyMs.p99)} ms; ` +
        `server CPU ${f(res.serverCpu / L.seconds)} cores, generator ${f((L.cpu.user + L.cpu.system) / L.seconds)} cores, others ${f(res.othersCores)}`,
    )
  }
}
await loadServe.stop()
const serveLoad = Object.fromEntries(
  Object.entries(loadRuns).map(([k, runs]) => {
    const L = runs.map((x) => x.load)
    return [
      k,
      {
        rps: stats(L.map((x) => x.rps)),
        bytesPerSecond: stats(L.map((x) => x.bytesPerSecond)),
        p50: stats(L.map((x) => x.latencyMs.p50)),
        p99: stats(L.map((x) => x.latencyMs.p99)),
        max: stats(L.map((x) => x.latencyMs.max)),
        serverCores: stats(runs.map((x) => x.serverCpu / x.load.seconds)),
        generatorCores: stats(L.map((x) => (x.cpu.user + x.cpu.system) / x.seconds)),
        othersCores: stats(runs.map((x) => x.othersCores)),
        busyStarts: runs.filter((x) => x.startedQuiet === false).length,
        nonOk: L.reduce((a, x) => a + Object.entries(x.statuses).filter(([s]) => s !== '200').reduce((b, [, c]) => b + c, 0) + Object.values(x.errors).reduce((b, c) => b + c, 0), 0),
        runs: runs.map(({stdout, stderr, ...rest}) => rest),
      },
    ]
  }),
)

await seedServe.stop()
await nginx.close()

// ----------------------------------------------------------------- 5. compression

let compression
if (opts.compress) {
  log(`compression study on the ${int(image.objects.length)} distinct non-zero chunks (in-process, one core)`)
  await prepare({dirs: [seedObjects]}, settings)
  compression = await compressionStudy(image.objects, {log})
}

// ----------------------------------------------------------------- results

await run.finish({
  reps: opts.reps,
  method: {
    wall: 'spawn to exit of the child, measured by the bench process (vmi: includes node + oclif start-up)',
    pageCache: 'before every run the source is read once: the raw file for curl and cp, the seed store objects for pull, push and the load test',
    ...prepMethod(settings),
    cpu: `CPU of the timed child by ${GNU_TIME ? 'GNU time (user+sys, reaped children included)' : 'n/a (no GNU time)'}; servers' CPU from /proc/<pid>/stat of their process trees; "others" = machine busy time − both`,
    network: 'everything on 127.0.0.1 (loopback)',
    cleanup: `stores moved to a trash directory and deleted at the end (${trashStats.moved} moved, ${trashStats.deletedAtOnce} deleted at once)`,
  },
  targets: TARGETS,
  load: LOAD,
  image: {...image, objects: undefined, objectCount: image.objects.length},
  inproc,
  pull,
  fleet,
  push,
  serveLoad,
  compression,
}, renderDistReport)
