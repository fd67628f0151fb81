/**
 * Fetch-through: a GET of an absent object carrying the fetch-through
 * header (wire.ts) is answered from cache(upstream, local store) — the same
 * FetchChain pull and mount use, with the upstream as its only remote
 * (factory.fetchThroughChain): the local copy if one appeared meanwhile,
 * else one verified fetch however many ask at once, stored and served.
 * This file only turns the chain's outcome into an HTTP answer, metrics and
 * log lines.
 */
import {ChunkMissingError} from '../../errors.js'
import type {Arrival} from '../arrival.js'
import type {ChainEvent, FetchChain, UpstreamSource} from '../chain.js'
import {fetchThroughChain} from '../factory.js'
import type {ServerContext} from './context.js'
import {HttpFailure} from './http-io.js'
import {WarningLimiter} from '../warning-limiter.js'

/** Bytes of a body read before choosing whether to relay it: a frame's magic. */
const MAGIC_BYTES = 4

/** A fetch-through under way: the chain's fetch, and the upstream's body as it arrives. */
interface Pending {
  /** The chunk, verified and stored (the chain's fetch, joined by every request for it). */
  done: Promise<Buffer>
  /** The body arriving from the upstream, once its head has been read (the latest, if it was asked again). */
  arrival?: Arrival
  /** Told when an arrival appears. */
  readonly waiting: Set<() => void>
}

/** What to answer a fetch-through with: the chunk, or a body still arriving, to relay as it comes until `done`. */
export type Served = {data: Buffer} | {relay: Arrival; done: Promise<Buffer>}

export class FetchThrough {
  private readonly chain: FetchChain<UpstreamSource>
  private readonly pending = new Map<string, Pending>()
  /** Log lines per chunk, limited: an upstream that sends wrong bytes for every chunk costs a few lines and a count, not one a chunk. */
  private readonly limiter: WarningLimiter

  constructor(
    private readonly sc: ServerContext,
    readonly upstream: UpstreamSource,
  ) {
    this.limiter = new WarningLimiter((message, data) => {
      const e = data as ChainEvent & {suppressed?: number}
      if (e.type === 'local-repair') sc.logger.warn(message)
      else sc.logger.error(e.suppressed ? `fetch-through: ${message}` : `fetch-through of ${e.id} failed: ${message}`)
    })
    // counted where the bytes arrive: requests joined on one fetch share its answer
    const counted: UpstreamSource = {
      name: upstream.name,
      kind: upstream.kind,
      get downSince() {
        return upstream.downSince
      },
      has: (id, opts) => upstream.has(id, opts),
      get: async (id, opts) => {
        const data = await upstream.get(id, opts)
        if (data) sc.metrics.fetchedBytes.inc({source: upstream.kind}, data.length)
        return data
      },
    }
    upstream.watchArrivals?.((a) => {
      const p = this.pending.get(a.id)
      if (!p) return
      p.arrival = a
      for (const f of p.waiting) f()
    })
    this.chain = fetchThroughChain(sc.store, counted, {
      onEvent: (e) => this.onEvent(e),
      // a failure to keep a copy (disk full …) does not stop us serving it
      onStoreError: (id, err) => sc.logger.error(`could not store fetched-through chunk ${id}: ${(err as Error)?.message ?? err}`),
    })
  }

  /**
   * The chunk for an answer: its bytes, or 404 when the upstream lacks it
   * too, 502 when it failed. `image`: the image the requester fetches it
   * for; an upstream keeping packs learns where that image's chunks are
   * first (once per image). With `relayable`, a body that begins to arrive
   * from the upstream before the chunk is whole is offered to it, and
   * returned to relay when it accepts (PROTOCOL.md "Relaying as it arrives").
   */
  async serve(id: string, image?: string, relayable?: (a: Arrival) => boolean): Promise<Served> {
    // Started beside the fetch, not awaited before it: an upstream of loose
    // objects (most) answers at once, and one that keeps packs looks a chunk
    // it misses up again once the list is in (its get waits for it).
    if (image && this.upstream.usePacks)
      void this.upstream.usePacks(image).catch((err) => this.sc.logger.warn(`could not read where ${this.upstream.name} packs image ${image}: ${(err as Error)?.message ?? err}`))
    const p = this.pendingFor(id)
    const arrival = relayable ? await this.whenRelayable(p, relayable) : undefined
    if (arrival) return {relay: arrival, done: p.done.catch((err) => Promise.reject(this.failure(err)))}
    try {
      return {data: await p.done}
    } catch (err) {
      throw this.failure(err)
    }
  }

  /** The fetch of `id` under way, joined, or started now (forgotten once it settles). */
  private pendingFor(id: string): Pending {
    const running = this.pending.get(id)
    if (running) return running
    const p: Pending = {done: this.chain.fetch(id).then((f) => f.data), waiting: new Set()}
    this.pending.set(id, p)
    p.done.then(
      () => this.pending.delete(id),
      () => this.pending.delete(id),
    )
    return p
  }

  /**
   * The arrival to relay: the first one whose first bytes have come (enough
   * to tell a frame) and that `relayable` accepts; undefined when it does
   * not, or when the fetch settles first (a local copy, a fetch through the
   * general client, a failure), and the answer waits for the whole chunk.
   * A body of a few bytes is never relayed: its last byte is held back.
   */
  private whenRelayable(p: Pending, relayable: (a: Arrival) => boolean): Promise<Arrival | undefined> {
    return new Promise((resolve) => {
      let stop = (): void => {}
      const finish = (a?: Arrival) => {
        stop()
        p.waiting.delete(onArrival)
        resolve(a)
      }
      const check = () => {
        const a = p.arrival!
        if (a.filled >= Math.min(MAGIC_BYTES, a.body.length)) finish(a.body.length > MAGIC_BYTES && relayable(a) ? a : undefined)
      }
      const onArrival = () => {
        stop()
        stop = p.arrival!.onProgress(check)
        check()
      }
      p.waiting.add(onArrival)
      if (p.arrival) onArrival()
      p.done.then(
        () => finish(),
        () => finish(),
      )
    })
  }

  /** A failed fetch-through as its HTTP answer: 404 when the upstream lacks the chunk, else 502 (counted). */
  private failure(err: unknown): HttpFailure {
    if (err instanceof ChunkMissingError) return new HttpFailure(404, 'not found')
    this.sc.metrics.upstreamErrors.inc()
    return new HttpFailure(502, 'upstream error')
  }

  /** Log the count of lines held back (the server is closing). */
  flush(): void {
    this.limiter.flush()
  }

  /**
   * Wrong bytes are counted each time and logged through the limiter (the
   * first few, then a sum), as are local repairs; a chunk the upstream could
   * not give is logged as the chain reports it: once per set of reasons (an
   * upstream marked down was reported when it went down).
   */
  private onEvent(e: ChainEvent): void {
    if (e.type === 'verification-failure') this.sc.metrics.verificationFailures.inc({source: this.upstream.kind})
    if (e.type === 'chunk-unavailable') this.sc.logger.error(`fetch-through of ${e.id} failed: ${e.message}`)
    else if (e.type === 'verification-failure' || e.type === 'local-repair') this.limiter.warn(e)
  }
}
