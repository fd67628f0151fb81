/**
 * Fetch-through: a GET of an absent object carrying the fetch-through
 * header (wire.ts) is fetched once from the upstream (concurrent requests
 * join one fetch), verified by the upstream client, stored and served.
 */
import {IntegrityError, SourceDownError} from '../../errors.js'
import {contentMismatch} from '../../store/hash.js'
import type {ChunkSource} from '../source.js'
import type {ServerContext} from './context.js'
import {HttpFailure} from './http-io.js'

export class FetchThrough {
  private readonly inflight = new Map<string, Promise<Buffer | undefined>>()

  constructor(
    private readonly sc: ServerContext,
    readonly upstream: ChunkSource,
  ) {}

  /** The chunk for an answer: its bytes, or 404 when the upstream lacks it too, 502 when it failed. */
  async serve(id: string): Promise<Buffer> {
    const {metrics, logger} = this.sc
    let data: Buffer | undefined
    try {
      data = await this.fetch(id)
    } catch (err) {
      const e = err as {code?: string; message?: string}
      if (e?.code === 'VMI_REMOTE_INTEGRITY') metrics.verificationFailures.inc({source: this.upstream.kind})
      metrics.upstreamErrors.inc()
      // an upstream marked down was reported once when it went down, not again for every request
      if (!(err instanceof SourceDownError)) logger.error(`fetch-through of ${id} from ${this.upstream.name} failed: ${e?.message ?? String(err)}`)
      throw new HttpFailure(502, 'upstream error')
    }
    if (data === undefined) throw new HttpFailure(404, 'not found')
    return data
  }

  /** Fetch from the upstream, once per id however many ask at once. */
  private fetch(id: string): Promise<Buffer | undefined> {
    let p = this.inflight.get(id)
    if (p) return p
    p = this.fetchOnce(id).finally(() => this.inflight.delete(id))
    this.inflight.set(id, p)
    return p
  }

  private async fetchOnce(id: string): Promise<Buffer | undefined> {
    const {store, metrics, logger} = this.sc
    // a fetch that finished between this request's miss and now has stored it: no second upstream fetch
    let here: Buffer | undefined
    try {
      here = store.readObject(id)
    } catch (err) {
      if (!(err instanceof IntegrityError)) throw err // a corrupt copy here: fetch a good one
    }
    if (here !== undefined && contentMismatch(id, here) === undefined) return here
    // verified by the source (ChunkSource.get's contract: HttpStore and
    // BatchedSource hash every body; wrong bytes are a RemoteIntegrityError)
    const data = await this.upstream.get(id)
    if (data === undefined) return undefined
    metrics.fetchedBytes.inc({source: this.upstream.kind}, data.length)
    // a failure to keep a copy (disk full …) does not stop us serving it
    await store.putObject(id, data).catch((err: unknown) => logger.error(`could not store fetched-through chunk ${id}: ${(err as Error)?.message ?? err}`))
    return data
  }
}
