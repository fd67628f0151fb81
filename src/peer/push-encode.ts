/**
 * A push's chunks as they go out: read from the store and, when the remote
 * stores compressed objects, compressed (a stored frame as it is, a raw
 * chunk compressed now: store/object-encoding.ts), or sent as they rest. A
 * batch of them is read and encoded on a writer thread (a job of
 * ObjectWriter), so that the compression of one batch runs while the main
 * thread sends another.
 */
import type {LocalStore} from '../store/local-store.js'
import {decodeObject, encodeChunk, isFrame, MAX_STORED_OBJECT, openObject} from '../store/object-encoding.js'
import type {ObjectWriter, WriterJob, WriterJobRunner} from '../store/object-writer.js'
import {frameContentSize} from '../store/zstd.js'

/**
 * How chunks go out: `compress`, a stored frame as it is and a raw chunk
 * compressed now; `stored`, each as it rests, frame or raw (to a remote that
 * stores frames, when compressing here costs more than it saves); `raw`,
 * frames decoded (a remote that takes raw chunks only, or --no-compress).
 */
export type UploadEncoding = 'compress' | 'stored' | 'raw'

export interface EncodeTask {
  ids: string[]
  /** Hash each chunk first (a corrupt one is reported, not sent). */
  verify: boolean
  encoding: UploadEncoding
}

/** One chunk ready to go (its bytes on the wire, and the chunk's own length), or why not. */
export type Encoded = {data: Buffer; chunkBytes: number; corrupt?: undefined; missing?: undefined} | {corrupt: true; data?: undefined} | {missing: true; data?: undefined; corrupt?: undefined}

export interface EncodeResult {
  objects: Encoded[]
}

/** `task` read and encoded on `writer`'s thread; the buffers come back as copies. */
export async function encodeOnThread(writer: ObjectWriter, task: EncodeTask, signal?: AbortSignal): Promise<Encoded[]> {
  const r = await writer.job(PUSH_ENCODE, task, () => {}, `reading ${task.ids.length} chunks to push`, signal)
  // structured clone hands Buffers back as plain Uint8Arrays
  return r.objects.map((o) => (o.data ? {data: Buffer.from(o.data.buffer, o.data.byteOffset, o.data.byteLength), chunkBytes: o.chunkBytes} : o))
}

/** This thread's buffer to read each object into before it is compressed (most chunks leave as frames of a third of the size). */
let scratch: Buffer | undefined

export const runJob: WriterJobRunner<EncodeTask, never, EncodeResult> = async (store, task) => {
  scratch ??= Buffer.allocUnsafeSlow(MAX_STORED_OBJECT)
  const into = scratch
  return {
    objects: task.ids.map((id): Encoded => {
      const e = encodeForUpload(store, id, task.verify, task.encoding, into)
      // what goes out as read (a stored frame, an incompressible chunk) is copied before the next read
      if (e.data && e.data.buffer === into.buffer) return {data: Buffer.from(e.data), chunkBytes: e.chunkBytes}
      return e
    }),
  }
}

/** This module as a writer-thread job (bulk-receive.ts does the same). */
export const PUSH_ENCODE: WriterJob<EncodeTask, never, EncodeResult> = {module: new URL('../peer/push-encode.js', import.meta.url).href, runner: runJob}

/**
 * One chunk as it goes out, in `encoding`; hashed first with `verify`.
 * Never throws for a chunk that is corrupt or gone: the caller reads it
 * again to raise the store's own error. With `into` large enough, the
 * object is read into it, and what comes back may be a view of it.
 */
export function encodeForUpload(store: LocalStore, id: string, verify: boolean, encoding: UploadEncoding, into?: Buffer): Encoded {
  let stored: Buffer | undefined
  try {
    stored = store.readObjectStored(id, into)
  } catch {
    return {corrupt: true} // not a regular file, or larger than any object
  }
  if (stored === undefined) return {missing: true}
  if (!verify) {
    if (encoding === 'raw') {
      const chunk = decodeObject(stored) // the chunk itself, for a remote that takes raw chunks only
      return {data: chunk, chunkBytes: chunk.length}
    }
    // a frame as it is; a raw chunk compressed now, or as it is
    if (isFrame(stored)) return {data: stored, chunkBytes: frameContentSize(stored) ?? stored.length}
    return {data: encoding === 'compress' ? encodeChunk(stored) : stored, chunkBytes: stored.length}
  }
  const o = openObject(id, stored)
  if (o.actual !== undefined) return {corrupt: true}
  if (encoding === 'raw') return {data: o.data, chunkBytes: o.data.length}
  return {data: o.encoded || encoding === 'stored' ? stored : encodeChunk(o.data), chunkBytes: o.data.length}
}
