// @ts-check
// The synthetic benchmark image: random, zero (hole) and repeated regions,
// built once into a cache directory keyed by its spec.
import {createCipheriv, createHash} from 'node:crypto'
import {existsSync, promises as fsp} from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {GiB, MiB} from './format.js'

/** @typedef {{generator: string, size: number, align: number, seed: string, minRegion: number, maxRegion: number, weights: Record<string, number>, pattern?: string[]}} SyntheticSpec */
/** @typedef {{kind: string, offset: number, size: number, from?: number[]}} Region */

/**
 * The spec. Region lengths are drawn from a seeded PRNG in whole `align`
 * units (1 MiB: a multiple of every chunk size the bench uses, so repeated
 * regions line up with chunk boundaries and dedup finds them). `weights` are
 * the share of *regions* of each kind; the exact byte composition is
 * computed and reported.
 */
export const SYNTHETIC_SPEC = Object.freeze({
  generator: 'vmi-bench-synthetic/1',
  size: 2 * GiB,
  align: MiB,
  seed: 'vmi-bench-2026',
  minRegion: 1 * MiB,
  maxRegion: 48 * MiB,
  weights: Object.freeze({random: 0.5, zero: 0.25, repeat: 0.25}),
})

/** The cache base, like scripts/boot-image-path.sh: $VMI_CACHE_DIR or $XDG_CACHE_HOME/vmi or ~/.cache/vmi. */
export function cacheBase(env = process.env) {
  return env.VMI_CACHE_DIR || path.join(env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache'), 'vmi')
}

export function specKey(spec) {
  return createHash('sha256').update(JSON.stringify(spec)).digest('hex').slice(0, 16)
}

/** Deterministic PRNG (xorshift128+ seeded from sha256). */
function prng(seed) {
  const h = createHash('sha256').update(seed).digest()
  let s0 = h.readBigUInt64LE(0) | 1n
  let s1 = h.readBigUInt64LE(8) | 1n
  const M = (1n << 64n) - 1n
  return () => {
    let x = s0
    const y = s1
    s0 = y
    x = (x ^ (x << 23n)) & M
    s1 = x ^ y ^ (x >> 17n) ^ (y >> 26n)
    return Number(((s1 + y) & M) >> 11n) / 2 ** 53
  }
}

/** The region list for a spec: [{kind, offset, size, from?}] covering spec.size. */
/** @param {SyntheticSpec} spec @returns {Region[]} */
export function planRegions(spec) {
  const rnd = prng(spec.seed)
  const units = spec.size / spec.align
  const minU = spec.minRegion / spec.align
  const maxU = spec.maxRegion / spec.align
  const regions = []
  if (spec.pattern) {
    // a fixed layout: regions of minRegion, their kinds cycling through spec.pattern ('random' | 'zero')
    for (let u = 0, i = 0; u < units; u += minU, i++) regions.push({kind: spec.pattern[i % spec.pattern.length], offset: u * spec.align, size: Math.min(minU, units - u) * spec.align})
    return regions
  }
  const randomUnits = [] // unit offsets holding random data, for repeat sources
  let u = 0
  while (u < units) {
    let len = Math.min(units - u, minU + Math.floor(rnd() * (maxU - minU + 1)))
    const r = rnd()
    let kind = r < spec.weights.random ? 'random' : r < spec.weights.random + spec.weights.zero ? 'zero' : 'repeat'
    if (kind === 'repeat' && randomUnits.length === 0) kind = 'random'
    if (kind === 'repeat') {
      // copy `len` units of earlier random data, starting at a random earlier random unit;
      // each unit is copied from the list of random units (so the source may span regions)
      len = Math.min(len, randomUnits.length)
      const start = Math.floor(rnd() * (randomUnits.length - len + 1))
      regions.push({kind, offset: u * spec.align, size: len * spec.align, from: randomUnits.slice(start, start + len).map((x) => x * spec.align)})
    } else {
      regions.push({kind, offset: u * spec.align, size: len * spec.align})
      if (kind === 'random') for (let i = 0; i < len; i++) randomUnits.push(u + i)
    }
    u += len
  }
  return regions
}

/** Bytes and region counts per kind. */
export function composition(regions) {
  const out = {random: {bytes: 0, regions: 0}, zero: {bytes: 0, regions: 0}, repeat: {bytes: 0, regions: 0}}
  for (const r of regions) {
    out[r.kind].bytes += r.size
    out[r.kind].regions++
  }
  return out
}

/** AES-128-CTR keystream: fast deterministic pseudo-random bytes. */
function keystream(seed, offset, size) {
  const key = createHash('sha256').update(`${seed}:key`).digest().subarray(0, 16)
  const iv = Buffer.alloc(16)
  iv.writeBigUInt64BE(BigInt(offset / 16), 8) // counter = block index: position-dependent, no overlaps
  const c = createCipheriv('aes-128-ctr', key, iv)
  return c.update(Buffer.alloc(size))
}

/**
 * The image file of `spec` in the cache (`<cache>/bench/<prefix>-<spec hash>.raw`), reused while
 * it is complete (its `.complete` stamp is there) and the spec unchanged; else `build(fh)` writes
 * it into a temporary file, renamed and stamped when done.
 */
async function cachedImage(prefix, spec, log, what, build) {
  const file = path.join(cacheBase(), 'bench', `${prefix}-${specKey(spec)}.raw`)
  if (existsSync(file + '.complete') && existsSync(file) && (await fsp.stat(file)).size === spec.size) return {file, built: false, seconds: 0}
  await fsp.mkdir(path.dirname(file), {recursive: true})
  log(`building ${prefix} image ${file} (${what}, cached for later runs)`)
  const t0 = performance.now()
  const tmp = `${file}.tmp-${process.pid}`
  const fh = await fsp.open(tmp, 'w+')
  try {
    await build(fh)
    await fh.truncate(spec.size)
    await fh.sync()
  } finally {
    await fh.close()
  }
  await fsp.rename(tmp, file)
  await fsp.writeFile(file + '.complete', '')
  return {file, built: true, seconds: (performance.now() - t0) / 1000}
}

/** Build (or reuse) the synthetic image. Returns {file, spec, regions, composition, built, seconds}. */
/** @param {SyntheticSpec} [spec] @param {(msg: string) => void} [log] */
export async function ensureSyntheticImage(spec = SYNTHETIC_SPEC, log = () => {}) {
  const regions = planRegions(spec)
  const comp = composition(regions)
  const c = await cachedImage('synthetic', spec, log, `${spec.size / GiB} GiB`, async (fh) => {
    const piece = 16 * MiB
    for (const r of regions) {
      if (r.kind === 'zero') continue // a hole
      if (r.kind === 'random') {
        for (let o = 0; o < r.size; o += piece) {
          const n = Math.min(piece, r.size - o)
          await fh.write(keystream(spec.seed, r.offset + o, n), 0, n, r.offset + o)
        }
      } else {
        const buf = Buffer.allocUnsafe(spec.align)
        for (let i = 0; i < r.from.length; i++) {
          await fh.read(buf, 0, spec.align, r.from[i])
          await fh.write(buf, 0, spec.align, r.offset + i * spec.align)
        }
      }
    }
  })
  if (c.built) await fsp.writeFile(c.file + '.spec.json', JSON.stringify({spec, composition: comp, regions: regions.length}, null, 2) + '\n')
  return {...c, spec, regions, composition: comp}
}

/**
 * The RSS-scaling image: `size` bytes, sparse, where every `chunkSize` chunk
 * holds the same 4 KiB of non-zero bytes at its start (the rest is holes).
 * Every chunk is non-zero (so import hashes it and records an id for it)
 * but all are identical (so the store keeps one object): it grows the
 * per-chunk bookkeeping with image size while costing ~1/16 of the size on
 * disk at 64 KiB chunks and almost nothing in the store.
 */
/** @param {{size: number, chunkSize: number}} image @param {(msg: string) => void} [log] */
export async function ensureScaleImage({size, chunkSize}, log = () => {}) {
  const spec = {generator: 'vmi-bench-scale/1', size, chunkSize, stamp: 4096}
  const stamp = keystream('vmi-bench-scale', 0, spec.stamp)
  return cachedImage('scale', spec, log, `${size / GiB} GiB sparse, one 4 KiB stamp per ${chunkSize / 1024} KiB chunk`, async (fh) => {
    const batch = []
    for (let off = 0; off < size; off += chunkSize) {
      batch.push(fh.write(stamp, 0, stamp.length, off))
      if (batch.length >= 64) await Promise.all(batch.splice(0))
    }
    await Promise.all(batch)
  })
}

/** Bytes of `file` actually allocated on disk (its non-hole part, to block granularity). */
export async function allocatedBytes(file) {
  const st = await fsp.stat(file)
  return st.blocks * 512
}
