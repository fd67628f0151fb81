/**
 * Sparse data on the wire: which parts of a read reply go out as OFFSET_HOLE
 * chunks instead of data (structured replies only), and the extent list of a
 * BLOCK_STATUS reply.
 */
import type {Extent} from './block-backend.js'
import {STATE_HOLE, STATE_ZERO} from './protocol.js'

/**
 * Split `data` (the bytes at absolute `offset`) into content chunks for a
 * structured read reply: runs of all-zero blocks of `granularity` bytes
 * (aligned to absolute offsets) at least `minHole` long become holes,
 * the rest data. Returns the pieces in order; their lengths sum to data.length.
 */
export function splitHoles(
  data: Buffer,
  offset: number,
  granularity = 4096,
  minHole = 4096,
): {offset: number; length: number; hole: boolean}[] {
  const out: {offset: number; length: number; hole: boolean}[] = []
  if (data.length === 0) return out
  const zeros = zeroBuffer(granularity)
  const push = (start: number, end: number, hole: boolean) => {
    const last = out[out.length - 1]
    if (last && last.hole === hole) last.length += end - start
    else out.push({offset: offset + start, length: end - start, hole})
  }
  let pos = 0
  let zeroStart = -1
  while (pos < data.length) {
    const abs = offset + pos
    const end = Math.min(data.length, pos + (granularity - (abs % granularity)))
    const zero =
      end - pos === granularity && data[pos] === 0 && data[end - 1] === 0 && zeros.compare(data, pos, end, 0, granularity) === 0
    if (zero) {
      if (zeroStart < 0) zeroStart = pos
    } else {
      if (zeroStart >= 0) {
        push(zeroStart, pos, pos - zeroStart >= minHole)
        zeroStart = -1
      }
      push(pos, end, false)
    }
    pos = end
  }
  if (zeroStart >= 0) push(zeroStart, pos, pos - zeroStart >= minHole)
  return out
}

/** True when `data` (at image offset `offset`) holds a whole all-zero aligned block (what splitHoles would make a hole). */
export function hasZeroBlock(data: Buffer, offset: number, granularity = 4096, start = 0, end = data.length): boolean {
  const zeros = zeroBuffer(granularity)
  let pos = start + ((granularity - (offset % granularity)) % granularity)
  for (; pos + granularity <= end; pos += granularity) {
    if (data[pos] === 0 && data[pos + granularity - 1] === 0 && zeros.compare(data, pos, pos + granularity, 0, granularity) === 0) return true
  }
  return false
}

let zeroCache: Buffer | undefined
function zeroBuffer(n: number): Buffer {
  if (!zeroCache || zeroCache.length < n) zeroCache = Buffer.alloc(Math.max(n, 65536))
  return zeroCache // (compared by range: no view per call)
}

/**
 * Clean up a backend's extent list for the wire: drop empty/invalid
 * entries, keep only base:allocation bits, merge equal neighbours, cut at
 * the requested length and at `maxCount` descriptors. Never empty: a
 * backend that said nothing useful gets one "allocated, unknown" extent.
 */
export function normalizeExtents(raw: Extent[], length: number, maxCount: number): Extent[] {
  const out: Extent[] = []
  let total = 0
  for (const e of raw) {
    if (total >= length) break
    const len = Math.floor(Number(e?.length))
    if (!Number.isFinite(len) || len <= 0) break
    const flags = (Number(e.flags) | 0) & (STATE_HOLE | STATE_ZERO)
    const take = Math.min(len, length - total)
    const last = out[out.length - 1]
    if (last && last.flags === flags) last.length += take
    else {
      if (out.length >= maxCount) break
      out.push({length: take, flags})
    }
    total += take
  }
  if (out.length === 0) out.push({length, flags: 0})
  return out
}
