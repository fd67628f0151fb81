#!/usr/bin/env node
// @ts-check
// vmi mount benchmark: `node bench/mount.js` (or `npm run bench -- --only mount`).
// See bench/README.md, "Mount benchmark".
//
// On the Debian boot image (built with scripts/build-boot-image.sh when missing and root):
//   - cached reads through `vmi mount`'s NBD export (every chunk local, page
//     cache warm) against nbdkit's file plugin serving the same raw file:
//     sequential 1 MiB and scattered 4 KiB reads at depth 1 and 16, with
//     qemu-img bench (goal ≥ 1.0×);
//   - cold lazy boot (empty host store, seed = vmi serve) against booting the
//     local raw file (goal ≤ 1.2×); bytes fetched from the seed against the
//     bytes the guest read (goal ≤ 1.5×); the same with a recorded boot
//     profile; a warm boot (all local);
//   - chunk size: 64 KiB, 256 KiB and 1 MiB images, cold boots with --prefetch none.
// One boot per configuration (each takes ~20 s under TCG); the raw-file anchor
// boots twice (first and last). Writes bench/results/<date>-mount.md and
// bench/results/latest-mount.json; never fails on a missed goal.
import {spawnSync} from 'node:child_process'
import {promises as fsp, readFileSync} from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {bytesHuman, f, GB, int, MB, pct, table} from './lib/format.js'
import {GNU_TIME, median, runTimed, stats} from './lib/measure.js'
import {
  cpuWindow,
  httpText,
  KiB,
  lastJson,
  MiB,
  parseOptions,
  prepare,
  prepMethod,
  prepSettings,
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
import {backgroundSection, goalTable, mountGoals, rawBootAnchor, reportHead} from './lib/report.js'
import {backendReadCost} from './lib/mount-inproc.js'
import {parseBootResult, parseNbdkitLog, qemuImgBench, readFootprint, startMount, startNbdkit, zeroBlocks} from './lib/mount-nbd.js'

const USAGE = `usage: node bench/mount.js [--reps N] [--no-boot] [--no-reads] [--build]

  --reps N     repetitions of each cached-read measurement, median reported (default 3); boots run once each
  --no-boot    skip the boots (cached reads only)
  --no-reads   skip the cached reads (boots only)
  --build      run 'npm run build' first
  --render J   measure nothing: rewrite the markdown report from a latest-mount.json

environment: as bench/store.js (VMI_CACHE_DIR, VMI_BENCH_WORKDIR, VMI_BENCH_QUIET_WAIT, VMI_BENCH_PRETOUCH_GIB)`

const opts = parseOptions(
  'mount',
  USAGE,
  {reps: 3, boot: true, reads: true, build: false, render: undefined},
  {
    '--reps': ['reps', Number],
    '--no-boot': ['boot', false],
    '--no-reads': ['reads', false],
    '--build': ['build', true],
    '--render': ['render', String],
  },
  (o) => (!Number.isInteger(o.reps) || o.reps < 1) && `--reps must be a positive integer`,
)

const TARGETS = {readsVsNbdkit: 1.0, coldBootVsLocal: 1.2, fetchedVsRead: 1.5}
const CHUNK_SIZES = [64 * KiB, 128 * KiB, 256 * KiB, 1 * MiB]
// the default chunk size of the code under test (set from dist/ below; from the JSON when rendering)
let MAIN_CS = 256 * KiB
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
const PATTERN_KEYS = (R) => R.reads.patterns.map((p) => p.key)

/** Pin a process and all its threads to `cpus` (a taskset list), or to every CPU when undefined. */
function pinTree(pid, cpus) {
  const list = cpus ?? `0-${os.cpus().length - 1}`
  const r = spawnSync('taskset', ['-a', '-p', '-c', list, String(pid)], {encoding: 'utf8'})
  if (r.status !== 0) throw new Error(`taskset ${list} ${pid}: ${r.stderr}`)
}

if (opts.render) await rerenderAndExit('mount', opts.render, render)

const run = await startRun('mount', {build: opts.build, tools: ['qemu-img', 'nbdkit', ...(opts.boot ? ['qemu-system-x86_64'] : [])]})
const {log, workDir, discard, trashStats, dist, machine} = run
const boot = requireBootImage('mount', log)

const settings = prepSettings()
MAIN_CS = dist.DEFAULT_CHUNK_SIZE
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
  seeds[cs] = {store, id: r.json.id, importJson: r.json, importWall: r.wall, importCpu: (r.user ?? 0) + (r.sys ?? 0), importRssBytes: r.rssBytes, ...p}
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
    return {seconds: r.seconds, wall: r.wall, clientCpu: (r.user ?? 0) + (r.sys ?? 0), serverCpu: r.serverCpu, othersCores: r.othersCores, irqCores: r.irqCores}
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
    const cpu = w.end((r.user ?? 0) + (r.sys ?? 0))
    const after = seedCs ? await servedObjectBytes(seeds[seedCs].serve) : undefined
    /** @type {Record<string, any>} */
    const out = {
      wall: r.wall,
      status: r.status,
      cpu: (r.user ?? 0) + (r.sys ?? 0),
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
    const readsLog = parseNbdkitLog(await fsp.readFile(logFile, 'utf8'))
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
}, render)

