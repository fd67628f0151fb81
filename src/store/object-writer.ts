/**
 * Verify and store chunks on a second thread. An import hands it chunks
 * (`put`) or whole segments of a raw file (`segment`) while the caller reads
 * the next ones; a layer above can run its own jobs on the thread (`job`:
 * a pull has each thread fetch, verify and store a share of its chunks, so
 * no chunk crosses between threads). Chunk buffers given to `put` are
 * transferred, not copied: the caller must not touch a buffer after handing
 * it over.
 *
 * Backlog is bounded in bytes: `whenBelow()` lets a producer wait.
 */
import {promises as fsp} from 'node:fs'
import path from 'node:path'
import {Worker} from 'node:worker_threads'
import {IntegrityError, StoreError} from '../errors.js'
import {tmpName} from '../util/fs-util.js'
import {admitObject} from './object-encoding.js'
import {StoreLayout} from './layout.js'
import {SegmentReadError, type SegmentRequest, type SegmentResult} from './import-segment.js'
import {jobStoreError, type JobRunner} from './job-runner.js'
import type {LocalStore} from './local-store.js'

export type PutOutcome = 'stored' | 'present'

/** What became of one object of a slab (ObjectWriter.putSlab): stored, already there, or refused. */
export type SlabOutcome = PutOutcome | {mismatch: string} | {zero: true}

/** Objects lying one after another in one buffer, for putSlab. */
export interface Slab {
  /** The memory, moved to the thread: the caller must not touch it after handing it over. */
  buffer: ArrayBuffer
  ids: string[]
  offsets: number[]
  lengths: number[]
}

interface Reply {
  seq: number
  /** The chunk's memory, handed back for reuse. */
  buffer?: ArrayBuffer
  ok?: PutOutcome
  mismatch?: string
  /** The object decoded to all zeros (refused: a store never holds a zero chunk). */
  zero?: boolean
  error?: {message: string; errno?: string; read?: boolean}
  segment?: SegmentResult
  /** A slab's outcomes, one per object. */
  outcomes?: SlabOutcome[]
  progress?: unknown
  /** A job's result (`job`). */
  done?: unknown
}

/**
 * A job the writer thread runs: the module at `WriterJob.module` exports
 * `runJob` of this type. It runs on the thread, against the thread's own
 * LocalStore; `report` sends progress to the caller's `onProgress`, and
 * `signal` aborts when the caller's signal does. Task, progress and result
 * cross between threads by structured clone: plain data only.
 */
export type WriterJobRunner<T, P, R> = (store: LocalStore, task: T, report: (p: P) => void, signal: AbortSignal) => Promise<R>

/**
 * Which module runs a job, by URL: a writer thread imports it the first
 * time, unless the thread's entry holds it (runWriterThread's `builtIn`), so
 * the store layer names no module above it. The URL names the
 * module's file in dist/ relative to a directory one level below dist/
 * (`new URL('../peer/x.js', import.meta.url)`), which is where both the
 * module itself and a command's bundle (scripts/bundle-entries.mjs) lie.
 */
export interface WriterJob<T, P, R> {
  readonly module: string
  /**
   * The module's runJob, for a job run on the caller's own thread
   * (CallerThreadJobs), or built into a thread's entry (runWriterThread):
   * importing the module by its URL there would load, inside a bundle, a
   * second copy of it and of all it imports.
   */
  readonly runner?: WriterJobRunner<T, P, R>
}

interface Waiting {
  id: string
  bytes: number
  resolve: (v: PutOutcome) => void
  reject: (e: Error) => void
}

/** Spare chunk memory kept for reuse, at most. */
const MAX_SPARE = 48 << 20

/** Buffers come in power-of-two sizes from 4 KiB, so a chunk's memory fits any chunk of its size class. */
function bucket(length: number): number {
  return length <= 4096 ? 4096 : 2 ** Math.ceil(Math.log2(length))
}

