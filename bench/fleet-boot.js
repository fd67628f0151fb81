#!/usr/bin/env node
// @ts-check
// vmi boot-storm benchmark in the fleet lab: `node bench/fleet-boot.js` (or `npm run bench --
// --only fleet-boot`): N hosts replay one real boot's reads at once through `vmi mount` (a real
// boot under TCG takes a core for 20–40 s); see bench/README.md, "Boot storm". Writes
// bench/results/<date>-fleet-boot.md and latest-fleet-boot.json; never fails on a missed goal.
import {spawnSync} from 'node:child_process'
import {existsSync, promises as fsp, readFileSync} from 'node:fs'
import path from 'node:path'
import {startLab} from '../test/helpers/lab.js'
import {bytesHuman, f, int} from './lib/format.js'
import {cpuOf, runTimed} from './lib/measure.js'
import {
  BIN,
  BUILD,
  cpuWindow,
  numberList,
  parseOptions,
  prepare,
  RENDER,
  requireBootImage,
  rerenderAndExit,
  ROOT,
  servedObjectBytes,
  startRun,
  startServe,
  vmiEnv,
  vmiTimed,
} from './lib/common.js'
import {BOOT_CONTENDERS, renderBootReport} from './lib/fleet-report.js'
import {labSettings, skipWithoutLab, startHostServe, startLabSeed, timedIn} from './lib/lab-run.js'
import {parseBootResult, parseNbdkitTrace, startMount, startNbdkit} from './lib/mount-nbd.js'

const TRACE = path.join(ROOT, 'bench', 'traces', 'debian-boot.json')
const REPLAY = path.join(ROOT, 'bench', 'lib', 'replay-trace.py')
const BOOT_SCRIPT = path.join(ROOT, 'scripts', 'boot-vm.sh')
const PY = '/usr/bin/python3' // Debian's python3-libnbd is for this one
const GOALS = {p99VsSingle: 1.3, seedVsBootSet: 1.1}

const opts = parseOptions(
  'fleet-boot',
  {
    hosts: ['--hosts LIST', [1, 2, 4, 8, 16], numberList, 'fleet sizes'],
    rate: ['--rate R', '200mbit', String, "every host's link"],
    seedRate: ['--seed-rate R', undefined, String, "the seed's link (default: --rate)"],
    copyHosts: ['--copy-hosts LIST', [1, 2], (s) => numberList(s).filter(Boolean), "fleet sizes at which copy-then-boot runs (each copy moves the whole 1.5 GiB image through the seed's link; larger N are computed from the link, and marked so)"],
    qemu: ['--no-qemu', true, false, 'no real QEMU boot on one host of the largest run'],
    record: ['--record', false, true, 'record the boot trace again (a real boot through vmi mount, ~30 s of one core)'],
    compressedSeed: ['--compressed-seed', false, true, "the seed's store holds the image compressed (pushed to a vmi serve; docs/FORMAT.md \"Compressed objects\")"],
    label: ['--label L', undefined, String, 'results go to <date>-fleet-boot-L.md and latest-fleet-boot-L.json, apart from the runs docs/PERFORMANCE.md shows (default with --compressed-seed: zstd)'],
    reps: ['--reps N', undefined, String, 'ignored (each storm runs once; bench/run.js gives it to every benchmark)'],
    build: BUILD,
    render: RENDER,
  },
  (o) => !o.hosts.every((n) => Number.isInteger(n) && n >= 1 && n <= 64) && `bad --hosts`,
)

const label = opts.label ?? (opts.compressedSeed ? 'zstd' : undefined)
if (label !== undefined && !/^[a-z0-9-]{1,32}$/.test(label)) {
  console.error('bench fleet-boot: --label takes 1-32 of a-z, 0-9 and -')
  process.exit(2)
}
const KIND = label ? `fleet-boot-${label}` : 'fleet-boot'
if (opts.render) await rerenderAndExit(KIND, opts.render, renderBootReport)

