// @ts-check
// Would compressing chunks on the wire help? In-process measurement on the
// image's real chunks (the store's object files): per chunk, as a server
// would send it, Node's zlib gzip level 1 and brotli quality 1 (the fastest
// useful settings of the two codecs Node ships; zstd is not in Node 20's
// zlib), compress and decompress speed on one core and the size ratio. As a
// reference for a faster codec, the zstd CLI (`zstd -1 -T1`) over the
// concatenated chunks, when installed (a stream, so its ratio is slightly
// better than per-chunk compression would get).
import {spawn} from 'node:child_process'
import {promises as fsp} from 'node:fs'
import zlib from 'node:zlib'
import {hasCommand} from './measure.js'
import {shuffled} from './common.js'

const CODECS = {
  'gzip -1': {
    compress: (b) => zlib.gzipSync(b, {level: 1}),
    decompress: (b) => zlib.gunzipSync(b),
  },
  'brotli -q 1': {
    compress: (b) => zlib.brotliCompressSync(b, {params: {[zlib.constants.BROTLI_PARAM_QUALITY]: 1, [zlib.constants.BROTLI_PARAM_SIZE_HINT]: b.length}}),
    decompress: (b) => zlib.brotliDecompressSync(b),
  },
}

/**
 * objects: [{file, size}] (the image's distinct non-zero chunks). Chunks are
 * loaded into memory first (not timed), then each codec runs over them in a
 * seeded random order until all are done or `maxSecondsPerCodec` of
 * compression time passed (then the result is a random sample; coverage is
 * reported). Times are the codec calls alone, on this one thread.
 */
/** @param {{file: string, size: number}[]} objects @param {{maxSecondsPerCodec?: number, log?: (msg: string) => void}} [opts] */
export async function compressionStudy(objects, {maxSecondsPerCodec = 12, log = () => {}} = {}) {
  const order = shuffled(objects, 'vmi-bench-compress')
  const bufs = []
  let total = 0
  for (const o of order) {
    const b = await fsp.readFile(o.file)
    bufs.push(b)
    total += b.length
  }
  const out = {chunks: bufs.length, bytes: total, codecs: {}}
  for (const [name, c] of Object.entries(CODECS)) {
    let inBytes = 0
    let outBytes = 0
    let cSec = 0
    let dSec = 0
    let n = 0
    let incompressible = 0
    for (const b of bufs) {
      const t0 = process.hrtime.bigint()
      const z = c.compress(b)
      const t1 = process.hrtime.bigint()
      const back = c.decompress(z)
      const t2 = process.hrtime.bigint()
      if (back.length !== b.length || (n % 97 === 0 && !back.equals(b))) throw new Error(`${name}: round trip failed`)
      cSec += Number(t1 - t0) / 1e9
      dSec += Number(t2 - t1) / 1e9
      inBytes += b.length
      // a sender would send the raw chunk when compression does not shrink it
      outBytes += Math.min(z.length, b.length)
      if (z.length >= b.length) incompressible++
      n++
      if (cSec > maxSecondsPerCodec) break
    }
    out.codecs[name] = {
      chunks: n,
      coverage: inBytes / total,
      inBytes,
      outBytes,
      ratio: outBytes / inBytes,
      incompressibleChunks: incompressible,
      compressBytesPerSecond: inBytes / cSec,
      decompressBytesPerSecond: inBytes / dSec,
      compressSeconds: cSec,
      decompressSeconds: dSec,
    }
    log(`  ${name}: ${((100 * outBytes) / inBytes).toFixed(1)} % of ${(inBytes / 1e6).toFixed(0)} MB, compress ${(inBytes / cSec / 1e6).toFixed(0)} MB/s, decompress ${(inBytes / dSec / 1e6).toFixed(0)} MB/s`)
  }
  if (hasCommand('zstd')) {
    const run = (args, input) =>
      new Promise((resolve, reject) => {
        const t0 = performance.now()
        const ch = spawn('zstd', args, {stdio: ['pipe', 'pipe', 'ignore']})
        const parts = []
        let n = 0
        ch.stdout.on('data', (d) => {
          n += d.length
          if (args.includes('-d') === false) parts.push(d)
        })
        ch.on('error', reject)
        ch.on('close', (code) => (code === 0 ? resolve({bytes: n, seconds: (performance.now() - t0) / 1000, out: Buffer.concat(parts)}) : reject(new Error(`zstd exited ${code}`))))
        ;(async () => {
          for (const b of input) if (!ch.stdin.write(b)) await new Promise((r) => ch.stdin.once('drain', r))
          ch.stdin.end()
        })()
      })
    const c = await run(['-1', '-T1', '-q', '-c'], bufs)
    const d = await run(['-d', '-q', '-c'], [c.out])
    out.codecs['zstd -1 (CLI, one stream)'] = {
      chunks: bufs.length,
      coverage: 1,
      inBytes: total,
      outBytes: c.bytes,
      ratio: c.bytes / total,
      compressBytesPerSecond: total / c.seconds,
      decompressBytesPerSecond: total / d.seconds,
      compressSeconds: c.seconds,
      decompressSeconds: d.seconds,
      note: 'wall time of the zstd process including piping the data through it; one stream over all chunks',
    }
    log(`  zstd -1: ${((100 * c.bytes) / total).toFixed(1)} %, compress ${(total / c.seconds / 1e6).toFixed(0)} MB/s, decompress ${(total / d.seconds / 1e6).toFixed(0)} MB/s`)
  }
  return out
}