export interface ObjectWriterInit {
  /**
   * Share the work: while the thread has at least `inlineAbove` bytes
   * waiting, a put is verified and written on the caller's thread, through
   * this store, instead of being queued. A caller that would otherwise wait
   * for the backlog to drain (a stream import reading faster than the thread
   * writes) then does a share of the writing on its own core.
   */
  inline?: LocalStore
  /** Backlog in bytes from which puts run inline (default 4 MiB). */
  inlineAbove?: number
  /**
   * The thread's entry module: by default the store's own
   * (object-writer-worker.ts). A layer above passes an entry of its own that
   * calls runWriterThread with its jobs built in (writer-thread.ts).
   */
  entry?: URL
}

export class ObjectWriter implements JobRunner {
  private readonly worker: Worker
  private readonly waiting = new Map<number, Waiting>()
  private readonly segments = new Map<number, {resolve: (r: SegmentResult) => void; reject: (e: Error) => void; what: string}>()
  private readonly slabs = new Map<number, {bytes: number; resolve: (r: SlabOutcome[]) => void; reject: (e: Error) => void; what: string}>()
  private readonly jobs = new Map<number, {onProgress: (p: unknown) => void; resolve: (r: unknown) => void; reject: (e: Error) => void; what: string}>()
  private seq = 0
  private backlog = 0
  private drainWaiters: {limit: number; resolve: () => void}[] = []
  private dead?: Error
  private closed = false
  /** Memory handed back by the worker, by size: reused so that each chunk does not cost fresh pages. */
  private readonly spare = new Map<number, ArrayBuffer[]>()
  private spareBytes = 0

  private readonly stagingDir: string
  private readonly inline?: LocalStore
  private readonly inlineAbove: number
  /** Puts done on the caller's thread (see ObjectWriterInit.inline). */
  inlinePuts = 0

  constructor(storeRoot: string, init: ObjectWriterInit = {}) {
    this.inline = init.inline
    this.inlineAbove = init.inlineAbove ?? 4 << 20
    // its own directory for temporary files (LocalStore.stageObjectsIn), removed by close()
    this.stagingDir = path.join(new StoreLayout(storeRoot).tmpDir, tmpName('writer'))
    // from dist/store/ or from a command's bundle in dist/commands/: one level below dist/ both
    this.worker = new Worker(init.entry ?? new URL('../store/object-writer-worker.js', import.meta.url), {
      workerData: {root: storeRoot, stagingDir: this.stagingDir},
      // V8 reserves 128 MiB of address space per thread for compiled code by
      // default; this thread runs little code, and a pull must still run
      // under a `ulimit -v` of 2 GiB with its writer threads.
      resourceLimits: {codeRangeSizeMb: 16},
    })
    this.worker.on('message', (r: Reply) => this.onReply(r))
    this.worker.on('error', (err) => this.fail(new StoreError(`the chunk writer thread failed: ${err.message}`, {cause: err})))
    this.worker.on('exit', (code) => {
      if (!this.closed) this.fail(new StoreError(`the chunk writer thread exited (code ${code})`))
    })
  }

  /** Bytes handed over and not yet written. */
  get backlogBytes(): number {
    return this.backlog
  }

  /**
   * A buffer of `length` bytes to receive a chunk into, reusing memory the
   * worker has finished with (fresh memory costs page faults, more than the
   * copy into it).
   */
  takeBuffer(length: number): Buffer {
    const size = bucket(length)
    const ab = this.spare.get(size)?.pop()
    if (ab) {
      this.spareBytes -= size
      return Buffer.from(ab, 0, length)
    }
    return Buffer.from(new ArrayBuffer(size), 0, length)
  }

  /**
   * Hash `data`, and store it when it matches `id`. Rejects with an
   * IntegrityError on a mismatch (nothing stored) and with a StoreError when
   * the store cannot be written. `data`'s memory is moved to the worker.
   * `verify: false` when the caller hashed the bytes itself. The caller
   * found the object absent: it is written without a look first.
   */
  put(id: string, data: Buffer, opts: {verify?: boolean} = {}): Promise<PutOutcome> {
    if (this.dead) return Promise.reject(this.dead)
    if (this.inline && this.backlog >= this.inlineAbove) return this.putHere(this.inline, id, data, opts)
    const seq = ++this.seq
    // only memory the buffer has to itself (from takeBuffer or its own allocation) is moved;
    // a view into Node's shared small-buffer pool, or into anything larger, is copied
    const own = data.byteOffset === 0 && data.buffer.byteLength <= Math.max(bucket(data.length), data.length) && !(data.buffer instanceof SharedArrayBuffer)
    const buf = own ? data : Buffer.from(data)
    return new Promise<PutOutcome>((resolve, reject) => {
      this.waiting.set(seq, {id, bytes: buf.length, resolve, reject})
      this.backlog += buf.length
      this.worker.postMessage({seq, id, buffer: buf.buffer, length: buf.length, verify: opts.verify !== false}, [
        buf.buffer as ArrayBuffer,
      ])
    })
  }

