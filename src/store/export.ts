/**
 * `export`: an image out of the store as a raw disk (sparse on files: zero
 * chunks become holes), or any qemu-img format. Every chunk is verified
 * against its id on the way out. Files are written beside the destination
 * and renamed into place, so a failed export leaves no partial file.
 */
import {promises as fsp} from 'node:fs'
import path from 'node:path'
import type {Writable} from 'node:stream'
import {BadManifestError, InterruptedError, isErrno, VmiError} from '../errors.js'
import {silentProgress, type ProgressReporter} from '../progress.js'
import {tmpName} from '../util/fs-util.js'
import {outputError, outputTarget, publishFile, stagingFile} from '../util/output-file.js'
import {checkFormat, convertFromRaw, DEFAULT_TOOLS, EXPORT_FORMATS, type Tools} from './formats.js'
import type {LocalStore} from './local-store.js'
import {chunkCount, chunkLength, MAX_EXPANDED_CHUNKS} from './manifest.js'
import {manifestFileEntries} from './manifest-scan.js'
import type {ManifestHead} from './manifest-stream.js'

export interface ExportInit {
  /** 'raw' (default) or any format qemu-img writes (qcow2, vmdk, ...). */
  format?: string
  tools?: Tools
  progress?: ProgressReporter
  signal?: AbortSignal
  /** Replace an existing regular file at the destination (default: refuse, before reading a chunk). */
  overwrite?: boolean
}

export interface ExportResult {
  id: string
  virtualSize: number
  format: string
  bytesWritten: number
  holes: number
  seconds: number
}

const ZERO = Buffer.alloc(4 * 1024 * 1024)

/** Progress is reported at most once per this many bytes (a TTY bar formats text on every update). */
const PROGRESS_STEP = 8 << 20

/** Export to a file path, or to a Writable (stdout) when `dest` is a stream. */
export async function exportImage(store: LocalStore, spec: string, dest: string | Writable, init: ExportInit = {}): Promise<ExportResult> {
  const t0 = performance.now()
  const format = init.format ?? 'raw'
  checkFormat(format, EXPORT_FORMATS)
  const id = await store.resolveId(spec)
  // the manifest is checked and walked as a file: its chunk list is never all in memory
  const manifest: ManifestHead = await store.verifyStoredManifestFile(id)
  const count = chunkCount(manifest.virtualSize, manifest.chunkSize)
  if (count > MAX_EXPANDED_CHUNKS)
    throw new BadManifestError(`image ${id} has ${count} chunks; vmi exports at most ${MAX_EXPANDED_CHUNKS} chunks per image`, {data: {id, chunks: count}})
  const run = new ExportRun(store, id, manifest, format, init)
  run.progress.start(`exporting ${spec}`, manifest.virtualSize, 'bytes')
  try {
    if (typeof dest === 'string') await exportToFile(run, dest)
    else await exportToStream(run, dest)
    return {id, virtualSize: manifest.virtualSize, format, bytesWritten: run.bytesWritten, holes: run.holes, seconds: (performance.now() - t0) / 1000}
  } catch (err) {
    await store.setAsideIfCorrupt(err)
    throw exportError(err, spec, dest, init.signal)
  } finally {
    run.progress.stop()
  }
}

/** One export: the image, its chunks read and verified into reused buffers, what was written, progress. */
class ExportRun {
  readonly manifestFile: string
  readonly progress: ProgressReporter
  /** Read buffers, reused once their write is done (a fresh buffer per chunk lets garbage pile up). */
  readonly buffers: Buffer[] = []
  bytesWritten = 0
  holes = 0
  private reported = 0

  constructor(
    readonly store: LocalStore,
    readonly id: string,
    readonly manifest: ManifestHead,
    readonly format: string,
    readonly init: ExportInit,
  ) {
    this.manifestFile = store.layout.manifestPath(id)
    this.progress = init.progress ?? silentProgress
  }

  takeBuffer(): Buffer {
    return this.buffers.pop() ?? Buffer.allocUnsafeSlow(this.manifest.chunkSize)
  }

