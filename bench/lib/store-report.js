// @ts-check
// The store benchmark's results (bench/store.js, latest-store.json) in markdown, written once: its
// report and its part of docs/PERFORMANCE.md (with the charts) are the same body.
import {bytesHuman, f, GB, int, KiB, linearFit, MB, MiB, mbps, pct, table} from './format.js'
import {mark, noteBusy, renderReport, storeGoals} from './report.js'
import {barChart, lineChart} from './svg-plot.js'

/** Manifests up to this size are hashed in memory at once (ONE_SHOT_MAX in src/store/manifest-stream.ts). */
const ONE_SHOT_MANIFEST = 32 * MiB

export function renderStoreReport(R) {
  const m = R.machine
  const exportRows = R.images
    .filter((i) => !i.skipped)
    .map((i) => ({goal: `store: export vs cp, no target (${i.name})`, result: `${f(i.rows.cp.wall / i.rows.export.wall)}× cp, ${f(i.rows.cpSync.wall / i.rows.export.wall)}× cp+fsync`}))
  return renderReport(R, {title: 'vmi store benchmark', tools: `${m.b3sum ?? 'no b3sum'}; ${m.cp}; work dir on ${m.filesystem} (${m.mountOptions ?? '?'})`, goals: [...storeGoals(R), ...exportRows], body: storeBody})
}

/** @param {Record<string, any>} R @param {import('./report.js').BodyContext} ctx */
export function storeBody(R, {plot, bg, all}) {
  const T = R.targets
  const out = [
    `Method: ${R.method.pageCache}; ${R.method.sync}; ${R.method.quiet}; ${R.method.pretouch}; ${R.method.cleanup}; wall = ${R.method.wall}; throughput = ${R.method.throughput}; peak RSS by ${R.method.rss}. ` +
      `${R.reps} repetitions per measurement (median wall; peak RSS is the worst run).`,
    '',
  ]
  for (const img of R.images) if (img.skipped) out.push(`${img.name}: **skipped** — ${img.skipped}.`, '')

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
      if (row.stealCores > 0.05) bg.push(`- ${img.name} / ${label}: the hypervisor stole ${f(row.stealCores)} cores (median; /proc/stat steal)`)
      noteBusy(bg, `${img.name} / ${label}`, row.bgCores, row.runs.filter((x) => x.startedQuiet === false).length, row.runs.length)
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
    const rssStatus = (row) => `${mark(row.rssBytes <= T.rssBytes)}: ${f(row.rssBytes / MB, 0)} MB`
    const importStatus = (row) => `${mark(img.size / row.wall >= T.importBytesPerSecond)}: ${f(img.size / row.wall / GB)} GB/s; ${mark(tCp / row.wall >= T.importVsCp)}: ${f(tCp / row.wall)}× cp; ${rssStatus(row)}`
    const importTarget = `≥ ${f(T.importBytesPerSecond / GB, 0)} GB/s; ≥ ${T.importVsCp}× cp; RSS ≤ ${f(T.rssBytes / MB, 0)} MB`
    out.push(
      table(
        ['operation', 'wall s, median (min–max)', 'vmi-reported s', 'MB/s', '× b3sum speed', '× cp speed', '× cp+fsync speed', 'peak RSS MB', 'CPU s (cores)', 'others\' CPU, cores', 'target', 'result'],
        [
          rowCells('b3sum --num-threads 2 (anchor)', r.b3sum, 'anchor', 'RSS includes the mmapped file'),
          rowCells('cp (anchor)', r.cp, 'anchor'),
          rowCells('cp + fsync of the copy (anchor)', r.cpSync, 'anchor'),
          rowCells('vmi import, empty store', r.importCold, importTarget, importStatus(r.importCold)),
          rowCells('vmi import again (all deduplicated)', r.importAgain, importTarget, importStatus(r.importAgain)),
          rowCells('vmi export → raw file (fsyncs)', r.export, `vs cp; RSS ≤ ${f(T.rssBytes / MB, 0)} MB`, rssStatus(r.export)),
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
        ...plot('store-chunk-size.svg', 'Line chart: import throughput at 64 KiB, 256 KiB and 1 MiB chunks, against cp', () => chunkSizeChart(R, img, all?.mount)),
      )
    }
    out.push(`### What bounds it (${img.name})`, '', ...explain(R, img), '')
  }
  const imgs = R.images.filter((i) => !i.skipped)
  const keys = ['b3sum', 'cp', 'cpSync', 'importCold', 'importAgain', 'export']
  const throughput = () =>
    barChart({
      title: 'Import and export against cp and b3sum',
      subtitle: `measured ${R.startedAt.slice(0, 10)}, median of ${R.reps} runs; image size ÷ wall time`,
      yLabel: 'GB/s (10^9 bytes/s)',
      categories: ['b3sum', 'cp', 'cp + fsync', 'vmi import\n(empty store)', 'vmi import\nagain', 'vmi export'],
      series: imgs.map((img) => ({name: img.name, values: keys.map((k) => (img.rows[k]?.skipped ? undefined : img.size / img.rows[k].wall / GB))})),
      valueFormat: (v) => f(v),
      refLines: [{y: T.importBytesPerSecond / GB, label: `import goal: ${f(T.importBytesPerSecond / GB, 0)} GB/s`, color: '#888'}],
      legend: true,
    })
  if (imgs.length) out.push(...plot('store-throughput.svg', 'Bar chart: throughput of b3sum, cp, cp + fsync, vmi import, import again and export, per image', throughput))

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
          Math.max(p.importRssBytes, p.exportRssBytes) <= T.rssBytes ? 'met' : '**missed**',
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
          `Target "peak RSS ≤ 150 MB for any image size": **${s.points.every((p) => Math.max(p.importRssBytes, p.exportRssBytes) <= T.rssBytes) ? (pastOneShot ? 'met: every point ≤ 150 MB, the largest past the point where memory stops growing' : 'met at every size measured; not shown past the one-shot manifest limit') : 'missed'}**.`,
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
  return out
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
    perObjectS = Math.max(0, fit.b * j.newChunks)
    fitText = ` Across chunk sizes the same bytes cost wall ≈ ${f(fit.a)} s + ${f(fit.b * 1e6, 0)} µs × new objects (least squares over ${img.sweep.length} sizes), i.e. ≈ ${f(perObjectS)} s of this run is per-object cost (one file created per new chunk, both threads).`
  }
  const restS = r.importCold.wall - startS - mainS / threads - (perObjectS ?? 0)
  const need = img.size / R.targets.importBytesPerSecond
  const needCp = r.cp.wall / R.targets.importVsCp
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