// ----------------------------------------------------------------- markdown

function render(R) {
  MAIN_CS = R.mainChunkSize ?? 256 * KiB
  const out = []
  const m = R.machine
  out.push(...reportHead(R, 'vmi mount benchmark', `${m.qemuImg}; ${m.nbdkit}; guests run under **${m.kvmUsable ? 'KVM' : 'TCG (software emulation: no usable KVM here)'}**`))
  const sMain = R.image.seeds[MAIN_CS].importJson
  out.push(
    `Image: \`${R.image.file}\` — the Debian boot image, ${bytesHuman(R.image.size)}` +
      (R.image.info ? ` (Debian ${R.image.info.suite} ${R.image.info.variant}, kernel ${R.image.info.kernel_release})` : '') +
      `; at ${bytesHuman(MAIN_CS)} chunks ${int(sMain.chunks)} chunks, ${int(sMain.zeroChunks)} all-zero, ${int(sMain.newChunks)} distinct non-zero (${bytesHuman(sMain.newBytes)}).`,
    '',
  )
  out.push(`Method: ${Object.values(R.method).join('; ')}.`, '')

  const B = R.boots
  const rawAnchor = rawBootAnchor(R)
  const guest = B?.runs.nbdkitLog?.footprint
  const warm = B?.runs.warm?.boot?.markerS
  const comparisons = B ? [{goal: 'mount: warm boot, all local: boot time vs the local raw file (no goal stated)', result: `${f(warm / rawAnchor)}× (${f(warm)} s vs ${f(rawAnchor)} s)`}] : []
  out.push('## Goals', '', goalTable([...mountGoals(R), ...comparisons]), '')

  const bg = []
  if (R.reads) {
    out.push(`## Cached reads through the export`, '')
    out.push(
      `\`qemu-img bench -f raw -t none -c COUNT -d DEPTH -s SIZE [-S STEP] nbd+unix:///?socket=…\` (reads; qemu's NBD client) against two read-only exports of the same bytes: ` +
        `\`vmi mount IMAGE --read-only --prefetch none\` on a store holding every chunk (objects in the page cache), and \`nbdkit -r file file=disk.raw\` (file in the page cache). ` +
        `Before the timed runs each export was read once end to end (vmi verifies each chunk against its id on its first read: that pass took ${f(R.reads.firstPass.vmi.seconds)} s vs nbdkit's ${f(R.reads.firstPass.nbdkit.seconds)} s and is not counted). ` +
        `"Scattered" 4 KiB reads: qemu-img bench has no random mode, so the offset advances by a stride of ${int(STRIDE_BLOCKS)} × 4 KiB (a prime number of blocks, wrapping modulo the image size): every 4 KiB block is visited once in a scattered order before any repeats, ` +
        `and consecutive reads land in different chunks. The whole image is read, so about ${pct(sMain.zeroChunks, sMain.chunks)} of the reads fall in all-zero chunks (holes in the raw file). ` +
        `${R.reps} runs per row, contenders alternating; median. Ratio = nbdkit time / vmi time (≥ 1 means vmi is at least as fast). ` +
        (R.reads.placements
          ? `This table: ${R.reads.placements.find((pl) => pl.patterns === R.reads.patterns || pl.key === 'split')?.label ?? ''} (each server's threads pinned with taskset, qemu-img started under taskset); the next table gives every placement.`
          : ''),
      '',
    )
    out.push(
      table(
        ['pattern', 'requests', 'nbdkit s, median (min–max)', 'nbdkit MB/s', 'nbdkit IOPS', 'vmi s, median (min–max)', 'vmi MB/s', 'vmi IOPS', 'vmi / nbdkit speed', 'µs/request: nbdkit / vmi / vmi backend alone', 'server CPU, cores: nbdkit / vmi', 'qemu-img CPU, cores: nbdkit / vmi'],
        R.reads.patterns.map((p) => {
          for (const k of ['nbdkit', 'vmi']) if (p[k].othersCores > 0.2 || p[k].busyStarts) bg.push(`- ${p.label}, ${k}: other processes used ${f(p[k].othersCores)} cores (median); ${p[k].busyStarts} runs started before the machine went idle`)
          return [
            p.label,
            int(p.count),
            `${f(p.nbdkit.seconds.median, 3)} (${f(p.nbdkit.seconds.min, 3)}–${f(p.nbdkit.seconds.max, 3)})`,
            f(p.nbdkit.bytesPerSecond / MB, 0),
            int(p.nbdkit.iops),
            `${f(p.vmi.seconds.median, 3)} (${f(p.vmi.seconds.min, 3)}–${f(p.vmi.seconds.max, 3)})`,
            f(p.vmi.bytesPerSecond / MB, 0),
            int(p.vmi.iops),
            `**${f(p.ratio)}×**`,
            `${f((1e6 * p.nbdkit.seconds.median) / p.count, 1)} / ${f((1e6 * p.vmi.seconds.median) / p.count, 1)} / ${f(R.reads.backend?.patterns[p.key]?.usPerRequest, 1)}`,
            `${f(p.nbdkit.serverCores)} / ${f(p.vmi.serverCores)}`,
            `${f(p.nbdkit.clientCores)} / ${f(p.vmi.clientCores)}`,
          ]
        }),
      ),
      '',
    )
    if (R.reads.placements) {
      const us = (p, k) => (1e6 * p[k].seconds.median) / p.count
      out.push(
        `### By CPU placement`,
        '',
        `The same runs for each placement of the two processes on this machine's ${R.machine.cores} cores: µs per request, nbdkit / vmi (ratio = nbdkit time / vmi time). ` +
          `On this VM a reply sent to a process sleeping on the other core wakes it through the hypervisor (the guest's cpuidle driver is ${R.machine.cpuidle ?? 'unknown'}, halt polling ${R.machine.haltPollNs === 0 ? 'off' : R.machine.haltPollNs === undefined ? 'unknown' : `up to ${R.machine.haltPollNs} ns`}), ` +
          `and a depth-1 ping-pong pays that twice per request unless the server polls (vmi does, see "What bounds it"); on one core the two processes hand over without it. "Unpinned" lands on either case run by run.`,
        '',
        table(
          ['pattern', ...R.reads.placements.map((pl) => pl.label)],
          PATTERN_KEYS(R).map((key) => [
            R.reads.placements[0].patterns.find((p) => p.key === key).label,
            ...R.reads.placements.map((pl) => {
              const p = pl.patterns.find((x) => x.key === key)
              return `${f(us(p, 'nbdkit'), 1)} / ${f(us(p, 'vmi'), 1)} µs (**${f(p.ratio)}×**)`
            }),
          ]),
        ),
        '',
      )
    }
  }

  if (B) {
    const r = B.runs
    out.push(`## Boots`, '')
    out.push(
      `\`scripts/boot-vm.sh\` boots the image under QEMU (${r.rawFirst?.boot?.accel ?? '?'}, 1 vCPU, 512 MiB, virtio disk with snapshot=on so writes go to a throw-away overlay) until the guest prints its multi-user marker; ` +
        `boot time = \`marker_s\` (QEMU start → marker). vmi boots run \`vmi mount ID SEED … --read-only --json --exec 'bash scripts/boot-vm.sh -d DIR {nbd}'\` on a host store; the seed is \`vmi serve\` over a store holding the image ` +
        `(objects in the page cache); "seed sent" = the seed's \`vmi_served_bytes_total{kind="objects"}\` delta. **One boot per configuration** (each takes ~20 s under TCG; the raw-file anchor boots first and last, and its median is the anchor). ` +
        (r.rawFirst?.boot?.ok && r.rawLast?.boot?.ok
          ? `The two anchor boots took ${f(r.rawFirst.boot.markerS)} and ${f(r.rawLast.boot.markerS)} s (${f((100 * Math.abs(r.rawFirst.boot.markerS - r.rawLast.boot.markerS)) / rawAnchor, 0)} % apart): that is the run-to-run noise of a single boot here, so smaller differences between rows mean nothing.`
          : ''),
      '',
    )
    const rows = [
      ['rawFirst', 'local raw file (anchor, first)'],
      ['rawLast', 'local raw file (anchor, last)'],
      ['nbdkitLog', 'nbdkit file plugin + log filter over NBD (counts guest reads)'],
      ['cold', 'vmi, cold host, no profile (--prefetch none; recording the profile)'],
      ['coldProfile', 'vmi, cold host, with the boot profile (default --prefetch profile)'],
      ['warm', 'vmi, warm host (every chunk local, no seed)'],
    ]
    out.push(
      table(
        ['boot', 'boot s (marker)', '× raw file', 'seed sent', 'seed sent / guest read (unique)', 'seed sent / guest read (unique non-zero)', 'mount-reported fetched (seed)', 'prefetched chunks', 'wall s (incl. vmi start/stop)', 'CPU s (QEMU + vmi)', 'seed CPU s', 'others\' CPU, cores'],
        rows
          .filter(([k]) => r[k])
          .map(([k, label]) => {
            const x = r[k]
            if (x.othersCores > 0.2 || x.startedQuiet === false) bg.push(`- boot "${label}": other processes used ${f(x.othersCores)} cores${x.startedQuiet === false ? '; it started before the machine went idle' : ''}`)
            return [
              label,
              x.boot?.ok ? f(x.boot.markerS) : '**failed**',
              x.boot?.ok ? f(x.boot.markerS / rawAnchor) : '',
              x.seedBytes !== undefined ? bytesHuman(x.seedBytes) : '',
              x.seedBytes !== undefined && guest ? f(x.seedBytes / guest.uniqueBytes) : '',
              x.seedBytes !== undefined && guest ? f(x.seedBytes / guest.uniqueNonZeroBytes) : '',
              x.mount?.fetchedBytes ? `${bytesHuman(x.mount.fetchedBytes.seed)} (${int(x.mount.fetched.seed)} chunks)` : '',
              x.mount ? int(x.mount.prefetched) : '',
              f(x.wall),
              f(x.cpu),
              f(x.seedCpu),
              f(x.othersCores),
            ]
          }),
      ),
      '',
    )
    if (guest) {
      out.push(
        `**What the guest read** (the nbdkit-log boot, at the NBD layer, i.e. what QEMU asked the disk for, including its copy-on-write reads for the snapshot overlay): ` +
          `${int(guest.requests)} read requests, ${bytesHuman(guest.totalBytes)} requested, **${bytesHuman(guest.uniqueBytes)} unique** (${int(guest.extents)} extents), of which ${bytesHuman(guest.uniqueNonZeroBytes)} lie in non-zero 4 KiB blocks. ` +
          `A lazy mount with no prefetch must fetch every non-zero chunk these reads touch: ` +
          CHUNK_SIZES.map((cs) => `${cs / KiB} KiB chunks → ${int(guest.perChunkSize[cs].nonZero)} chunks = ${bytesHuman(guest.perChunkSize[cs].bytes)} (${f(guest.perChunkSize[cs].bytes / guest.uniqueBytes)}× the unique bytes)`).join('; ') +
          '. The two boots differ a little (timers, udev ordering), so a single vmi boot can fetch slightly more or less than this prediction.',
        '',
      )
    }
    if (B.profile)
      out.push(
        `Boot profile: recorded by the cold boot (${B.profile.chunks ?? '?'} chunks = ${B.profile.bytes ? bytesHuman(B.profile.bytes) : '?'}), published by completing host A with \`vmi pull\` (${f(B.profile.pullSeconds)} s) and \`vmi push\` to the seed (exit ${B.profile.pushStatus}; only the manifest, profile and ref travel: every chunk was already there). ` +
          `The profile boot ran on a new empty host with the default \`--prefetch profile\`: the mount fetches the profile's chunks in the background (4 at a time) while serving the guest's reads first.`,
        '',
      )
    // mount-reported vs seed metrics
    const mism = ['cold', 'coldProfile', ...CHUNK_SIZES.filter((c) => c !== MAIN_CS).map((c) => `cold${c / KiB}k`)]
      .filter((k) => r[k]?.mount?.fetchedBytes && r[k].seedBytes !== undefined && r[k].mount.fetchedBytes.seed !== r[k].seedBytes)
      .map((k) => `${k}: mount says ${bytesHuman(r[k].mount.fetchedBytes.seed)} (${r[k].mount.fetched.seed} chunks), the seed served ${bytesHuman(r[k].seedBytes)}`)
    if (mism.length) out.push(`**Note:** the mount's own \`fetched\`/\`fetchedBytes\` disagree with the seed's egress counter (${mism.join('; ')}); the tables use the seed's counter.`, '')

    out.push(`## Chunk size`, '')
    out.push(
      `The same image imported at each chunk size into its own seed store (\`vmi import --chunk-size\`, one run, warm page cache), served, and cold-booted through \`vmi mount ID SEED --prefetch none --read-only\` on an empty host store (one boot each).` +
        (R.storeBench ? ` The last column is the store benchmark's import sweep (${R.storeBench.image}, ${R.storeBench.startedAt.slice(0, 10)}, median of its runs) from bench/results/latest-store.json.` : ' (No bench/results/latest-store.json chunk-size sweep found.)'),
      '',
    )
    out.push(
      table(
        ['chunk size', 'distinct non-zero chunks (bytes)', 'import s (GB/s), peak RSS, Debian, 1 run', 'boot s (marker)', '× raw file', 'seed sent', 'seed sent / guest read', 'predicted from the read log', 'store bench import GB/s (synthetic)'],
        CHUNK_SIZES.map((cs) => {
          const k = cs === MAIN_CS ? 'cold' : `cold${cs / KiB}k`
          const x = r[k]
          const sd = R.image.seeds[cs]
          const sb = R.storeBench?.sweep.find((s) => s.chunkSize === cs)
          return [
            `${cs / KiB} KiB`,
            `${int(sd.importJson.newChunks)} (${bytesHuman(sd.importJson.newBytes)})`,
            `${f(sd.importWall)} (${f(R.image.size / sd.importWall / GB)}), ${f(sd.importRssBytes / MB, 0)} MB`,
            x?.boot?.ok ? f(x.boot.markerS) : '**failed**',
            x?.boot?.ok ? f(x.boot.markerS / rawAnchor) : '',
            x ? bytesHuman(x.seedBytes) : '',
            x && guest ? f(x.seedBytes / guest.uniqueBytes) : '',
            guest ? bytesHuman(guest.perChunkSize[cs].bytes) : '',
            sb ? f(sb.bytesPerSecond / GB) : '–',
          ]
        }),
      ),
      '',
    )
  }

  out.push(`## What bounds it`, '', ...explain(R, rawAnchor, guest), '')
  out.push(...backgroundSection(bg))
  return out.join('\n')
}

