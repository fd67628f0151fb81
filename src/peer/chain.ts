/**
 * The fetch chain: local store → peers → seed. The seed is asked only when
 * neither the local store nor any peer has the chunk. Falls through only on
 * "missing"; a source that errors, stalls or sends wrong bytes is skipped for
 * that chunk and counted, never trusted. Concurrent requests for one chunk
 * are joined (single flight). A fetched chunk is stored locally, so this host
 * then lends it to its peers.
 *
 * With owner hashing (default when there are peers) each chunk's owner among
 * the peers (rendezvous hashing, balanced over the image's chunks when the
 * caller names them) is asked first, with fetch-through, so the owner
 * fetches it from the seed once for everybody.
 *
 * A source known to be down (its circuit breaker open, circuit-breaker.ts)
 * is skipped at once, so a chunk no reachable source has fails in the time
 * the reachable ones take to say "missing". Such a failure is reported once
 * as a 'chunk-unavailable' event naming the chunk and every source with its
 * outcome; more failures for the same reasons (the same sources down since
 * the same moment, the same errors) are only counted, until a source goes
 * down or comes back.
 */
import {ChunkMissingError, IntegrityError, RemoteError} from '../errors.js'
import {decodeObject, openObject, receivedFormOf, storedFormOf} from '../store/object-encoding.js'
import type {LocalStore} from '../store/local-store.js'
import {mapLimit} from '../util/map-limit.js'
import type {JobRunner} from '../store/job-runner.js'
import type {BulkItem} from './pipelined-get.js'
import {bulkFetch} from './chain-bulk.js'
import {shortReason, walkSources, type ChainSources} from './chain-walk.js'
import {PeerRanking} from './peer-ranking.js'
import {UnavailableReport} from './unavailable-report.js'
import {assertChunkId, type ChunkSource, type FetchOptions, type RemoteSource, type SourceKind} from './source.js'

/**
 * What a chain's seed must be: any chunk source (a guarded, batched
 * upstream for serve's fetch-through), and a RemoteSource for the bulk path
 * and for what pull asks besides chunks (refs, manifests).
 */
export interface UpstreamSource extends ChunkSource {
  get(id: string, opts?: FetchOptions & {fetchThrough?: boolean}): Promise<Buffer | undefined>
  /** While the source is known to be down: since when (ms since the epoch). */
  readonly downSince?: number
  /** A seed that may keep chunks in packs: where this image's are (RemoteSource.usePacks). */
  usePacks?(manifestId: string, opts?: FetchOptions): Promise<number>
}
import {MAX_OBJECT_BYTES, objectPath} from './wire.js'

export interface ChainStats {
  chunks: Record<SourceKind, number>
  bytes: Record<SourceKind, number>
  /** Sources skipped for a chunk because they erred, stalled or lied. */
  sourceErrors: number
  verificationFailures: number
  /** Corrupt local objects found and moved aside. */
  localRepairs: number
  /** Chunks and bytes by remote source name ("peer http://…", "seed http://…"). */
  bySource: Record<string, {chunks: number; bytes: number}>
  /** Bytes of the objects received from remotes as they came (compressed ones count compressed); `bytes` counts the chunks. */
  wireBytes: number
}

export interface ChainEvent {
  /**
   * source-error: a source failed a chunk another source then had.
   * chunk-unavailable: no source had a chunk or could be asked (rate-limited: unavailable-report.ts).
   * source-down / source-up: a source's breaker opened / closed again (sent by whoever owns the breakers).
   */
  type: 'source-error' | 'verification-failure' | 'local-repair' | 'chunk-unavailable' | 'source-down' | 'source-up'
  /** The chunk, for the per-chunk events. */
  id?: string
  source: string
  message: string
}

export interface FetchChainInit<U extends UpstreamSource = RemoteSource> {
  peers?: RemoteSource[]
  seed?: U
  /** Ask each chunk's owner peer first, with fetch-through (default true). */
  ownerHashing?: boolean
  /** Verify chunks read from the local store (default true; a native BLAKE3 does GB/s). */
  verifyLocal?: boolean
  onEvent?: (e: ChainEvent) => void
  /**
   * A fetched chunk that cannot be stored (disk full) is still returned,
   * and the failure reported here; without it, the fetch fails (a pull must
   * keep what it fetched).
   */
  onStoreError?: (id: string, err: unknown) => void
  /**
   * Store fetched chunks raw, decoded from the frame they came as (a mount,
   * which reads slices straight from object files). Default: as they came.
   */
  storeRaw?: boolean
}

