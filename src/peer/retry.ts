/**
 * The one retry helper: connection errors and 5xx only, bounded, with
 * exponential backoff and jitter. Never retries a 404, a 4xx or a hash
 * mismatch (those are answers, not accidents).
 */
import {RemoteError, RemoteIntegrityError} from '../errors.js'

export interface RetryPolicy {
  /** Retries after the first attempt (default 3). */
  retries: number
  /** First backoff in ms (default 100); doubles each time, ±50% jitter. */
  baseMs: number
  maxMs: number
}

export const DEFAULT_RETRY: RetryPolicy = {retries: 3, baseMs: 100, maxMs: 2000}

const RETRYABLE_CODES = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ERR_STREAM_PREMATURE_CLOSE',
  'VMI_TRUNCATED',
])

export function isRetryable(err: unknown): boolean {
  if (err instanceof RemoteIntegrityError) return false
  if (err instanceof RemoteError) {
    const status = err.status
    if (status !== undefined) return status >= 500
    return isRetryable(err.cause)
  }
  const e = err as {code?: string; name?: string}
  if (e?.name === 'TimeoutError' || e?.name === 'AbortError') return e.name === 'TimeoutError'
  return typeof e?.code === 'string' && RETRYABLE_CODES.has(e.code)
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
      const backoff = Math.min(p.maxMs, p.baseMs * 2 ** attempt)
      await sleep(backoff * (0.5 + Math.random()), signal)
    }
  }
}