function explain(R, rawAnchor, guest) {
  const lines = []
  if (R.reads) {
    const p = Object.fromEntries(R.reads.patterns.map((x) => [x.key, x]))
    const us = (x, k) => (1e6 * x[k].seconds.median) / x.count
    const be = (k) => R.reads.backend?.patterns[k]?.usPerRequest
    const sameList = R.reads.placements?.find((pl) => pl.key === 'same')?.patterns
    const same = sameList ? Object.fromEntries(sameList.map((x) => [x.key, x])) : undefined
    lines.push(
      `- **Cached reads**: a scattered 4 KiB read at depth 1 takes ${f(us(p.rand4k_d1, 'vmi'), 0)} µs through vmi vs ${f(us(p.rand4k_d1, 'nbdkit'), 0)} µs through nbdkit with server and client on different cores` +
        (same ? `, and ${f(us(same.rand4k_d1, 'vmi'), 0)} vs ${f(us(same.rand4k_d1, 'nbdkit'), 0)} µs with both on one core` : '') +
        `; the block backend alone (ImageBackend, in-process, no NBD) takes ${f(be('rand4k_d1'), 0)} µs of it. ` +
        `A small read of a verified chunk is answered synchronously, inside the socket's data callback, from the raw request header: the reply is built in one reusable per-connection buffer with the object file read straight into it (descriptors kept open), or is a single hole reply for an all-zero chunk, and is written to the socket's descriptor at once (the stream only queues what the kernel does not take); no promise, no allocation and no batching per request. ` +
        `On one core the comparison is the two servers' own work per request. Across cores, each request and each reply wakes a sleeping process on the other core, which on this VM goes through the hypervisor; nbdkit's threads sleep in recv() and pay it on every request. vmi polls instead (adaptive polling, \`--poll-us\`, default 50 µs): after answering a burst of reads in the data callback it keeps reading the socket without sleeping while requests arrive back to back, so a depth-1 client's next request is picked up without a wake-up; a poll that runs out, or during which the thread was off its core (measured per thread by the clock: the client shares the core and cannot send while vmi spins), backs polling off exponentially, and a request already waiting at the first read earns no credit (on one core the client sends it while the reply is being written), so with both on one core polling stays mostly off. Polling costs CPU: at depth 1 across cores vmi's server was busy ${f(p.rand4k_d1.vmi.serverCores)} cores for ${f(us(p.rand4k_d1, 'vmi'), 0)} µs a request (${f(p.rand4k_d1.vmi.serverCores * us(p.rand4k_d1, 'vmi'), 0)} µs of CPU), nbdkit's ${f(p.rand4k_d1.nbdkit.serverCores)} cores for ${f(us(p.rand4k_d1, 'nbdkit'), 0)} µs (${f(p.rand4k_d1.nbdkit.serverCores * us(p.rand4k_d1, 'nbdkit'), 0)} µs); \`--poll-us 0\` turns it off. ` +
        `At depth 16: ${f(p.rand4k_d16.vmi.iops / 1000, 1)}k vs ${f(p.rand4k_d16.nbdkit.iops / 1000, 1)}k IOPS across cores${same ? `, ${f(same.rand4k_d16.vmi.iops / 1000, 1)}k vs ${f(same.rand4k_d16.nbdkit.iops / 1000, 1)}k on one core` : ''}; vmi's server at ${f(p.rand4k_d16.vmi.serverCores)} cores vs nbdkit's ${f(p.rand4k_d16.nbdkit.serverCores)}. ` +
        `Sequential 1 MiB: ${f(p.seq1m_d1.vmi.bytesPerSecond / MB, 0)} vs ${f(p.seq1m_d1.nbdkit.bytesPerSecond / MB, 0)} MB/s at depth 1 (backend alone ${f(be('seq1m_d1'), 0)} of ${f(us(p.seq1m_d1, 'vmi'), 0)} µs per request): each request spans ${int(MiB / MAIN_CS)} chunks at ${bytesHuman(MAIN_CS)}. ` +
        `The first pass, which verifies every chunk, took ${f(R.reads.firstPass.vmi.seconds)} s through NBD and ${f(R.reads.backend?.firstPassSeconds)} s in the backend alone.`,
    )
  }
  const B = R.boots
  if (B && guest) {
    const r = B.runs
    const c = r.cold
    lines.push(
      `- **Cold boot time** (${f(c.boot?.markerS)} s vs ${f(rawAnchor)} s from the local file; through nbdkit over NBD ${f(r.nbdkitLog.boot?.markerS)} s): under TCG the guest's CPU emulation dominates a boot (~${f(rawAnchor)} s for reading only ${bytesHuman(guest.uniqueBytes)}), so the ${int((c.seedBytes ?? 0) / MAIN_CS)} chunk fetches from the seed (${bytesHuman(c.seedBytes ?? 0)}) on loopback add little; ` +
        `QEMU's emulation thread and vmi/the seed share ${R.machine.cores} cores (CPU during the cold boot: ${f(c.cpu)} s QEMU+vmi, ${f(c.seedCpu)} s seed). ` +
        (r.warm?.boot?.ok ? `Split (single boots; the two anchor boots differ by ${f(Math.abs(r.rawFirst.boot.markerS - r.rawLast.boot.markerS))} s in this run; one boot is noisy — other runs saw up to ~10 %): serving through vmi with everything local (warm − raw) ≈ ${f(r.warm.boot.markerS - rawAnchor)} s, fetching on first touch (cold − warm) ≈ ${f(c.boot.markerS - r.warm.boot.markerS)} s. ` : '') +
        `With KVM a boot is a few seconds and the same fetch latency weighs more; with a real network each first touch of a chunk costs a round trip plus ${bytesHuman(MAIN_CS)} at link speed.`,
    )
    lines.push(
      `- **Bytes fetched vs read**: the guest's reads are small and scattered (${int(guest.extents)} extents, ${bytesHuman(guest.uniqueBytes)} unique), and each first touch fetches a whole chunk, so the fetched bytes are the read bytes rounded up to chunks: ` +
        CHUNK_SIZES.map((cs) => `${f(guest.perChunkSize[cs].bytes / guest.uniqueBytes)}× at ${cs / KiB} KiB`).join(', ') +
        ` (predicted from the read log). Smaller chunks fetch less but mean more objects and requests per byte (import and pull cost per object; see the chunk-size table and bench/results/*-store.md).` +
        (r.coldProfile ? ` The profile boot fetched ${bytesHuman(r.coldProfile.seedBytes)}: the profile lists the chunks the recording boot read, so its prefetch adds no more than what that boot touched, plus whatever this boot reads outside it.` : ''),
    )
    if (r.warm)
      lines.push(
        `- **Warm boot** (${f(r.warm.boot?.markerS)} s, ${f(r.warm.boot?.markerS / rawAnchor)}× the raw file): nothing is fetched; each chunk is verified on its first read, and every read crosses the NBD socket and the Node process — the same path as the cached reads above.`,
      )
  }
  return lines
}