export interface FetchManyInit {
  signal?: AbortSignal
  /** Chunks fetched one by one in parallel, for what the bulk path leaves (default 8). */
  concurrency?: number
  /** Pipelined bulk GETs from each chunk's first source (default true). */
  bulk?: boolean
  /** Each chunk once it is stored (or found) locally. */
  onChunk?: (id: string, bytes: number, source: SourceKind) => void
  /**
   * What receives, verifies and stores the bulk path's chunks (from
   * startWriters: this thread and writer threads), started by the caller
   * ahead of time (a thread takes tens of ms to start, and the bulk path
   * waits for it); the caller closes them. Default: started and closed here.
   */
  writers?: JobRunner[]
}

export interface Fetched {
  data: Buffer
  source: SourceKind
  from: string
}

export class FetchChain<U extends UpstreamSource = RemoteSource> implements ChunkSource {
  /** What a chain returns is in the local store once returned (a read-through cache over the remotes). */
  readonly kind = 'local' as const
  readonly stats: ChainStats = {
    chunks: {local: 0, peer: 0, seed: 0},
    bytes: {local: 0, peer: 0, seed: 0},
    sourceErrors: 0,
    verificationFailures: 0,
    localRepairs: 0,
    bySource: {},
    wireBytes: 0,
  }
  private readonly inflight = new Map<string, Promise<Fetched>>()
  /** The peers, and the order each chunk asks them. */
  private readonly ranking: PeerRanking
  readonly seed?: U
  /** The seed's pack list for the image, being read or read (readPacks). */
  private packsReady?: Promise<void>
  /** The image being fetched (setImage). */
  private image?: string
  /** What the chunk-by-chunk walk (chain-walk.ts) asks, and reports into. */
  private readonly sources: ChainSources

  constructor(
    readonly local: LocalStore,
    private readonly init: FetchChainInit<U> = {},
  ) {
    this.ranking = new PeerRanking(init.peers ?? [], init.ownerHashing !== false)
    this.seed = init.seed
    this.sources = {
      ranking: this.ranking,
      seed: this.seed,
      ownerHashing: init.ownerHashing !== false,
      packsKnown: () => this.packsKnown(),
      stats: this.stats,
      emit: (e) => this.emit(e),
      unavailable: new UnavailableReport(),
      localName: local.name,
    }
  }

  get name(): string {
    return `fetch chain over ${this.local.name}`
  }

  /**
   * ChunkSource.get: the chunk through the chain (stored locally), undefined
   * when no source has it and none failed. A caller's signal rejects its own
   * call at once; it does not reach the fetch, which other gets of the same
   * chunk may share (single flight): that fetch runs on, bounded by the
   * sources' timeouts, and stores the chunk for the next reader.
   */
  async get(id: string, opts: FetchOptions = {}): Promise<Buffer | undefined> {
    assertChunkId(id)
    opts.signal?.throwIfAborted()
    try {
      return (await abortable(this.fetch(id), opts.signal)).data
    } catch (err) {
      if (err instanceof ChunkMissingError) return undefined
      throw err
    }
  }

  /** ChunkSource.has: here, or at any peer or the seed; an error only when none has it and one failed. */
  async has(id: string, opts: FetchOptions = {}): Promise<boolean> {
    assertChunkId(id)
    opts.signal?.throwIfAborted()
    if (await this.local.hasObject(id)) return true
    const failed: string[] = []
    for (const src of this.seed ? [...this.ranking.list, this.seed] : this.ranking.list) {
      try {
        if (await src.has(id, opts)) return true
      } catch (err) {
        if (opts.signal?.aborted) throw err
        failed.push(`${src.name} (${shortReason(err)})`)
      }
    }
    if (failed.length > 0) throw new RemoteError(`could not tell whether chunk ${id} is available; failed: ${failed.join(', ')}`, {data: {id, failed}})
    return false
  }

