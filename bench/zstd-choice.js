#!/usr/bin/env node
// @ts-check
// Which zstd library for compressed chunks (issue 18)? A one-off measurement behind
// bench/results/2026-12-06-zstd-choice.md; not part of `npm run bench`, and the candidates are
// not vmi dependencies: each is installed into its own scratch directory first,
// LIBS/<dir>/node_modules (the `dir` column of CANDIDATES; zstd-napi is also the reference that
// makes frames for the decoder-only libraries and checks every library's frames; @oneidentity/zstd-js
// is left out: its frames are not standard zstd, see the results file). Then
//   node bench/zstd-choice.js --libs LIBS --objects STORE/objects [--runs 3] [--levels 1,3,9] [--out FILE]
// Every object file (one chunk) is compressed by one call, then every frame decompressed by one
// call, one library per child process, on this one thread (async APIs awaited one at a time);
// each run goes through the levels and, within a level, through the libraries and the zstd CLI
// (`zstd -b -B<chunk> -T1`, independent chunk-sized blocks: the same unit) in an order rotated
// every run. Before each measurement it waits for the rest of the machine to be idle (waitQuiet;
// at most --quiet-wait seconds per run) and records the load and the other processes' CPU.
import {execFileSync, spawnSync} from 'node:child_process'
import {readdirSync, readFileSync, writeFileSync} from 'node:fs'
import {createRequire} from 'node:module'
import os from 'node:os'
import path from 'node:path'
import {pathToFileURL} from 'node:url'
import {parseArgs} from 'node:util'
import {pretouch} from './lib/measure.js'

const {values: o, positionals} = parseArgs({
  allowPositionals: true,
  options: {
    libs: {type: 'string', default: '/tmp/zs/inst'},
    objects: {type: 'string', default: '/tmp/zs/store/objects'},
    runs: {type: 'string', default: '3'},
    levels: {type: 'string', default: '1,3,9'},
    only: {type: 'string'},
    'quiet-wait': {type: 'string', default: '900'},
    out: {type: 'string', default: '/tmp/zs/zstd-choice.json'},
    worker: {type: 'boolean', default: false},
  },
})

/** @typedef {{compress?: (b: Uint8Array) => Uint8Array | Promise<Uint8Array>, decompress: (b: Uint8Array, size: number) => Uint8Array | Promise<Uint8Array>}} Codec */
/** @type {Record<string, {dir: string, load: (req: NodeRequire, level: number) => Promise<Codec>}>} */
const CANDIDATES = {
  'zstd-napi': {dir: 'zstd-napi', load: async (req, level) => {
    const z = req('zstd-napi')
    const c = new z.Compressor()
    c.setParameters({compressionLevel: level})
    const d = new z.Decompressor()
    return {compress: (b) => c.compress(b), decompress: (b) => d.decompress(b)}
  }},
  '@toondepauw/node-zstd': {dir: '_toondepauw_node-zstd', load: async (req, level) => {
    const z = req('@toondepauw/node-zstd')
    const e = new z.Encoder(level)
    const d = new z.Decoder()
    return {compress: (b) => e.encodeSync(b), decompress: (b) => d.decodeSync(b)}
  }},
  '@toondepauw/node-zstd async': {dir: '_toondepauw_node-zstd', load: async (req, level) => {
    const z = req('@toondepauw/node-zstd')
    const e = new z.Encoder(level)
    const d = new z.Decoder()
    return {compress: (b) => e.encode(b), decompress: (b) => d.decode(b)}
  }},
  '@mongodb-js/zstd@1.2.2': {dir: '_mongodb-js_zstd_1.2.2', load: async (req, level) => {
    const z = req('@mongodb-js/zstd')
    return {compress: (b) => z.compress(b, level), decompress: (b) => z.decompress(b)}
  }},
  '@bokuweb/zstd-wasm': {dir: '_bokuweb_zstd-wasm', load: async (req, level) => {
    const z = req('@bokuweb/zstd-wasm')
    await z.init()
    return {compress: (b) => z.compress(b, level), decompress: (b) => z.decompress(b)}
  }},
  'zstd-codec': {dir: 'zstd-codec', load: async (req, level) => {
    const z = req('zstd-codec')
    const simple = await new Promise((resolve) => z.ZstdCodec.run((/** @type {any} */ m) => resolve(new m.Simple())))
    return {compress: (b) => simple.compress(b, level), decompress: (b) => simple.decompress(b)}
  }},
  'fzstd (decoder)': {dir: 'fzstd', load: async (req) => {
    const z = req('fzstd')
    return {decompress: (b) => z.decompress(b)}
  }},
  'zstddec (decoder)': {dir: 'zstddec', load: async (req) => {
    const {ZSTDDecoder} = await import(pathToFileURL(req.resolve('zstddec')).href)
    const d = new ZSTDDecoder()
    await d.init()
    return {decompress: (b, size) => d.decode(b, size)}
  }},
}