  /**
   * Check and store each object of a slab on the thread, as put does each
   * one, in one message each way: for many small objects that costs far less
   * than a message per object. Resolves with one outcome per object (a
   * mismatch or an all-zero object is refused, and the rest still stored);
   * rejects with a StoreError when the store cannot be written. Its memory
   * comes back for takeBuffer.
   */
  putSlab(slab: Slab): Promise<SlabOutcome[]> {
    if (this.dead) return Promise.reject(this.dead)
    const seq = ++this.seq
    const bytes = slab.lengths.reduce((a, n) => a + n, 0)
    return new Promise<SlabOutcome[]>((resolve, reject) => {
      this.slabs.set(seq, {bytes, resolve, reject, what: `${slab.ids.length} chunks from ${slab.ids[0]}`})
      this.backlog += bytes
      this.worker.postMessage({seq, op: 'slab', ...slab}, [slab.buffer])
    })
  }

  /** put, on this thread; the buffer goes back to the spare memory afterwards. */
  private putHere(store: LocalStore, id: string, data: Buffer, opts: {verify?: boolean}): Promise<PutOutcome> {
    this.inlinePuts++
    try {
      let stored = data
      if (opts.verify !== false) {
        const a = admitObject(id, data)
        if (a.mismatch !== undefined) throw new IntegrityError(`chunk ${id} hashes to ${a.mismatch}`, {data: {id, actual: a.mismatch}})
        if (a.zero) throw new IntegrityError(`chunk ${id} is all zeros`, {data: {id, zero: true}})
        stored = a.store
      }
      // (putObjectSync reports a store that cannot be written as a StoreError, as the thread does)
      return Promise.resolve(store.putObjectSync(id, stored, {probe: false}) ? 'stored' : 'present')
    } catch (err) {
      return Promise.reject(err)
    } finally {
      this.recycle(data)
    }
  }

  /** Keep a buffer's memory for takeBuffer when it is a whole bucket of its own. */
  private recycle(data: Buffer): void {
    const ab = data.buffer
    if (data.byteOffset === 0 && !(ab instanceof SharedArrayBuffer) && ab.byteLength === bucket(data.length)) this.keepSpare(ab)
  }

  private keepSpare(ab: ArrayBuffer): void {
    if (this.spareBytes + ab.byteLength > MAX_SPARE) return
    const list = this.spare.get(ab.byteLength) ?? []
    list.push(ab)
    this.spare.set(ab.byteLength, list)
    this.spareBytes += ab.byteLength
  }

  /** Resolves once the backlog is at most `limit` bytes. */
  whenBelow(limit: number): Promise<void> {
    if (this.backlog <= limit || this.dead) return Promise.resolve()
    return new Promise((resolve) => this.drainWaiters.push({limit, resolve}))
  }

  /**
   * Import a segment of a raw file on the thread (import-segment.ts). Rejects
   * with a SegmentReadError when the source cannot be read and a StoreError
   * when the store cannot be written.
   */
  segment(req: SegmentRequest): Promise<SegmentResult> {
    if (this.dead) return Promise.reject(this.dead)
    const seq = ++this.seq
    return new Promise<SegmentResult>((resolve, reject) => {
      this.segments.set(seq, {resolve, reject, what: `chunks ${req.first}–${req.first + req.count - 1}`})
      this.worker.postMessage({seq, op: 'segment', req})
    })
  }

