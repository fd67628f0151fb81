#!/usr/bin/env node
// @ts-check
// vmi store benchmark: `node bench/store.js` (or `npm run bench -- --only store`): import, import
// again, export against cp and b3sum, chunk sizes, peak RSS against image size; see
// bench/README.md. Writes bench/results/<date>-store.md and latest-store.json; never fails on a
// missed goal.
import {execFileSync} from 'node:child_process'
import {createHash} from 'node:crypto'
import {promises as fsp} from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {bytesHuman, f, GB, int, linearFit, MB} from './lib/format.js'
import {allocatedBytes, ensureScaleImage, ensureSyntheticImage} from './lib/image.js'
import {hashSpeed, storeWriteCost, zeroCheckSpeed} from './lib/inproc.js'
import {BUILD, findBootImage, GiB, KiB, MiB, parseOptions, prepare, prepMethod, prepSettings, startRun, vmiTimed} from './lib/common.js'
import {renderStoreReport} from './lib/store-report.js'
import {countFiles, GNU_TIME, hasCommand, median, RSS_METHOD, runTimed, settle, warmDir, warmFile, summarizeRuns} from './lib/measure.js'

// ----------------------------------------------------------------- options

const opts = parseOptions(
  'store',
  {
    reps: ['--reps N', 3, Number, 'repetitions per measurement, median reported'],
    debian: ['--no-debian', true, false, 'skip the Debian boot image even when it is built'],
    scale: ['--no-scale', true, false, 'skip the RSS-vs-image-size check (sparse 2 and 16 GiB images)'],
    sweep: ['--no-sweep', true, false, 'skip the chunk-size sweep'],
    build: BUILD,
  },
  (o) => (!Number.isInteger(o.reps) || o.reps < 1) && '--reps must be a positive integer',
  `environment:
  VMI_CACHE_DIR        cache base (default \${XDG_CACHE_HOME:-~/.cache}/vmi); images go in <base>/bench
  VMI_BENCH_WORKDIR    where temporary stores and copies go (default: a new dir in $TMPDIR)
  VMI_BENCH_SCALE_GIB  sizes for the RSS check, comma-separated (default 2,16,80)
  VMI_BENCH_QUIET_WAIT seconds each run may wait for the rest of the machine to go idle (default 60; 0: don't wait)
  VMI_BENCH_PRETOUCH_GIB  memory to touch before every run (default 3 on a VM with free page reporting, else 0)`,
)
const settings = prepSettings()
const scaleSizes = (process.env.VMI_BENCH_SCALE_GIB || '2,16,80').split(',').map((x) => Number(x) * GiB)

const TARGETS = {importBytesPerSecond: 1 * GB, importVsCp: 0.5, rssBytes: 150 * MB}

// ----------------------------------------------------------------- setup

const run = await startRun('store', {build: opts.build})
const {log, workDir, discard, trashStats, dist} = run
const haveB3sum = hasCommand('b3sum')
if (!GNU_TIME) log('GNU time not found (Debian package "time"); peak RSS by polling /proc/<pid>/status VmHWM')

// ----------------------------------------------------------------- helpers

const summarize = (runs) => summarizeRuns(runs, ['user', 'sys', 'bgCores', 'stealCores'])

/**
 * Repetition `r` of `label`: flush dirty pages, warm the page cache with `file`, wait for the
 * machine to be idle (prepare), then `run()` (a runTimed result); it gets how the machine
 * looked at its start, and is logged.
 * @param {string} label @param {number} r @param {string | undefined} file @param {() => Promise<Record<string, any>>} run
 */
async function measured(label, r, file, run) {
  const quiet = await prepare({files: file ? [file] : []}, settings)
  const res = Object.assign(await run(), quiet)
  log(`  ${label} #${r + 1}: ${f(res.wall)} s, peak RSS ${f(res.rssBytes / MB, 0)} MB`)
  return res
}

/** @param {string[]} args @param {string} store @param {{discardStdout?: boolean}} [extra] */
const vmi = (args, store, extra = {}) => vmiTimed(args, store, {cwd: workDir, scratch: workDir, ...extra})

async function b3sumOf(file) {
  if (haveB3sum) return execFileSync('b3sum', ['--no-names', file], {encoding: 'utf8'}).trim()
  const h = createHash('sha256')
  for await (const piece of (await fsp.open(file)).createReadStream()) h.update(piece)
  return h.digest('hex')
}

// ----------------------------------------------------------------- fixed costs and component speeds

log('CLI start-up (vmi --version)')
await vmi(['--version'], path.join(workDir, 'unused-store')) // warm-up: loads node and oclif files into the page cache
const startupRuns = []
for (let r = 0; r < opts.reps; r++) startupRuns.push(await measured('vmi --version', r, undefined, () => vmi(['--version'], path.join(workDir, 'unused-store'))))
const startup = summarize(startupRuns)