skipWithoutLab('boot-storm', () => (spawnSync(PY, ['-c', 'import nbd'], {stdio: 'ignore'}).status !== 0 ? `${PY} cannot import nbd (Debian package python3-libnbd)` : undefined))
const run = await startRun(KIND, {build: opts.build, tools: ['curl', 'nginx', 'nbdkit', ...(opts.qemu || opts.record || !existsSync(TRACE) ? ['qemu-system-x86_64'] : [])]})
const {log, workDir, discard, dist} = run
const boot = requireBootImage('fleet-boot', log)
const settings = labSettings()

// ----------------------------------------------------------------- the image on the seed

const image = {file: boot.file, dir: boot.dir, size: (await fsp.stat(boot.file)).size, info: boot.info}
const seedStore = path.join(workDir, 'seed')
{
  const r = await vmiTimed(['import', image.file, 'debian:boot', '--json'], seedStore, {scratch: workDir})
  Object.assign(image, {id: r.json.id, uniqueBytes: r.json.newBytes, chunks: r.json.newChunks, chunkSize: r.json.chunkSize})
  log(`Debian boot image ${bytesHuman(image.size)}: ${int(image.chunks)} distinct non-zero chunks (${bytesHuman(image.uniqueBytes)}), id ${image.id.slice(0, 12)}`)
}
// ----------------------------------------------------------------- the trace

/**
 * Record the guest's reads during a real boot through `vmi mount` (every
 * chunk local, so the gaps are the guest's own time): QEMU → nbdkit's log
 * filter → nbdkit's nbd plugin → the mount's socket.
 */
async function recordTrace() {
  log('recording the boot trace: a real boot through vmi mount, behind nbdkit log filter (~30 s of one core under TCG)')
  const mount = await startMount(seedStore, [image.id, '--prefetch', 'none', '--read-only', '--socket', path.join(workDir, 'rec-mount.sock')])
  const logFile = path.join(workDir, 'rec-reads.log')
  const nb = await startNbdkit({plugin: ['nbd', `socket=${mount.socket}`], socket: path.join(workDir, 'rec-log.sock'), filters: ['log'], params: [`logfile=${logFile}`]})
  let r
  try {
    r = await runTimed('bash', [BOOT_SCRIPT, '-d', image.dir, nb.uri], {scratch: workDir, allowFail: true})
  } finally {
    await nb.stop()
    await mount.stop()
  }
  const result = parseBootResult(r.stdout)
  if (!result.ok) throw new Error(`the recording boot failed: ${r.stdout}${r.stderr.slice(-2000)}`)
  // the boot set: the reads up to the guest's marker (after it the guest powers off); QEMU
  // connects at its start, from which boot-vm.sh counts marker_s
  const all = parseNbdkitTrace(await fsp.readFile(logFile, 'utf8'))
  const reads = all.filter((x) => x.at <= result.markerS)
  const trace = {
    format: 'vmi-boot-trace/1',
    recordedAt: new Date().toISOString(),
    how: 'QEMU (scripts/boot-vm.sh, snapshot=on) → nbdkit log filter → nbdkit nbd plugin → vmi mount --prefetch none, every chunk in the local store; think = this read\'s start − the previous read\'s completion (0 when they overlapped); the first read\'s think is from the NBD connection',
    accel: result.accel,
    bootMarkerS: result.markerS,
    // the build of the image it was recorded on (an image id changes with every import: it covers the creation time)
    image: {size: image.size, chunkSize: image.chunkSize, builtAt: image.info?.built_at, builder: image.info?.builder_sha256},
    readsAfterMarker: all.length - reads.length,
    reads,
  }
  await fsp.mkdir(path.dirname(TRACE), {recursive: true})
  await fsp.writeFile(TRACE, JSON.stringify({...trace, reads: undefined}, null, 1).replace(/\n}$/, `,\n "reads": [\n${reads.map((x) => '  ' + JSON.stringify(x)).join(',\n')}\n ]\n}\n`))
  log(`  recorded ${reads.length} reads up to the boot marker at ${f(result.markerS)} s (${result.accel}; ${all.length - reads.length} more while it powered off, left out); wrote ${path.relative(ROOT, TRACE)}`)
}