/** Import throughput against chunk size: the store benchmark's sweep and the mount benchmark's imports of the Debian image (`M`, latest-mount.json). */
function chunkSizeChart(R, synth, M) {
  const goal = R.targets.importBytesPerSecond / GB
  const series = [
    {name: `vmi import, ${synth.name} (store benchmark, median of ${R.reps})`, points: synth.sweep.map((s) => [s.chunkSize / KiB, synth.size / s.wall / GB])},
    {name: `cp, ${synth.name} (anchor)`, dashed: true, marker: false, points: [64, 1024].map((k) => [k, synth.size / synth.rows.cp.wall / GB])},
  ]
  const seeds = M?.image?.seeds
  if (seeds) {
    const cs = Object.keys(seeds).map(Number).sort((a, b) => a - b)
    series.push({name: `vmi import, Debian image (mount benchmark, 1 run each)`, points: cs.map((c) => [c / KiB, M.image.size / seeds[c].importWall / GB])})
  }
  return lineChart({
    title: 'Import throughput against chunk size',
    subtitle: 'vmi import into an empty store; image size ÷ wall time',
    xLabel: 'chunk size (KiB)',
    yLabel: 'GB/s (10^9 bytes/s)',
    xLog: 2,
    xTicks: [64, 256, 1024],
    xFormat: String,
    series: [...series, {name: `goal: ${f(goal, 0)} GB/s`, dashed: true, marker: false, color: '#888', points: [[64, goal], [1024, goal]]}],
  })
}
