/**
 * `import`: a disk image (raw file, stdin, or any qemu-img format) into the
 * store. Chunks first, then the manifest, then the ref — so a ref never
 * names an image whose chunks are not all stored.
 */
import os from 'node:os'
import {BadInputError, DependencyError, InterruptedError, isErrno, storeWriteError, UsageError, VmiError} from '../errors.js'
import {silentProgress, type ProgressReporter} from '../progress.js'
import {isAllZero} from './chunker.js'
import {looksLikeText, sniffArchive, sniffFormat, type RawStream, type Tools} from './formats.js'
import {hash} from './hash.js'
import {isValidId} from './layout.js'
import type {LocalStore} from './local-store.js'
import {acquireLock} from './lock.js'
import {isValidChunkSize, MANIFEST_VERSION, MAX_VIRTUAL_SIZE} from './manifest.js'
import {ManifestWriter, type ManifestHead} from './manifest-stream.js'
import {processSegment, type SegmentRequest, type SegmentResult} from './import-segment.js'
import {checkRawSize, openImportSource, type ImportSource} from './import-source.js'
import {ObjectWriter} from './object-writer.js'
import {formatRef, parseRef, type RefName} from './ref.js'

/**
 * 128 KiB: the largest size at which a cold boot fetches at most 1.5× the
 * bytes the guest reads, while import stays fast (docs/FORMAT.md, "Chunk
 * size", has the measurements).
 */
export const DEFAULT_CHUNK_SIZE = 128 * 1024

export interface ImportInit {
  /** `name:tag` to point at the new image. */
  ref?: string
  chunkSize?: number
  parent?: string
  annotations?: Record<string, string>
  /** Creation time to record (default now); fixed values give reproducible ids. */
  created?: Date
  /** Source format override (skip detection). */
  format?: string
  tools?: Tools
  progress?: ProgressReporter
  signal?: AbortSignal
  /** Tuning of the two-thread file import (tests): chunks per segment, finished segments held ahead of the manifest. */
  segments?: {chunks?: number; maxAhead?: number}
}

export interface ImportResult {
  id: string
  ref?: string
  virtualSize: number
  chunkSize: number
  sourceFormat: string
  chunks: number
  zeroChunks: number
  /** Non-zero chunks whose content already was in the store (or repeated). */
  dedupedChunks: number
  newChunks: number
  newBytes: number
  /** How the source was read. */
  via: string
  seconds: number
}

/** Chunk bytes handed to the writer thread and not yet written, at most (then reading waits). */
const WRITE_BACKLOG = 8 << 20

/** Import `source` (a path, or '-' for stdin given as `stdin`). */
export async function importImage(
  store: LocalStore,
  source: string,
  init: ImportInit & {stdin?: AsyncIterable<Uint8Array>} = {},
): Promise<ImportResult> {
  const t0 = performance.now()
  const chunkSize = init.chunkSize ?? DEFAULT_CHUNK_SIZE
  if (!isValidChunkSize(chunkSize)) throw new UsageError(`chunk size ${chunkSize} is not a power of two between 64 KiB and 4 MiB`)
  const ref: RefName | undefined = init.ref === undefined ? undefined : parseRef(init.ref)
  if (init.parent !== undefined && !isValidId(init.parent)) throw new UsageError(`parent ${init.parent} is not a full image id`)
  const progress = init.progress ?? silentProgress

  const src = await openImportSource(store, source, chunkSize, init)
  const lock = await acquireLock(store.layout, {op: 'import', signal: init.signal}).catch(async (err) => {
    src.converter?.kill()
    await src.cleanup()
    throw err
  })
  let builder: ManifestWriter
  try {
    // the chunk list goes to a staging file as it grows: memory stays flat for any image size
    builder = new ManifestWriter(store.tmpPath('chunks'))
  } catch (err) {
    await lock.release().catch(() => {})
    src.converter?.kill()
    await src.cleanup()
    throw storeWriteError(err, 'the chunk list')
  }
  progress.start(`importing ${source === '-' ? 'stdin' : source}`, src.expectedSize, 'bytes')
  // A raw file (read by position) is imported in segments on this thread
  // and the writer thread at once, each doing everything for its segments
  // (importSegments). A stream (stdin, a converter) is read and hashed here
  // and written on the writer thread (importStream). Either way memory stays
  // flat. The thread starts at the first new chunk: re-importing stored
  // content needs none.
  let writerThread: ObjectWriter | undefined
  const writer = (): ObjectWriter => (writerThread ??= new ObjectWriter(store.root, {inline: store}))
  try {
    const totals =
      src.file && PARALLEL
        ? await importSegments(store, src.file, chunkSize, builder, writer(), progress, init.signal, init.segments)
        : await importStream(store, source, src, builder, writer, progress)
    if (src.converter) await src.converter.done
    init.signal?.throwIfAborted()
    checkTotal(source, totals.bytes, src)
    const id = await storeManifest(store, builder, {
      version: MANIFEST_VERSION,
      virtualSize: totals.bytes,
      chunkSize,
      sourceFormat: src.sourceFormat,
      created: (init.created ?? new Date()).toISOString(),
      ...(init.parent ? {parent: init.parent} : {}),
      ...(init.annotations && Object.keys(init.annotations).length > 0 ? {annotations: init.annotations} : {}),
    })
    if (ref) await store.writeRef(ref, id)
    return {
      id,
      ref: ref ? formatRef(ref) : undefined,
      virtualSize: totals.bytes,
      chunkSize,
      sourceFormat: src.sourceFormat,
      chunks: builder.count,
      zeroChunks: totals.zero,
      dedupedChunks: totals.present,
      newChunks: totals.stored,
      newBytes: totals.storedBytes,
      via: src.via,
      seconds: (performance.now() - t0) / 1000,
    }
  } catch (err) {
    builder.abort()
    src.converter?.kill()
    throw importError(err, source, init.signal)
  } finally {
    progress.stop()
    await writerThread?.close().catch(() => {})
    await lock.release().catch(() => {})
    await src.cleanup().catch(() => {})
  }
}