log('in-process component speeds (dist/ modules)')
await prepare({}, settings)
const inproc = {hash: {}, zeroCheck: zeroCheckSpeed(dist, 256 * KiB)}
for (const cs of [64 * KiB, 256 * KiB, 1 * MiB]) inproc.hash[cs] = hashSpeed(dist, cs)
const concurrency = Math.max(4, os.availableParallelism() * 4) // what src/commands/import.ts passes
await prepare({}, settings)
inproc.store = await storeWriteCost(dist, workDir, {chunkSize: 256 * KiB, count: 2048, concurrency, discard})
log(
  `  hash ${f(inproc.hash[256 * KiB] / GB)} GB/s/core at 256K; putObject new ${f(inproc.store.newPerObjectUs, 0)} µs, existing ${f(inproc.store.existingPerObjectUs, 0)} µs; ` +
    `getObject serial ${f(inproc.store.readSerialPerObjectUs, 0)} µs, ${concurrency} in flight ${f(inproc.store.readParallelPerObjectUs, 0)} µs per object`,
)

// ----------------------------------------------------------------- images

/** @type {Record<string, any>[]} */
const images = []
log('synthetic image')
const synth = await ensureSyntheticImage(undefined, log)
images.push({
  name: `synthetic ${bytesHuman(synth.spec.size)}`,
  kind: 'synthetic',
  file: synth.file,
  spec: synth.spec,
  composition: synth.composition,
  regionCount: synth.regions.length,
  built: synth.built,
  buildSeconds: synth.seconds,
})

// looked up when its turn comes: another job may be building it while the synthetic image runs
if (!opts.debian) images.push({name: 'Debian boot image', kind: 'debian', skipped: '--no-debian given'})
else images.push({name: 'Debian boot image', kind: 'debian', pending: true})

for (const img of images) {
  if (img.pending) {
    delete img.pending
    const debian = findBootImage()
    if (debian.file) Object.assign(img, {file: debian.file, info: debian.info})
    else img.skipped = debian.reason
  }
  if (img.skipped) {
    log(`${img.name}: ${img.skipped}`)
    continue
  }
  img.size = (await fsp.stat(img.file)).size
  img.allocated = await allocatedBytes(img.file)
  log(`${img.name}: ${img.file} (${bytesHuman(img.size)}, ${bytesHuman(img.allocated)} allocated)`)
  await warmFile(img.file)
  const t = performance.now()
  await warmFile(img.file) // a second read: page-cache speed
  img.warmReadBytesPerSecond = img.size / ((performance.now() - t) / 1000)
  /** @type {Record<string, any>} */
  const rows = (img.rows = {})

  // Contenders take turns within each repetition (b3sum, cp, cp+fsync, import,
  // import again, export, then the next repetition), so a burst of background
  // load hits one repetition of each rather than every repetition of one.
  /** @type {Record<string, any[]>} */
  const runs = {b3sum: [], cp: [], cpSync: [], importCold: [], importAgain: [], export: []}
  const sweepSizes = img.kind === 'synthetic' && opts.sweep ? [64 * KiB, 128 * KiB, 256 * KiB, 1 * MiB].filter((cs) => cs !== dist.DEFAULT_CHUNK_SIZE) : []
  const sweepRuns = new Map(sweepSizes.map((cs) => [cs, []]))
  const sweepFiles = new Map()
  const cpDest = path.join(workDir, 'cp.raw')
  for (let r = 0; r < opts.reps; r++) {
    if (haveB3sum) runs.b3sum.push(await measured('b3sum --num-threads 2', r, img.file, () => runTimed('b3sum', ['--num-threads', '2', img.file], {scratch: workDir})))
    runs.cp.push(await measured('cp', r, img.file, () => runTimed('cp', [img.file, cpDest], {scratch: workDir})))
    await fsp.rm(cpDest, {force: true})
    runs.cpSync.push(await measured('cp + fsync', r, img.file, () => runTimed('sh', ['-c', 'cp "$1" "$2" && sync "$2"', 'sh', img.file, cpDest], {scratch: workDir})))
    await fsp.rm(cpDest, {force: true})

    // import into an empty store, import again (all deduplicated), export — one store per repetition
    const store = path.join(workDir, `store-${r}`)
    runs.importCold.push(await measured('vmi import (empty store)', r, img.file, () => vmi(['import', img.file, 'bench:cold', '--json'], store)))
    if (r === 0) img.objectFiles = await countFiles(path.join(store, 'objects'))
    runs.importAgain.push(await measured('vmi import (again)', r, img.file, () => vmi(['import', img.file, 'bench:again', '--json'], store)))
    settle()
    await warmDir(path.join(store, 'objects'))
    const out = path.join(workDir, 'export.raw')
    runs.export.push(await measured('vmi export', r, undefined, () => vmi(['export', 'bench:cold', out, '--json'], store)))
    if (r === 0) {
      const [a, b] = await Promise.all([b3sumOf(img.file), b3sumOf(out)])
      img.exportIdentical = a === b
      img.exportAllocated = await allocatedBytes(out)
      if (!img.exportIdentical) log(`  EXPORT DIFFERS from the source (${a} vs ${b})`)
    }
    await fsp.rm(out, {force: true})
    await discard(store)

    for (const cs of sweepSizes) {
      const sweepStore = path.join(workDir, `sweep-${r}`)
      sweepRuns.get(cs).push(await measured(`vmi import --chunk-size ${cs / KiB}K`, r, img.file, () => vmi(['import', img.file, 'bench:sweep', '--chunk-size', `${cs / KiB}K`, '--json'], sweepStore)))
      if (r === 0) sweepFiles.set(cs, await countFiles(path.join(sweepStore, 'objects')))
      await discard(sweepStore)
    }
  }
  rows.b3sum = haveB3sum ? summarize(runs.b3sum) : {skipped: 'b3sum not installed (scripts/install-deps.sh installs it)'}
  for (const k of ['cp', 'cpSync', 'importCold', 'importAgain', 'export']) rows[k] = summarize(runs[k])

  if (sweepSizes.length) {
    img.sweep = [64 * KiB, 128 * KiB, 256 * KiB, 1 * MiB].map((cs) => {
      if (cs === rows.importCold.json.chunkSize) return {chunkSize: cs, ...rows.importCold, objects: rows.importCold.json.newChunks, objectFiles: img.objectFiles, reused: true}
      const sm = summarize(sweepRuns.get(cs))
      return {chunkSize: cs, ...sm, objects: sm.json.newChunks, objectFiles: sweepFiles.get(cs)}
    })
  }
  settle()
}

