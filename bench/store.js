#!/usr/bin/env node
// @ts-check
// vmi store benchmark: `node bench/store.js` (or `npm run bench -- --only store`).
// See bench/README.md.
//
// One run measures, on a 2 GiB synthetic image (and on the Debian boot image
// when it is built): b3sum and cp as anchors, vmi import into an empty store,
// vmi import again (everything deduplicated), vmi export, peak RSS, a chunk
// size sweep and an RSS-vs-image-size check. It writes
// bench/results/<date>-store.md and bench/results/latest-store.json and
// prints the table. It never fails on a missed target: it reports it.
import {execFileSync} from 'node:child_process'
import {createHash} from 'node:crypto'
import {promises as fsp} from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {bytesHuman, f, GB, int, linearFit, MB, mbps, pct, table} from './lib/format.js'
import {allocatedBytes, ensureScaleImage, ensureSyntheticImage} from './lib/image.js'
import {hashSpeed, storeWriteCost, zeroCheckSpeed} from './lib/inproc.js'
import {findBootImage, GiB, KiB, MiB, parseOptions, prepare as prepareRun, prepMethod, prepSettings, startRun, vmiTimed} from './lib/common.js'
import {backgroundSection, goalTable, reportHead, storeGoals} from './lib/report.js'
import {countFiles, GNU_TIME, hasCommand, median, RSS_METHOD, runTimed, settle, warmDir, warmFile, summarizeRuns} from './lib/measure.js'

// ----------------------------------------------------------------- options

const USAGE = `usage: node bench/store.js [--reps N] [--no-debian] [--no-scale] [--no-sweep] [--build]

  --reps N      repetitions per measurement, median reported (default 3)
  --no-debian   skip the Debian boot image even when it is built
  --no-scale    skip the RSS-vs-image-size check (sparse 2 and 16 GiB images)
  --no-sweep    skip the chunk-size sweep
  --build       run 'npm run build' first (default: use dist/ as it is)

environment:
  VMI_CACHE_DIR        cache base (default \${XDG_CACHE_HOME:-~/.cache}/vmi); images go in <base>/bench
  VMI_BENCH_WORKDIR    where temporary stores and copies go (default: a new dir in $TMPDIR)
  VMI_BENCH_SCALE_GIB  sizes for the RSS check, comma-separated (default 2,16,80)
  VMI_BENCH_QUIET_WAIT seconds each run may wait for the rest of the machine to go idle (default 60; 0: don't wait)
  VMI_BENCH_PRETOUCH_GIB  memory to touch before every run (default 3 on a VM with free page reporting, else 0)`

const opts = parseOptions(
  'store',
  USAGE,
  {reps: 3, debian: true, scale: true, sweep: true, build: false},
  {
    '--reps': ['reps', Number],
    '--no-debian': ['debian', false],
    '--no-scale': ['scale', false],
    '--no-sweep': ['sweep', false],
    '--build': ['build', true],
  },
  (o) => (!Number.isInteger(o.reps) || o.reps < 1) && '--reps must be a positive integer',
)
const settings = prepSettings()
/** Manifests up to this size are hashed in memory at once (ONE_SHOT_MAX in src/store/manifest-stream.ts). */
const ONE_SHOT_MANIFEST = 32 * 1024 * 1024
const scaleSizes = (process.env.VMI_BENCH_SCALE_GIB || '2,16,80').split(',').map((x) => Number(x) * GiB)

const TARGETS = {importBytesPerSecond: 1 * GB, importVsCp: 0.5, rssBytes: 150 * MB}

// ----------------------------------------------------------------- setup

const run = await startRun('store', {build: opts.build})
const {log, workDir, discard, trashStats, dist} = run
const haveB3sum = hasCommand('b3sum')
if (!GNU_TIME) log('GNU time not found (Debian package "time"); peak RSS by polling /proc/<pid>/status VmHWM')

// ----------------------------------------------------------------- helpers

