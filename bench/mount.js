#!/usr/bin/env node
// @ts-check
// vmi mount benchmark: `node bench/mount.js` (or `npm run bench -- --only mount`): cached reads
// against nbdkit, lazy boots against the local raw file, chunk sizes; what each measures is in
// bench/README.md, "Mount benchmark". Writes bench/results/<date>-mount.md and latest-mount.json;
// never fails on a missed goal.
import {spawnSync} from 'node:child_process'
import {promises as fsp, readFileSync} from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {bytesHuman, f, GB, int, MB} from './lib/format.js'
import {cpuOf, GNU_TIME, median, runTimed, stats} from './lib/measure.js'
import {
  BUILD,
  cpuWindow,
  ENV_NOTE,
  httpText,
  KiB,
  lastJson,
  MiB,
  parseOptions,
  prepare,
  prepMethod,
  prepSettings,
  RENDER,
  requireBootImage,
  rerenderAndExit,
  RESULTS,
  ROOT,
  servedObjectBytes,
  startRun,
  startServe,
  vmiEnv,
  vmiTimed,
  withServers,
} from './lib/common.js'
import {renderMountReport} from './lib/mount-report.js'
import {backendReadCost} from './lib/mount-inproc.js'
import {parseBootResult, parseNbdkitTrace, qemuImgBench, readFootprint, startMount, startNbdkit, zeroBlocks} from './lib/mount-nbd.js'

const opts = parseOptions(
  'mount',
  {
    reps: ['--reps N', 3, Number, 'repetitions of each cached-read measurement, median reported; boots run once each'],
    boot: ['--no-boot', true, false, 'skip the boots (cached reads only)'],
    reads: ['--no-reads', true, false, 'skip the cached reads (boots only)'],
    build: BUILD,
    render: RENDER,
  },
  (o) => (!Number.isInteger(o.reps) || o.reps < 1) && `--reps must be a positive integer`,
  ENV_NOTE,
)

const TARGETS = {readsVsNbdkit: 1.0, coldBootVsLocal: 1.2, fetchedVsRead: 1.5}
const CHUNK_SIZES = [64 * KiB, 128 * KiB, 256 * KiB, 1 * MiB]
const TOKEN = 'bench-push-token'
const STRIDE_BLOCKS = 100003 // prime: the 4 KiB stride visits every block once, scattered, before repeating
const PATTERNS = [
  {key: 'seq1m_d1', label: 'sequential 1 MiB, depth 1', size: MiB, depth: 1, count: 1536},
  {key: 'seq1m_d16', label: 'sequential 1 MiB, depth 16', size: MiB, depth: 16, count: 3072},
  {key: 'rand4k_d1', label: 'scattered 4 KiB, depth 1', size: 4 * KiB, depth: 1, count: 20000, step: 4 * KiB * STRIDE_BLOCKS},
  {key: 'rand4k_d16', label: 'scattered 4 KiB, depth 16', size: 4 * KiB, depth: 16, count: 60000, step: 4 * KiB * STRIDE_BLOCKS},
]

const PLACEMENTS = [
  {key: 'split', label: 'server on CPU 0, qemu-img on CPU 1', server: '0', client: '1'},
  {key: 'same', label: 'server and qemu-img both on CPU 0', server: '0', client: '0'},
  {key: 'free', label: 'unpinned (the scheduler chooses)', server: undefined, client: undefined},
]
const HEADLINE_PLACEMENT = 'split'

/** Pin a process and all its threads to `cpus` (a taskset list), or to every CPU when undefined. */
function pinTree(pid, cpus) {
  const list = cpus ?? `0-${os.cpus().length - 1}`
  const r = spawnSync('taskset', ['-a', '-p', '-c', list, String(pid)], {encoding: 'utf8'})
  if (r.status !== 0) throw new Error(`taskset ${list} ${pid}: ${r.stderr}`)
}

if (opts.render) await rerenderAndExit('mount', opts.render, renderMountReport)

