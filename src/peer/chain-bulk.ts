/**
 * The fetch chain's bulk path: each chunk's first source is asked for all
 * of its chunks over pipelined connections, one per writer thread, which
 * receives, verifies and stores them (bulk-receive.ts). Whatever a task
 * leaves (missing there, failed, wrong bytes, unanswered) goes back to the
 * caller in `leftover`, for the chunk-by-chunk chain.
 */
import {setMaxListeners} from 'node:events'
import os from 'node:os'
import {CallerThreadJobs, type JobRunner} from '../store/job-runner.js'
import type {LocalStore} from '../store/local-store.js'
import {ObjectWriter} from '../store/object-writer.js'
import {mapLimit} from '../util/map-limit.js'
import {receiveBulk, type BulkEnd, type BulkProgress} from './bulk-receive.js'
import type {ChainEvent, ChainStats, FetchManyInit} from './chain.js'
import type {PackSpan} from './packs.js'
import type {BulkItem} from './pipelined-get.js'
import type {RemoteSource, SourceKind} from './source.js'

/** What the bulk path reports into: the chain's counters and events. */
export interface BulkChain {
  store: LocalStore
  /** Ask owner peers with fetch-through. */
  ownerHashing: boolean
  stats: ChainStats
  tally(kind: SourceKind, bytes: number, from: string): void
  emit(e: ChainEvent): void
}

/**
 * The receivers a pull receives, verifies and stores chunks on, each over
 * its own connections: one per core, at least 2 (the bulk path always used
 * two connections) and at most 4 (more connections to one seed bring
 * nothing on loopback). The first is the caller's own thread, which is idle
 * meanwhile; the others are writer threads, started now. Close them with
 * closeWriters.
 */
export function startWriters(store: LocalStore): JobRunner[] {
  const threads = Math.max(2, Math.min(4, os.availableParallelism())) - 1
  return [new CallerThreadJobs(store), ...Array.from({length: threads}, () => new ObjectWriter(store.root, {entry: PEER_WRITER_THREAD}))]
}

/**
 * The entry of this layer's writer threads (a pull's, a push's): the
 * store's thread with this layer's jobs built in (writer-thread.ts), which
 * the build bundles into one file. Written from one level below dist/, as
 * WriterJob's URLs are, so that it also names the file from a command's bundle.
 */
export const PEER_WRITER_THREAD = new URL('../peer/writer-thread.js', import.meta.url)

export async function closeWriters(writers: readonly JobRunner[]): Promise<void> {
  await Promise.all(writers.map((w) => w.close().catch(() => {})))
}

/**
 * Bulk connections open at once, at most. A pull with a thousand peers has a
 * thousand owners; one connection each, all at once, held the whole image in
 * memory at one moment (every connection's window of chunks in flight).
 */
export const MAX_BULK_CONNECTIONS = 32

/**
 * Bytes a pull asks of all its peers at once and has not yet received,
 * shared among its peer connections (each keeps at least two chunks
 * requested, and at most what one connection to a seed keeps). Whatever is
 * requested and not yet received queues on this host's downlink, ahead of
 * the chunks it owns coming from the seed: with a fixed window per
 * connection, fifteen owners' windows crowd out this host's own share from
 * the seed, which then arrives late and is forwarded late, and ends the
 * fleet's fill. One total keeps that queue the same size at any fleet size
 * (docs/PERFORMANCE.md, the fleet lab).
 */
export const PEER_WINDOW_BYTES = 4 << 20

/** The pipelining window of each of `connections` peer connections, for chunks of at most `chunkBytes`. */
export function peerWindowBytes(connections: number, chunkBytes: number): number {
  return Math.min(PEER_WINDOW_BYTES, Math.max(2 * chunkBytes, Math.floor(PEER_WINDOW_BYTES / Math.max(1, connections))))
}

