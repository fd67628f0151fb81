#!/usr/bin/env node
// @ts-check
// vmi distribution benchmark: `node bench/dist.js` (or `npm run bench -- --only dist`).
// See bench/README.md, "Distribution benchmark".
//
// On the Debian boot image (else a 1.5 GiB synthetic one), all on 127.0.0.1:
//   - vmi pull from an nginx-served seed store vs curl of the raw file from
//     the same nginx (goal: pull ≥ 2× faster, by sending only unique non-zero chunks);
//   - N = 1, 2, 4, 8 hosts pulling at once (each: its own store + vmi serve
//     --seed SEED + vmi pull ID SEED --peer <every host>), seed = vmi serve:
//     seed egress (its /metrics) / unique non-zero bytes, and wall time;
//   - vmi push into an empty `vmi serve` seed vs cp of the file;
//   - 64 concurrent keep-alive chunk GETs against vmi serve vs nginx over the
//     same store: throughput and p99 latency;
//   - would compressing chunks on the wire help? (measured, not implemented).
// Writes bench/results/<date>-dist.md and bench/results/latest-dist.json. It
// never fails on a missed goal: it reports it.
import {promises as fsp, writeFileSync} from 'node:fs'
import path from 'node:path'
import {bytesHuman, f, GB, int, MB, mbps, pct, table} from './lib/format.js'
import {allocatedBytes, ensureSyntheticImage} from './lib/image.js'
import {hashSpeed} from './lib/inproc.js'
import {GNU_TIME, median, runTimed, stats, summarizeRuns} from './lib/measure.js'
import {
  cpuWindow,
  ensureBootImage,
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
import {backgroundSection, distGoals, goalTable, reportHead} from './lib/report.js'
import {pullComponents} from './lib/dist-inproc.js'

const USAGE = `usage: node bench/dist.js [--reps N] [--hosts 1,2,4,8] [--synthetic] [--no-compress] [--build]

  --reps N        repetitions of each pull/curl/push/cp/serve-load measurement, median reported (default 3);
                  the N-host runs are done once each
  --hosts LIST    host counts for the fleet pull (default 1,2,4,8)
  --synthetic     use the 1.5 GiB synthetic image even when the Debian boot image is built
  --no-compress   skip the compression study
  --build         run 'npm run build' first
  --render JSON   measure nothing: rewrite the markdown report from a latest-dist.json

environment: as bench/store.js (VMI_CACHE_DIR, VMI_BENCH_WORKDIR, VMI_BENCH_QUIET_WAIT, VMI_BENCH_PRETOUCH_GIB)`

const opts = parseOptions(
  'dist',
  USAGE,
  {reps: 3, hosts: [1, 2, 4, 8], synthetic: false, compress: true, build: false, render: undefined},
  {
    '--reps': ['reps', Number],
    '--hosts': ['hosts', numberList],
    '--synthetic': ['synthetic', true],
    '--no-compress': ['compress', false],
    '--build': ['build', true],
    '--render': ['render', String],
  },
  (o) => (!Number.isInteger(o.reps) || o.reps < 1 || !o.hosts.every((n) => Number.isInteger(n) && n >= 1 && n <= 32)) && `bad --reps or --hosts`,
)

const TARGETS = {pullVsCurl: 2}
const LOAD = {concurrency: 64, maxRequests: 20000, maxSeconds: 8, warmupSeconds: 2}
const TOKEN = 'bench-push-token'

if (opts.render) await rerenderAndExit('dist', opts.render, render)

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
const note = (label, r, res) =>
  log(`  ${label} #${r + 1}: ${f(res.wall)} s (${f(mbps(image.size, res.wall), 0)} MB/s of image), CPU ${f((res.user ?? 0) + (res.sys ?? 0))} s, server CPU ${f(res.serverCpu)} s, irq ${f(res.irqCores)} cores, others ${f(res.othersCores)} cores`)
for (let r = 0; r < opts.reps; r++) {
  const dest = path.join(workDir, 'curl.raw')
  let p = await prepare({files: [image.file]}, settings)
  pullRuns.curlFile.push(tagged(p, await withServers([nginx.pid], () => runTimed('curl', ['-sSf', '-o', dest, rawUrl], {scratch: workDir}))))
  note('curl → file', r, pullRuns.curlFile.at(-1))
  const got = (await fsp.stat(dest)).size
  if (got !== image.size) throw new Error(`curl wrote ${got} bytes, expected ${image.size}`)
  await fsp.rm(dest, {force: true})

  p = await prepare({files: [image.file]}, settings)
  pullRuns.curlNull.push(tagged(p, await withServers([nginx.pid], () => runTimed('curl', ['-sSf', '-o', '/dev/null', rawUrl], {scratch: workDir}))))
  note('curl → /dev/null', r, pullRuns.curlNull.at(-1))

  for (const [key, seed, pid] of [
    ['pullNginx', nginx.url, nginx.pid],
    ['pullServe', seedServe.url, seedServe.pid],
  ]) {
    const store = path.join(workDir, `pull-${key}-${r}`)
    p = await prepare({dirs: [seedObjects]}, settings)
    const res = tagged(p, await withServers([pid], () => vmiTimed(['pull', image.id, seed, '--json'], store, {scratch: workDir})))
    if (res.json?.fromBytes?.seed !== image.uniqueBytes) throw new Error(`pull from ${seed} fetched ${res.json?.fromBytes?.seed} bytes from the seed, expected ${image.uniqueBytes}`)
    pullRuns[key].push(res)
    note(key === 'pullNginx' ? 'vmi pull ← nginx' : 'vmi pull ← vmi serve', r, res)
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
  const childCpu = results.reduce((a, r) => a + (r.user ?? 0) + (r.sys ?? 0), 0)
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
    perHost: results.map((r) => ({wall: r.wall, endedAt: r.endedAt, cpu: (r.user ?? 0) + (r.sys ?? 0), rssBytes: r.rssBytes, fromBytes: r.json?.fromBytes, fromChunks: r.json?.fromChunks, sourceErrors: r.json?.sourceErrors, seconds: r.json?.seconds})),
  }
  fleet.push(point)
  log(
    `  ${n} host(s): ${f(wall)} s, seed sent ${bytesHuman(seedBytes)} = ${f(point.seedRatio, 3)}× the unique non-zero bytes; ` +
      `CPU s: pulls ${f(childCpu)}, host serves ${f(point.hostServeCpu)}, seed ${f(seedCpu)}; machine busy ${f(cpu.busyCores)} cores, irq ${f(cpu.irqCores)}, others ${f(cpu.othersCores)}`,
  )
}

// ----------------------------------------------------------------- 3. push vs cp

log(`push vs cp, ${opts.reps} repetitions`)
const pushRuns = {cp: [], push: []}
for (let r = 0; r < opts.reps; r++) {
  const dest = path.join(workDir, 'cp.raw')
  let p = await prepare({files: [image.file]}, settings)
  pushRuns.cp.push(tagged(p, await runTimed('cp', [image.file, dest], {scratch: workDir})))
  note('cp', r, pushRuns.cp.at(-1))
  await fsp.rm(dest, {force: true})

  const target = path.join(workDir, `push-seed-${r}`)
  const serve = await startServe(target, [], {env: {VMI_PUSH_TOKEN: TOKEN}})
  p = await prepare({dirs: [seedObjects]}, settings)
  const res = tagged(p, await withServers([serve.pid], () => vmiTimed(['push', image.id, serve.url, '--json'], seedStore, {scratch: workDir, env: {VMI_PUSH_TOKEN: TOKEN}})))
  if (res.json?.uploadedBytes !== image.uniqueBytes) throw new Error(`push uploaded ${res.json?.uploadedBytes} bytes, expected ${image.uniqueBytes}`)
  pushRuns.push.push(res)
  note('vmi push → empty vmi serve', r, res)
  await serve.stop()
  await discard(target)
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
}, render)