const run = await startRun('mount', {build: opts.build, tools: ['qemu-img', 'nbdkit', ...(opts.boot ? ['qemu-system-x86_64'] : [])]})
const {log, workDir, discard, trashStats, dist, machine} = run
const boot = requireBootImage('mount', log)

const settings = prepSettings()
/** The default chunk size of the code under test: the main seed, and the cold boots' */
const MAIN_CS = dist.DEFAULT_CHUNK_SIZE
if (!CHUNK_SIZES.includes(MAIN_CS)) CHUNK_SIZES.push(MAIN_CS)
const image = {file: boot.file, dir: boot.dir, info: boot.info, size: (await fsp.stat(boot.file)).size}
log(`KVM ${machine.kvmUsable ? 'usable' : 'not usable (TCG)'}`)
log(`image ${image.file} (${bytesHuman(image.size)})`)

// ----------------------------------------------------------------- seeds: one store per chunk size

const seeds = {}
for (const cs of CHUNK_SIZES) {
  const store = path.join(workDir, `seed-${cs / KiB}k`)
  const p = await prepare({files: [image.file]}, settings)
  const r = await vmiTimed(['import', image.file, `bench:${cs / KiB}k`, '--chunk-size', `${cs / KiB}K`, '--json'], store, {scratch: workDir})
  seeds[cs] = {store, id: r.json.id, importJson: r.json, importWall: r.wall, importCpu: cpuOf(r), importRssBytes: r.rssBytes, ...p}
  log(`seed ${cs / KiB} KiB: imported in ${f(r.wall)} s (${f(image.size / r.wall / GB)} GB/s), ${int(r.json.newChunks)} distinct non-zero chunks (${bytesHuman(r.json.newBytes)}), id ${r.json.id.slice(0, 12)}`)
}
for (const cs of CHUNK_SIZES) {
  seeds[cs].serve = await startServe(seeds[cs].store, [], {env: {VMI_PUSH_TOKEN: TOKEN}})
  seeds[cs].url = seeds[cs].serve.url
}
let storeBench
try {
  const sj = JSON.parse(readFileSync(path.join(RESULTS, 'latest-store.json'), 'utf8'))
  const synth = sj.images?.find((i) => i.sweep)
  if (synth)
    storeBench = {
      startedAt: sj.startedAt,
      image: synth.name,
      size: synth.size,
      sweep: synth.sweep.map((s) => ({chunkSize: s.chunkSize, wall: s.wall, bytesPerSecond: synth.size / s.wall, objects: s.objects})),
    }
} catch {
  /* no store bench results */
}

// ----------------------------------------------------------------- cached reads