  /** Chunk `index` (id `cid`), verified, in `into` when given. Synchronous (the object read and hash are): no promise per chunk. */
  readChunk(index: number, cid: string, into?: Buffer): Buffer {
    const data = this.store.getObjectSync(cid, {verify: true, into})
    const expected = chunkLength(this.manifest, index)
    if (data.length !== expected) throw new VmiError(`chunk ${cid} has ${data.length} bytes, image ${this.id} expects ${expected} at index ${index}`)
    return data
  }

  report(force = false): void {
    if (force || this.bytesWritten - this.reported >= PROGRESS_STEP) {
      this.reported = this.bytesWritten
      this.progress.update(this.bytesWritten)
    }
  }
}

/** Buffers lent to a stream at once, at most. */
const MAX_LENT = 8

/**
 * Writes to a stream with its backpressure. A write error on the stream
 * (disk full, reader gone) arrives as an 'error' event: caught here and
 * raised from settle(), never left unhandled; the stream's other 'error'
 * listeners (oclif's on stdout rethrows) are set aside meanwhile.
 *
 * Pooled buffers handed to the stream and not yet released are kept oldest
 * first. A stream calls back in write order, so one callback serves them all
 * (and consecutive synchronous writes with the same callback share one
 * tick). At most MAX_LENT are lent at a time: a stream that writes
 * synchronously, like a file or /dev/null on stdout, calls back only after
 * the current task.
 */
class StreamSink {
  private failure: unknown
  private failed = false
  private wake?: () => void
  private released?: () => void
  private readonly lent: Buffer[] = []
  private readonly otherListeners: Function[]

  constructor(
    private readonly out: Writable,
    private readonly pool: Buffer[],
  ) {
    this.otherListeners = out.rawListeners('error')
    out.removeAllListeners('error')
    out.on('error', this.onError)
  }

  private readonly onError = (err: unknown): void => {
    if (!this.failed) {
      this.failed = true
      this.failure = err
    }
    this.wake?.()
    this.released?.()
  }

  private readonly onWritten = (): void => {
    const b = this.lent.shift()
    if (b) this.pool.push(b)
    this.released?.()
  }

  /** Hand `data` to the stream (`pooled`: its buffer, back to the pool once written); true when the caller must `await settle()` before the next. */
  send(data: Buffer, pooled?: Buffer): boolean {
    let more: boolean
    if (pooled) {
      this.lent.push(pooled)
      more = this.out.write(data, this.onWritten)
    } else more = this.out.write(data)
    return !more || this.lent.length >= MAX_LENT || this.failed
  }

  async settle(): Promise<void> {
    while (this.lent.length >= MAX_LENT && !this.failed) await new Promise<void>((resolve) => (this.released = resolve))
    if (this.out.writableNeedDrain && !this.failed)
      await new Promise<void>((resolve) => {
        this.wake = resolve
        this.out.once('drain', resolve)
      })
    if (this.failed) throw this.failure
  }

  /** Put the other 'error' listeners back, unless the stream failed: a failed stream may still emit. */
  detach(): void {
    if (this.failed) return
    this.out.off('error', this.onError)
    for (const l of this.otherListeners) this.out.on('error', l as (err: Error) => void)
  }
}

async function exportToStream(run: ExportRun, dest: Writable): Promise<void> {
  const sink = new StreamSink(dest, run.buffers)
  try {
    if (run.format === 'raw') await streamRaw(run, sink)
    else await streamConverted(run, sink)
  } finally {
    sink.detach()
  }
}

async function streamRaw(run: ExportRun, sink: StreamSink): Promise<void> {
  const {chunkSize, virtualSize} = run.manifest
  let index = 0
  for await (const batch of manifestFileEntries(run.manifestFile)) {
    for (const e of batch) {
      run.init.signal?.throwIfAborted()
      if (typeof e === 'number') {
        // a zero run: ZERO-sized writes, not one per chunk
        const end = Math.min((index + e) * chunkSize, virtualSize)
        for (let at = index * chunkSize; at < end; ) {
          const n = Math.min(ZERO.length, end - at)
          const wait = sink.send(ZERO.subarray(0, n))
          run.bytesWritten += n
          at += n
          if (wait) await sink.settle()
        }
        index += e
      } else {
        const buf = run.takeBuffer()
        const data = run.readChunk(index, e, buf)
        const wait = sink.send(data, buf)
        run.bytesWritten += data.length
        index++
        if (wait) await sink.settle()
      }
      run.report()
    }
  }
  await sink.settle()
  run.report(true)
}