  /**
   * Run `job` on the thread with `task` (see WriterJobRunner). `onProgress`
   * hears each report before this resolves with the job's result. Rejects
   * with a StoreError made from the job's error (its message and errno);
   * aborting `signal` aborts the job's signal, and it resolves or rejects as
   * the job then does. `what` names the work in that error.
   */
  job<T, P, R>(job: WriterJob<T, P, R>, task: T, onProgress: (p: P) => void, what: string, signal?: AbortSignal): Promise<R> {
    if (this.dead) return Promise.reject(this.dead)
    const seq = ++this.seq
    return new Promise<R>((resolve, reject) => {
      const onAbort = () => {
        if (!this.dead) this.worker.postMessage({seq, op: 'abort'})
      }
      const settle = () => signal?.removeEventListener('abort', onAbort)
      this.jobs.set(seq, {
        onProgress: onProgress as (p: unknown) => void,
        resolve: (r) => (settle(), resolve(r as R)),
        reject: (e) => (settle(), reject(e)),
        what,
      })
      this.worker.postMessage({seq, op: 'job', module: job.module, task})
      if (signal?.aborted) onAbort()
      else signal?.addEventListener('abort', onAbort, {once: true})
    })
  }

  /**
   * Have the thread import `job`'s module now, so that a job started later
   * does not wait for it (a pull starts its threads while it fetches the
   * manifest). An import that fails fails the job's first run instead.
   */
  preload(job: WriterJob<unknown, unknown, unknown>): void {
    if (!this.dead) this.worker.postMessage({seq: 0, op: 'load', module: job.module})
  }

  private onReply(r: Reply): void {
    const jb = this.jobs.get(r.seq)
    if (jb) {
      if ('progress' in r) return jb.onProgress(r.progress)
      this.jobs.delete(r.seq)
      if ('done' in r) jb.resolve(r.done)
      else jb.reject(jobStoreError(r.error, jb.what))
      return
    }
    const sg = this.segments.get(r.seq)
    if (sg) {
      this.segments.delete(r.seq)
      if (r.segment) sg.resolve(r.segment)
      else if (r.error?.read) sg.reject(new SegmentReadError(r.error.message, r.error.errno))
      else sg.reject(jobStoreError(r.error, sg.what))
      return
    }
    const sl = this.slabs.get(r.seq)
    if (sl) {
      this.slabs.delete(r.seq)
      this.backlog -= sl.bytes
      if (r.buffer) this.keepSpare(r.buffer)
      if (r.outcomes) sl.resolve(r.outcomes)
      else sl.reject(jobStoreError(r.error, sl.what))
      return this.wakeDrainers()
    }
    const w = this.waiting.get(r.seq)
    if (!w) return
    this.waiting.delete(r.seq)
    this.backlog -= w.bytes
    if (r.buffer) this.keepSpare(r.buffer)
    if (r.ok) w.resolve(r.ok)
    else if (r.mismatch !== undefined) w.reject(new IntegrityError(`chunk ${w.id} hashes to ${r.mismatch}`, {data: {id: w.id, actual: r.mismatch}}))
    else if (r.zero) w.reject(new IntegrityError(`chunk ${w.id} is all zeros`, {data: {id: w.id, zero: true}}))
    else w.reject(jobStoreError(r.error, `chunk ${w.id}`))
    this.wakeDrainers()
  }

  private wakeDrainers(): void {
    if (this.drainWaiters.length === 0) return
    const still: typeof this.drainWaiters = []
    for (const d of this.drainWaiters) (this.backlog <= d.limit || this.dead ? d.resolve() : still.push(d))
    this.drainWaiters = still
  }

  private fail(err: Error): void {
    if (this.dead) return
    this.dead = err
    for (const w of this.waiting.values()) w.reject(err)
    this.waiting.clear()
    for (const sg of this.segments.values()) sg.reject(err)
    this.segments.clear()
    for (const sl of this.slabs.values()) sl.reject(err)
    this.slabs.clear()
    for (const jb of this.jobs.values()) jb.reject(err)
    this.jobs.clear()
    this.backlog = 0
    this.wakeDrainers()
  }

  /** Wait for every put, then stop the thread. */
  async close(): Promise<void> {
    await this.whenBelow(0)
    this.closed = true
    await this.worker.terminate()
    // empty unless a write failed halfway; gc removes what is left once this process is gone
    await fsp.rmdir(this.stagingDir).catch(() => {})
    this.spare.clear()
    // segments abandoned by a caller that failed: nobody waits for them, but settle them
    this.fail(new StoreError('the chunk writer thread was closed'))
  }
}