/** @type {Record<string, any>} */
let reads
if (opts.reads) {
  log(`cached reads: vmi mount (every chunk local) vs nbdkit file plugin, qemu-img bench, ${opts.reps} repetitions`)
  const seed = seeds[MAIN_CS]
  const mount = await startMount(seed.store, [seed.id, '--read-only', '--prefetch', 'none'])
  const nbdkit = await startNbdkit({file: image.file, socket: path.join(workDir, 'nbdkit.sock')})
  const contenders = [
    {key: 'nbdkit', label: 'nbdkit file plugin (anchor)', uri: nbdkit.uri, pid: nbdkit.pid},
    {key: 'vmi', label: 'vmi mount (all chunks local)', uri: mount.uri, pid: mount.pid},
  ]
  const warm = {files: [image.file], dirs: [path.join(seed.store, 'objects')]}
  const runOne = async (c, pat, cpus) => {
    const r = await withServers([c.pid], () => qemuImgBench(c.uri, pat, {scratch: workDir, cpus}))
    return {seconds: r.seconds, wall: r.wall, clientCpu: cpuOf(r), serverCpu: r.serverCpu, othersCores: r.othersCores, irqCores: r.irqCores}
  }
  // first pass over the whole image: vmi reads and verifies every chunk once here (not a cached read)
  const firstPass = {}
  for (const c of contenders) {
    const p = await prepare(warm, settings)
    firstPass[c.key] = {...(await runOne(c, PATTERNS[0])), ...p}
    log(`  first sequential pass, ${c.key}: ${f(firstPass[c.key].seconds)} s`)
  }
  // Where the two processes run matters on this VM: a request/reply ping-pong
  // between cores pays the hypervisor's cross-core wake-up twice per request
  // (no halt polling here), so each placement is measured on its own.
  const runs = Object.fromEntries(PLACEMENTS.map((pl) => [pl.key, Object.fromEntries(PATTERNS.map((pat) => [pat.key, {nbdkit: [], vmi: []}]))]))
  for (const pl of PLACEMENTS) {
    for (const c of contenders) pinTree(c.pid, pl.server)
    for (let r = 0; r < opts.reps; r++) {
      for (const pat of PATTERNS) {
        for (const c of r % 2 ? [...contenders].reverse() : contenders) {
          const p = await prepare(warm, settings)
          const res = {...(await runOne(c, pat, pl.client)), ...p}
          runs[pl.key][pat.key][c.key].push(res)
          log(`  [${pl.key}] ${pat.label}, ${c.key} #${r + 1}: ${f(res.seconds, 3)} s = ${f((pat.count * pat.size) / res.seconds / MB, 0)} MB/s, ${int(pat.count / res.seconds)} IOPS; server CPU ${f(res.serverCpu / res.seconds)} cores, others ${f(res.othersCores)}`)
        }
      }
    }
  }
  for (const c of contenders) pinTree(c.pid, undefined)
  const mstats = await mount.stop()
  await nbdkit.stop()
  log('  the block backend alone, in-process (dist/ ImageBackend, no NBD)')
  await prepare(warm, settings)
  const backend = await backendReadCost(seed.store, seed.id, PATTERNS)
  for (const pat of PATTERNS) log(`    ${pat.label}: ${f(backend.patterns[pat.key].usPerRequest, 1)} µs/request`)
  reads = {
    backend,
    firstPass,
    mountStats: mstats.json,
    placements: PLACEMENTS.map((pl) => ({...pl, patterns: summarizePatterns(runs[pl.key])})),
  }
  // the headline: server and client on different cores, as a hypervisor's I/O thread and vmi usually are
  reads.patterns = reads.placements.find((pl) => pl.key === HEADLINE_PLACEMENT).patterns
}

function summarizePatterns(byPattern) {
  return PATTERNS.map((pat) => {
    const s = (k) => {
      const list = byPattern[pat.key][k]
      const sec = stats(list.map((x) => x.seconds))
      return {
        seconds: sec,
        bytesPerSecond: (pat.count * pat.size) / sec.median,
        iops: pat.count / sec.median,
        serverCores: median(list.map((x) => x.serverCpu / x.seconds)),
        clientCores: median(list.map((x) => x.clientCpu / x.seconds)),
        othersCores: median(list.map((x) => x.othersCores)),
        busyStarts: list.filter((x) => x.startedQuiet === false).length,
        runs: list,
      }
    }
    const nb = s('nbdkit')
    const vm = s('vmi')
    return {...pat, nbdkit: nb, vmi: vm, ratio: nb.seconds.median / vm.seconds.median}
  })
}

// ----------------------------------------------------------------- boots