/** Run `once(rep)` opts.reps times; each returns a runTimed result (plus extras). */
async function repeat(label, once, reps = opts.reps) {
  const runs = []
  for (let r = 0; r < reps; r++) {
    const res = tag(await once(r))
    runs.push(res)
    log(`  ${label} #${r + 1}: ${f(res.wall)} s, peak RSS ${f(res.rssBytes / MB, 0)} MB`)
  }
  return summarize(runs)
}

const summarize = (runs) => summarizeRuns(runs, ['user', 'sys', 'bgCores', 'stealCores'])

let lastQuiet
/** Before a run: flush dirty pages, warm the page cache, wait for the machine to be idle. */
async function prepare(file) {
  lastQuiet = await prepareRun({files: file ? [file] : []}, settings)
}

/** Attach how the machine looked when the run started. */
function tag(r) {
  Object.assign(r, lastQuiet)
  lastQuiet = undefined
  return r
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
const startup = await repeat('vmi --version', async () => (await prepare(), vmi(['--version'], path.join(workDir, 'unused-store'))))

log('in-process component speeds (dist/ modules)')
await prepare()
const inproc = {hash: {}, zeroCheck: zeroCheckSpeed(dist, 256 * KiB)}
for (const cs of [64 * KiB, 256 * KiB, 1 * MiB]) inproc.hash[cs] = hashSpeed(dist, cs)
const concurrency = Math.max(4, os.availableParallelism() * 4) // what src/commands/import.ts passes
await prepare()
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
  const note = (label, r, res) => log(`  ${label} #${r + 1}: ${f(res.wall)} s, peak RSS ${f(res.rssBytes / MB, 0)} MB`)
  for (let r = 0; r < opts.reps; r++) {
    if (haveB3sum) {
      await prepare(img.file)
      runs.b3sum.push(tag(await runTimed('b3sum', ['--num-threads', '2', img.file], {scratch: workDir})))
      note('b3sum --num-threads 2', r, runs.b3sum.at(-1))
    }
    await prepare(img.file)
    runs.cp.push(tag(await runTimed('cp', [img.file, cpDest], {scratch: workDir})))
    note('cp', r, runs.cp.at(-1))
    await fsp.rm(cpDest, {force: true})
    await prepare(img.file)
    runs.cpSync.push(tag(await runTimed('sh', ['-c', 'cp "$1" "$2" && sync "$2"', 'sh', img.file, cpDest], {scratch: workDir})))
    note('cp + fsync', r, runs.cpSync.at(-1))
    await fsp.rm(cpDest, {force: true})

    // import into an empty store, import again (all deduplicated), export — one store per repetition
    const store = path.join(workDir, `store-${r}`)
    await prepare(img.file)
    runs.importCold.push(tag(await vmi(['import', img.file, 'bench:cold', '--json'], store)))
    note('vmi import (empty store)', r, runs.importCold.at(-1))
    if (r === 0) img.objectFiles = await countFiles(path.join(store, 'objects'))
    await prepare(img.file)
    runs.importAgain.push(tag(await vmi(['import', img.file, 'bench:again', '--json'], store)))
    note('vmi import (again)', r, runs.importAgain.at(-1))
    settle()
    await warmDir(path.join(store, 'objects'))
    await prepare()
    const out = path.join(workDir, 'export.raw')
    runs.export.push(tag(await vmi(['export', 'bench:cold', out, '--json'], store)))
    note('vmi export', r, runs.export.at(-1))
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
      await prepare(img.file)
      const res = tag(await vmi(['import', img.file, 'bench:sweep', '--chunk-size', `${cs / KiB}K`, '--json'], sweepStore))
      note(`vmi import --chunk-size ${cs / KiB}K`, r, res)
      sweepRuns.get(cs).push(res)
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
    await prepare(si.file)
    const imp = tag(await vmi(['import', si.file, 'bench:scale', '--chunk-size', '64K', '--json'], store))
    log(`  scale import ${bytesHuman(size)}: ${f(imp.wall)} s, peak RSS ${f(imp.rssBytes / MB, 0)} MB, ${int(imp.json.chunks)} chunks`)
    await prepare()
    const ex = tag(await vmi(['export', 'bench:scale', '-'], store, {discardStdout: true}))
    log(`  scale export ${bytesHuman(size)} to stdout: ${f(ex.wall)} s, peak RSS ${f(ex.rssBytes / MB, 0)} MB`)
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
}, renderMarkdown)

