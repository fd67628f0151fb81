#!/usr/bin/env node
// @ts-check
// Sub-block writes through `vmi mount`'s copy-on-write overlay: `node bench/writes.js` (or
// `npm run bench -- --only writes`): qemu-img bench -w against nbdkit's file plugin with its cow
// filter, and with `--old DIR` another build; see bench/README.md, "writes". Writes
// bench/results/<date>-writes.md and latest-writes.json; never fails on a missed goal.
import {randomBytes} from 'node:crypto'
import {promises as fsp} from 'node:fs'
import path from 'node:path'
import {f, int} from './lib/format.js'
import {stats} from './lib/measure.js'
import {KiB, MiB, parseOptions, prepare, prepSettings, startRun, vmiTimed, withServers} from './lib/common.js'
import {qemuImgBench, startMount, startNbdkit} from './lib/mount-nbd.js'
import {renderWritesReport} from './lib/mount-report.js'

const {reps, old: oldDir} = parseOptions(
  'writes',
  {
    reps: ['--reps N', 5, Number, 'runs per row, contenders alternating'],
    old: ['--old DIR', undefined, String, 'another built checkout of vmi as a third contender (an A/B of two builds)'],
  },
  (o) => (!Number.isInteger(o.reps) || o.reps < 1) && '--reps must be a positive integer',
)
const IMAGE = 256 * MiB
const STRIDE = 4 * KiB * 97 // scattered: one request every 97 blocks, wrapping inside the image

/** @type {{key: string, label: string, size: number, depth: number, count: number, step: number, offset: number, write: true}[]} */
const PATTERNS = [
  {key: 'w1k_d1', label: '1 KiB writes (read-modify-write), depth 1', size: KiB, depth: 1, count: 8000, step: STRIDE, offset: 1536, write: true},
  {key: 'w1k_d16', label: '1 KiB writes (read-modify-write), depth 16', size: KiB, depth: 16, count: 20000, step: STRIDE, offset: 1536, write: true},
  {key: 'w4k_d1', label: '4 KiB aligned writes, depth 1', size: 4 * KiB, depth: 1, count: 8000, step: STRIDE, offset: 0, write: true},
  {key: 'w4k_d16', label: '4 KiB aligned writes, depth 16', size: 4 * KiB, depth: 16, count: 20000, step: STRIDE, offset: 0, write: true},
]

const run = await startRun('writes', {tools: ['qemu-img', 'nbdkit']})
const {log, workDir} = run
const settings = prepSettings()
const raw = path.join(workDir, 'disk.raw')
{
  const fh = await fsp.open(raw, 'w')
  for (let off = 0; off < IMAGE / 2; off += 16 * MiB) await fh.write(randomBytes(16 * MiB), 0, 16 * MiB, off)
  await fh.truncate(IMAGE)
  await fh.close()
}
const store = path.join(workDir, 'store')
const imp = await vmiTimed(['import', raw, 'bench:writes', '--json'], store, {scratch: workDir})
const id = imp.json.id
log(`image ${IMAGE / MiB} MiB (half random, half zeros), id ${id.slice(0, 12)}; ${reps} repetitions, contenders alternating`)

const contenders = [
  {key: 'nbdkit', label: 'nbdkit file plugin + cow filter (anchor)'},
  {key: 'vmi', label: 'vmi mount (this build)'},
  ...(oldDir ? [{key: 'old', label: `vmi mount (build in ${oldDir})`, bin: path.join(path.resolve(oldDir), 'bin', 'run.js')}] : []),
]

/** Start a fresh server of contender `c`; returns {uri, pid, stop}. */
async function start(c, run) {
  if (c.key === 'nbdkit') {
    const n = await startNbdkit({file: raw, socket: path.join(workDir, `nbdkit-${run}.sock`), filters: ['cow'], writable: true})
    return {uri: n.uri, pid: n.pid, stop: () => n.stop()}
  }
  const m = await startMount(store, [id, '--prefetch', 'none', '--overlay', path.join(workDir, `ovl-${c.key}-${run}`)], {bin: c.bin})
  return {uri: m.uri, pid: m.pid, stop: () => m.stop()}
}

/** @type {Record<string, Record<string, any[]>>} */
const runs = Object.fromEntries(PATTERNS.map((p) => [p.key, Object.fromEntries(contenders.map((c) => [c.key, []]))]))
let serverCount = 0
for (let r = 0; r < reps; r++) {
  for (const pat of PATTERNS) {
    for (const c of r % 2 ? [...contenders].reverse() : contenders) {
      const server = await start(c, serverCount++)
      try {
        const p = await prepare({files: [raw], dirs: [path.join(store, 'objects')]}, settings)
        const res = await withServers([server.pid], () => qemuImgBench(server.uri, pat, {scratch: workDir}))
        runs[pat.key][c.key].push({seconds: res.seconds, serverCpu: res.serverCpu, othersCores: res.othersCores, ...p})
        log(`  ${pat.label}, ${c.key} #${r + 1}: ${f(res.seconds, 3)} s, ${int(pat.count / res.seconds)} IOPS, server CPU ${f(res.serverCpu / res.seconds)} cores`)
      } finally {
        await server.stop()
      }
    }
  }
}

const rows = PATTERNS.map((pat) => {
  const s = Object.fromEntries(contenders.map((c) => [c.key, stats(runs[pat.key][c.key].map((x) => x.seconds))]))
  return {...pat, seconds: s, ratio: s.nbdkit.median / s.vmi.median, ratioOld: oldDir ? s.old.median / s.vmi.median : undefined, runs: runs[pat.key]}
})
await run.finish({image: {size: IMAGE, id}, reps, old: oldDir, patterns: rows}, renderWritesReport)