/**
 * A stream (stdin, a converter) read and hashed here, each new chunk written
 * on the writer thread; when the thread falls behind (its backlog reaches
 * ObjectWriterInit.inlineAbove), this thread writes the next chunks itself
 * instead of waiting. Resolves once every write is done.
 */
async function importStream(
  store: LocalStore,
  source: string,
  src: ImportSource,
  builder: ManifestWriter,
  writer: () => ObjectWriter,
  progress: ProgressReporter,
): Promise<SegmentTotals> {
  const totals: SegmentTotals = {bytes: 0, zero: 0, stored: 0, storedBytes: 0, present: 0}
  const handedOver = new Set<string>() // ids with a write in flight: a repeat in the image is not sent twice
  let used: ObjectWriter | undefined
  let writeFailure: Error | undefined
  for await (const chunk of src.chunks) {
    if (totals.bytes === 0 && source === '-') {
      const kind = sniffFormat(chunk) ?? sniffArchive(chunk) ?? (looksLikeText(chunk.subarray(0, 4096)) ? 'text' : undefined)
      if (kind) throw new BadInputError(`standard input is a ${kind} file, not a raw disk image; import it from a file (vmi import FILE)`)
    }
    totals.bytes += chunk.length
    if (src.expectedSize !== undefined && totals.bytes > src.expectedSize) throw wrongLength(source, totals.bytes, src.expectedSize, src.converter)
    if (totals.bytes > MAX_VIRTUAL_SIZE) throw new BadInputError(`${source} is larger than 1 PiB`)
    if (isAllZero(chunk)) {
      builder.push(null)
      totals.zero++
      progress.update(totals.bytes)
      continue
    }
    const id = hash(chunk)
    builder.push(id)
    // already stored (or on its way): nothing to copy or send
    if (handedOver.has(id) || store.hasObjectSync(id)) totals.present++
    else {
      // the chunk buffer is reused for the next chunk: the writer gets a copy
      const w = (used ??= writer())
      const copy = w.takeBuffer(chunk.length)
      chunk.copy(copy)
      const length = chunk.length
      handedOver.add(id)
      w.put(id, copy, {verify: false}).then(
        (outcome) => {
          handedOver.delete(id)
          if (outcome === 'stored') {
            totals.stored++
            totals.storedBytes += length
          } else totals.present++
        },
        (err: Error) => {
          handedOver.delete(id)
          writeFailure ??= err
        },
      )
      if (w.backlogBytes > WRITE_BACKLOG) await w.whenBelow(WRITE_BACKLOG / 2)
      if (writeFailure) throw writeFailure
    }
    progress.update(totals.bytes)
  }
  await used?.whenBelow(0)
  if (writeFailure) throw writeFailure
  return totals
}

/** The whole source was read: its length must be the announced one, and a disk's. */
function checkTotal(source: string, total: number, src: ImportSource): void {
  if (src.expectedSize !== undefined && total !== src.expectedSize) throw wrongLength(source, total, src.expectedSize, src.converter)
  if (total === 0) throw new BadInputError(`${source === '-' ? 'standard input' : source} is empty`)
  checkRawSize(source === '-' ? 'standard input' : source, total)
}

/** Write the manifest (chunk list from `builder`, then `head`) into the store; its id. */
async function storeManifest(store: LocalStore, builder: ManifestWriter, head: ManifestHead): Promise<string> {
  const manifestFile = store.tmpPath('manifest')
  let id: string
  try {
    id = builder.finish(head, manifestFile).id
  } catch (err) {
    if (err instanceof VmiError) throw err
    throw storeWriteError(err, 'the manifest')
  }
  await store.putManifestFile(id, manifestFile)
  return id
}