if (opts.record || !existsSync(TRACE)) await recordTrace()
const trace = JSON.parse(readFileSync(TRACE, 'utf8'))
const traceInfo = {
  file: path.relative(ROOT, TRACE),
  recordedAt: trace.recordedAt,
  accel: trace.accel,
  bootMarkerS: trace.bootMarkerS,
  reads: trace.reads.length,
  bytes: trace.reads.reduce((a, r) => a + r.count, 0),
  thinkSeconds: trace.reads.reduce((a, r) => a + r.think, 0),
  matchesImage: trace.image?.builtAt !== undefined && trace.image.builtAt === image.info?.built_at && trace.image.size === image.size,
}
// the chunks the trace touches that hold data: what one host must fetch (its boot set)
{
  const {hash} = dist
  const touched = new Set()
  for (const r of trace.reads) for (let c = Math.floor(r.offset / image.chunkSize); c * image.chunkSize < r.offset + r.count; c++) touched.add(c)
  const fh = await fsp.open(image.file, 'r')
  const buf = Buffer.alloc(image.chunkSize)
  const ids = new Set()
  for (const c of touched) {
    const {bytesRead} = await fh.read(buf, 0, image.chunkSize, c * image.chunkSize)
    const b = buf.subarray(0, bytesRead)
    if (b.some((x) => x !== 0)) ids.add(hash(b))
  }
  await fh.close()
  traceInfo.chunksTouched = touched.size
  traceInfo.bootSetChunks = ids.size
  traceInfo.bootSetBytes = ids.size * image.chunkSize
}
log(
  `trace ${traceInfo.file}: ${int(traceInfo.reads)} reads, ${bytesHuman(traceInfo.bytes)}, think ${f(traceInfo.thinkSeconds)} s (recorded ${traceInfo.recordedAt.slice(0, 10)}, ${traceInfo.accel}, ` +
    `${traceInfo.matchesImage ? 'this image' : 'ANOTHER build of the image: the pattern is replayed on this one'}); boot set ${int(traceInfo.bootSetChunks)} chunks = ${bytesHuman(traceInfo.bootSetBytes)}`,
)

// ----------------------------------------------------------------- the boot profile

/**
 * The image's boot profile, as a fleet would have it: recorded on the seed's
 * store by `vmi mount --record-profile` while the trace is replayed once
 * without its think times (the profile is the chunks the reads touch, first
 * read first). A cold `vmi mount` fetches it from its peers or the seed and,
 * by default, prefetches those chunks while serving the guest's reads first.
 */
async function recordProfile() {
  const r = await runTimed(process.execPath, [BIN, 'mount', image.id, '--record-profile', '--prefetch', 'none', '--json', '--exec', `${PY} '${REPLAY}' {nbd} '${TRACE}' 0`], {env: vmiEnv(seedStore), scratch: workDir, allowFail: true})
  const file = path.join(seedStore, 'profiles', image.id.slice(0, 2), image.id.slice(2))
  const chunks = existsSync(file) ? JSON.parse(readFileSync(file, 'utf8')).chunks?.length : undefined
  if (r.status !== 0 || !chunks) throw new Error(`recording the boot profile failed (exit ${r.status}): ${r.stderr.slice(-1000)}`)
  log(`boot profile: ${int(chunks)} chunks, recorded by vmi mount --record-profile replaying the trace without think times (${f(r.wall)} s)`)
  return {chunks, prefetchConcurrency: dist.PREFETCH_CONCURRENCY}
}
const bootProfile = await recordProfile()

