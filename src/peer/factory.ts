/**
 * The one place a fetch chain is assembled from resolved configuration;
 * commands never build chains themselves.
 */
import {promises as fsp} from 'node:fs'
import {FileNotFoundError, isErrno, UsageError} from '../errors.js'
import type {LocalStore} from '../store/local-store.js'
import {BatchedSource} from './batched-source.js'
import {FetchChain, type ChainEvent, type UpstreamSource} from './chain.js'
import {CircuitBreaker, GuardedSource, guardRemote, type BreakerChange, type GuardedRemote} from './circuit-breaker.js'
import {HttpStore, type HttpStoreInit} from './http-store.js'
import {isHttpUrl, parsePeerLines} from './peer-list.js'
import {S3Store, type S3Access} from './s3/s3-store.js'
import {isS3Url} from './s3/s3-url.js'
import type {ClientTls} from './tls-trust.js'
import type {ChunkSource, RemoteSource, WritableRemote} from './source.js'

export {parsePeerList} from './peer-list.js'

export interface ChainConfig {
  seedUrl?: string
  peers?: string[]
  /** One peer URL a line; re-read when it changes (checked every second). */
  peersFile?: string
  ownerHashing?: boolean
  /** Store fetched chunks raw (FetchChainInit.storeRaw: a mount). */
  storeRaw?: boolean
  insecure?: boolean
  /** A private CA every source's TLS certificate may chain to, and the client certificate shown to every source. */
  tls?: ClientTls
  /** Bearer token for reads, sent to every source (servers started with --read-token-file). */
  readToken?: string
  /** Socket inactivity timeout for peers, ms (default 10000). */
  peerTimeoutMs?: number
  /**
   * Connection timeout for peers and the seed, ms (default 2000 for peers,
   * 5000 for the seed). A mount sets a short one: a guest read waits for it
   * at most once per source, then the source is marked down.
   */
  connectTimeoutMs?: number
  /** Events of the chain, and every source going down or coming back. */
  onEvent?: (e: ChainEvent) => void
  /** Region, endpoint and credentials of an s3:// seed. */
  s3?: S3Access
}

export interface BuiltChain {
  chain: FetchChain
  /** Stop re-reading the peers file and the breakers' probing. */
  close(): void
}

export type RemoteInit = HttpStoreInit & {s3?: S3Access; pack?: boolean}

/**
 * The one place a URL becomes a remote chunk source for a chain or a
 * fetch-through upstream: everything past it (FetchChain, BatchedSource,
 * the breakers) knows only RemoteSource. http(s) is a vmi store spoken to
 * over the wire protocol; s3://BUCKET/PREFIX a bucket (s3/s3-store.ts),
 * with `init.s3` saying where and as whom (anonymous without credentials).
 */
export function openRemote(url: string, init: RemoteInit): RemoteSource & WritableRemote {
  if (isS3Url(url)) {
    const {kind, connectTimeoutMs, idleTimeoutMs, retry, insecure, tls, pack} = init
    return new S3Store(url, {region: 'us-east-1', ...init.s3, kind, connectTimeoutMs, idleTimeoutMs, retry, insecure, tls, pack})
  }
  return new HttpStore(url, init)
}

// Retries in the chain: an unreachable source is not tried again (its
// breaker opens and the chain moves on); part-way failures and 5xx are.
export function peerStore(url: string, cfg: ChainConfig = {}): RemoteSource {
  // peers: few quick retries (the chain moves on), short idle timeout
  return openRemote(url, {
    kind: 'peer',
    insecure: cfg.insecure,
    tls: cfg.tls,
    readToken: cfg.readToken,
    idleTimeoutMs: cfg.peerTimeoutMs ?? 10_000,
    connectTimeoutMs: cfg.connectTimeoutMs ?? 2000,
    retry: {retries: 1, baseMs: 50, unreachableRetries: 0},
  })
}

/** The seed as push uses it: an unreachable seed is retried (with backoff, bounded) like any connection error. */
export function seedStore(url: string, init: {token?: string; readToken?: string; insecure?: boolean; tls?: ClientTls; s3?: S3Access; pack?: boolean} = {}): RemoteSource & WritableRemote {
  return openRemote(url, {kind: 'seed', token: init.token, readToken: init.readToken, insecure: init.insecure, tls: init.tls, s3: init.s3, pack: init.pack, retry: {retries: 4, baseMs: 200}})
}

function chainSeedStore(url: string, cfg: ChainConfig): RemoteSource {
  return openRemote(url, {
    kind: 'seed',
    insecure: cfg.insecure,
    tls: cfg.tls,
    readToken: cfg.readToken,
    s3: cfg.s3,
    connectTimeoutMs: cfg.connectTimeoutMs,
    retry: {retries: 4, baseMs: 200, unreachableRetries: 0},
  })
}

/** A source's breaker opening or closing, as a chain event (the states between are not news). */
export function breakerEvent(c: BreakerChange): ChainEvent | undefined {
  if (c.from === 'closed' && c.to === 'open')
    return {type: 'source-down', source: c.source, message: `${c.source} is unreachable (${c.reason}); it is not asked until it answers again (probed in the background)`}
  if (c.to === 'closed')
    return {type: 'source-up', source: c.source, message: `${c.source} answers again (down since ${new Date(c.since).toISOString()}: ${c.reason})`}
  return undefined
}