/** qemu-img cannot write to a pipe: convert to a temporary file, then stream it. */
async function streamConverted(run: ExportRun, sink: StreamSink): Promise<void> {
  const tmp = path.join(run.store.layout.tmpDir, tmpName(`export.${run.format}`))
  try {
    await exportImage(run.store, run.id, tmp, {...run.init, progress: run.progress})
    const fh = await fsp.open(tmp, 'r')
    try {
      for await (const piece of fh.createReadStream()) {
        if (sink.send(piece)) await sink.settle()
        run.bytesWritten += piece.length
      }
    } finally {
      await fh.close()
    }
  } finally {
    await fsp.rm(tmp, {force: true})
  }
}

/**
 * To a file: written beside the destination and put in place when complete
 * (publish); a block device (or anything not a regular file) is written in
 * place. Other formats are converted from a raw file beside it.
 */
async function exportToFile(run: ExportRun, dest: string): Promise<void> {
  const {target, st} = await outputTarget(dest, run.init.overwrite ?? false)
  const inPlace = st !== undefined && !st.isFile() // block device or similar
  const rawFile = inPlace ? target : stagingFile(target, 'vmi-export')
  const rawTarget = run.format === 'raw' ? rawFile : rawFile + '.raw'
  try {
    await writeRaw(run, rawTarget, inPlace)
    if (run.format !== 'raw') {
      await convertFromRaw(rawTarget, run.format, rawFile, run.init.tools ?? DEFAULT_TOOLS)
      await fsp.rm(rawTarget, {force: true})
    }
    if (!inPlace) await publishFile(rawFile, target, run.init.overwrite ?? false, dest)
  } catch (err) {
    if (!inPlace) await fsp.rm(rawFile, {force: true}).catch(() => {})
    if (rawTarget !== rawFile) await fsp.rm(rawTarget, {force: true}).catch(() => {})
    throw err
  }
}

/** The raw image into `file`: a new sparse file (zero chunks are holes), or over an existing device. */
async function writeRaw(run: ExportRun, file: string, inPlace: boolean): Promise<void> {
  const {manifest} = run
  const fh = await fsp.open(file, inPlace ? 'r+' : 'wx', 0o644)
  try {
    if (!inPlace) await fh.truncate(manifest.virtualSize)
    // writes in order, a few in flight
    const inflight: Promise<unknown>[] = []
    let writeError: unknown
    const track = (p: Promise<unknown>, buf?: Buffer) => {
      // every write is watched, so one that fails while others are waited on is never unhandled
      inflight.push(
        p.then(
          () => buf && run.buffers.push(buf),
          (err) => {
            writeError ??= err
          },
        ),
      )
    }
    const settle = async () => {
      if (inflight.length >= 8) await inflight.shift()
      if (writeError) throw writeError
    }
    let index = 0
    for await (const batch of manifestFileEntries(run.manifestFile)) {
      for (const e of batch) {
        run.init.signal?.throwIfAborted()
        if (typeof e === 'number') {
          if (!inPlace) run.holes += e
          else
            for (let k = 0; k < e; k++) {
              const i = index + k
              track(fh.write(ZERO, 0, chunkLength(manifest, i), i * manifest.chunkSize))
              await settle()
            }
          index += e
          continue
        }
        const buf = run.takeBuffer()
        const data = run.readChunk(index, e, buf)
        track(fh.write(data, 0, data.length, index * manifest.chunkSize), buf)
        index++
        await settle()
        run.bytesWritten += data.length
        run.report()
      }
    }
    run.bytesWritten = manifest.virtualSize
    await Promise.all(inflight)
    if (writeError) throw writeError
    // character devices (/dev/null) cannot be fsynced
    await fh.sync().catch((err) => {
      if (!isErrno(err, 'EINVAL', 'ENOTSUP')) throw err
    })
  } finally {
    await fh.close()
  }
}

/** What a failed export reports: an interruption, or the destination's failure in words. */
function exportError(err: unknown, spec: string, dest: string | Writable, signal: AbortSignal | undefined): unknown {
  if (signal?.aborted) return new InterruptedError(`export of ${spec} interrupted`, {cause: err})
  return outputError(err, dest, 'the export')
}
