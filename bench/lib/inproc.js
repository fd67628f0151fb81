// @ts-check
// In-process component speeds, using vmi's public API (dist/index.js): what one
// core hashes, how fast the all-zero check is, and what the store's object
// write path costs per object and per byte. These explain the end-to-end
// numbers ("what bounds it"); they are not the headline.
import {randomBytes} from 'node:crypto'
import {promises as fsp} from 'node:fs'
import path from 'node:path'
import {pool, settle} from './measure.js'

/** @typedef {import('./common.js').Vmi} Vmi */

function rate(bytes, seconds) {
  return bytes / seconds
}

/** Bytes/s of hash() (hex digest included, as import uses it) on one core, for `chunkSize` buffers. */
/** @param {Vmi} dist @param {number} chunkSize */
export function hashSpeed(dist, chunkSize, seconds = 0.6) {
  const bufs = Array.from({length: Math.max(8, Math.ceil((32 << 20) / chunkSize))}, () => randomBytes(chunkSize))
  for (const b of bufs.slice(0, 4)) dist.hash(b) // warm up
  let n = 0
  const t0 = performance.now()
  while (performance.now() - t0 < seconds * 1000) for (const b of bufs) n += (dist.hash(b), b.length)
  return rate(n, (performance.now() - t0) / 1000)
}

/** Bytes/s of isAllZero() on an all-zero chunk (its worst case). */
/** @param {Vmi} dist @param {number} chunkSize */
export function zeroCheckSpeed(dist, chunkSize, seconds = 0.3) {
  const z = Buffer.alloc(chunkSize)
  let n = 0
  const t0 = performance.now()
  while (performance.now() - t0 < seconds * 1000) n += (dist.isAllZero(z), z.length)
  return rate(n, (performance.now() - t0) / 1000)
}

/**
 * The store's object write path alone (LocalStore.putObject, `concurrency`
 * in flight as import does): `count` new objects of `chunkSize` bytes into a
 * fresh store, then the same ids again (what a fully deduplicated import
 * asks of it), then reads them back with getObject (page cache warm) one
 * at a time and `concurrency` at a time. Returns per-object costs.
 */
/**
 * @param {Vmi} dist @param {string} dir
 * @param {{chunkSize: number, count: number, concurrency: number, discard?: (dir: string) => Promise<void>}} o
 */
export async function storeWriteCost(dist, dir, {chunkSize, count, concurrency, discard}) {
  const store = await dist.LocalStore.open(path.join(dir, 'putobject-store'))
  const data = randomBytes(chunkSize + 4096)
  const ids = Array.from({length: count}, () => randomBytes(32).toString('hex'))
  const pass = async () => {
    let created = 0
    const t0 = performance.now()
    await pool(ids, concurrency, async (id, i) => {
      if (await store.putObject(id, data.subarray(i % 4096, (i % 4096) + chunkSize))) created++
    })
    return {seconds: (performance.now() - t0) / 1000, created}
  }
  // read them all back, one at a time (as export does) and `concurrency` at a time
  const readBack = async (parallel) => {
    const t0 = performance.now()
    await pool(ids, parallel, (id) => store.getObject(id))
    return (performance.now() - t0) / 1000
  }
  try {
    settle()
    const fresh = await pass()
    settle()
    const again = await pass()
    const readSerial = await readBack(1)
    const readParallel = await readBack(concurrency)
    return {
      readSerialPerObjectUs: (readSerial / count) * 1e6,
      readParallelPerObjectUs: (readParallel / count) * 1e6,
      chunkSize,
      count,
      concurrency,
      newSeconds: fresh.seconds,
      newPerObjectUs: (fresh.seconds / count) * 1e6,
      newBytesPerSecond: rate(count * chunkSize, fresh.seconds),
      existingSeconds: again.seconds,
      existingPerObjectUs: (again.seconds / count) * 1e6,
      existingCreated: again.created,
    }
  } finally {
    if (discard) await discard(path.join(dir, 'putobject-store'))
    else await fsp.rm(path.join(dir, 'putobject-store'), {recursive: true, force: true})
    settle()
  }
}
