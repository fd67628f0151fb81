// @ts-check
// What the benchmarks' markdown reports share: the head (machine, source,
// build, run), the goal table, the background-load section, and the goals of
// the store, distribution and mount benchmarks judged on their saved results.
// Each kind's body (bench/lib/<kind>-report.js) is written once, from its
// saved results: its report (renderReport) and docs/PERFORMANCE.md
// (bench/lib/perf-doc.js) show the same sections. The fleet lab's goals are in
// bench/lib/fleet-report.js (fleetGoals, bootGoals).
import {bytesHuman, f, GB, GiB, MB, MiB, table, times as x} from './format.js'
import {median} from './measure.js'

/** @typedef {{goal: string, result: string, met?: boolean}} Goal  (met undefined: no goal stated, shown for comparison) */

export const mark = (ok) => (ok ? 'met' : '**missed**')
const secs = (s) => `${f(s)} s`

/**
 * A report's title and first paragraph: the machine (and `tools`, what else
 * the benchmark names), the source and the dist/ build it measured, the run's
 * length and the load at its end.
 */
export function reportHead(R, title, tools) {
  const m = R.machine
  const g = R.git
  return [
    `# ${title} — ${R.startedAt.slice(0, 10)}`,
    '',
    `Machine: ${m.cpuModel}, ${m.cores} cores${m.simd?.length ? ` (${m.simd.join(', ')})` : ''}, ${f(m.ramBytes / GiB, 1)} GiB RAM, ${m.kernel}, node ${m.node}; hash backend **${m.hashBackend}**; ${tools}. ` +
      `Source: git ${g.head}${g.dirtySrcFiles ? `, ${g.dirtySrcFiles} uncommitted file(s) in src/` : ''}${g.distOlderThanSrc ? ', **dist/ is older than src/ (stale build?)**' : ''}; ` +
      `dist/ ${g.distAtStart}${g.distAtEnd !== g.distAtStart ? ` → ${g.distAtEnd} (**rebuilt during the run: the numbers mix two builds**)` : ' (unchanged during the run)'}. ` +
      `Started ${R.startedAt.slice(11, 19)} UTC, total ${f(R.totalSeconds, 0)} s; load average at end ${R.loadAverageAtEnd.join(' ')}.`,
    '',
  ]
}

/**
 * What a kind's body gets: `plot(name, alt, make)` adds the chart `make()` draws (docs/PERFORMANCE.md
 * only; a report has none: it returns no line), `bg` collects the measurements other processes disturbed
 * (noteBusy), `all` is every kind's saved results (the doc's, for charts that compare two kinds).
 * @typedef {{plot: (name: string, alt: string, make: () => string) => string[], bg: string[], all?: Record<string, any>}} BodyContext
 */

/**
 * A benchmark's markdown report: its head, `intro` lines, the goal table, the body that
 * docs/PERFORMANCE.md shows too, and the measurements other processes disturbed (`background`: the
 * body notes them).
 * @param {Record<string, any>} R @param {{title: string, tools: string, intro?: string[], goals?: Goal[], body: (R: Record<string, any>, ctx: BodyContext) => string[], background?: boolean}} o
 */
export function renderReport(R, {title, tools, intro = [], goals = [], body, background = true}) {
  const bg = []
  const out = [...reportHead(R, title, tools), ...intro]
  if (goals.length) out.push('## Goals', '', goalTable(goals), '')
  out.push(...body(R, {plot: () => [], bg}))
  if (background) out.push(...backgroundSection(bg))
  return out.join('\n')
}

/** Notes in `bg` a measurement that other processes disturbed: they used > 0.2 cores (`cores`, the median of `runs` runs), or `busyStarts` runs started before the machine went idle. */
export function noteBusy(bg, label, cores, busyStarts = 0, runs = 1) {
  if (cores > 0.2 || busyStarts)
    bg.push(`- ${label}: other processes used ${f(cores)} cores${runs > 1 ? ' (median)' : ''}${busyStarts ? `; ${runs > 1 ? `${busyStarts} of ${runs} runs` : 'it'} started before the machine went idle` : ''}`)
}

/** The end of a report: which measurements other processes disturbed (`bg`, one line each), or that none was. */
export function backgroundSection(bg) {
  if (!bg.length) return ['No measurement had other processes using more than 0.2 cores.', '']
  return ['## Background load', '', 'Other processes used CPU during these measurements (pessimistic numbers; re-run on an idle machine to confirm):', '', ...bg, '']
}

/** A report's goal table: goal, result, status. @param {Goal[]} goals */
export function goalTable(goals) {
  return table(['goal', 'result', 'status'], goals.map((g) => [g.goal, g.result, g.met === undefined ? '' : mark(g.met)]))
}