/**
 * The upstream of `vmi serve --seed URL`: its fetch-through gets joined
 * into pipelined batches, behind a breaker (an unreachable seed costs each
 * fetch-through a 502 at once, not a connection attempt and its retries).
 */
export function upstreamSource(
  url: string,
  init: {onEvent?: (e: ChainEvent) => void; insecure?: boolean; tls?: ClientTls; readToken?: string; s3?: S3Access} = {},
): GuardedSource<ChunkSource & {url: string}> {
  // a host waits on this peer's fetch-through: a seed that does not accept
  // the connection costs it this long once (2 s: one lost SYN is resent at 1 s)
  const store = openRemote(url, {kind: 'seed', insecure: init.insecure, tls: init.tls, readToken: init.readToken, s3: init.s3, connectTimeoutMs: 2000, retry: {unreachableRetries: 0}})
  const breaker = new CircuitBreaker(store.name, {
    probe: (signal) => store.ping({signal}),
    onChange: (c) => {
      const e = breakerEvent(c)
      if (e) init.onEvent?.(e)
    },
  })
  // a source without a bulk path is asked one get at a time, in parallel
  return new GuardedSource(store.bulkOptions(false) === undefined ? store : new BatchedSource(store), breaker)
}

/**
 * `vmi serve --seed`'s fetch-through: cache(upstream, local store), the
 * chain pull uses with the upstream as its only remote.
 */
export function fetchThroughChain<U extends UpstreamSource>(
  store: LocalStore,
  upstream: U,
  init: {onEvent?: (e: ChainEvent) => void; onStoreError?: (id: string, err: unknown) => void} = {},
): FetchChain<U> {
  return new FetchChain<U>(store, {seed: upstream, onEvent: init.onEvent, onStoreError: init.onStoreError})
}

/** The peers a file lists; a missing file is not found, a line that is not an http(s) URL is named by file and line. */
export async function readPeersFile(file: string): Promise<string[]> {
  let text: string
  try {
    text = await fsp.readFile(file, 'utf8')
  } catch (err) {
    if (isErrno(err, 'ENOENT')) throw new FileNotFoundError(`peers file ${file} does not exist`, {cause: err})
    throw new UsageError(`cannot read peers file ${file}: ${(err as Error).message}`, {cause: err})
  }
  const entries = parsePeerLines(text)
  const bad = entries.find((e) => !isHttpUrl(e.url))
  if (bad) throw new UsageError(`${file}:${bad.line}: ${JSON.stringify(bad.url)} is not an http(s) URL`, {data: {file, line: bad.line}})
  return entries.map((e) => e.url.replace(/\/+$/, ''))
}

/** Every remote of a chain goes behind its own breaker; source-down/up events go to the chain's listener. */
export async function buildChain(store: LocalStore, cfg: ChainConfig): Promise<BuiltChain> {
  const guard = (remote: RemoteSource) =>
    guardRemote(remote, {
      onChange: (c) => {
        const e = breakerEvent(c)
        if (e) cfg.onEvent?.(e)
      },
    })
  // one guarded store per peer URL, kept across peers-file changes (a peer's state survives a re-read)
  const peerByUrl = new Map<string, GuardedRemote>()
  const make = (urls: string[]) => {
    const list = [...new Set(urls)]
    for (const [u, p] of peerByUrl) {
      if (list.includes(u)) continue
      p.breaker.close()
      peerByUrl.delete(u)
    }
    for (const u of list) if (!peerByUrl.has(u)) peerByUrl.set(u, guard(peerStore(u, cfg)))
    return list.map((u) => peerByUrl.get(u)!)
  }
  const fixed = cfg.peers ?? []
  const fromFile = cfg.peersFile ? await readPeersFile(cfg.peersFile) : []
  const seed = cfg.seedUrl ? guard(chainSeedStore(cfg.seedUrl, cfg)) : undefined
  const chain = new FetchChain(store, {
    peers: make([...fixed, ...fromFile]),
    seed,
    ownerHashing: cfg.ownerHashing,
    onEvent: cfg.onEvent,
    storeRaw: cfg.storeRaw,
  })
  let timer: NodeJS.Timeout | undefined
  if (cfg.peersFile) {
    const file = cfg.peersFile
    let lastMtime = (await fsp.stat(file)).mtimeMs
    timer = setInterval(async () => {
      try {
        const m = (await fsp.stat(file)).mtimeMs
        if (m === lastMtime) return
        lastMtime = m
        chain.setPeers(make([...fixed, ...(await readPeersFile(file))]))
      } catch {
        /* keep the last good list */
      }
    }, 1000)
    timer.unref()
  }
  return {
    chain,
    close: () => {
      if (timer) clearInterval(timer)
      for (const p of peerByUrl.values()) p.breaker.close()
      seed?.breaker.close()
    },
  }
}