// ----------------------------------------------------------------- markdown

function renderMarkdown(R) {
  const out = []
  const m = R.machine
  out.push(...reportHead(R, 'vmi store benchmark', `${m.b3sum ?? 'no b3sum'}; ${m.cp}; work dir on ${m.filesystem} (${m.mountOptions ?? '?'})`))
  out.push(
    `Method: ${R.method.pageCache}; ${R.method.sync}; ${R.method.quiet}; ${R.method.pretouch}; ${R.method.cleanup}; wall = ${R.method.wall}; throughput = ${R.method.throughput}; peak RSS by ${R.method.rss}. ` +
      `${R.reps} repetitions per measurement (median wall; peak RSS is the worst run).`,
    '',
  )

  const exportRows = R.images
    .filter((i) => !i.skipped)
    .map((i) => ({goal: `store: export vs cp, no target (${i.name})`, result: `${f(i.rows.cp.wall / i.rows.export.wall)}× cp, ${f(i.rows.cpSync.wall / i.rows.export.wall)}× cp+fsync`}))
  out.push('## Targets', '', goalTable([...storeGoals(R), ...exportRows]), '')
  for (const img of R.images) if (img.skipped) out.push(`${img.name}: **skipped** — ${img.skipped}.`, '')

  const bg = []
  for (const img of R.images) {
    if (img.skipped) continue
    out.push(`## ${img.name}`, '')
    if (img.kind === 'synthetic') {
      const c = img.composition
      out.push(
        `\`${img.file}\` — ${bytesHuman(img.size)}, ${img.regionCount} regions in 1 MiB units: ` +
          `random ${bytesHuman(c.random.bytes)} (${pct(c.random.bytes, img.size)}, ${c.random.regions} regions), ` +
          `zero/holes ${bytesHuman(c.zero.bytes)} (${pct(c.zero.bytes, img.size)}, ${c.zero.regions}), ` +
          `repeated ${bytesHuman(c.repeat.bytes)} (${pct(c.repeat.bytes, img.size)}, ${c.repeat.regions}; copies of earlier random MiBs, chunk-aligned). ` +
          `${bytesHuman(img.allocated)} allocated on disk. Spec: ${JSON.stringify(img.spec)}.`,
      )
    } else {
      out.push(
        `\`${img.file}\` — ${bytesHuman(img.size)}, ${bytesHuman(img.allocated)} allocated` +
          (img.info ? ` (Debian ${img.info.suite} ${img.info.variant}, ${img.info.package_count} packages, built ${img.info.built_at})` : '') +
          '.',
      )
    }
    const j = img.rows.importCold.json
    out.push(
      '',
      `Import result: ${int(j.chunks)} chunks of ${j.chunkSize / KiB} KiB: ${int(j.zeroChunks)} zero, ${int(j.dedupedChunks)} repeated, ${int(j.newChunks)} new (${bytesHuman(j.newBytes)}); ` +
        `${int(img.objectFiles)} object files. Export output identical to the source: **${img.exportIdentical ? 'yes' : 'NO'}** (${bytesHuman(img.exportAllocated)} allocated, sparse).`,
      '',
    )
    const r = img.rows
    const anchor = (row) => (row && !row.skipped ? row.wall : undefined)
    const tB3 = anchor(r.b3sum)
    const tCp = anchor(r.cp)
    const tCpS = anchor(r.cpSync)
    const rowCells = (label, row, target, status) => {
      if (row.skipped) return [label, row.skipped, '', '', '', '', '', '', '', '', target ?? '', '']
      const busyStarts = row.runs.filter((x) => x.startedQuiet === false).length
      if (row.stealCores > 0.05) bg.push(`- ${img.name} / ${label}: the hypervisor stole ${f(row.stealCores)} cores (median; /proc/stat steal)`)
      if (row.bgCores > 0.2 || busyStarts)
        bg.push(`- ${img.name} / ${label}: other processes used ${f(row.bgCores)} cores (median over the runs); ${busyStarts} of ${row.runs.length} runs started before the machine went idle`)
      return [
        label,
        `${f(row.wall)} (${f(row.wallMin)}–${f(row.wallMax)})`,
        row.reported !== undefined ? f(row.reported) : '',
        f(mbps(img.size, row.wall), 0),
        tB3 ? f(tB3 / row.wall) : '–',
        tCp ? f(tCp / row.wall) : '–',
        tCpS ? f(tCpS / row.wall) : '–',
        f(row.rssBytes / MB, 0),
        row.cpu !== undefined ? `${f(row.cpu)} (${f(row.cpu / row.wall)} cores)` : '–',
        f(row.bgCores),
        target ?? '',
        status ?? '',
      ]
    }
    const importStatus = (row) => {
      const rate = img.size / row.wall
      const ratio = tCp / row.wall
      const parts = [
        `${rate >= TARGETS.importBytesPerSecond ? 'met' : '**missed**'}: ${f(rate / GB)} GB/s`,
        `${ratio >= TARGETS.importVsCp ? 'met' : '**missed**'}: ${f(ratio)}× cp`,
        `${row.rssBytes <= TARGETS.rssBytes ? 'met' : '**missed**'}: ${f(row.rssBytes / MB, 0)} MB`,
      ]
      return parts.join('; ')
    }
    const rssStatus = (row) => `${row.rssBytes <= TARGETS.rssBytes ? 'met' : '**missed**'}: ${f(row.rssBytes / MB, 0)} MB`
    const importTarget = '≥ 1 GB/s; ≥ 0.5× cp; RSS ≤ 150 MB'
    out.push(
      table(
        ['operation', 'wall s, median (min–max)', 'vmi-reported s', 'MB/s', '× b3sum speed', '× cp speed', '× cp+fsync speed', 'peak RSS MB', 'CPU s (cores)', 'others\' CPU, cores', 'target', 'result'],
        [
          rowCells('b3sum --num-threads 2 (anchor)', r.b3sum, 'anchor', 'RSS includes the mmapped file'),
          rowCells('cp (anchor)', r.cp, 'anchor'),
          rowCells('cp + fsync of the copy (anchor)', r.cpSync, 'anchor'),
          rowCells('vmi import, empty store', r.importCold, importTarget, importStatus(r.importCold)),
          rowCells('vmi import again (all deduplicated)', r.importAgain, importTarget, importStatus(r.importAgain)),
          rowCells('vmi export → raw file (fsyncs)', r.export, 'vs cp; RSS ≤ 150 MB', rssStatus(r.export)),
        ],
      ),
      '',
    )
    out.push(
      `In GB/s: b3sum ${tB3 ? f(img.size / tB3 / GB) : '–'}, cp ${f(img.size / tCp / GB)}, cp+fsync ${f(img.size / tCpS / GB)}, ` +
        `import ${f(img.size / r.importCold.wall / GB)}, import again ${f(img.size / r.importAgain.wall / GB)}, export ${f(img.size / r.export.wall / GB)}. ` +
        `Excluding CLI start-up (${f(R.startup.wall)} s), import alone runs at ${f(img.size / (r.importCold.wall - R.startup.wall) / GB)} GB/s.`,
      '',
    )

    if (img.sweep) {
      out.push(`### Chunk size (import into an empty store, ${img.name})`, '')
      out.push(
        table(
          ['chunk size', 'wall s, median (min–max)', 'MB/s', '× cp speed', 'new objects', 'object files', 'chunks', 'peak RSS MB', 'CPU s', 'others\' CPU, cores', 'result (≥ 1 GB/s; ≥ 0.5× cp; ≤ 150 MB)'],
          img.sweep.map((s) => [
            `${s.chunkSize / KiB} KiB${s.reused ? ' (the run above)' : ''}`,
            `${f(s.wall)} (${f(s.wallMin)}–${f(s.wallMax)})`,
            f(mbps(img.size, s.wall), 0),
            f(tCp / s.wall),
            int(s.objects),
            int(s.objectFiles),
            int(s.json.chunks),
            f(s.rssBytes / MB, 0),
            f(s.cpu),
            f(s.bgCores),
            importStatus(s),
          ]),
        ),
        '',
      )
    }
    out.push(`### What bounds it (${img.name})`, '', ...explain(R, img), '')
  }


  if (R.scale) {
    const s = R.scale
    out.push(`## Peak RSS against image size`, '')
    out.push(
      `Sparse images where every ${s.chunkSize / KiB} KiB chunk is the same non-zero 4 KiB stamp plus holes: every chunk is hashed and gets an id in the manifest, the store keeps one object. ` +
        `This isolates memory that grows with the chunk count (export goes to stdout, discarded).`,
      '',
    )
    out.push(
      table(
        ['image size', 'chunks', 'import wall s', 'import peak RSS MB', 'export wall s', 'export peak RSS MB', 'others\' CPU during import / export, cores', 'RSS ≤ 150 MB'],
        s.points.map((p) => [
          bytesHuman(p.size),
          int(p.chunks),
          f(p.importWall),
          f(p.importRssBytes / MB, 0),
          f(p.exportWall),
          f(p.exportRssBytes / MB, 0),
          `${f(p.importBgCores)} / ${f(p.exportBgCores)}`,
          Math.max(p.importRssBytes, p.exportRssBytes) <= TARGETS.rssBytes ? 'met' : '**missed**',
        ]),
      ),
      '',
    )
    if (s.importFit) {
      const perChunkImp = s.importFit.b
      const perChunkExp = s.exportFit.b
      const big = s.points.at(-1)
      const pastOneShot = big.manifestBytes > ONE_SHOT_MANIFEST
      out.push(
        `Fitted over these points: import RSS ≈ ${f(s.importFit.a / MB, 0)} MB + ${f(perChunkImp, 0)} B × chunks; export RSS ≈ ${f(s.exportFit.a / MB, 0)} MB + ${f(perChunkExp, 0)} B × chunks. ` +
          `What grows with the chunk count is the manifest (${s.points.map((p) => `${bytesHuman(p.manifestBytes)} at ${bytesHuman(p.size)}`).join(', ')}): import and export hold it in memory once while they hash it, up to ${bytesHuman(ONE_SHOT_MANIFEST)}; a larger manifest is hashed incrementally from its file (src/store/manifest-stream.ts), so that term stops growing there and a straight-line projection past it overstates. ` +
          (pastOneShot
            ? `The largest image here is past that point (its manifest is ${bytesHuman(big.manifestBytes)}), so its peak is the plateau. `
            : `No image here is past that point (largest manifest ${bytesHuman(big.manifestBytes)}): the bound for larger images is the fitted base plus ${bytesHuman(ONE_SHOT_MANIFEST)} ≈ ${f((Math.max(s.importFit.a, s.exportFit.a) + ONE_SHOT_MANIFEST) / MB, 0)} MB, not measured. `) +
          `Target "peak RSS ≤ 150 MB for any image size": **${s.points.every((p) => Math.max(p.importRssBytes, p.exportRssBytes) <= TARGETS.rssBytes) ? (pastOneShot ? 'met: every point ≤ 150 MB, the largest past the point where memory stops growing' : 'met at every size measured; not shown past the one-shot manifest limit') : 'missed'}**.`,
        '',
      )
    }
  }

  out.push(`## Component speeds (in-process, dist/ modules, one core)`, '')
  out.push(
    table(
      ['component', 'value'],
      [
        ...Object.entries(R.inproc.hash).map(([cs, v]) => [`hash() ${Number(cs) / KiB} KiB chunks (${R.machine.hashBackend})`, `${f(v / GB)} GB/s`]),
        ['isAllZero() on a zero 256 KiB chunk', `${f(R.inproc.zeroCheck / GB)} GB/s`],
        [`LocalStore.putObject, new 256 KiB object (synchronous underneath; a fresh store)`, `${f(R.inproc.store.newPerObjectUs, 0)} µs/object = ${f(R.inproc.store.newBytesPerSecond / GB)} GB/s`],
        ['LocalStore.putObject, object already stored', `${f(R.inproc.store.existingPerObjectUs, 0)} µs/object`],
        ['LocalStore.getObject 256 KiB, one at a time', `${f(R.inproc.store.readSerialPerObjectUs, 0)} µs/object`],
        [`LocalStore.getObject 256 KiB, ${R.inproc.store.concurrency} in flight`, `${f(R.inproc.store.readParallelPerObjectUs, 0)} µs/object`],
        ['CLI start-up (vmi --version), wall / peak RSS', `${f(R.startup.wall)} s / ${f(R.startup.rssBytes / MB, 0)} MB`],
      ],
    ),
    '',
  )

  out.push(...backgroundSection(bg))
  return out.join('\n')
}

