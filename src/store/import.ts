/**
 * `import`: a disk image (raw file, stdin, or any qemu-img format) into the
 * store. Chunks first, then the manifest, then the ref — so a ref never
 * names an image whose chunks are not all stored.
 */
import {promises as fsp} from 'node:fs'
import os from 'node:os'
import {BadInputError, DependencyError, FileNotFoundError, InterruptedError, isErrno, storeWriteError, UsageError, VmiError} from '../errors.js'
import {silentProgress, type ProgressReporter} from '../progress.js'
import {fileChunks, isAllZero, streamChunks} from './chunker.js'
import {convertToRawFile, DEFAULT_TOOLS, detectFormat, looksLikeText, openRawStream, sniffArchive, sniffFormat, type RawStream, type Tools} from './formats.js'
import {hash} from './hash.js'
import {isValidId} from './layout.js'
import type {LocalStore} from './local-store.js'
import {acquireLock} from './lock.js'
import {isValidChunkSize, MANIFEST_VERSION, MAX_VIRTUAL_SIZE} from './manifest.js'
import {ManifestWriter, type ManifestHead} from './manifest-stream.js'
import {processSegment, type SegmentRequest, type SegmentResult} from './import-segment.js'
import {ObjectWriter} from './object-writer.js'
import {formatRef, parseRef, type RefName} from './ref.js'