export async function bulkFetch(groups: Map<RemoteSource, BulkItem[]>, init: FetchManyInit, leftover: string[], chain: BulkChain): Promise<void> {
  const own = init.writers === undefined
  const writers = init.writers ?? startWriters(chain.store)
  const stop = new AbortController()
  const onAbort = () => stop.abort()
  init.signal?.addEventListener('abort', onAbort, {once: true})
  let fatal: Error | undefined
  // One task per connection: a lone source is shared among all the threads
  // (every other chunk to each), several sources get one connection each.
  const tasks: {src: RemoteSource; items: BulkItem[]; spans?: PackSpan[]}[] = []
  for (const [src, list] of groups) {
    const plan = src.packPlan?.(list)
    const parts = groups.size > 1 ? 1 : Math.min(writers.length, plan ? plan.spans.length + plan.loose.length : list.length)
    if (!plan) {
      for (let p = 0; p < parts; p++) tasks.push({src, items: list.filter((_, i) => i % parts === p)})
      continue
    }
    // a seed's packs: whole ranged reads dealt out among the threads (not single chunks, which would break the ranges up)
    for (let p = 0; p < parts; p++) {
      const items: BulkItem[] = []
      const spans: PackSpan[] = []
      plan.spans.forEach((s, k) => {
        if (k % parts === p) spans.push({...s, members: s.members.map((m) => items.push(list[m]) - 1)})
      })
      plan.loose.forEach((m, k) => {
        if (k % parts === p) items.push(list[m])
      })
      if (items.length > 0) tasks.push({src, items, spans})
    }
  }
  // peer connections open at once share one window (PEER_WINDOW_BYTES)
  const peerConnections = Math.min(MAX_BULK_CONNECTIONS, tasks.filter((t) => t.src.kind === 'peer').length)
  // every running task listens on `stop`, one per peer with many peers: not a leak
  setMaxListeners(Math.min(tasks.length, MAX_BULK_CONNECTIONS) + 1, stop.signal)
  // With more owners than connections, each host takes them in its own random
  // order: hosts that all took them in manifest order would all ask the same
  // few owners first, and leave the rest idle.
  if (tasks.length > MAX_BULK_CONNECTIONS) shuffle(tasks)
  try {
    await mapLimit(tasks, MAX_BULK_CONNECTIONS, async ({src, items, spans}, t) => {
      // stopped before its turn came: the error or the caller's abort is thrown below
      if (stop.signal.aborted) return
      const peer = src.kind === 'peer'
      const owner = peer && chain.ownerHashing
      // a seed's connection keeps the transport's default window
      const windowBytes = peer ? peerWindowBytes(peerConnections, largest(items)) : undefined
      const onProgress = (p: BulkProgress) => {
        chain.stats.wireBytes += p.wire
        for (const i of p.stored) {
          const item = items[i]
          chain.tally(src.kind, item.length, src.name)
          try {
            init.onChunk?.(item.id, item.length, src.kind)
          } catch (err) {
            fatal ??= err as Error
            stop.abort()
          }
        }
        for (const i of p.missing) leftover.push(items[i].id)
        for (const [i, reason] of p.failed) {
          chain.stats.sourceErrors++
          chain.emit({type: 'source-error', id: items[i].id, source: src.name, message: `${src.name} failed chunk ${items[i].id}: ${reason}`})
          leftover.push(items[i].id)
        }
        for (const [i, actual] of p.mismatch) {
          chain.stats.sourceErrors++
          chain.stats.verificationFailures++
          const id = items[i].id
          chain.emit({type: 'verification-failure', id, source: src.name, message: `${src.name} sent wrong bytes for chunk ${id} (they hash to ${actual})`})
          leftover.push(id)
        }
      }
      let end: BulkEnd
      try {
        end = await receiveBulk(
          writers[t % writers.length],
          {url: src.url, items, spans, options: {...src.bulkOptions(owner), connections: 1, windowBytes}, probe: peer},
          onProgress,
          stop.signal,
        )
      } catch (err) {
        // the store could not be written (or the thread died): nothing more can be stored
        fatal ??= err as Error
        stop.abort()
        return
      }
      if (end.stopped && end.unanswered.length > 0 && !stop.signal.aborted) {
        chain.stats.sourceErrors++
        chain.emit({type: 'source-error', id: items[end.unanswered[0]].id, source: src.name, message: `bulk fetch from ${src.name} stopped (${end.stopped}); ${end.unanswered.length} chunks go one by one`})
      }
      for (const i of end.unanswered) leftover.push(items[i].id)
    })
  } finally {
    init.signal?.removeEventListener('abort', onAbort)
    if (own) await closeWriters(writers)
  }
  if (fatal) throw fatal
  init.signal?.throwIfAborted()
}

/** The largest length among `items` (a chunk's, for a peer's loose objects). */
function largest(items: readonly BulkItem[]): number {
  let m = 0
  for (const it of items) m = Math.max(m, it.length)
  return m
}

/** Fisher–Yates, in place. */
function shuffle<T>(xs: T[]): void {
  for (let i = xs.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1))
    ;[xs[i], xs[j]] = [xs[j], xs[i]]
  }
}
