/**
 * Boot profile: the chunks a boot read, in first-read order. Stored beside
 * the manifest (profiles/ab/cdef…), not in it, so recording one never
 * changes the image id; it travels with push, pull, save and load.
 *
 *   {"version":1,"chunkSize":262144,"chunks":[0,17,18,3,...]}
 */
import {BadManifestError} from '../errors.js'

export interface BootProfile {
  version: 1
  chunkSize: number
  /** Chunk indexes, first read first. */
  chunks: number[]
}

export const MAX_PROFILE_BYTES = 64 * 1024 * 1024

export function encodeProfile(p: BootProfile): Buffer {
  return Buffer.from(JSON.stringify({version: 1, chunkSize: p.chunkSize, chunks: p.chunks}) + '\n')
}

/** Bytes a profile of an image of `chunkCount` chunks can need: each chunk once, at most 11 digits and a comma. */
export function maxProfileBytes(chunkCount: number): number {
  return Math.min(MAX_PROFILE_BYTES, 64 + chunkCount * 12)
}

export function decodeProfile(data: Uint8Array, chunkCount?: number): BootProfile {
  // checked before parsing: a small image cannot have a large profile
  if (data.length > (chunkCount !== undefined ? maxProfileBytes(chunkCount) : MAX_PROFILE_BYTES))
    throw new BadManifestError(`boot profile is too large (${data.length} bytes${chunkCount !== undefined ? ` for an image of ${chunkCount} chunks` : ''})`)
  let p: BootProfile
  try {
    p = JSON.parse(Buffer.from(data).toString('utf8'))
  } catch {
    throw new BadManifestError('boot profile is not valid JSON')
  }
  if (p?.version !== 1 || !Number.isInteger(p.chunkSize) || !Array.isArray(p.chunks)) throw new BadManifestError('boot profile is malformed')
  if (chunkCount !== undefined && p.chunks.length > chunkCount) throw new BadManifestError('boot profile lists more chunks than the image has')
  for (const i of p.chunks)
    if (!Number.isSafeInteger(i) || i < 0 || (chunkCount !== undefined && i >= chunkCount)) throw new BadManifestError('boot profile names a chunk outside the image')
  return p
}