/**
 * 128 KiB, by measurement (docs/FORMAT.md, "Chunk size"): the largest size at
 * which a cold boot fetches ≤ 1.5× the bytes the guest reads (1.39× against
 * 1.68× at 256 KiB), while import stays above 1 GB/s.
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
  const tools = init.tools ?? DEFAULT_TOOLS
  const progress = init.progress ?? silentProgress

  let chunks: AsyncIterable<Buffer>
  let expectedSize: number | undefined
  let sourceFormat = 'raw'
  let via: string
  let cleanup = async () => {}
  let converter: RawStream | undefined
  /** A raw file read by position: imported by segments on two threads at once (importSegments). */
  let file: {fd: number; size: number} | undefined

  if (source === '-') {
    if (!init.stdin) throw new UsageError('no standard input to read the image from')
    via = 'stdin'
    chunks = streamChunks(init.stdin, chunkSize, init.signal)
  } else {
    const opened = await openSource(source)
    const {fh, size, head} = opened
    cleanup = () => fh.close()
    try {
      const archive = sniffArchive(head)
      if (archive && !sniffFormat(head))
        throw new BadInputError(`${source} is a ${archive} file, not a disk image; unpack it first`, {data: {source, archive}})
      if (!sniffFormat(head) && looksLikeText(head)) throw new BadInputError(`${source} looks like a text file, not a disk image`, {data: {source}})
      const fmt = init.format ? {format: init.format, virtualSize: size, via: 'given'} : await detectFormat(source, size, head, tools)
      sourceFormat = fmt.format
      if (fmt.format === 'raw') {
        checkRawSize(source, size)
        expectedSize = size
        via = 'file'
        chunks = fileChunks(fh.fd, size, chunkSize, {signal: init.signal})
        file = {fd: fh.fd, size}
      } else {
        expectedSize = fmt.virtualSize
        checkRawSize(`${source} (${fmt.format}, virtual size)`, expectedSize)
        converter = await openRawStream(source, fmt.format, tools)
        if (converter) {
          via = converter.how
          chunks = streamChunks(converter.stream, chunkSize, init.signal)
        } else {
          // no nbdcopy/qemu-nbd: a sparse raw copy in the store's tmp/
          const tmp = store.tmpPath('convert.raw')
          const prev = cleanup
          cleanup = async () => {
            await fsp.rm(tmp, {force: true})
            await prev()
          }
          await convertToRawFile(source, fmt.format, tmp, tools)
          const raw = await fsp.open(tmp, 'r')
          cleanup = async () => {
            await raw.close()
            await fsp.rm(tmp, {force: true})
            await prev()
          }
          const converted = (await raw.stat()).size
          if (converted !== expectedSize)
            throw new DependencyError(`qemu-img convert turned ${source} (${fmt.format}) into ${converted} bytes, expected its virtual size ${expectedSize}`, {
              data: {tool: tools.qemuImg, bytes: converted, expected: expectedSize},
            })
          via = 'qemu-img convert (temporary raw file)'
          chunks = fileChunks(raw.fd, expectedSize, chunkSize, {signal: init.signal})
          file = {fd: raw.fd, size: expectedSize}
        }
      }
    } catch (err) {
      await cleanup()
      throw err
    }
  }

  const lock = await acquireLock(store.layout, {op: 'import', signal: init.signal}).catch(async (err) => {
    converter?.kill()
    await cleanup()
    throw err
  })
  let builder: ManifestWriter
  try {
    // the chunk list goes to a staging file as it grows: memory stays flat for any image size
    builder = new ManifestWriter(store.tmpPath('chunks'))
  } catch (err) {
    await lock.release().catch(() => {})
    converter?.kill()
    await cleanup()
    throw storeWriteError(err, 'the chunk list')
  }
  let total = 0
  let zeroChunks = 0
  let deduped = 0
  let newChunks = 0
  let newBytes = 0
  progress.start(`importing ${source === '-' ? 'stdin' : source}`, expectedSize, 'bytes')
  // A raw file (read by position) is imported in segments on this thread
  // and the writer thread at once, each doing everything for its segments
  // (importSegments). A stream (stdin, a converter) is read and hashed here
  // and written on the writer thread (ObjectWriter); when the writer falls
  // behind (its backlog reaches 4 MiB), this thread writes the next chunks
  // itself instead of waiting. Either way memory stays flat.
  // started at the first new chunk: re-importing stored content needs no thread
  let writerThread: ObjectWriter | undefined
  const writer = (): ObjectWriter => (writerThread ??= new ObjectWriter(store.root, {inline: store}))
  const handedOver = new Set<string>() // ids with a write in flight: a repeat in the image is not sent twice
  let writeFailure: Error | undefined
  try {
    if (file && PARALLEL) {
      const t = await importSegments(store, file, chunkSize, builder, writer(), progress, init.signal, init.segments)
      total = t.bytes
      zeroChunks = t.zero
      deduped = t.present
      newChunks = t.stored
      newBytes = t.storedBytes
    } else {
      for await (const chunk of chunks) {
        if (total === 0 && source === '-') {
          const kind = sniffFormat(chunk) ?? sniffArchive(chunk) ?? (looksLikeText(chunk.subarray(0, 4096)) ? 'text' : undefined)
          if (kind) throw new BadInputError(`standard input is a ${kind} file, not a raw disk image; import it from a file (vmi import FILE)`)
        }
        total += chunk.length
        if (expectedSize !== undefined && total > expectedSize) throw wrongLength(source, total, expectedSize, converter)
        if (total > MAX_VIRTUAL_SIZE) throw new BadInputError(`${source} is larger than 1 PiB`)
        if (isAllZero(chunk)) {
          builder.push(null)
          zeroChunks++
        } else {
          const id = hash(chunk)
          builder.push(id)
          // already stored (or on its way): nothing to copy or send
          if (handedOver.has(id) || store.hasObjectSync(id)) deduped++
          else {
            // the chunk buffer is reused for the next chunk: the writer gets a copy
            const w = writer()
            const copy = w.takeBuffer(chunk.length)
            chunk.copy(copy)
            const length = chunk.length
            handedOver.add(id)
            w.put(id, copy, {verify: false}).then(
              (outcome) => {
                handedOver.delete(id)
                if (outcome === 'stored') {
                  newChunks++
                  newBytes += length
                } else deduped++
              },
              (err: Error) => {
                handedOver.delete(id)
                writeFailure ??= err
              },
            )
            if (w.backlogBytes > WRITE_BACKLOG) await w.whenBelow(WRITE_BACKLOG / 2)
            if (writeFailure) throw writeFailure
          }
        }
        progress.update(total)
      }
    }
    await writerThread?.whenBelow(0)
    if (writeFailure) throw writeFailure
    if (converter) await converter.done
    init.signal?.throwIfAborted()
    if (expectedSize !== undefined && total !== expectedSize) throw wrongLength(source, total, expectedSize, converter)
    if (total === 0) throw new BadInputError(`${source === '-' ? 'standard input' : source} is empty`)
    checkRawSize(source === '-' ? 'standard input' : source, total)

    const head: ManifestHead = {
      version: MANIFEST_VERSION,
      virtualSize: total,
      chunkSize,
      sourceFormat,
      created: (init.created ?? new Date()).toISOString(),
      ...(init.parent ? {parent: init.parent} : {}),
      ...(init.annotations && Object.keys(init.annotations).length > 0 ? {annotations: init.annotations} : {}),
    }
    const manifestFile = store.tmpPath('manifest')
    let id: string
    try {
      id = builder.finish(head, manifestFile).id
    } catch (err) {
      if (err instanceof VmiError) throw err
      throw storeWriteError(err, 'the manifest')
    }
    await store.putManifestFile(id, manifestFile)
    if (ref) await store.writeRef(ref, id)
    return {
      id,
      ref: ref ? formatRef(ref) : undefined,
      virtualSize: total,
      chunkSize,
      sourceFormat,
      chunks: builder.count,
      zeroChunks,
      dedupedChunks: deduped,
      newChunks,
      newBytes,
      via,
      seconds: (performance.now() - t0) / 1000,
    }
  } catch (err) {
    builder.abort()
    converter?.kill()
    if (init.signal?.aborted) throw new InterruptedError(`import of ${source} interrupted; nothing was tagged`, {cause: err})
    if (err instanceof VmiError) throw err
    if ((err as {code?: string}).code === 'VMI_SHORT_READ') throw new BadInputError(`${source} shrank while it was read`, {cause: err})
    if (isErrno(err, 'EIO')) throw new BadInputError(`I/O error reading ${source}`, {cause: err})
    throw err
  } finally {
    progress.stop()
    await writerThread?.close().catch(() => {})
    await lock.release().catch(() => {})
    await cleanup().catch(() => {})
  }
}