// ----------------------------------------------------------------- markdown

function render(R) {
  const out = []
  const m = R.machine
  const img = R.image
  const U = img.uniqueBytes
  out.push(...reportHead(R, 'vmi distribution benchmark', `${m.curl?.split(' ').slice(0, 2).join(' ')}; ${m.nginx}; work dir on ${m.filesystem}`))
  const imgLine =
    img.kind === 'debian'
      ? `\`${img.file}\` — the Debian boot image: ${bytesHuman(img.size)} virtual, ${bytesHuman(img.allocated)} allocated` + (img.info ? ` (Debian ${img.info.suite} ${img.info.variant}, ${img.info.package_count} packages)` : '')
      : `\`${img.file}\` — synthetic, ${bytesHuman(img.size)} (${img.whyNotDebian}); composition ${JSON.stringify(img.composition)}`
  const j = img.importJson
  out.push(
    `Image: ${imgLine}. At ${j.chunkSize / KiB} KiB chunks: ${int(j.chunks)} chunks, ${int(j.zeroChunks)} all-zero, ${int(j.newChunks)} distinct non-zero = **${bytesHuman(U)} unique non-zero bytes** (${pct(U, img.size)} of the image).`,
    '',
  )
  out.push(`Method: ${Object.values(R.method).join('; ')}. Repetitions: ${R.reps} per row (median wall; min–max shown), except the N-host pulls (one run each).`, '')

  const p = R.pull
  const S = R.serveLoad
  const comparisons = [
    {goal: 'distribution: vmi push vs cp of the file (no goal stated)', result: `${f(R.push.cp.wall / R.push.push.wall)}× cp speed`},
    {goal: `distribution: vmi serve vs nginx, ${R.load.concurrency} concurrent chunk GETs (no goal stated)`, result: `throughput ${f(S.vmi.bytesPerSecond.median / S.nginx.bytesPerSecond.median)}× nginx; p99 ${f(S.vmi.p99.median / S.nginx.p99.median)}× nginx's`},
  ]
  out.push('## Goals', '', goalTable([...distGoals(R), ...comparisons]), '')

  // pull vs curl
  const bg = []
  const row = (label, s, bytesMoved, anchor) => {
    if (s.othersCores > 0.2 || s.busyStarts) bg.push(`- ${label}: other processes used ${f(s.othersCores)} cores (median); ${s.busyStarts} of ${s.runs.length} runs started before the machine went idle`)
    return [
      label,
      `${f(s.wall)} (${f(s.wallMin)}–${f(s.wallMax)})`,
      s.reported !== undefined ? f(s.reported) : '',
      f(mbps(img.size, s.wall), 0),
      bytesMoved !== undefined ? f(mbps(bytesMoved, s.wall), 0) : '',
      anchor ? f(anchor / s.wall) : '',
      `${f(s.cpu)} / ${f(s.serverCpu)}`,
      f(s.rssBytes / MB, 0),
      f(s.irqCores),
      f(s.othersCores),
    ]
  }
  out.push(`## Pull vs curl (one host, loopback)`, '')
  out.push(
    `The seed store is served by nginx (${R.machine.nginx?.replace('nginx version: ', '')}, one worker, sendfile, access log off); the raw image is published by the same nginx at \`/raw/\`. ` +
      `Each vmi pull goes into an empty store; curl → file writes the whole raw file (zeros included) next to it.`,
    '',
  )
  out.push(
    table(
      ['operation', 'wall s, median (min–max)', 'vmi-reported s', 'MB/s of image', 'MB/s on the wire', '× curl → file speed', 'CPU s: client / server', 'client peak RSS MB', 'irq+softirq, cores', 'others\' CPU, cores'],
      [
        row('curl → file (anchor)', p.curlFile, img.size, p.curlFile.wall),
        row('curl → /dev/null (transfer only)', p.curlNull, img.size, p.curlFile.wall),
        row('vmi pull ← nginx seed', p.pullNginx, U, p.curlFile.wall),
        row('vmi pull ← vmi serve seed', p.pullServe, U, p.curlFile.wall),
      ],
    ),
    '',
  )
  out.push(`"MB/s of image" = ${bytesHuman(img.size)} / wall (the same for every row); "on the wire" = bytes actually transferred / wall (curl: the whole file; vmi: the ${bytesHuman(U)} of unique non-zero chunks). MB = 10^6 bytes.`, '')

  // fleet
  out.push(`## N hosts pulling at once (seed = vmi serve)`, '')
  out.push(
    `Each host: its own store, \`vmi serve --seed SEED\`, and \`vmi pull ID SEED --peer <every host's URL>\`; all pulls start together; wall = first start to last exit. ` +
      `Seed bytes = the seed's \`vmi_served_bytes_total{kind="objects"}\` delta. All hosts share this ${R.machine.cores}-core machine, so wall time grows with N here because CPU is shared, not because of the seed.`,
    '',
  )
  out.push(
    table(
      ['hosts', 'wall s', 'per-host pull s (min–max)', 'seed sent', 'seed bytes / unique non-zero bytes', 'owners fetched through', 'chunks from peers / seed (sum over hosts)', 'CPU s: pulls / host serves / seed', 'aggregate MB/s delivered', 'others\' CPU, cores'],
      R.fleet.map((x) => {
        if (x.othersCores > 0.2 || x.startedQuiet === false) bg.push(`- ${x.hosts} hosts: other processes used ${f(x.othersCores)} cores during the run${x.startedQuiet === false ? '; it started before the machine went idle' : ''}`)
        const walls = x.perHost.map((h) => h.wall)
        const sumChunks = (k) => x.perHost.reduce((a, h) => a + (h.fromChunks?.[k] ?? 0), 0)
        return [
          x.hosts,
          f(x.wall),
          `${f(Math.min(...walls))}–${f(Math.max(...walls))}`,
          bytesHuman(x.seedBytes),
          f(x.seedRatio, 3),
          bytesHuman(x.fetchedThroughBytes),
          `${int(sumChunks('peer'))} / ${int(sumChunks('seed'))}`,
          `${f(x.pullCpu)} / ${f(x.hostServeCpu)} / ${f(x.seedServeCpu)}`,
          f(mbps(U * x.hosts, x.wall), 0),
          f(x.othersCores),
        ]
      }),
    ),
    '',
  )

  // push
  out.push(`## Push vs cp`, '')
  out.push(
    `\`vmi push ID URL\` from the seed store into an empty \`vmi serve\` (push token; every upload re-hashed by the server), against \`cp\` of the raw file on the same filesystem (GNU cp skips holes).`,
    '',
  )
  out.push(
    table(
      ['operation', 'wall s, median (min–max)', 'vmi-reported s', 'MB/s of image', 'MB/s on the wire', '× cp speed', 'CPU s: client / server', 'client peak RSS MB', 'irq+softirq, cores', 'others\' CPU, cores'],
      [row('cp (anchor)', R.push.cp, img.allocated, R.push.cp.wall), row('vmi push → empty vmi serve', R.push.push, U, R.push.cp.wall)],
    ),
    '',
  )

  // serve load
  out.push(`## Serving chunks: ${R.load.concurrency} concurrent GETs`, '')
  out.push(
    `\`node bench/lib/dist-load.js\`: ${R.load.concurrency} workers, one keep-alive connection each (one http.Agent), GET every distinct chunk of the image in a seeded random order (wrapping), ` +
      `≤ ${int(R.load.maxRequests)} requests or ≤ ${R.load.maxSeconds} s per run after a ${R.load.warmupSeconds} s warm-up; bodies read to the end; latency = request start to last byte. ` +
      `Both servers read the same store files from a warm page cache; nginx has one worker (vmi serve is one Node process). The generator runs on the same ${R.machine.cores} cores.`,
    '',
  )
  const lrow = (label, s) => {
    if (s.othersCores.median > 0.2 || s.busyStarts) bg.push(`- serve load, ${label}: other processes used ${f(s.othersCores.median)} cores (median)`)
    return [
      label,
      `${int(s.rps.median)} (${int(s.rps.min)}–${int(s.rps.max)})`,
      `${f(s.bytesPerSecond.median / MB, 0)} (${f(s.bytesPerSecond.min / MB, 0)}–${f(s.bytesPerSecond.max / MB, 0)})`,
      f(s.p50.median),
      `${f(s.p99.median)} (${f(s.p99.min)}–${f(s.p99.max)})`,
      f(s.max.median),
      f(s.serverCores.median),
      f(s.generatorCores.median),
      s.nonOk,
      f(s.othersCores.median),
    ]
  }
  out.push(
    table(
      ['server', 'requests/s, median (min–max)', 'MB/s', 'p50 ms', 'p99 ms, median (min–max)', 'max ms', 'server CPU, cores', 'generator CPU, cores', 'non-200 / errors', 'others\' CPU, cores'],
      [lrow('nginx (anchor)', S.nginx), lrow('vmi serve', S.vmi)],
    ),
    '',
  )
  out.push(
    `vmi serve: ${f(S.vmi.bytesPerSecond.median / S.nginx.bytesPerSecond.median)}× nginx's throughput, p99 ${f(S.vmi.p99.median / S.nginx.p99.median)}× nginx's; ` +
      `CPU per GB served: vmi serve ${f(S.vmi.serverCores.median / (S.vmi.bytesPerSecond.median / GB))} core-s, nginx ${f(S.nginx.serverCores.median / (S.nginx.bytesPerSecond.median / GB))} core-s.`,
    '',
  )

  // compression
  if (R.compression) out.push(...renderCompression(R), '')

  out.push(`## What bounds it`, '', ...explain(R), '')

  out.push(...backgroundSection(bg))
  return out.join('\n')
}

