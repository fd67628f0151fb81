/**
 * What runs on a writer thread (ObjectWriter): check each object it is
 * given (decode, hash; unless the sender checked it already) and store it as
 * received with LocalStore.putObjectSync (tmp file, link); or import a whole
 * segment of a raw file; or run a job from a layer above (ObjectWriter.job).
 *
 * A thread's entry module calls runWriterThread once. The store's own entry
 * (object-writer-worker.ts) knows no jobs: it imports each job's module by
 * URL when first asked. A layer above may start its threads from an entry of
 * its own that names its jobs here (`builtIn`), so that the build can bundle
 * the thread and those jobs into one file (scripts/bundle-entries.mjs): a
 * thread's start then loads one module instead of a few dozen.
 */
import {parentPort, workerData} from 'node:worker_threads'
import {processSegment, type SegmentRequest} from './import-segment.js'
import {LocalStore} from './local-store.js'
import {builtInJob, errorData, runnerFor} from './job-runner.js'
import {admitObject} from './object-encoding.js'
import type {SlabOutcome, WriterJob} from './object-writer.js'

type PutMessage = {seq: number; id: string; buffer: ArrayBuffer; length: number; verify: boolean}
type SlabMessage = {seq: number; op: 'slab'; buffer: ArrayBuffer; ids: string[]; offsets: number[]; lengths: number[]}
type SegmentMessage = {seq: number; op: 'segment'; req: SegmentRequest}
type JobMessage = {seq: number; op: 'job'; module: string; task: unknown}
type AbortMessage = {seq: number; op: 'abort'}
type LoadMessage = {seq: number; op: 'load'; module: string}

/**
 * Serve the caller's messages on this thread, against the store named in
 * workerData. Each job of `builtIn` runs by its runner when asked for by its
 * module's URL, without an import; any other job's module is imported by URL.
 */
export async function runWriterThread(builtIn: readonly WriterJob<unknown, unknown, unknown>[] = []): Promise<void> {
  for (const job of builtIn) builtInJob(job)
  const {root, stagingDir} = workerData as {root: string; stagingDir: string}
  const store = await LocalStore.open(root, {create: false})
  store.stageObjectsIn(stagingDir)

  let scratch = Buffer.alloc(0)

  /** Jobs running, to abort by their seq. */
  const jobs = new Map<number, AbortController>()

  parentPort!.on('message', (m: PutMessage | SlabMessage | SegmentMessage | JobMessage | LoadMessage | AbortMessage) => {
    if ('op' in m) {
      if (m.op === 'slab') return slab(m)
      if (m.op === 'segment') return segment(m)
      if (m.op === 'job') return void job(m)
      if (m.op === 'load') return void runnerFor(m.module).catch(() => {}) // reported by the job that needs it
      return jobs.get(m.seq)?.abort()
    }
    let data: Buffer = Buffer.from(m.buffer, 0, m.length)
    // the memory goes back with the answer, for the next chunk
    const reply = (r: object) => parentPort!.postMessage({seq: m.seq, buffer: m.buffer, ...r}, [m.buffer])
    if (m.verify) {
      // decoded (when a frame) and hashed; stored as received
      const a = admitObject(m.id, data)
      if (a.mismatch !== undefined) return reply({mismatch: a.mismatch})
      if (a.zero) return reply({zero: true})
      data = a.store
    }
    try {
      reply({ok: store.putObjectSync(m.id, data, {probe: false}) ? 'stored' : 'present'})
    } catch (err) {
      reply({error: errorData(err)})
    }
  })

  /**
   * Objects received into one buffer, each checked and stored on its own (as a
   * put is): one outcome per object, in order. A store that cannot be written
   * stops the slab there and answers with the error instead.
   */
  function slab(m: SlabMessage): void {
    const outcomes: SlabOutcome[] = []
    let error: object | undefined
    for (let i = 0; i < m.ids.length; i++) {
      const a = admitObject(m.ids[i], Buffer.from(m.buffer, m.offsets[i], m.lengths[i]))
      if (a.mismatch !== undefined) outcomes.push({mismatch: a.mismatch})
      else if (a.zero) outcomes.push({zero: true})
      else {
        try {
          outcomes.push(store.putObjectSync(m.ids[i], a.store, {probe: false}) ? 'stored' : 'present')
        } catch (err) {
          error = errorData(err)
          break
        }
      }
    }
    parentPort!.postMessage({seq: m.seq, buffer: m.buffer, ...(error ? {error} : {outcomes})}, [m.buffer])
  }

  /** A whole segment of an import (import-segment.ts), on this thread. */
  function segment(m: SegmentMessage): void {
    if (scratch.length < m.req.chunkSize) scratch = Buffer.allocUnsafeSlow(m.req.chunkSize)
    try {
      parentPort!.postMessage({seq: m.seq, segment: processSegment(store, m.req, scratch)})
    } catch (err) {
      parentPort!.postMessage({seq: m.seq, error: errorData(err)})
    }
  }

  /** A job (ObjectWriter.job): its reports go back as they come, then its result. */
  async function job(m: JobMessage): Promise<void> {
    const ctl = new AbortController()
    jobs.set(m.seq, ctl)
    try {
      const done = await (await runnerFor(m.module))(store, m.task, (progress) => parentPort!.postMessage({seq: m.seq, progress}), ctl.signal)
      parentPort!.postMessage({seq: m.seq, done})
    } catch (err) {
      parentPort!.postMessage({seq: m.seq, error: errorData(err)})
    } finally {
      jobs.delete(m.seq)
    }
  }
}
