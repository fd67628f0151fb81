/**
 * The chunk-by-chunk walk of a fetch chain (chain.ts) for one chunk not in
 * the local store: the peers in the chunk's ranked order (its owner first,
 * with fetch-through, when owners are used), then the seed. Falls through
 * only on "missing" or a failure; every outcome is kept for the report when
 * no source has the chunk.
 *
 * Reports: a wrong-bytes answer at once (verification-failure); any other
 * failure only when a later source has the chunk (source-error), since
 * otherwise the one chunk-unavailable event names every source with its
 * outcome (rate-limited by UnavailableReport).
 */
import {ChunkMissingError, RemoteError, RemoteIntegrityError, SourceDownError, type VmiError} from '../errors.js'
import type {ChainEvent, ChainStats, UpstreamSource} from './chain.js'
import type {PeerRanking} from './peer-ranking.js'
import type {SourceKind} from './source.js'
import type {UnavailableReport} from './unavailable-report.js'

/** What the walk needs of its chain. */
export interface ChainSources {
  readonly ranking: PeerRanking
  readonly seed?: UpstreamSource
  readonly ownerHashing: boolean
  /** Settles once the seed's packs for the image are known (asked before the seed is). */
  packsKnown(): Promise<void> | undefined
  readonly stats: ChainStats
  emit(e: ChainEvent): void
  readonly unavailable: UnavailableReport
  /** The local store's name, first in "tried". */
  readonly localName: string
}

/** A chunk's bytes as a remote sent them (a frame or raw; verified), and from where. */
export interface WalkFound {
  data: Buffer
  source: SourceKind
  from: string
}

/**
 * Chunk `id` from the first remote source that has it. Throws a
 * ChunkMissingError when every source answered "missing", a RemoteError when
 * none had it and one failed, and the signal's reason once it aborts.
 */
export async function walkSources(id: string, chain: ChainSources, signal?: AbortSignal): Promise<WalkFound> {
  const tried: string[] = []
  /** What explains a failure, without the chunk: the sources down, and the other errors ("missing" is the chunk's own fact). */
  const down: string[] = []
  const errors: string[] = []
  // reported only when another source then has the chunk; else the chunk-unavailable event says it all
  const failures: ChainEvent[] = []
  let anyError = false
  const attempt = async (src: UpstreamSource, fetchThrough: boolean): Promise<Buffer | undefined> => {
    try {
      const data = await src.get(id, {signal, fetchThrough})
      tried.push(`${src.name} (${data ? 'ok' : 'missing'})`)
      return data
    } catch (err) {
      if (signal?.aborted) throw err
      anyError = true
      if (err instanceof SourceDownError) {
        tried.push(`${src.name} (down since ${new Date(err.data.since as number).toISOString()}: ${err.data.reason})`)
        down.push(`${src.name}@${err.data.since}`)
        return undefined
      }
      chain.stats.sourceErrors++
      if (err instanceof RemoteIntegrityError) {
        chain.stats.verificationFailures++
        chain.emit({type: 'verification-failure', id, source: src.name, message: err.message})
      } else if (src.downSince === undefined) failures.push({type: 'source-error', id, source: src.name, message: (err as Error).message})
      tried.push(`${src.name} (${shortReason(err)})`)
      // a failure that marked the source down was reported as such (source-down), and reads as the failures that follow while it is down
      if (src.downSince === undefined) errors.push(`${src.name} ${shortReason(err)}`)
      else down.push(`${src.name}@${src.downSince}`)
      return undefined
    }
  }
  const found = async (): Promise<WalkFound | undefined> => {
    if (chain.ranking.list.length > 0) {
      const ranked = chain.ranking.order(id)
      // The owner is the first peer up in this order, as the bulk path picks it: with the
      // owner down, the next one up fetches through, so the fleet still asks the seed
      // once for the chunk instead of once per host.
      let ownerPending = chain.ownerHashing
      for (const peer of ranked) {
        const fetchThrough = ownerPending && peer.downSince === undefined
        const data = await attempt(peer, fetchThrough)
        if (data) return {data, source: 'peer', from: peer.name}
        // an owner that answered, or failed without going down, stays the owner
        if (fetchThrough && peer.downSince === undefined) ownerPending = false
      }
    }
    if (chain.seed) {
      await chain.packsKnown()
      const data = await attempt(chain.seed, false)
      if (data) return {data, source: 'seed', from: chain.seed.name}
    }
    return undefined
  }
  const f = await found()
  if (f) {
    for (const e of failures) chain.emit(e)
    return f
  }
  const where = [chain.localName + ' (missing)', ...tried].join(', ')
  const message = chain.unavailable.message(id, where, down.sort().join(' '), errors.sort().join('; '))
  if (message) chain.emit({type: 'chunk-unavailable', id, source: chain.localName, message})
  if (anyError) throw new RemoteError(`could not fetch chunk ${id}; tried ${where}`, {data: {id, tried}})
  throw new ChunkMissingError(`chunk ${id} is in none of: ${where}`, {data: {id, tried}})
}

/** A failure in a few words, for "tried" lists and reports. */
export function shortReason(err: unknown): string {
  if (err instanceof RemoteIntegrityError) return 'wrong bytes'
  if (err instanceof RemoteError && err.status !== undefined) return `HTTP ${err.status}`
  const cause = (err as VmiError).cause as {code?: string; name?: string} | undefined
  return cause?.code ?? cause?.name ?? (err as Error).message.slice(0, 60)
}