function renderCompression(R) {
  const C = R.compression
  const img = R.image
  const out = [`## Would compressing chunks on the wire help? (measured, not implemented)`, '']
  out.push(
    `In-process on this machine, one core, over the image's ${int(C.chunks)} distinct non-zero chunks (${bytesHuman(C.bytes)}), each compressed on its own as a server would send it ` +
      `(a chunk that does not shrink is counted at its raw size):`,
    '',
  )
  const pullRate = R.image.uniqueBytes / R.pull.pullNginx.wall
  const rows = Object.entries(C.codecs).map(([name, c]) => {
    // serial per chunk: compressed wins on a link of L bytes/s when (1−r)/L > 1/C + 1/D
    const serialBreakEven = (1 - c.ratio) / (1 / c.compressBytesPerSecond + 1 / c.decompressBytesPerSecond)
    // compressed once at import/push and stored: only the receiver's decompression is added
    const storedBreakEven = (1 - c.ratio) * c.decompressBytesPerSecond
    c.serialBreakEvenBytesPerSecond = serialBreakEven
    c.storedBreakEvenBytesPerSecond = storedBreakEven
    return [
      name,
      `${f(c.coverage * 100, 0)} %`,
      pct(c.outBytes, c.inBytes),
      f(c.compressBytesPerSecond / MB, 0),
      f(c.decompressBytesPerSecond / MB, 0),
      f(serialBreakEven / MB, 0),
      f(storedBreakEven / MB, 0),
      f((c.inBytes / c.decompressBytesPerSecond) * (C.bytes / c.inBytes), 2),
    ]
  })
  out.push(
    table(
      ['codec', 'chunks covered', 'compressed size', 'compress MB/s (1 core)', 'decompress MB/s (1 core)', 'helps below link MB/s (compress per request)', 'helps below link MB/s (stored compressed)', 'decompress all, s (1 core)'],
      rows,
    ),
    '',
  )
  const best = Object.values(C.codecs).reduce((a, b) => (a.ratio < b.ratio ? a : b))
  const bestD = Object.values(C.codecs).reduce((a, b) => (a.decompressBytesPerSecond > b.decompressBytesPerSecond ? a : b))
  const linkRate = R.image.size / R.pull.curlNull.wall
  const below = Object.entries(C.codecs).filter(([, c]) => c.storedBreakEvenBytesPerSecond > linkRate).map(([k]) => k)
  out.push(
    `Break-even: sending a chunk compressed is faster than sending it raw over a link of L bytes/s when (1 − ratio)/L > 1/compress + 1/decompress (compressing per request, on the critical path), ` +
      `or (1 − ratio)/L > 1/decompress (chunks compressed once at import/push and stored so; what a static seed like nginx could serve). ` +
      `On loopback the link carried ${f(linkRate / MB, 0)} MB/s (curl → /dev/null), ${below.length ? `**below** the break-even of ${below.join(', ')}` : 'above every break-even here'}, and the pull is CPU-bound (${f(pullRate / MB, 0)} MB/s of chunks with ${f(R.pull.pullNginx.cpu / R.pull.pullNginx.wall)} cores busy in the client alone): ` +
      `fewer bytes would save little and decompression would add ≈ ${f(C.bytes / bestD.decompressBytesPerSecond)} CPU-s (fastest decompressor here) to a client that is already the bottleneck — ` +
      `${below.length ? '**it might help on loopback only with a codec as fast as the ones named, and only once the client is no longer CPU-bound**' : '**it would not help on loopback**'}. ` +
      `It would on real links slower than those break-evens: the chunks compress to ${pct(best.outBytes, best.inBytes)} at best (${f(1 / best.ratio)}× fewer bytes), so on 1 Gbit/s (125 MB/s) a seed storing chunks compressed would cut transfer time roughly by that factor, ` +
      `and even compressing per request pays there with ${Object.entries(C.codecs).filter(([, c]) => c.serialBreakEvenBytesPerSecond > 125e6).map(([k]) => k).join(', ') || 'none of these codecs'}.`,
  )
  return out
}

