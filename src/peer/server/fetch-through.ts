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
import type {ChainEvent, FetchChain, UpstreamSource} from '../chain.js'
import {fetchThroughChain} from '../factory.js'
import type {ServerContext} from './context.js'
import {HttpFailure} from './http-io.js'
import {WarningLimiter} from '../warning-limiter.js'

export class FetchThrough {
  private readonly chain: FetchChain<UpstreamSource>
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
   * first (once per image).
   */
  async serve(id: string, image?: string): Promise<Buffer> {
    // Started beside the fetch, not awaited before it: an upstream of loose
    // objects (most) answers at once, and one that keeps packs looks a chunk
    // it misses up again once the list is in (its get waits for it).
    if (image && this.upstream.usePacks)
      void this.upstream.usePacks(image).catch((err) => this.sc.logger.warn(`could not read where ${this.upstream.name} packs image ${image}: ${(err as Error)?.message ?? err}`))
    try {
      return (await this.chain.fetch(id)).data
    } catch (err) {
      if (err instanceof ChunkMissingError) throw new HttpFailure(404, 'not found')
      this.sc.metrics.upstreamErrors.inc()
      throw new HttpFailure(502, 'upstream error')
    }
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