/** With --compressed-seed: the store the lab's seed serves, the image pushed into it compressed (the trace is still recorded on the raw store). */
let labSeedStore = seedStore
if (opts.compressedSeed) {
  labSeedStore = path.join(workDir, 'seed-zstd')
  const s = await startServe(labSeedStore, ['--token', 'bench-boot-token'])
  // (--compress: a push to a vmi serve on this machine otherwise sends the chunks as they rest, raw)
  const p = await vmiTimed(['push', 'debian:boot', s.url, '--token', 'bench-boot-token', '--compress', '--json'], seedStore, {scratch: workDir})
  await s.stop()
  image.compressedSeed = {storedBytes: p.json.uploadedBytes}
  log(`compressed seed: ${bytesHuman(p.json.uploadedBytes)} for ${bytesHuman(p.json.uploadedChunkBytes)}`)
}

// ----------------------------------------------------------------- the lab

const maxHosts = Math.max(...opts.hosts)
const lab = await startLab({hosts: maxHosts, hostRate: opts.rate, seedRate: opts.seedRate ?? opts.rate})
const {serve: seedServe, nginx, rawUrl} = await startLabSeed(lab, labSeedStore, image.file)
log(`lab ${lab.id}: seed + ${maxHosts} hosts at ${f(lab.hosts[0].rate / 1e6, 0)} Mbit/s (seed ${f(lab.seed.rate / 1e6, 0)})`)

/** One storm: every host of `hosts` boots by `kind`; `qemuHost` runs a real boot instead of the replay. */
/** @param {string} kind @param {any[]} hosts @param {{qemuHost?: any}} [o] */
async function storm(kind, hosts, {qemuHost} = {}) {
  const stores = hosts.map((h, i) => path.join(workDir, `${kind}-${hosts.length}-${i}`))
  const serves = kind === 'peers' || kind === 'peersLazy' ? await Promise.all(hosts.map((h, i) => startHostServe(h, stores[i], seedServe.url))) : []
  const peerArgs = serves.flatMap((s) => ['--peer', s.url])
  const argvFor = (h, i) => {
    if (kind === 'copy') {
      const file = path.join(stores[i], 'disk.raw')
      return ['sh', '-c', `mkdir -p '${stores[i]}' && curl -sSf -o '${file}' '${rawUrl}' && exec ${PY} '${REPLAY}' '${file}' '${TRACE}'`]
    }
    const client = h === qemuHost ? `bash '${BOOT_SCRIPT}' -d '${image.dir}' {nbd}` : `${PY} '${REPLAY}' {nbd} '${TRACE}'`
    // peers when this kind started serves; mount's default prefetch (the boot profile) except for the lazy contender
    return [process.execPath, BIN, 'mount', image.id, seedServe.url, ...peerArgs, ...(kind === 'peersLazy' ? ['--prefetch', 'none'] : []), '--read-only', '--json', '--exec', client]
  }
  const prep = await prepare({dirs: [path.join(seedStore, 'objects')]}, settings)
  const w = cpuWindow([seedServe.pid, nginx.pid, ...serves.map((s) => s.pid)])
  const tx0 = lab.counters(lab.seed).tx
  const served0 = await servedObjectBytes(seedServe)
  const tStart = performance.now()
  const epoch0 = Date.now() / 1000
  const results = await Promise.all(hosts.map((h, i) => timedIn(h, argvFor(h, i), {env: vmiEnv(stores[i]), tStart, scratch: workDir}).done))
  const wall = (performance.now() - tStart) / 1000
  const cpu = w.end(results.reduce((a, r) => a + cpuOf(r), 0))
  const seedWire = lab.counters(lab.seed).tx - tx0
  const seedServed = (await servedObjectBytes(seedServe)) - served0
  for (const s of serves) await s.stop()
  for (const s of stores) await discard(s)
  const perHost = results.map((r, i) => {
    const line = r.stdout.split('\n').find((l) => l.startsWith('{"start"'))
    const replay = line ? JSON.parse(line) : undefined
    const real = hosts[i] === qemuHost ? parseBootResult(r.stdout) : undefined
    const mount = kind === 'copy' ? undefined : r.json
    return {
      host: r.host,
      status: r.status,
      // from the host's start (its mount or curl spawned) to the last read of the boot set answered
      timeToBootSet: replay ? replay.end - (epoch0 + r.startedAt) : undefined,
      replay,
      realBoot: real,
      fetchedBytes: mount?.fetchedBytes,
      wall: r.wall,
      cpu: cpuOf(r),
      error: r.status !== 0 || (!replay && !real?.ok) ? r.stderr.trim().split('\n').slice(-3).join(' | ') : undefined,
    }
  })
  const times = perHost.filter((p) => p.timeToBootSet !== undefined).map((p) => p.timeToBootSet)
  return {
    kind,
    hosts: hosts.length,
    wall,
    p50: percentile(times, 50),
    p99: percentile(times, 99),
    max: Math.max(...times),
    // chunk bytes from vmi serve (its /metrics); the seed veth's bytes for the copies from nginx
    seedBytes: kind === 'copy' ? seedWire : seedServed,
    seedWireBytes: seedWire,
    failures: perHost.filter((p) => p.error).map((p) => `${p.host}: ${p.error}`),
    clientCpu: results.reduce((a, r) => a + cpuOf(r), 0),
    serverCpu: cpu.serverCpu,
    busyCores: cpu.busyCores,
    othersCores: cpu.othersCores,
    irqCores: cpu.irqCores,
    perHost,
    ...prep,
  }
}

