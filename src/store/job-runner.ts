/**
 * Where a writer job (ObjectWriter.job: a layer above fetches, verifies and
 * stores a share of the chunks itself) runs: on a writer thread
 * (ObjectWriter), or on the caller's own thread (CallerThreadJobs). A pull
 * keeps its main thread as one of its receivers: it is idle while the
 * threads receive, and each thread it does not start saves the CPU that
 * starting one costs (a fleet's hosts all start at once, on a busy core in
 * the lab; docs/PERFORMANCE.md).
 *
 * Both run the same job module and fail the same way: a job's error comes
 * back as a StoreError made from its message and errno, naming `what`.
 */
import {storeWriteError} from '../errors.js'
import {SegmentReadError} from './import-segment.js'
import type {LocalStore} from './local-store.js'
import type {WriterJob, WriterJobRunner} from './object-writer.js'

export interface JobRunner {
  /** Run `job` with `task` (see WriterJobRunner); `onProgress` hears each report before this settles. */
  job<T, P, R>(job: WriterJob<T, P, R>, task: T, onProgress: (p: P) => void, what: string, signal?: AbortSignal): Promise<R>
  /** Load `job`'s module now, so that its first run does not wait for it. */
  preload(job: WriterJob<unknown, unknown, unknown>): void
  /** Wait for what was handed over, then release the runner. */
  close(): Promise<void>
}

/** A failure as plain data (it crosses between threads): a read error as it is, a store error by its cause (the errno). */
export function errorData(err: unknown): {message: string; errno?: string; read: boolean} {
  const read = err instanceof SegmentReadError
  const cause = (read ? err : ((err as {cause?: unknown}).cause ?? err)) as NodeJS.ErrnoException
  return {message: cause.message, errno: cause.code, read}
}

/** The StoreError for a job or write that failed, from its errorData. */
export function jobStoreError(error: {message?: string; errno?: string} | undefined, what: string): Error {
  return storeWriteError(Object.assign(new Error(error?.message ?? 'unknown error'), {code: error?.errno}), what)
}

/** Job modules by URL, each imported once per thread. */
const runners = new Map<string, Promise<WriterJobRunner<unknown, unknown, unknown>>>()

/**
 * Run `job` by its runner on this thread whenever its module is asked for
 * (runWriterThread: a thread whose entry holds the job's module already).
 */
export function builtInJob(job: WriterJob<unknown, unknown, unknown>): void {
  if (!job.runner) throw new Error(`a built-in writer job needs its runner: ${job.module}`)
  runners.set(job.module, Promise.resolve(job.runner))
}

/** The runner a job module exports (`runJob`), imported once per module on this thread. */
export function runnerFor(module: string): Promise<WriterJobRunner<unknown, unknown, unknown>> {
  let runner = runners.get(module)
  if (!runner) {
    runner = import(module).then((mod: {runJob: WriterJobRunner<unknown, unknown, unknown>}) => mod.runJob)
    runners.set(module, runner)
  }
  return runner
}

/**
 * Jobs run on the caller's thread, against the caller's store. Task and
 * progress are passed as they are, not cloned: a job makes a new progress
 * object for each report and does not change its task.
 */
export class CallerThreadJobs implements JobRunner {
  private readonly running = new Set<Promise<unknown>>()

  constructor(private readonly store: LocalStore) {}

  job<T, P, R>(job: WriterJob<T, P, R>, task: T, onProgress: (p: P) => void, what: string, signal?: AbortSignal): Promise<R> {
    const run = (async () => {
      try {
        const runJob = job.runner ?? ((await runnerFor(job.module)) as WriterJobRunner<T, P, R>)
        // a job always gets a signal (a thread's job gets one of its own)
        return await runJob(this.store, task, onProgress, signal ?? new AbortController().signal)
      } catch (err) {
        throw jobStoreError(errorData(err), what)
      }
    })()
    this.running.add(run)
    void run.finally(() => this.running.delete(run)).catch(() => {})
    return run
  }

  preload(job: WriterJob<unknown, unknown, unknown>): void {
    if (!job.runner) runnerFor(job.module).catch(() => {}) // reported by the job that needs it
  }

  async close(): Promise<void> {
    await Promise.allSettled([...this.running])
  }
}