/** @returns {Goal[]} */
export function storeGoals(S) {
  const T = S.targets
  const rows = []
  for (const img of S.images.filter((i) => !i.skipped)) {
    const r = img.rows
    for (const [row, what] of [
      [r.importCold, 'import into an empty store'],
      [r.importAgain, 'import again (all deduplicated)'],
    ]) {
      const rate = img.size / row.wall
      rows.push({goal: `store: ${what} ≥ ${f(T.importBytesPerSecond / GB, 0)} GB/s and ≥ ${T.importVsCp}× cp (${img.name})`, result: `${f(rate / GB)} GB/s; ${x(r.cp.wall / row.wall)} cp`, met: rate >= T.importBytesPerSecond && r.cp.wall / row.wall >= T.importVsCp})
    }
    const worst = Math.max(...[r.importCold, r.importAgain, r.export, ...(img.sweep ?? [])].map((y) => y.rssBytes))
    rows.push({goal: `store: peak RSS ≤ ${f(T.rssBytes / MB, 0)} MB, every vmi run (${img.name})`, result: `worst ${f(worst / MB, 0)} MB`, met: worst <= T.rssBytes})
  }
  if (S.scale?.points?.length) {
    const big = S.scale.points.at(-1)
    const worst = Math.max(...S.scale.points.flatMap((p) => [p.importRssBytes, p.exportRssBytes]))
    rows.push({goal: `store: peak RSS ≤ ${f(T.rssBytes / MB, 0)} MB for any image size`, result: `${bytesHuman(big.size)} sparse image: import ${f(big.importRssBytes / MB, 0)} MB, export ${f(big.exportRssBytes / MB, 0)} MB`, met: worst <= T.rssBytes})
  }
  return rows
}

/** @returns {Goal[]} */
export function distGoals(D) {
  const p = D.pull
  const ratio = p.curlFile.wall / p.pullNginx.wall
  const worst = Math.max(...D.fleet.map((y) => y.seedRatio))
  return [
    {goal: `distribution: vmi pull ≥ ${D.targets.pullVsCurl}× faster than curl of the raw file from the same nginx`, result: `${x(ratio)} (${secs(p.pullNginx.wall)} vs ${secs(p.curlFile.wall)})`, met: ratio >= D.targets.pullVsCurl},
    {goal: `distribution: seed egress ≈ one copy of the unique non-zero bytes for any number of hosts (read here as ≤ 1.05×)`, result: D.fleet.map((y) => `${y.hosts}: ${f(y.seedRatio, 3)}×`).join('; '), met: worst <= 1.05},
    ...pushGoals(D),
  ]
}

/** Issue 18's push goals, for runs that measured them (the re-push came with object batches). */
function pushGoals(D) {
  const T = D.targets
  const P = D.push
  if (!P?.repush || T.pushVsCp === undefined) return []
  const vsCp = P.cp.wall / P.push.wall
  const vsPull = P.push.wall / D.pull.pullServe.wall
  const extra = P.repush.wall - D.inproc.startup
  return [
    {goal: `distribution: push to an empty vmi serve ≥ ${T.pushVsCp}× the speed of cp of the raw file`, result: `${x(vsCp)} (${secs(P.push.wall)} vs ${secs(P.cp.wall)})`, met: vsCp >= T.pushVsCp},
    {goal: `distribution: push within ${T.pushVsPull}× of a pull of the same image from the same vmi serve`, result: `${x(vsPull)} (${secs(P.push.wall)} vs ${secs(D.pull.pullServe.wall)})`, met: vsPull <= T.pushVsPull},
    {goal: `distribution: a re-push adding ${T.repushChanged / MiB} MiB of changed chunks in under ${T.repushSeconds} s plus start-up`, result: `${secs(P.repush.wall)} = start-up ${secs(D.inproc.startup)} + ${secs(extra)}`, met: extra < T.repushSeconds},
  ]
}

/** The boot from the local raw file: the median of the run's first and last. */
export function rawBootAnchor(M) {
  const r = M?.boots?.runs
  return median([r?.rawFirst?.boot?.markerS, r?.rawLast?.boot?.markerS])
}

/** @returns {Goal[]} */
export function mountGoals(M) {
  const T = M.targets
  const rows = []
  for (const p of M.reads?.patterns ?? []) rows.push({goal: `mount: cached reads ≥ ${T.readsVsNbdkit}× nbdkit, ${p.label}`, result: `${x(p.ratio)} (${f(p.vmi.bytesPerSecond / MB, 0)} vs ${f(p.nbdkit.bytesPerSecond / MB, 0)} MB/s)`, met: p.ratio >= T.readsVsNbdkit})
  const anchor = rawBootAnchor(M)
  const guest = M.boots?.runs?.nbdkitLog?.footprint
  for (const [k, label] of [
    ['cold', 'cold lazy boot'],
    ['coldProfile', 'cold lazy boot with the boot profile'],
  ]) {
    const b = M.boots?.runs?.[k]
    if (!b) continue
    const r = b.boot?.markerS / anchor
    rows.push({goal: `mount: ${label} ≤ ${T.coldBootVsLocal}× the boot from the local raw file`, result: b.boot?.ok ? `${x(r)} (${secs(b.boot.markerS)} vs ${secs(anchor)})` : 'boot failed', met: Boolean(b.boot?.ok) && r <= T.coldBootVsLocal})
    if (guest) {
      const fr = b.seedBytes / guest.uniqueBytes
      rows.push({goal: `mount: ${label}, bytes from the seed ≤ ${T.fetchedVsRead}× the bytes the guest read`, result: `${x(fr)} (${bytesHuman(b.seedBytes)} vs ${bytesHuman(guest.uniqueBytes)})`, met: fr <= T.fetchedVsRead})
    }
  }
  return rows
}
