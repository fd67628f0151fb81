/**
 * One segment of a raw file import, done start to end on the calling thread:
 * read each chunk by position, skip all-zero ones, hash the rest and store
 * the ones the store lacks. Import runs segments on the main thread and on
 * the writer thread at once (src/store/import.ts), so reading, hashing and
 * writing use both cores instead of a reading half and a writing half.
 */
import {isAllZero, readFullSync} from './chunker.js'
import {hash} from './hash.js'
import type {LocalStore} from './local-store.js'

export interface SegmentRequest {
  /** An open descriptor on the source (threads share the process's descriptors). */
  fd: number
  /** Source size in bytes (the last chunk may be short). */
  size: number
  chunkSize: number
  /** First chunk index and number of chunks. */
  first: number
  count: number
}

export interface SegmentResult {
  /** Per chunk: its id, or null for all-zero. */
  ids: (string | null)[]
  bytes: number
  zero: number
  stored: number
  storedBytes: number
  /** Non-zero chunks the store had already (or that another thread stored meanwhile). */
  present: number
}

/** Why a segment failed: reading the source, or writing the store. */
export class SegmentReadError extends Error {
  constructor(
    message: string,
    readonly code?: string,
  ) {
    super(message)
  }
}

/**
 * Process chunks [first, first + count) of the source. `buf` is scratch
 * memory of at least chunkSize bytes. Store failures are thrown as the
 * store reports them (StoreError); read failures as SegmentReadError, with
 * code 'VMI_SHORT_READ' when the file ended early.
 */
export function processSegment(store: LocalStore, req: SegmentRequest, buf: Buffer): SegmentResult {
  const r: SegmentResult = {ids: [], bytes: 0, zero: 0, stored: 0, storedBytes: 0, present: 0}
  for (let i = req.first; i < req.first + req.count; i++) {
    const pos = i * req.chunkSize
    const len = Math.min(req.chunkSize, req.size - pos)
    if (len <= 0) break
    try {
      readFullSync(req.fd, buf, len, pos)
    } catch (err) {
      const e = err as NodeJS.ErrnoException
      throw new SegmentReadError(e.message, e.code)
    }
    const chunk = buf.subarray(0, len)
    r.bytes += len
    if (isAllZero(chunk)) {
      r.ids.push(null)
      r.zero++
      continue
    }
    const id = hash(chunk)
    r.ids.push(id)
    if (store.putObjectSync(id, chunk)) {
      r.stored++
      r.storedBytes += len
    } else r.present++
  }
  return r
}
