#!/usr/bin/env node
// @ts-check
// `npm run bench`: the benchmarks one after the other, each in its own process
// (bench/<kind>.js), then docs/PERFORMANCE.md rendered from bench/results/latest-*.json.
// See bench/README.md, "Which benchmarks".
//
// `--only store|dist|mount|writes|fleet|fleet-boot|compress|sim|s3[,…]`; default: all nine. With one
// alone every other argument goes to it; with several only --reps N does (the store benchmark,
// the first, gets them all), and --build runs once, first. `--render` only renders the doc.
import {execFileSync, spawnSync} from 'node:child_process'
import path from 'node:path'
import {ROOT} from './lib/common.js'

/** Seconds between two benchmarks of one run (see the loop below). */
const SETTLE_S = 120
const KNOWN = ['store', 'dist', 'mount', 'writes', 'fleet', 'fleet-boot', 'compress', 'sim', 's3']
const bench = (w) => path.join(ROOT, 'bench', `${w}.js`)

const argv = process.argv.slice(2)
if (argv.includes('--render')) {
  if (argv.length > 1) {
    console.error('bench: --render takes no other argument (it renders docs/PERFORMANCE.md from bench/results/latest-*.json)')
    process.exit(2)
  }
  process.exit(await renderDoc())
}
const at = argv.indexOf('--only')
const which = at >= 0 ? String(argv[at + 1] ?? '').split(',').filter(Boolean) : KNOWN
if (at >= 0 && (which.length === 0 || !which.every((w) => KNOWN.includes(w)))) {
  console.error(`bench: --only takes ${KNOWN.slice(0, -1).join(', ')} or s3 (comma-separated), got ${JSON.stringify(argv[at + 1] ?? '')}`)
  process.exit(2)
}
let rest = at >= 0 ? [...argv.slice(0, at), ...argv.slice(at + 2)] : argv
if (rest.includes('-h') || rest.includes('--help')) {
  if (which.length > 1)
    console.log(
      `npm run bench -- [--only ${KNOWN.join('|')}[,…]] [options]   (default: all nine; ${KNOWN.map((w) => `node bench/${w}.js --help`).join(', ')})\n` +
        'npm run bench -- --render                                      render docs/PERFORMANCE.md from bench/results/latest-*.json, measuring nothing\n',
    )
  process.exit(spawnSync(process.execPath, [bench(which.length === 1 ? which[0] : 'store'), '--help'], {stdio: 'inherit'}).status ?? 1)
}
if (which.length > 1 && rest.includes('--build')) {
  execFileSync('npm', ['run', 'build'], {cwd: ROOT, stdio: 'inherit'})
  rest = rest.filter((a) => a !== '--build')
}
const repsAt = rest.indexOf('--reps')
const common = repsAt >= 0 ? rest.slice(repsAt, repsAt + 2) : []
let status = 0
for (const [i, w] of which.entries()) {
  // each benchmark deletes its scratch stores when it ends; on this VM's journal-less ext4 the
  // file creations of the next minute or so are then several times slower (measured: a pull
  // started right after the store benchmark's clean-up took 1.60 s, the same pull 0.85 s five
  // minutes later), so the next benchmark starts after a pause
  if (i > 0) {
    process.stderr.write(`bench: ${SETTLE_S} s pause before ${w} (the previous benchmark just deleted its stores)\n`)
    await new Promise((r) => setTimeout(r, SETTLE_S * 1000))
  }
  const own = which.length === 1 || w === 'store' ? rest : w === 'sim' ? [] : common
  const r = spawnSync(process.execPath, [bench(w), ...own, ...(w === 'sim' ? ['--no-doc'] : [])], {stdio: 'inherit'})
  if (r.status !== 0) status = r.status ?? 1
}
const docStatus = await renderDoc()
process.exit(status || docStatus)

/** docs/PERFORMANCE.md and docs/img/*.svg from the saved results (bench/lib/perf-doc.js). */
async function renderDoc() {
  try {
    const {renderPerformanceDoc} = await import('./lib/perf-doc.js')
    const r = await renderPerformanceDoc({root: ROOT})
    process.stderr.write(`bench: rendered ${r.doc} and ${r.images.length} plots in docs/img/${r.missing.length ? ` (without ${r.missing.join(', ')})` : ''}\n`)
    return 0
  } catch (err) {
    process.stderr.write(`bench: could not render docs/PERFORMANCE.md: ${err.stack ?? err}\n`)
    return 1
  }
}