/** "What bounds it": the measured wall times split by measured component speeds. */
function explain(R) {
  const img = R.image
  const U = img.uniqueBytes
  const p = R.pull
  const lines = []
  const linkRate = img.size / p.curlNull.wall
  const n = img.importJson.newChunks
  const transferS = U / linkRate
  const need = p.curlFile.wall / R.targets.pullVsCurl
  const ip = R.inproc.pull
  const split = ip
    ? ` In-process (dist/ modules, one process, from the same nginx): the ${int(ip.chunks)} chunks through HttpStore.get one request at a time per connection (the general HTTP client + BLAKE3 verification, as \`pull --no-bulk\` does, 8 in flight) took ${f(ip.httpStore.wall)} s and ${f(ip.httpStore.cpu)} s of CPU (${f(ip.httpStore.perChunkCpuUs, 0)} µs/chunk), ` +
      `bare node:http ${f(ip.bareHttp.wall)} s / ${f(ip.bareHttp.cpu)} s CPU (${f(ip.bareHttp.perChunkCpuUs, 0)} µs/chunk); ` +
      (ip.pipelined
        ? `pipelined (bulkGet, what pull does, bodies dropped) ${f(ip.pipelined.wall)} s / ${f(ip.pipelined.cpu)} s CPU (${f(ip.pipelined.perChunkCpuUs, 0)} µs/chunk). ` +
          `Hashing them all took ${f(ip.hash.cpu)} CPU-s and writing them with LocalStore.putObjectSync ${f(ip.putObject.wall)} s / ${f(ip.putObject.cpu)} s CPU (${f(ip.putObject.perChunkCpuUs, 0)} µs/chunk): ` +
          `receive + hash + store ≈ ${f(ip.pipelined.cpu + ip.hash.cpu + ip.putObject.cpu)} CPU-s against the pull's ${f(p.pullNginx.cpu)} s (the rest is start-up, the manifest, the lock and the writer threads' start). ` +
          `The pull receives, hashes and writes on ${Math.max(2, Math.min(4, R.machine.cores))} writer threads, one connection each, so its wall time is bounded by the CPU the threads, nginx and the kernel need on the ${R.machine.cores} cores, plus start-up.`
        : '')
    : ''
  lines.push(
    `- **Pull vs curl** (${f(p.pullNginx.wall)} s vs ${f(p.curlFile.wall)} s): curl moves ${bytesHuman(img.size)} at ${f(linkRate / GB)} GB/s over loopback (→ /dev/null: ${f(p.curlNull.wall)} s), and writing it to a file adds ${f(p.curlFile.wall - p.curlNull.wall)} s. ` +
      `vmi pull moves ${pct(U, img.size)} of those bytes (moving them at curl's rate would take ≈ ${f(transferS)} s) as ${int(n)} chunks, and verifies and stores each as its own file: ` +
      `the client used ${f(p.pullNginx.cpu)} s of CPU (${f(p.pullNginx.cpu / p.pullNginx.wall)} cores of ${R.machine.cores}) and nginx ${f(p.pullNginx.serverCpu)} s.` +
      split +
      ` CLI start-up is ${f(R.inproc.startup)} s. The vmi-reported time (${f(p.pullNginx.reported)} s) excludes start-up and exit. To reach ${R.targets.pullVsCurl}× curl the pull must take ≤ ${f(need)} s — ${need >= p.pullNginx.wall ? 'it does' : `${f(p.pullNginx.wall - need)} s less than now`}.`,
  )
  lines.push(
    `- **vmi serve vs nginx as the seed for one pull**: ${f(p.pullServe.wall)} s vs ${f(p.pullNginx.wall)} s (server CPU ${f(p.pullServe.serverCpu)} s vs ${f(p.pullNginx.serverCpu)} s).`,
  )
  const last = R.fleet.at(-1)
  const first = R.fleet[0]
  if (last && first) {
    lines.push(
      `- **N hosts**: the seed sent ${R.fleet.map((x) => `${f(x.seedRatio, 3)}×`).join(', ')} the unique bytes for ${R.fleet.map((x) => x.hosts).join(', ')} hosts: each chunk leaves the seed about once whatever N (its owner fetches it through; the other hosts take it from the owner). ` +
        `The seed's own CPU stays flat (${R.fleet.map((x) => f(x.seedServeCpu)).join(', ')} s). ` +
        `Wall time grows from ${f(first.wall)} s to ${f(last.wall)} s because all ${last.hosts} hosts share ${R.machine.cores} cores here: the ${last.hosts}-host run used ${f(last.pullCpu)} s of pull CPU and ${f(last.hostServeCpu)} s of host-serve CPU = ${f((last.pullCpu + last.hostServeCpu + last.seedServeCpu) / last.wall)} cores on average with the seed; ` +
        `per host that is ${f((last.pullCpu + last.hostServeCpu) / last.hosts)} CPU-s for ${bytesHuman(U)}. ` +
        `Even 1 host through its own serve (${f(first.wall)} s; pull ${f(first.pullCpu)} + host serve ${f(first.hostServeCpu)} CPU-s) is slower than a plain pull from the seed (${f(p.pullServe.wall)} s; ${f(p.pullServe.cpu)} CPU-s): ` +
        `every chunk is fetched, verified and stored by the owner's serve, then sent over HTTP again, verified and offered to the store by the pull. On separate machines, this per-host CPU is spread over the hosts and the seed link is what N shares.`,
    )
  }
  lines.push(
    `- **Push** (${f(R.push.push.wall)} s vs cp ${f(R.push.cp.wall)} s): the client reads and re-verifies each object (${bytesHuman(U)} hashed), the server hashes every upload again and writes one file per chunk (${int(n)}); ` +
      `client CPU ${f(R.push.push.cpu)} s + server ${f(R.push.push.serverCpu)} s on ${R.machine.cores} cores; cp copies ${bytesHuman(img.allocated)} of allocated data in one file with no hashing.`,
  )
  const S = R.serveLoad
  lines.push(
    `- **Serve under load**: vmi serve used ${f(S.vmi.serverCores.median)} cores for ${f(S.vmi.bytesPerSecond.median / MB, 0)} MB/s, nginx ${f(S.nginx.serverCores.median)} cores for ${f(S.nginx.bytesPerSecond.median / MB, 0)} MB/s, while the generator itself used ${f(S.vmi.generatorCores.median)}–${f(S.nginx.generatorCores.median)} cores of the ${R.machine.cores}: ` +
      `per GB served that is ${f(S.vmi.serverCores.median / (S.vmi.bytesPerSecond.median / GB))} core-s for vmi serve and ${f(S.nginx.serverCores.median / (S.nginx.bytesPerSecond.median / GB))} for nginx (sendfile, no copy through user space). ` +
      `Which one moves more here (${S.vmi.bytesPerSecond.median >= S.nginx.bytesPerSecond.median ? 'vmi serve' : 'nginx'}) also depends on the generator, which shares the ${R.machine.cores} cores with the server: the absolute numbers are bounded by the cores both ends share, and on a machine of its own the server that needs less CPU per byte has more headroom.`,
  )
  return lines
}