/** What a failed import reports: an interruption, a vmi error as it is, a source that failed while read as bad input. */
function importError(err: unknown, source: string, signal: AbortSignal | undefined): unknown {
  if (signal?.aborted) return new InterruptedError(`import of ${source} interrupted; nothing was tagged`, {cause: err})
  if (err instanceof VmiError) return err
  if ((err as {code?: string}).code === 'VMI_SHORT_READ') return new BadInputError(`${source} shrank while it was read`, {cause: err})
  if (isErrno(err, 'EIO')) return new BadInputError(`I/O error reading ${source}`, {cause: err})
  return err
}

/**
 * Segments of a raw file are imported on two threads at once (this one and
 * the writer thread), each reading, hashing and storing its own segments;
 * the ids enter the manifest in order. Split by stage instead (read and hash
 * here, store there), one thread waits on the other; split by segment, both
 * stay busy (bench/results/*-store.md). Off when the machine has one core.
 */
const PARALLEL = os.availableParallelism() > 1
/** Bytes per segment. */
const SEGMENT_BYTES = 8 << 20
/** Segments finished ahead of the next one the manifest needs, at most. */
const MAX_AHEAD = 16

interface SegmentTotals {
  bytes: number
  zero: number
  stored: number
  storedBytes: number
  present: number
}

async function importSegments(
  store: LocalStore,
  file: {fd: number; size: number},
  chunkSize: number,
  builder: ManifestWriter,
  thread: ObjectWriter,
  progress: ProgressReporter,
  signal?: AbortSignal,
  tuning: {chunks?: number; maxAhead?: number} = {},
): Promise<SegmentTotals> {
  const chunkCount = Math.ceil(file.size / chunkSize)
  const per = tuning.chunks ?? Math.max(1, Math.floor(SEGMENT_BYTES / chunkSize))
  const maxAhead = tuning.maxAhead ?? MAX_AHEAD
  const segmentCount = Math.ceil(chunkCount / per)
  const request = (k: number): SegmentRequest => ({fd: file.fd, size: file.size, chunkSize, first: k * per, count: Math.min(per, chunkCount - k * per)})
  const totals: SegmentTotals = {bytes: 0, zero: 0, stored: 0, storedBytes: 0, present: 0}
  const finished = new Map<number, SegmentResult>()
  const scratch = Buffer.allocUnsafeSlow(chunkSize)
  let next = 0 // next segment nobody has taken
  let written = 0 // segments whose ids are in the manifest
  let onThread = 0
  let failure: Error | undefined
  let wake: (() => void) | undefined
  // the thread has up to two segments at a time, so it never waits for this one
  const feed = () => {
    while (!failure && onThread < 2 && next < segmentCount && finished.size < maxAhead) {
      const k = next++
      onThread++
      thread.segment(request(k)).then(
        (r) => finished.set(k, r),
        (err: Error) => (failure ??= err),
      ).finally(() => {
        onThread--
        wake?.()
      })
    }
  }
  const drain = () => {
    for (let r = finished.get(written); r; r = finished.get(written)) {
      finished.delete(written++)
      for (const id of r.ids) builder.push(id)
      totals.bytes += r.bytes
      totals.zero += r.zero
      totals.stored += r.stored
      totals.storedBytes += r.storedBytes
      totals.present += r.present
      progress.update(totals.bytes)
    }
  }
  while (written < segmentCount) {
    signal?.throwIfAborted()
    if (failure) throw failure
    drain()
    feed()
    if (written >= segmentCount) break
    // wait only for a segment the thread has; otherwise take the next one here
    // (past maxAhead too, if the thread has nothing: then waiting would never end)
    if (onThread > 0 && (next >= segmentCount || finished.size >= maxAhead)) {
      if (!finished.has(written)) await new Promise<void>((resolve) => (wake = resolve))
      wake = undefined
      continue
    }
    if (next < segmentCount) {
      const k = next++
      finished.set(k, processSegment(store, request(k), scratch))
      await new Promise((resolve) => setImmediate(resolve)) // the thread's answers, signals, progress
    }
  }
  if (failure) throw failure
  return totals
}

/**
 * The source gave more or fewer bytes than its size. For a converter that
 * size is the virtual size qemu-img read from the image's header, and a
 * converter is only asked for its length after it exited cleanly (an image
 * it cannot read makes it fail, a BadInputError with its reason): too many
 * bytes, or too few from a clean exit, is the tool failing, not the input.
 */
function wrongLength(source: string, total: number, expected: number, converter: RawStream | undefined): VmiError {
  const data = {bytes: total, expected}
  if (converter)
    return new DependencyError(
      `${converter.how} gave ${total} bytes of ${source}, not its virtual size ${expected}; no image was recorded`,
      {data: {...data, tool: converter.how}},
    )
  return new BadInputError(`${source}: read ${total} bytes, expected ${expected}`, {data})
}