/** @type {Record<string, any>} */
let boots
if (opts.boot) {
  boots = {runs: {}}
  const bootScript = path.join(ROOT, 'scripts', 'boot-vm.sh')
  const allSeedPids = CHUNK_SIZES.map((cs) => seeds[cs].serve.pid)
  const execBoot = `bash '${bootScript}' -d '${image.dir}' {nbd}`
  const record = (key, res) => {
    boots.runs[key] = res
    const b = res.boot
    log(
      `  ${key}: ${b?.ok ? `marker ${f(b.markerS)} s` : 'FAILED'}` +
        (res.seedBytes !== undefined ? `, seed sent ${bytesHuman(res.seedBytes)}` : '') +
        `, wall ${f(res.wall)} s, others ${f(res.othersCores)} cores`,
    )
    if (!b?.ok) log(`    stderr: ${res.stderr?.split('\n').slice(-8).join(' | ')}`)
  }
  /** One timed boot: `cmd args`, accounting the seeds' CPU and egress. */
  const kernelFiles = [path.join(image.dir, 'vmlinuz'), path.join(image.dir, 'initrd.img')]
  /** @param {string} cmd @param {string[]} args @param {{env?: NodeJS.ProcessEnv, seedCs?: number, warm?: {files?: string[], dirs?: string[]}}} [o] */
  const timedBoot = async (cmd, args, {env, seedCs, warm = {files: [image.file]}} = {}) => {
    const p = await prepare({files: [...kernelFiles, ...(warm.files ?? [])], dirs: warm.dirs ?? []}, settings)
    const before = seedCs ? await servedObjectBytes(seeds[seedCs].serve) : undefined
    const w = cpuWindow(allSeedPids)
    const r = await runTimed(cmd, args, {env, scratch: workDir, allowFail: true})
    const cpu = w.end(cpuOf(r))
    const after = seedCs ? await servedObjectBytes(seeds[seedCs].serve) : undefined
    /** @type {Record<string, any>} */
    const out = {
      wall: r.wall,
      status: r.status,
      cpu: cpuOf(r),
      rssBytes: r.rssBytes,
      seedCpu: cpu.serverCpu,
      othersCores: cpu.othersCores,
      irqCores: cpu.irqCores,
      stealCores: cpu.stealCores,
      boot: parseBootResult(r.stdout),
      stderr: r.status === 0 ? undefined : r.stderr,
      ...p,
    }
    if (seedCs) out.seedBytes = after - before
    if (cmd === process.execPath) out.mount = lastJson(r.stdout)
    return out
  }
  const vmiArgs = (args) => [path.join(ROOT, 'bin', 'run.js'), ...args]

  log('boots (one each; ~20 s apiece under TCG)')
  // anchor: the local raw file
  record('rawFirst', await timedBoot('bash', [bootScript, '-d', image.dir, image.file]))

  // what the guest reads: the same boot through nbdkit's log filter
  {
    const logFile = path.join(workDir, 'nbdkit-reads.log')
    const nb = await startNbdkit({file: image.file, socket: path.join(workDir, 'nbdkit-log.sock'), filters: ['log'], params: [`logfile=${logFile}`]})
    const res = await timedBoot('bash', [bootScript, '-d', image.dir, nb.uri])
    await nb.stop()
    const readsLog = parseNbdkitTrace(await fsp.readFile(logFile, 'utf8'))
    const zb = await zeroBlocks(image.file, 4 * KiB)
    res.footprint = readFootprint(readsLog, zb, CHUNK_SIZES)
    record('nbdkitLog', res)
    const fp = res.footprint
    log(`    guest reads: ${int(fp.requests)} requests, ${bytesHuman(fp.totalBytes)} requested, ${bytesHuman(fp.uniqueBytes)} unique, ${bytesHuman(fp.uniqueNonZeroBytes)} unique non-zero`)
  }

  // cold lazy boot at 256 KiB, recording the boot profile on the way
  const main = seeds[MAIN_CS]
  const hostA = path.join(workDir, 'host-a')
  record(
    'cold',
    await timedBoot(process.execPath, vmiArgs(['mount', main.id, main.url, '--prefetch', 'none', '--read-only', '--record-profile', '--json', '--exec', execBoot]), {
      env: vmiEnv(hostA),
      seedCs: MAIN_CS,
      warm: {dirs: [path.join(main.store, 'objects')]},
    }),
  )
  // publish the profile: complete host A, push (every chunk is already on the seed: only manifest, profile, ref go)
  {
    const pl = await vmiTimed(['pull', main.id, main.url, '--json'], hostA, {scratch: workDir})
    const pu = await vmiTimed(['push', main.id, main.url, '--json'], hostA, {scratch: workDir, env: {VMI_PUSH_TOKEN: TOKEN}, allowFail: true})
    const profileUrl = `${main.url}/profiles/${main.id.slice(0, 2)}/${main.id.slice(2)}`
    let profile
    try {
      profile = JSON.parse(await httpText(profileUrl))
    } catch {
      /* none */
    }
    boots.profile = {
      pullSeconds: pl.wall,
      pushStatus: pu.status,
      pushJson: pu.json,
      pushStderr: pu.status ? pu.stderr : undefined,
      chunks: profile?.chunks?.length,
      bytes: profile?.chunks ? profile.chunks.length * MAIN_CS : undefined,
      // the mount's default (--prefetch-concurrency), from the build measured
      prefetchConcurrency: dist.PREFETCH_CONCURRENCY,
    }
    log(`  profile: pushed (exit ${pu.status}); the seed serves a profile of ${profile?.chunks?.length ?? 'NO'} chunks`)
  }
  // warm boot: every chunk local (host A after the pull), no seed at all
  record(
    'warm',
    await timedBoot(process.execPath, vmiArgs(['mount', main.id, '--prefetch', 'none', '--read-only', '--json', '--exec', execBoot]), {
      env: vmiEnv(hostA),
      warm: {dirs: [path.join(hostA, 'objects')]},
    }),
  )
  // cold boot with the profile: a new empty host, default --prefetch (profile)
  record(
    'coldProfile',
    await timedBoot(process.execPath, vmiArgs(['mount', main.id, main.url, '--read-only', '--json', '--exec', execBoot]), {
      env: vmiEnv(path.join(workDir, 'host-b')),
      seedCs: MAIN_CS,
      warm: {dirs: [path.join(main.store, 'objects')]},
    }),
  )
  // chunk sizes (256 KiB is the cold boot above)
  for (const cs of CHUNK_SIZES.filter((c) => c !== MAIN_CS)) {
    const s = seeds[cs]
    record(
      `cold${cs / KiB}k`,
      await timedBoot(process.execPath, vmiArgs(['mount', s.id, s.url, '--prefetch', 'none', '--read-only', '--json', '--exec', execBoot]), {
        env: vmiEnv(path.join(workDir, `host-${cs / KiB}k`)),
        seedCs: cs,
        warm: {dirs: [path.join(s.store, 'objects')]},
      }),
    )
  }
  record('rawLast', await timedBoot('bash', [bootScript, '-d', image.dir, image.file]))
  for (const d of ['host-a', 'host-b', ...CHUNK_SIZES.map((c) => `host-${c / KiB}k`)]) await discard(path.join(workDir, d))
}
for (const cs of CHUNK_SIZES) await seeds[cs].serve.stop()

// ----------------------------------------------------------------- results

await run.finish({
  reps: opts.reps,
  method: {
    pageCache: 'before every run the bench reads the raw file and/or the store objects involved (warm page cache on both sides)',
    ...prepMethod(settings),
    cpu: `timed children's CPU by ${GNU_TIME ? 'GNU time (reaped children included: QEMU under vmi mount --exec)' : 'n/a'}; servers' CPU from /proc/<pid>/stat`,
    cleanup: `host stores moved to a trash directory and deleted at the end (${trashStats.moved} moved)`,
  },
  targets: TARGETS,
  mainChunkSize: MAIN_CS,
  image: {...image, seeds: Object.fromEntries(CHUNK_SIZES.map((cs) => [cs, {id: seeds[cs].id, importJson: seeds[cs].importJson, importWall: seeds[cs].importWall, importCpu: seeds[cs].importCpu, importRssBytes: seeds[cs].importRssBytes}]))},
  storeBench,
  reads,
  boots,
}, renderMountReport)