const requireIn = (/** @type {string} */ dir) => createRequire(path.join(o.libs, dir, 'package.json'))
const objectFiles = () =>
  readdirSync(o.objects).sort().flatMap((d) => readdirSync(path.join(o.objects, d)).sort().map((f) => path.join(o.objects, d, f)))

/** One library at one level, in this process; prints one JSON line. */
async function worker(/** @type {string} */ name, /** @type {number} */ level) {
  const chunks = objectFiles().map((f) => readFileSync(f))
  const bytes = chunks.reduce((n, c) => n + c.length, 0)
  // Read one byte of every page first: on this VM the first touch of each freshly read page costs
  // ~5 µs (0.8 s for the 616 MiB here), which would otherwise be charged to the first timed pass.
  let touched = 0
  for (const c of chunks) for (let i = 0; i < c.length; i += 4096) touched += c[i]
  const t0 = performance.now()
  const codec = await CANDIDATES[name].load(requireIn(CANDIDATES[name].dir), level)
  const initMs = performance.now() - t0
  const ref = await CANDIDATES['zstd-napi'].load(requireIn('zstd-napi'), level)
  const compress = codec.compress ?? /** @type {NonNullable<Codec['compress']>} */ (ref.compress)
  for (const c of chunks.slice(0, 100)) await codec.decompress(await compress(c), c.length) // warm-up (JIT, WASM tier-up)
  // Timed passes keep only the output's length, as vmi would write a frame or a chunk out and drop
  // it (keeping 616 MiB of outputs alive would time first-touch page faults, not the codec).
  /** @param {(i: number) => any} f */
  const timed = async (f, n = chunks.length) => {
    let outBytes = 0
    const cpu = process.cpuUsage()
    const t = performance.now()
    for (let i = 0; i < n; i++) outBytes += (await f(i)).length
    const seconds = (performance.now() - t) / 1000
    const u = process.cpuUsage(cpu)
    return {outBytes, seconds, cpu: (u.user + u.system) / 1e6}
  }
  const c = codec.compress ? await timed((i) => compress(chunks[i])) : null
  /** @type {Uint8Array[]} */
  const frames = []
  for (const chunk of chunks) frames.push(Uint8Array.prototype.slice.call(await compress(chunk))) // untimed
  const d = await timed((i) => codec.decompress(frames[i], chunks[i].length))
  if (d.outBytes !== bytes) throw new Error(`${name}: decompressed ${d.outBytes} bytes of ${bytes}`)
  for (let i = 0; i < chunks.length; i++) {
    if (Buffer.compare(/** @type {Uint8Array} */ (await codec.decompress(frames[i], chunks[i].length)), chunks[i]) !== 0)
      throw new Error(`${name}: chunk ${i} did not round-trip`)
    if (codec.compress && Buffer.compare(/** @type {Uint8Array} */ (await ref.decompress(frames[i], chunks[i].length)), chunks[i]) !== 0)
      throw new Error(`${name}: chunk ${i}: the reference decoder disagrees`)
  }
  const tiny = chunks[0].subarray(0, 64)
  const tinyFrame = await compress(tiny)
  const callsC = codec.compress ? await timed(() => compress(tiny)) : null
  const callsD = await timed(() => codec.decompress(tinyFrame, tiny.length))
  const compressed = frames.reduce((n, f) => n + f.length, 0)
  const cpuAll = process.cpuUsage()
  console.log(JSON.stringify({
    name, level, chunks: chunks.length, bytes, compressed, initMs, touched: touched > 0,
    compressSeconds: c && c.seconds, compressCpu: c && c.cpu, decompressSeconds: d.seconds, decompressCpu: d.cpu,
    calls: chunks.length, callsCompressMs: callsC && callsC.seconds * 1000, callsDecompressMs: callsD.seconds * 1000,
    processCpu: (cpuAll.user + cpuAll.system) / 1e6,
  }))
}