/** Nearest-rank percentile: p99 of fewer than 100 hosts is the slowest host. */
function percentile(xs, p) {
  const v = [...xs].sort((a, b) => a - b)
  return v.length ? v[Math.min(v.length - 1, Math.ceil((p / 100) * v.length) - 1)] : NaN
}

const line = (x) =>
  `${x.hosts} host(s) ${BOOT_CONTENDERS[x.kind]}: time-to-boot-set p50 ${f(x.p50)} s, p99 ${f(x.p99)} s; seed sent ${bytesHuman(x.seedBytes)}; ` +
  `CPU s: clients ${f(x.clientCpu)}, servers ${f(x.serverCpu)}; busy ${f(x.busyCores)} cores (others ${f(x.othersCores)})${x.failures.length ? `; FAILURES: ${x.failures.join('; ')}` : ''}`

const runs = []
for (const n of opts.hosts) {
  const hosts = lab.hosts.slice(0, n)
  const point = {hosts: n}
  const qemuHost = opts.qemu && n === maxHosts ? hosts[0] : undefined
  point.peers = await storm('peers', hosts, {qemuHost})
  log(`  ${line(point.peers)}`)
  const real = point.peers.perHost.find((p) => p.realBoot)
  if (real) log(`    real QEMU boot on ${real.host}: ${real.realBoot.ok ? `marker at ${f(real.realBoot.markerS)} s` : 'FAILED'}`)
  point.peersLazy = await storm('peersLazy', hosts)
  log(`  ${line(point.peersLazy)}`)
  point.seedAlone = await storm('seedAlone', hosts)
  log(`  ${line(point.seedAlone)}`)
  if (opts.copyHosts.includes(n)) {
    point.copy = await storm('copy', hosts)
    log(`  ${line(point.copy)}`)
  }
  runs.push(point)
}

await seedServe.stop()
await nginx.close()
await lab.close()

await run.finish({
  lab: {rate: lab.hosts[0].rate, seedRate: lab.seed.rate, hosts: maxHosts},
  image: {size: image.size, uniqueBytes: image.uniqueBytes, chunks: image.chunks, chunkSize: image.chunkSize, id: image.id, compressedSeed: image.compressedSeed},
  trace: traceInfo,
  bootProfile,
  goals: GOALS,
  runs,
}, renderBootReport)

