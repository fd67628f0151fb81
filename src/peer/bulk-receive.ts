/**
 * Receive, verify and store chunks on one thread: a bulk task runs
 * pipelined GETs (pipelined-get.ts) as a writer job (store/job-runner.ts)
 * on a writer thread or on the pull's own thread, and each body is
 * hashed and written to the store right there, while it is still in that
 * core's cache, in the memory it was read into. A pull spreads its tasks
 * over its receivers, each task over its own connection, so every thread
 * does the whole job for its share of the chunks and no chunk crosses
 * between threads (faster than receiving on the main thread and handing
 * each chunk to a writer thread: docs/PROTOCOL.md, "Bulk fetch").
 *
 * The pull's thread hears about outcomes in batches (BulkProgress), by item
 * index, and does the bookkeeping: counts, events, progress, and what goes
 * back to the chunk-by-chunk chain.
 */
import {openObject, storedForm} from '../store/object-encoding.js'
import type {LocalStore} from '../store/local-store.js'
import type {JobRunner} from '../store/job-runner.js'
import type {WriterJob, WriterJobRunner} from '../store/object-writer.js'
import {spanItem, splitSpan, type PackSpan, type SpanItem} from './packs.js'
import {bulkGet, type BulkItem, type BulkOptions} from './pipelined-get.js'

/** What a thread needs to fetch its share: plain data, sent to the thread. */
export interface BulkTask {
  url: string
  items: {id: string; path: string; length: number}[]
  /** Ranged reads of packs (packs.ts) that bring some of `items` (their indexes); the rest are fetched one GET each. */
  spans?: PackSpan[]
  options: Omit<BulkOptions, 'signal' | 'allocBody'>
  /** Look for each object before writing it (a peer may be this host's own serve, which stored it here already). */
  probe: boolean
}

/** Outcomes since the last report, by index into BulkTask.items. */
export interface BulkProgress {
  /** Verified and stored, or found present. */
  stored: number[]
  /** 404. */
  missing: number[]
  /** Any other answer: status, wrong length. */
  failed: [number, string][]
  /** A body that hashes to something else: [index, what it hashes to]. */
  mismatch: [number, string][]
  /** Bytes of the bodies of `stored`, as they came (compressed ones compressed). */
  wire: number
}

export interface BulkEnd {
  /** Never answered (the source stopped answering): fetch them another way. */
  unanswered: number[]
  stopped?: string
}

/**
 * Fetch, verify and store a share of a pull's chunks on `writer`'s thread.
 * `onProgress` hears about outcomes in batches, by index into `task.items`,
 * before this resolves. Rejects with a StoreError when the store cannot be
 * written; aborting `signal` ends the task early (it still resolves, with
 * what was not answered).
 */
export function receiveBulk(writer: JobRunner, task: BulkTask, onProgress: (p: BulkProgress) => void, signal?: AbortSignal): Promise<BulkEnd> {
  return writer.job(BULK_RECEIVE, task, onProgress, `chunks from ${task.url}`, signal)
}

/** Have `writer` load this module ahead of its first task (JobRunner.preload). */
export function preloadBulkReceive(writer: JobRunner): void {
  writer.preload(BULK_RECEIVE as WriterJob<unknown, unknown, unknown>)
}

/** Reports are batched: at most this many outcomes, or this many ms, apart. */
const REPORT_EVERY = 32
const REPORT_MS = 50

/** An item and its place in BulkTask.items. */
type Indexed = BulkItem & {index: number}

/** The task items a request stood for: one, or a span's members. */
function indexesOf(item: BulkItem): number[] {
  const span = (item as SpanItem).span
  return span ? span.members : [(item as Indexed).index]
}

function emptyProgress(): BulkProgress {
  return {stored: [], missing: [], failed: [], mismatch: [], wire: 0}
}

/**
 * Run a task against `store` on this thread. `report` is called with
 * batches of outcomes (the last batch before this resolves). A failure to
 * write the store stops the task and rejects with that error.
 */
export const runJob: WriterJobRunner<BulkTask, BulkProgress, BulkEnd> = (store, task, report, signal) => runBulkTask(store, task, report, signal)

/** This module as a writer-thread job: a thread imports it by this URL (see WriterJob) and calls runJob. */
export const BULK_RECEIVE: WriterJob<BulkTask, BulkProgress, BulkEnd> = {module: new URL('../peer/bulk-receive.js', import.meta.url).href, runner: runJob}

async function runBulkTask(store: LocalStore, task: BulkTask, report: (p: BulkProgress) => void, signal?: AbortSignal): Promise<BulkEnd> {
  const all: Indexed[] = task.items.map((it, index) => ({...it, index}))
  const inSpan = new Set<number>()
  for (const s of task.spans ?? []) for (const m of s.members) inSpan.add(m)
  const items: BulkItem[] = [...all.filter((it) => !inSpan.has(it.index)), ...(task.spans ?? []).map(spanItem)]
  const stop = new AbortController()
  const onAbort = () => stop.abort()
  signal?.addEventListener('abort', onAbort, {once: true})
  // body memory, reused: a body is hashed and written before the callback returns
  const spare: ArrayBuffer[] = []
  let pending = emptyProgress()
  let count = 0
  let last = performance.now()
  let fatal: unknown
  const flush = (force: boolean) => {
    if (count === 0 || (!force && count < REPORT_EVERY && performance.now() - last < REPORT_MS)) return
    const p = pending
    pending = emptyProgress()
    count = 0
    last = performance.now()
    report(p)
  }
  const outcome = () => {
    count++
    flush(false)
  }
  /** Decode when a frame, hash, and store as it came (object-encoding.ts); throws only when the store cannot be written. */
  const take = (item: Indexed, body: Buffer) => {
    const o = openObject(item.id, body, item.length)
    if (o.actual !== undefined) pending.mismatch.push([item.index, o.actual])
    else {
      store.putObjectSync(item.id, storedForm(body, o), {probe: task.probe})
      pending.stored.push(item.index)
      pending.wire += body.length
    }
    outcome()
  }
  try {
    const r = await bulkGet(
      task.url,
      items,
      {
        onBody: (item, body) => {
          try {
            if (fatal) return
            const span = (item as SpanItem).span
            if (span) splitSpan(span, body, (m, bytes) => take(all[m], bytes))
            else take(item as Indexed, body)
          } catch (err) {
            fatal ??= err
            stop.abort()
          } finally {
            if (body.byteOffset === 0) spare.push(body.buffer as ArrayBuffer)
          }
        },
        onMissing: (item) => {
          for (const i of indexesOf(item)) {
            pending.missing.push(i)
            outcome()
          }
        },
        onFailed: (item, reason) => {
          for (const i of indexesOf(item)) {
            pending.failed.push([i, reason])
            outcome()
          }
        },
      },
      {
        ...task.options,
        signal: stop.signal,
        allocBody: (n) => {
          for (let i = spare.length - 1; i >= 0; i--) {
            if (spare[i].byteLength >= n) return Buffer.from(spare.splice(i, 1)[0], 0, n)
          }
          return Buffer.from(new ArrayBuffer(Math.max(n, 128 << 10)), 0, n)
        },
      },
    )
    if (fatal) throw fatal
    flush(true)
    return {unanswered: r.unanswered.flatMap(indexesOf), ...(r.stopped ? {stopped: r.stopped} : {})}
  } finally {
    signal?.removeEventListener('abort', onAbort)
  }
}