/**
 * Segments of a raw file are imported on two threads at once (this one and
 * the writer thread), each reading, hashing and storing its own segments;
 * the ids enter the manifest in order. Measured on the 2-core machine
 * (bench/results/*-store.md): splitting the work by stage (read and hash
 * here, store there) left one thread waiting on the other; by segment, both
 * stay busy. Off when the machine has one core.
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

function checkRawSize(what: string, size: number): void {
  if (size === 0) throw new BadInputError(`${what} is empty`)
  if (size % 512 !== 0)
    throw new BadInputError(`${what} is not a disk image: its size ${size} is not a multiple of 512 bytes`, {data: {size}})
}

async function openSource(source: string): Promise<{fh: fsp.FileHandle; size: number; head: Buffer}> {
  let fh: fsp.FileHandle
  try {
    fh = await fsp.open(source, 'r')
  } catch (err) {
    if (isErrno(err, 'ENOENT', 'ENOTDIR')) throw new FileNotFoundError(`no such file: ${source}`, {data: {source}})
    if (isErrno(err, 'EACCES', 'EPERM')) throw new BadInputError(`cannot read ${source}: permission denied`, {data: {source}})
    if (isErrno(err, 'EISDIR')) throw new BadInputError(`${source} is a directory, not a disk image`, {data: {source}})
    throw new BadInputError(`cannot open ${source}: ${(err as Error).message}`, {cause: err})
  }
  try {
    const st = await fh.stat()
    if (st.isDirectory()) throw new BadInputError(`${source} is a directory, not a disk image`, {data: {source}})
    let size = st.size
    if (st.isBlockDevice()) size = await blockDeviceSize(fh)
    else if (!st.isFile()) throw new BadInputError(`${source} is not a regular file or block device; pipe it to 'vmi import -'`)
    if (size === 0) throw new BadInputError(`${source} is empty`, {data: {source}})
    const head = Buffer.alloc(Math.min(size, 4096))
    try {
      await fh.read(head, 0, head.length, 0)
    } catch (err) {
      if (isErrno(err, 'EISDIR')) throw new BadInputError(`${source} is a directory, not a disk image`)
      throw new BadInputError(`cannot read ${source}: ${(err as Error).message}`, {cause: err})
    }
    return {fh, size, head}
  } catch (err) {
    await fh.close()
    throw err
  }
}

async function blockDeviceSize(fh: fsp.FileHandle): Promise<number> {
  // lseek(SEEK_END) is not exposed; probe the size by binary search on reads.
  const buf = Buffer.alloc(512)
  let lo = 0
  let hi = 512
  while ((await fh.read(buf, 0, 1, hi - 1)).bytesRead === 1) {
    lo = hi
    hi *= 2
  }
  while (hi - lo > 512) {
    const mid = lo + Math.floor((hi - lo) / 1024) * 512
    if ((await fh.read(buf, 0, 1, mid - 1)).bytesRead === 1) lo = mid
    else hi = mid
  }
  return lo
}
