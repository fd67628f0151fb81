/**
 * The fetch chain: local store → peers → seed. The seed is asked only when
 * neither the local store nor any peer has the chunk. Falls through only on
 * "missing"; a source that errors, stalls or sends wrong bytes is skipped for
 * that chunk and counted, never trusted. Concurrent requests for one chunk
 * are joined (single flight). A fetched chunk is stored locally, so this host
 * then lends it to its peers.
 *
 * With owner hashing (default when there are peers) each chunk's owner among
 * the peers (rendezvous hashing) is asked first, with fetch-through, so the
 * owner fetches it from the seed once for everybody.
 */
import {ChunkMissingError, IntegrityError, RemoteError, RemoteIntegrityError, VmiError} from '../errors.js'
import {promises as fsp} from 'node:fs'
import path from 'node:path'
import {hash} from '../store/hash.js'
import {tmpName} from '../store/fs-util.js'
import type {LocalStore} from '../store/local-store.js'
import {HttpStore} from './http-store.js'
import {rankPeers} from './rendezvous.js'
import type {SourceKind} from './source.js'

export interface ChainStats {
  chunks: Record<SourceKind, number>
  bytes: Record<SourceKind, number>
  /** Sources skipped for a chunk because they erred, stalled or lied. */
  sourceErrors: number
  verificationFailures: number
  /** Corrupt local objects found and moved aside. */
  localRepairs: number
}

export interface ChainEvent {
  type: 'source-error' | 'verification-failure' | 'local-repair' | 'peer-down'
  id: string
  source: string
  message: string
}

export interface FetchChainInit {
  peers?: HttpStore[]
  seed?: HttpStore
  /** Ask each chunk's owner peer first, with fetch-through (default true). */
  ownerHashing?: boolean
  /** How long a peer that failed to connect is skipped, ms (default 5000). */
  peerDownMs?: number
  /** Verify chunks read from the local store (default true; a native BLAKE3 does GB/s). */
  verifyLocal?: boolean
  onEvent?: (e: ChainEvent) => void
}

export interface Fetched {
  data: Buffer
  source: SourceKind
  from: string
}

export class FetchChain {
  readonly stats: ChainStats = {
    chunks: {local: 0, peer: 0, seed: 0},
    bytes: {local: 0, peer: 0, seed: 0},
    sourceErrors: 0,
    verificationFailures: 0,
    localRepairs: 0,
  }
  private readonly inflight = new Map<string, Promise<Fetched>>()
  private readonly downUntil = new Map<string, number>()
  private peers: HttpStore[]
  readonly seed?: HttpStore

  constructor(
    readonly local: LocalStore,
    private readonly init: FetchChainInit = {},
  ) {
    this.peers = init.peers ?? []
    this.seed = init.seed
  }

  /** Replace the peer list (peers file changed). */
  setPeers(peers: HttpStore[]): void {
    this.peers = peers
  }

  get peerList(): readonly HttpStore[] {
    return this.peers
  }

  /** Get a chunk through the chain (joined with any fetch of the same id in flight). */
  fetch(id: string, opts: {signal?: AbortSignal; store?: boolean} = {}): Promise<Fetched> {
    const running = this.inflight.get(id)
    if (running) return running
    const p = this.resolve(id, opts).finally(() => this.inflight.delete(id))
    this.inflight.set(id, p)
    return p
  }

  private emit(e: ChainEvent): void {
    this.init.onEvent?.(e)
  }

  private async resolve(id: string, opts: {signal?: AbortSignal; store?: boolean}): Promise<Fetched> {
    const local = await this.readLocal(id)
    if (local) return this.count({data: local, source: 'local', from: this.local.name})
    const tried: string[] = []
    let anyError = false
    const attempt = async (src: HttpStore, fetchThrough: boolean): Promise<Buffer | undefined> => {
      const until = this.downUntil.get(src.url)
      if (until !== undefined && until > Date.now()) {
        tried.push(`${src.name} (skipped: unreachable)`)
        return undefined
      }
      try {
        const data = await src.get(id, {signal: opts.signal, fetchThrough})
        tried.push(`${src.name} (${data ? 'ok' : 'missing'})`)
        return data
      } catch (err) {
        if (opts.signal?.aborted) throw err
        anyError = true
        this.stats.sourceErrors++
        if (err instanceof RemoteIntegrityError) {
          this.stats.verificationFailures++
          this.emit({type: 'verification-failure', id, source: src.name, message: err.message})
        } else this.emit({type: 'source-error', id, source: src.name, message: (err as Error).message})
        if (src.kind === 'peer' && !(err instanceof RemoteIntegrityError) && (err as RemoteError).status === undefined) {
          this.downUntil.set(src.url, Date.now() + (this.init.peerDownMs ?? 5000))
          this.emit({type: 'peer-down', id, source: src.name, message: `skipping ${src.name} for a while`})
        }
        tried.push(`${src.name} (${shortReason(err)})`)
        return undefined
      }
    }
    if (this.peers.length > 0) {
      const ranked = this.init.ownerHashing === false ? this.peers : rankPeers(this.peers, id)
      for (let i = 0; i < ranked.length; i++) {
        const data = await attempt(ranked[i], i === 0 && this.init.ownerHashing !== false)
        if (data) return this.keep(id, {data, source: 'peer', from: ranked[i].name}, opts)
      }
    }
    if (this.seed) {
      const data = await attempt(this.seed, false)
      if (data) return this.keep(id, {data, source: 'seed', from: this.seed.name}, opts)
    }
    const where = [this.local.name + ' (missing)', ...tried].join(', ')
    if (anyError) throw new RemoteError(`could not fetch chunk ${id}; tried ${where}`, {data: {id, tried}})
    throw new ChunkMissingError(`chunk ${id} is in none of: ${where}`, {data: {id, tried}})
  }

  private count(f: Fetched): Fetched {
    this.stats.chunks[f.source]++
    this.stats.bytes[f.source] += f.data.length
    return f
  }

  private async keep(id: string, f: Fetched, opts: {store?: boolean}): Promise<Fetched> {
    if (opts.store !== false) await this.local.putObject(id, f.data)
    return this.count(f)
  }

  /** A local object, verified; a corrupt one is moved aside and reads as missing. */
  private async readLocal(id: string): Promise<Buffer | undefined> {
    let data: Buffer | undefined
    try {
      data = this.local.readObject(id)
      if (data === undefined) return undefined
    } catch (err) {
      // larger than any chunk, or not a file: corrupt, handled like a mismatch below
      if (!(err instanceof IntegrityError)) throw err
    }
    if (data !== undefined && (this.init.verifyLocal === false || hash(data) === id)) {
      await this.local.touchObject(id) // least-recently-used order for the cache budget
      return data
    }
    this.stats.localRepairs++
    const file = this.local.layout.objectPath(id)
    const dest = path.join(this.local.layout.quarantineDir, `${id}.${tmpName('bad')}`)
    await fsp.mkdir(this.local.layout.quarantineDir, {recursive: true})
    await fsp.rename(file, dest).catch(() => {})
    this.emit({type: 'local-repair', id, source: this.local.name, message: `local chunk ${id} was corrupt; moved to ${dest}`})
    return undefined
  }
}

function shortReason(err: unknown): string {
  if (err instanceof RemoteIntegrityError) return 'wrong bytes'
  if (err instanceof RemoteError && err.status !== undefined) return `HTTP ${err.status}`
  const cause = (err as VmiError).cause as {code?: string; name?: string} | undefined
  return cause?.code ?? cause?.name ?? (err as Error).message.slice(0, 60)
}