// ----------------------------------------------------------------- RSS vs image size

/** @type {Record<string, any>} */
let scale
if (opts.scale) {
  scale = {chunkSize: 64 * KiB, points: []}
  for (const size of scaleSizes) {
    const si = await ensureScaleImage({size, chunkSize: scale.chunkSize}, log)
    const store = path.join(workDir, 'scale-store')
    const imp = await measured(`scale import ${bytesHuman(size)} (${int(size / scale.chunkSize)} chunks)`, 0, si.file, () => vmi(['import', si.file, 'bench:scale', '--chunk-size', '64K', '--json'], store))
    const ex = await measured(`scale export ${bytesHuman(size)} to stdout`, 0, undefined, () => vmi(['export', 'bench:scale', '-'], store, {discardStdout: true}))
    const manifestBytes = (await fsp.stat(path.join(store, 'manifests', imp.json.id.slice(0, 2), imp.json.id.slice(2)))).size
    await discard(store)
    scale.points.push({
      size,
      file: si.file,
      chunks: imp.json.chunks,
      manifestBytes,
      importStartedQuiet: imp.startedQuiet,
      exportStartedQuiet: ex.startedQuiet,
      importBgCores: imp.bgCores,
      exportBgCores: ex.bgCores,
      importWall: imp.wall,
      importRssBytes: imp.rssBytes,
      exportWall: ex.wall,
      exportRssBytes: ex.rssBytes,
    })
  }
  if (scale.points.length >= 2) {
    const xs = scale.points.map((p) => p.chunks)
    scale.importFit = linearFit(xs, scale.points.map((p) => p.importRssBytes))
    scale.exportFit = linearFit(xs, scale.points.map((p) => p.exportRssBytes))
  }
}

// ----------------------------------------------------------------- report

await run.finish({
  reps: opts.reps,
  method: {
    rss: RSS_METHOD,
    wall: 'spawn to exit of the child, measured by the bench process (includes node + oclif start-up for vmi)',
    pageCache: 'the source file is read once before every run (warm page cache for every contender); export reads the store objects once before',
    ...prepMethod(settings),
    throughput: 'image size (virtual bytes, holes included) / median wall time; MB = 10^6 bytes',
    importConcurrency: concurrency,
    cleanup: `outputs are deleted after each run; finished stores are moved to a trash directory and deleted at the end (${trashStats.moved} moved, ${trashStats.deletedAtOnce} deleted at once for lack of space), because mass inode deletes slow the next file creations on ext4 without a journal for 60 s`,
  },
  targets: TARGETS,
  startup,
  inproc,
  images,
  scale,
}, renderStoreReport)
