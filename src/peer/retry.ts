/**
 * The one retry helper: connection errors and 5xx only, bounded, with
 * exponential backoff and jitter. Never retries a 404, a 4xx or a hash
 * mismatch (those are answers, not accidents). Also the one place that
 * sorts a failed request by what it says about the source (failureKind),
 * for the retries here and for the circuit breaker.
 */
import {RemoteError, RemoteIntegrityError} from '../errors.js'

export interface RetryPolicy {
  /** Retries after the first attempt (default 3). */
  retries: number
  /**
   * Of those, how many may follow an attempt that found the source
   * unreachable (default: all). Sources guarded by a circuit breaker use 0:
   * a refused or timed-out connection is not tried again for seconds, the
   * breaker marks the source down and the chain moves on at once.
   */
  unreachableRetries?: number
  /** First backoff in ms (default 100); doubles each time, ±50% jitter. */
  baseMs: number
  maxMs: number
}

export const DEFAULT_RETRY: RetryPolicy = {retries: 3, baseMs: 100, maxMs: 2000}

/**
 * What a failed request says about its source:
 * - `unreachable`: no connection or no answer at all: nothing listens
 *   (refused), no route, a name that does not resolve for now, or a
 *   timeout (connect or silence);
 * - `broken`: a connection that failed part-way (reset, closed early,
 *   a truncated body);
 * - `answered`: the source answered (an HTTP status, bytes that do not
 *   match their id): it is reachable, whatever the answer;
 * - `aborted`: the caller gave up; says nothing about the source;
 * - `other`: anything else (a local failure).
 */
export type FailureKind = 'unreachable' | 'broken' | 'answered' | 'aborted' | 'other'

const UNREACHABLE_CODES = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN', 'ETIMEDOUT'])
const BROKEN_CODES = new Set(['ECONNRESET', 'ECONNABORTED', 'EPIPE', 'ERR_STREAM_PREMATURE_CLOSE', 'VMI_TRUNCATED'])

export function failureKind(err: unknown): FailureKind {
  if (err instanceof RemoteIntegrityError) return 'answered'
  if (err instanceof RemoteError) {
    if (err.status !== undefined) return 'answered'
    return err.cause === undefined ? 'other' : failureKind(err.cause)
  }
  const e = err as {code?: string; name?: string}
  if (e?.name === 'TimeoutError') return 'unreachable'
  if (e?.name === 'AbortError') return 'aborted'
  if (typeof e?.code !== 'string') return 'other'
  if (UNREACHABLE_CODES.has(e.code)) return 'unreachable'
  if (BROKEN_CODES.has(e.code)) return 'broken'
  return 'other'
}

export function isRetryable(err: unknown): boolean {
  if (err instanceof RemoteError && err.status !== undefined) return err.status >= 500
  const kind = failureKind(err)
  return kind === 'unreachable' || kind === 'broken'
}

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve, reject) => {
    const onAbort = () => {
      clearTimeout(t)
      reject(signal!.reason)
    }
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort)
      resolve()
    }, ms)
    signal?.addEventListener('abort', onAbort, {once: true})
  })

export async function withRetry<T>(fn: (attempt: number) => Promise<T>, policy: Partial<RetryPolicy> = {}, signal?: AbortSignal): Promise<T> {
  const p = {...DEFAULT_RETRY, ...policy}
  for (let attempt = 0; ; attempt++) {
    try {
      return await fn(attempt)
    } catch (err) {
      if (attempt >= p.retries || !isRetryable(err) || signal?.aborted) throw err
      if (attempt >= (p.unreachableRetries ?? p.retries) && failureKind(err) === 'unreachable') throw err
      const backoff = Math.min(p.maxMs, p.baseMs * 2 ** attempt)
      await sleep(backoff * (0.5 + Math.random()), signal)
    }
  }
}