  /** Replace the peer list (peers file changed). */
  setPeers(peers: RemoteSource[]): void {
    this.ranking.setPeers(peers)
    if (this.image) for (const p of peers) p.forImage?.(this.image)
  }

  /**
   * The distinct chunks of the image being fetched (a pull's or a mount's):
   * owners are then balanced over them (balancedOwners), the same on every
   * host that fetches the image. Without it, a chunk's owner is its
   * first-ranked peer.
   */
  setChunks(ids: Iterable<string>): void {
    this.ranking.setChunks(ids)
  }

  /**
   * The image being fetched: its chunks (setChunks), the image peers are
   * told their fetch-throughs are for, and, when the seed may keep packs,
   * where it keeps this image's: read before the seed is first asked for a
   * chunk (readPacks). A pack list that cannot be read is reported; its
   * chunks are then looked for loose.
   */
  setImage(manifestId: string, ids: Iterable<string>): void {
    this.setChunks(ids)
    this.image = manifestId
    for (const p of this.ranking.list) p.forImage?.(manifestId)
  }

  /** Where the seed packs the image, read (once) before the seed is asked for a chunk. */
  private packsKnown(): Promise<void> | undefined {
    if (this.image) this.readPacks(this.image)
    return this.packsReady
  }

  /**
   * Start reading where the seed packs image `manifestId` (setImage does),
   * ahead of it: a pull asks it beside the manifest, as each is a round trip
   * to the seed. Once per chain.
   */
  readPacks(manifestId: string): void {
    const seed = this.seed
    if (!seed?.usePacks || this.packsReady) return
    this.packsReady = seed.usePacks(manifestId).then(
      () => {},
      (err) => {
        // asked again at the next need (the seed may be back by then)
        this.packsReady = undefined
        this.emit({type: 'source-error', id: manifestId, source: seed.name, message: `${seed.name}: could not read where image ${manifestId} is packed (${shortReason(err)}); its chunks are asked one object each`})
      },
    )
  }

  get peerList(): readonly RemoteSource[] {
    return this.ranking.list
  }

  /** Get a chunk through the chain (joined with any fetch of the same id in flight). */
  fetch(id: string, opts: {signal?: AbortSignal; store?: boolean} = {}): Promise<Fetched> {
    const running = this.inflight.get(id)
    if (running) return running
    const p = this.resolve(id, opts).finally(() => this.inflight.delete(id))
    this.inflight.set(id, p)
    return p
  }

  /**
   * Bring many chunks into the local store (a pull). Chunks not here are
   * asked of their first source (the owner peer, else the seed) in pipelined
   * bulk GETs, verified and stored on a writer thread; whatever that leaves —
   * missing there, a failure, a lie, a server that does not pipeline — goes
   * through the chunk-by-chunk chain, with its fall-through and retries.
   */
  async fetchMany(items: {id: string; length: number}[], init: FetchManyInit = {}): Promise<void> {
    const leftover: string[] = []
    const groups = new Map<RemoteSource, BulkItem[]>()
    const here = init.bulk === false ? undefined : this.local.presentObjectsSync(items.map((i) => i.id))
    const bulkSource = this.bulkSourcePicker()
    for (const {id, length} of items) {
      const first = !here || here.has(id) ? undefined : bulkSource(id)
      if (!first) leftover.push(id)
      else {
        const list = groups.get(first) ?? []
        // any body up to an object's maximum: a compressed object is shorter than its chunk (checked against `length` once decoded)
        list.push({id, path: objectPath(id), length, upTo: MAX_OBJECT_BYTES})
        groups.set(first, list)
      }
    }
    // the seed's packs known before its ranged reads are planned (only then: a seed that is down need not hold up peers)
    if (this.seed && groups.has(this.seed as unknown as RemoteSource)) await this.packsKnown()
    if (groups.size > 0)
      await bulkFetch(groups, init, leftover, {
        store: this.local,
        ownerHashing: this.init.ownerHashing !== false,
        stats: this.stats,
        tally: (kind, bytes, from) => this.tally(kind, bytes, from),
        emit: (e) => this.emit(e),
      })
    await mapLimit(leftover, init.concurrency ?? 8, async (id) => {
      init.signal?.throwIfAborted()
      const f = await this.fetch(id, {signal: init.signal})
      init.onChunk?.(id, f.data.length, f.source)
    })
  }