/** The zstd CLI's own benchmark over the chunks concatenated, cut back into chunk-sized blocks. */
function cli(/** @type {string} */ concat, /** @type {number} */ level, /** @type {number} */ chunkSize) {
  const out = execFileSync('zstd', ['-q', `-b${level}`, `-B${chunkSize}`, '-T1', '-i1', concat], {encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe']})
  const m = /^\s*-?\d+#?\s+(\d+)\s+\(\s*([\d.]+)\)\s+([\d.]+) MB\/s\s+([\d.]+) MB\/s/m.exec(out)
  if (!m) throw new Error(`zstd -b: unexpected output: ${out}`)
  const bytes = readFileSync(concat).length
  return {name: 'zstd CLI', level, bytes, compressed: Number(m[1]), compressMBs: Number(m[3]), decompressMBs: Number(m[4])}
}

const busyJiffies = () => {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number)
  return f.reduce((a, b) => a + b, 0) - f[3] - f[4] // all but idle and iowait
}

/**
 * Waits until the rest of the machine is idle: under 0.1 core busy over 5 s (this driver sleeps
 * meanwhile), at most run.budget seconds per run. The 1-min load average is recorded, not waited
 * on: each measurement's own child lifts it near 1.0 for a minute after it ends.
 */
async function waitQuiet(/** @type {{budget: number}} */ run) {
  for (;;) {
    const b0 = busyJiffies()
    await new Promise((r) => setTimeout(r, 5000))
    run.budget -= 5
    const othersCores = (busyJiffies() - b0) / 100 / 5
    if (othersCores < 0.1 || run.budget <= 0) return {load1: os.loadavg()[0], othersCores}
  }
}

async function driver() {
  const levels = o.levels.split(',').map(Number)
  const names = [...Object.keys(CANDIDATES).filter((n) => !o.only || o.only.split(',').includes(n)), 'zstd CLI']
  const files = objectFiles()
  const chunkSize = Math.max(...files.slice(0, 10).map((f) => readFileSync(f).length))
  const concat = path.join(os.tmpdir(), 'zstd-choice-chunks.bin')
  writeFileSync(concat, Buffer.concat(files.map((f) => readFileSync(f)))) // fits: 616 MiB here
  const results = []
  for (let run = 0; run < Number(o.runs); run++) {
    const budget = {budget: Number(o['quiet-wait'])}
    for (const level of levels) {
      const order = names.map((_, i) => names[(i + run) % names.length])
      for (const name of order) {
        const {load1, othersCores} = await waitQuiet(budget)
        pretouch(1.5 * 1024 ** 3) // this VM hands freed pages back to the host (bench/lib/measure.js)
        const busy0 = busyJiffies()
        let r
        if (name === 'zstd CLI') {
          const t = performance.now()
          r = {...cli(concat, level, chunkSize), wallSeconds: (performance.now() - t) / 1000}
        } else {
          const ch = spawnSync(process.execPath, [process.argv[1], '--worker', '--libs', o.libs, '--objects', o.objects, name, String(level)], {encoding: 'utf8', maxBuffer: 1 << 24})
          if (ch.status !== 0) { console.error(`${name} -${level}: failed: ${ch.stderr.slice(-300)}`); continue }
          r = JSON.parse(ch.stdout.trim().split('\n').pop() ?? '')
        }
        const busy = (busyJiffies() - busy0) / 100 // seconds of CPU by everyone (USER_HZ = 100)
        r = {...r, run, load1, othersCoresBefore: othersCores, othersCpuSeconds: r.processCpu !== undefined ? Math.max(0, busy - r.processCpu) : null}
        results.push(r)
        const mbs = (/** @type {number|null} */ s) => (s ? (r.bytes / s / 1e6).toFixed(0) : '-')
        console.error(`run ${run + 1} -${level} ${name}: ${((100 * r.compressed) / r.bytes).toFixed(2)} %, ` +
          (r.name === 'zstd CLI' ? `${r.compressMBs} / ${r.decompressMBs}` : `${mbs(r.compressSeconds)} / ${mbs(r.decompressSeconds)}`) +
          ` MB/s, load ${load1.toFixed(2)}, others ${othersCores.toFixed(2)} core before, ${r.othersCpuSeconds?.toFixed(1)} CPU-s during`)
        writeFileSync(o.out, JSON.stringify({machine: {cpus: os.cpus().length, model: os.cpus()[0].model, node: process.version}, results}, null, 1))
      }
    }
  }
}

if (o.worker) {
  await worker(positionals[0], Number(positionals[1])).catch((e) => {
    console.error(String(e?.stack ?? e).slice(0, 500)) // some libraries throw from one minified line
    process.exit(1)
  })
}
else await driver()
