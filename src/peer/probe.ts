/**
 * Is a peer or seed up right now? One HEAD of its base URL (the breakers'
 * probe, HttpStore.ping): any HTTP answer means it is up; a refused
 * connection, a TLS failure or silence within the timeout means down.
 * All sources are probed at once, so the slowest bounds the wait.
 */
import {openRemote} from './factory.js'
import type {S3Access} from './s3/s3-store.js'
import type {SourceKind} from './source.js'

export interface ProbeResult {
  url: string
  kind: SourceKind
  up: boolean
  /** Time to the answer's headers, ms (when up). */
  latencyMs?: number
  /** Why it is down. */
  error?: string
}

export async function probeSources(
  sources: {url: string; kind: SourceKind; s3?: S3Access}[],
  init: {connectTimeoutMs?: number; insecure?: boolean; signal?: AbortSignal} = {},
): Promise<ProbeResult[]> {
  return Promise.all(
    sources.map(async ({url, kind, s3}): Promise<ProbeResult> => {
      const t0 = performance.now()
      try {
        const store = openRemote(url, {kind, s3, insecure: init.insecure, connectTimeoutMs: init.connectTimeoutMs ?? 1000, retry: {retries: 0, baseMs: 0, unreachableRetries: 0}})
        await store.ping({signal: init.signal})
        return {url, kind, up: true, latencyMs: Math.round((performance.now() - t0) * 10) / 10}
      } catch (err) {
        return {url, kind, up: false, error: (err as Error).message}
      }
    }),
  )
}