/** "What bounds it": the measured wall time split by measured component speeds. */
function explain(R, img) {
  const r = img.rows
  const j = r.importCold.json
  const cs = j.chunkSize
  const hashRate = R.inproc.hash[cs] ?? R.inproc.hash[256 * KiB]
  const nonZeroBytes = (j.chunks - j.zeroChunks) * cs
  const hashS = nonZeroBytes / hashRate
  const st = R.inproc.store
  const startS = R.startup.wall
  const readS = img.size / img.warmReadBytesPerSecond
  const lines = []
  const cores = (row) => `${f(row.cpu)} s CPU = ${f(row.cpu / row.wall)} of ${R.machine.cores} cores`

  // import into an empty store. Both threads read, hash and store their own
  // segments (src/store/import-segment.ts), so the one-core work is shared.
  const threads = Math.min(2, R.machine.cores)
  const mainS = hashS + readS
  let perObjectS
  let fitText = ''
  if (img.sweep && img.sweep.length >= 2) {
    const fit = linearFit(
      img.sweep.map((s) => s.objects),
      img.sweep.map((s) => s.wall),
    )
    img.sweepFit = fit
    perObjectS = Math.max(0, fit.b * j.newChunks)
    fitText = ` Across chunk sizes the same bytes cost wall ≈ ${f(fit.a)} s + ${f(fit.b * 1e6, 0)} µs × new objects (least squares over ${img.sweep.length} sizes), i.e. ≈ ${f(perObjectS)} s of this run is per-object cost (one file created per new chunk, both threads).`
  }
  const restS = r.importCold.wall - startS - mainS / threads - (perObjectS ?? 0)
  const need = img.size / TARGETS.importBytesPerSecond
  const needCp = r.cp.wall / TARGETS.importVsCp
  lines.push(
    `- **Import, empty store** (${f(r.importCold.wall)} s = ${f(img.size / r.importCold.wall / GB)} GB/s, ${cores(r.importCold)}; cp takes ${f(r.cp.wall)} s): ` +
      `CLI start-up ≈ ${f(startS)} s; hashing ${bytesHuman(nonZeroBytes)} of non-zero chunks at ${f(hashRate / GB)} GB/s per core ≈ ${f(hashS)} s of one core; ` +
      `reading the file from the page cache at ${f(img.warmReadBytesPerSecond / GB)} GB/s ≈ ${f(readS)} s. ` +
      `${threads} threads each read, hash and store their own segments, so reading and hashing take ≈ ${f(mainS / threads)} s of wall.${fitText} ` +
      (perObjectS !== undefined
        ? `The remaining ≈ ${f(Math.max(0, restS))} s is writing ${bytesHuman(j.newBytes)} into the page cache, the manifest and the ref${restS < 0 ? ' (the split overshoots the wall: the fit is rough)' : ''}. `
        : '') +
      `cp writes one file of ${bytesHuman(img.allocated)} allocated data (sparse-aware); import writes one file per new chunk (${int(j.newChunks)}). ` +
      `The in-process LocalStore.putObject figure under "Component speeds" (${f(st.newPerObjectUs, 0)} µs per new 256 KiB object, measured at another moment) is not used for this split: ` +
      `creating files on this VM varies from moment to moment (this very import took ${f(r.importCold.wallMin)}–${f(r.importCold.wallMax)} s across runs). ` +
      `Targets: 1 GB/s needs the import to finish in ${f(need)} s and 0.5× cp in ${f(needCp)} s; start-up alone is ${f(startS)} s.`,
  )

  // import again
  const againFloor = startS + mainS / threads
  const lookups = j.newChunks // distinct non-zero chunks: each is put once more, and is already there
  const lookupS = (lookups * st.existingPerObjectUs) / 1e6
  lines.push(
    `- **Import again** (${f(r.importAgain.wall)} s = ${f(img.size / r.importAgain.wall / GB)} GB/s, ${cores(r.importAgain)}; ${f(r.importAgain.wall / r.importCold.wall)}× the first import): ` +
      `nothing new is stored. Start-up + reading and hashing on ${threads} threads ≈ ${f(againFloor)} s is the floor; ` +
      `the ${int(lookups)} puts of already-stored objects cost ${f(st.existingPerObjectUs, 0)} µs each in-process ≈ ${f(lookupS / threads)} s on ${threads} threads; ` +
      `unexplained remainder ≈ ${f(Math.max(0, r.importAgain.wall - againFloor - lookupS / threads))} s (overlap makes this a rough split).`,
  )

  // export
  const e = r.export
  const reads = j.chunks - j.zeroChunks
  const fsyncS = r.cpSync.wall - r.cp.wall
  lines.push(
    `- **Export** (${f(e.wall)} s = ${f(img.size / e.wall / GB)} GB/s, ${cores(e)}; ${f(r.cp.wall / e.wall)}× cp speed, ${f(r.cpSync.wall / e.wall)}× cp+fsync): ` +
      `start-up ${f(startS)} s; verifying ${bytesHuman(nonZeroBytes)} ≈ ${f(hashS)} s of hashing; reading ${int(reads)} objects ≈ ${f((reads * st.readSerialPerObjectUs) / 1e6)} s one at a time ` +
      `or ≈ ${f((reads * st.readParallelPerObjectUs) / 1e6)} s ${st.concurrency} at a time (getObject in-process: ${f(st.readSerialPerObjectUs, 0)} vs ${f(st.readParallelPerObjectUs, 0)} µs/object); ` +
      `writing the data as cp does ≈ ${f(r.cp.wall)} s, and the final fsync ` +
      (fsyncS > 0 ? `≈ ${f(fsyncS)} s (cp+fsync − cp).` : `is not measurable here (cp+fsync − cp = ${f(fsyncS)} s, within noise).`),
  )
  const scaleNote = R.scale?.importFit ? ` and grows by ≈ ${f(R.scale.importFit.b, 0)} B per chunk on import, ${f(R.scale.exportFit.b, 0)} B on export (see "Peak RSS against image size")` : ''
  lines.push(
    `- **Peak RSS**: import ${f(r.importCold.rssBytes / MB, 0)} MB, import again ${f(r.importAgain.rssBytes / MB, 0)} MB, export ${f(e.rssBytes / MB, 0)} MB. ` +
      `\`vmi --version\` alone peaks at ${f(R.startup.rssBytes / MB, 0)} MB (node + oclif), so the data path adds ${f((r.importCold.rssBytes - R.startup.rssBytes) / MB, 0)} MB on import${scaleNote}.`,
  )
  return lines
}
