/**
 * A chunk source that joins single gets into pipelined bulk requests
 * (pipelined-get.ts). `vmi serve --seed` fetches through one chunk per
 * request it misses; a pull asking the owner pipelines up to a window of
 * requests, so many such gets arrive together. A general-client request
 * per chunk costs several times the CPU of a chunk in a pipelined batch,
 * which is a header parse and a copy (docs/PERFORMANCE.md).
 *
 * Gets queue up while at most `maxInFlight` batches are under way; a batch
 * leaves when fewer are, at the end of the event loop's turn, carrying
 * everything queued (up to `maxBatch`): the busier the upstream, the larger
 * the batches, and a lone get waits for one turn of the loop. Every body is verified against its id. Only what a
 * batch could not settle — a status other than 200 or 404, a body over the
 * chunk size cap, a connection that failed — goes through the wrapped
 * store's own get (HttpStore: the general client, with its retries and redirects), one by one.
 */
import {RemoteIntegrityError} from '../errors.js'
import {checkReceived} from '../store/object-encoding.js'
import {spanItem, splitSpan, type SpanItem} from './packs.js'
import {bulkGet, type BulkItem} from './pipelined-get.js'
import {assertChunkId, type ChunkSource, type FetchOptions, type RemoteSource, type SourceKind} from './source.js'
import {MAX_OBJECT_BYTES, objectPath} from './wire.js'

export interface BatchedSourceInit {
  /** Most gets in one batch (default 64). */
  maxBatch?: number
  /** Batches under way at once (default 2). */
  maxInFlight?: number
  /** A guess at a chunk's size, for the pipelining window (default 128 KiB). */
  typicalChunkBytes?: number
}

interface Waiter {
  id: string
  resolve: (data: Buffer | undefined) => void
  reject: (err: Error) => void
}

export class BatchedSource implements ChunkSource {
  readonly name: string
  readonly kind: SourceKind
  readonly url: string
  /** Batches sent, gets they settled, and gets left to the store's own get (for tests and the log). */
  readonly stats = {batches: 0, batched: 0, fallbacks: 0}
  private readonly queue: Waiter[] = []
  private inFlight = 0
  private scheduled = false
  private readonly maxBatch: number
  private readonly maxInFlight: number
  private readonly typical: number

  constructor(
    private readonly store: RemoteSource,
    init: BatchedSourceInit = {},
  ) {
    this.name = store.name
    this.kind = store.kind
    this.url = store.url
    this.maxBatch = Math.max(1, init.maxBatch ?? 64)
    this.maxInFlight = Math.max(1, init.maxInFlight ?? 2)
    this.typical = init.typicalChunkBytes ?? 128 * 1024
  }

  has(id: string, opts?: FetchOptions): Promise<boolean> {
    return this.store.has(id, opts)
  }

  /** Where the store packs an image's chunks, when it may keep packs: batches then read their ranges. */
  usePacks(manifestId: string, opts?: FetchOptions): Promise<number> {
    return this.store.usePacks ? this.store.usePacks(manifestId, opts) : Promise.resolve(0)
  }

  /** Verified chunk bytes, undefined on 404 (as RemoteSource.get). A signal only applies to the one-by-one fallback. */
  get(id: string, opts: FetchOptions = {}): Promise<Buffer | undefined> {
    try {
      assertChunkId(id)
    } catch (err) {
      return Promise.reject(err)
    }
    if (opts.signal) return this.store.get(id, opts)
    return new Promise((resolve, reject) => {
      this.queue.push({id, resolve, reject})
      // after this turn of the event loop: requests parsed from the same bytes go together
      if (!this.scheduled) {
        this.scheduled = true
        setImmediate(() => {
          this.scheduled = false
          this.pump()
        })
      }
    })
  }

  private pump(): void {
    while (this.queue.length > 0 && this.inFlight < this.maxInFlight) {
      const batch = this.queue.splice(0, this.maxBatch)
      this.inFlight++
      this.stats.batches++
      void this.send(batch).finally(() => {
        this.inFlight--
        this.pump()
      })
    }
  }

  private async send(batch: Waiter[]): Promise<void> {
    const byItem = new Map<BulkItem, Waiter>()
    // packed chunks as ranges of their packs (adjacent ones in one read), the rest one GET each
    const plan = this.store.packPlan?.(batch)
    const looseOnes = plan ? plan.loose.map((i) => batch[i]) : batch
    const items: BulkItem[] = looseOnes.map((w) => {
      const item: BulkItem = {id: w.id, path: objectPath(w.id), length: this.typical, upTo: MAX_OBJECT_BYTES}
      byItem.set(item, w)
      return item
    })
    for (const span of plan?.spans ?? []) items.push(spanItem(span))
    const settled = new Set<Waiter>()
    const settle = (w: Waiter, fn: (w: Waiter) => void) => {
      if (settled.has(w)) return
      settled.add(w)
      this.stats.batched++
      fn(w)
    }
    // decoded when a frame, then hashed
    const received = (w: Waiter, bytes: Buffer) =>
      settle(w, () => {
        try {
          w.resolve(checkReceived(w.id, bytes, (actual) => new RemoteIntegrityError(`${this.name} sent wrong bytes for chunk ${w.id} (they hash to ${actual})`, {data: {id: w.id, actual, source: this.name}})))
        } catch (err) {
          w.reject(err as Error)
        }
      })
    // bulkGet reports each item through these handlers and does not throw;
    // an item it reports as failed, or leaves unanswered, stays unsettled
    await bulkGet(
      this.store.url,
      items,
      {
        onBody: (item, body) => {
          const span = (item as SpanItem).span
          // a chunk's bytes outlive the batch (the caller keeps them): copied out of the span's buffer
          if (span) splitSpan(span, body, (m, bytes) => received(batch[m], Buffer.from(bytes)))
          else received(byItem.get(item)!, body)
        },
        // a pack that is gone: its chunks are asked loose, one by one, below; so is a chunk
        // missing loose while a pack list is being read (the store's get waits for it)
        onMissing: (item) => {
          if (!(item as SpanItem).span && !this.store.packsPending) settle(byItem.get(item)!, (w) => w.resolve(undefined))
        },
        onFailed: () => {},
      },
      {...this.store.bulkOptions(false), connections: 1, maxFailures: 1, windowBytes: this.maxBatch * this.typical},
    ).catch(() => undefined)
    const later = batch.filter((w) => !settled.has(w))
    await Promise.all(
      later.map(async (w) => {
        this.stats.fallbacks++
        try {
          w.resolve(await this.store.get(w.id))
        } catch (err) {
          w.reject(err as Error)
        }
      }),
    )
  }
}