  /**
   * For each chunk, the source it is bulk-fetched from: the one it is asked
   * of first (its owner among the peers up now, else the first peer up, else
   * the seed when up), when that one has a bulk path; else undefined (a bare
   * upstream: asked chunk by chunk).
   */
  private bulkSourcePicker(): (id: string) => RemoteSource | undefined {
    const bulk = (src: UpstreamSource | undefined) => (src && hasBulkPath(src) ? src : undefined)
    const first = this.ranking.firstUp()
    if (!first) {
      const seed = this.seed?.downSince === undefined ? bulk(this.seed) : undefined
      return () => seed
    }
    return (id) => bulk(first(id))
  }

  private emit(e: ChainEvent): void {
    this.init.onEvent?.(e)
  }

  private async resolve(id: string, opts: {signal?: AbortSignal; store?: boolean}): Promise<Fetched> {
    const local = await this.readLocal(id)
    if (local) return this.count({data: local, source: 'local', from: this.local.name})
    return this.keep(id, await walkSources(id, this.sources, opts.signal), opts)
  }

  private count(f: Fetched): Fetched {
    this.tally(f.source, f.data.length, f.source === 'local' ? undefined : f.from)
    if (f.source !== 'local') this.stats.wireBytes += receivedFormOf(f.data).length
    return f
  }

  private tally(source: SourceKind, bytes: number, from?: string): void {
    this.stats.chunks[source]++
    this.stats.bytes[source] += bytes
    if (from !== undefined) {
      const s = (this.stats.bySource[from] ??= {chunks: 0, bytes: 0})
      s.chunks++
      s.bytes += bytes
    }
  }

  private async keep(id: string, f: Fetched, opts: {store?: boolean}): Promise<Fetched> {
    if (opts.store !== false) {
      const onStoreError = this.init.onStoreError
      // compressed as it came (so this host lends it on as it got it), unless the caller reads it raw from the file (a mount)
      const data = this.init.storeRaw ? f.data : storedFormOf(f.data)
      if (!onStoreError) await this.local.putObject(id, data)
      else await this.local.putObject(id, data).catch((err: unknown) => onStoreError(id, err))
    }
    return this.count(f)
  }

  /** A local object, verified; a corrupt one is moved aside and reads as missing. */
  private async readLocal(id: string): Promise<Buffer | undefined> {
    let data: Buffer | undefined
    try {
      data = this.local.readObjectStored(id)
      if (data === undefined) return undefined
    } catch (err) {
      // larger than any chunk, or not a file: corrupt, handled like a mismatch below
      if (!(err instanceof IntegrityError)) throw err
    }
    if (data !== undefined) {
      // decoded when compressed; hashed unless told not to
      const chunk = this.init.verifyLocal === false ? decodeObject(data) : openObject(id, data).data
      if (chunk !== undefined) {
        await this.local.touchObject(id) // least-recently-used order for the cache budget
        return chunk
      }
    }
    this.stats.localRepairs++
    // moved aside or not (a store this process cannot write), the chunk is fetched again
    const moved = await this.local.moveAside(this.local.layout.objectPath(id), id).then(
      (dest) => `moved to ${dest}`,
      (err: Error) => `could not move it aside (${err.message})`,
    )
    this.emit({type: 'local-repair', id, source: this.local.name, message: `local chunk ${id} was corrupt; ${moved}`})
    return undefined
  }
}

/** Whether pipelined bulk GETs can be sent to `src`: a remote whose bulkOptions say how. */
function hasBulkPath(src: UpstreamSource): src is UpstreamSource & RemoteSource {
  const bulkOptions = (src as Partial<RemoteSource>).bulkOptions
  return typeof bulkOptions === 'function' && bulkOptions.call(src, false) !== undefined
}

/** `p`, or the signal's reason as soon as it aborts (p itself runs on). */
function abortable<T>(p: Promise<T>, signal?: AbortSignal): Promise<T> {
  if (!signal) return p
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason)
    signal.addEventListener('abort', onAbort, {once: true})
    p.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort))
  })
}
