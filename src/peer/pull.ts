/**
 * `pull`: bring an image into the local store through the chain
 * local → peers → seed, every chunk verified before it is stored. Resumable:
 * chunks already here are not fetched again. The manifest goes in first,
 * marked lazy (so gc keeps what has arrived), and the ref last, so a ref never
 * names an image whose chunks are not all here.
 */
import {NotAStoreError, RefNotFoundError, RemoteError, UsageError, VmiError} from '../errors.js'
import {silentProgress, type ProgressReporter} from '../progress.js'
import {isValidId, STORE_MARKER_NAME} from '../store/layout.js'
import type {LocalStore} from '../store/local-store.js'
import {acquireLock} from '../store/lock.js'
import type {JobRunner} from '../store/job-runner.js'
import {decodeProfile, maxProfileBytes} from '../store/profile.js'
import {evict, type EvictResult} from '../store/evict.js'
import {chunkCount, chunkLength, decodeManifest, type Manifest} from '../store/manifest.js'
import {formatRef, isValidRefPart, parseRef, type RefName} from '../store/ref.js'
import {checkNotOlder, verifyRefSignature, type VerifiedSignature} from '../store/ref-signature.js'
import type {AllowedSigner} from '../security/allowed-signers.js'
import {preloadBulkReceive} from './bulk-receive.js'
import {closeWriters, MAX_BULK_CONNECTIONS, startWriters} from './chain-bulk.js'
import type {ChainStats, FetchChain} from './chain.js'
import type {RemoteSource, SourceKind} from './source.js'

export interface PullInit {
  /** Store the result under this name:tag (default: the name pulled, for refs). */
  as?: string
  concurrency?: number
  /** Pipelined bulk GETs (default true); false fetches chunk by chunk. */
  bulk?: boolean
  /** Cache budget: evict least-recently-used unpinned chunks after the pull. */
  maxCacheBytes?: number
  /**
   * Pulling by name: the ref must carry a signature by a key these allow
   * for its name (store/ref-signature.ts), checked before the manifest or
   * any chunk is fetched. A pull by id needs none.
   */
  verifySigners?: AllowedSigner[]
  progress?: ProgressReporter
  signal?: AbortSignal
}

/** One remote of the pull: whether it is up at the end, and what it gave. */
export interface SourceReport {
  name: string
  url: string
  kind: SourceKind
  /** false while its circuit breaker is open: it could not be reached, and was not asked again. */
  up: boolean
  /** When down: why, and since when (ISO 8601). */
  downReason?: string
  downSince?: string
  /** Distinct chunks (and bytes) it sent this pull. */
  chunks: number
  bytes: number
}

export interface PullResult {
  id: string
  ref?: string
  virtualSize: number
  chunks: number
  distinctChunks: number
  /** Distinct chunks and bytes by where they came from. */
  fromChunks: Record<SourceKind, number>
  fromBytes: Record<SourceKind, number>
  /** Bytes received from peers and the seed as they came: less than their fromBytes when chunks came compressed. */
  wireBytes: number
  sourceErrors: number
  verificationFailures: number
  manifestFrom: string
  /** The image was here whole already (its manifest, not marked lazy, and every chunk): nothing was fetched, read or re-hashed. */
  upToDate: boolean
  /** Every peer, then the seed. */
  sources: SourceReport[]
  /** What the cache budget removed afterwards. */
  evicted?: EvictResult
  /** The ref's signature, when the pull verified one. */
  signature?: VerifiedSignature
  seconds: number
}

/** A seed that answers 404 to everything (any web server) is not "a seed without the image". */
function notAStore(seed: RemoteSource, what: string): NotAStoreError {
  return new NotAStoreError(
    `${seed.url} does not look like a vmi seed (${what}, no /${STORE_MARKER_NAME}, no /healthz: neither a vmi serve nor a static server over a vmi store; a store last written by a vmi older than its marker gets one from any vmi command run on it)`,
    {data: {url: seed.url}},
  )
}

/** What a name resolved to: the id, the ref and remote that named it, and the ref's signature when it was verified. */
export interface ResolvedTarget {
  id: string
  ref?: RefName
  remote?: string
  signature?: {data: Buffer; verified: VerifiedSignature}
}

/** Verify the signature `data` of `ref` → `id` from `from` (throws SignatureError), when `signers` are given. */
async function checkSigned(
  signers: AllowedSigner[] | undefined,
  ref: RefName,
  id: string,
  from: string,
  read: () => Promise<Buffer | undefined>,
): Promise<ResolvedTarget['signature']> {
  if (!signers) return undefined
  const data = await read()
  return {data: data!, verified: verifyRefSignature(data, ref, id, signers, from)}
}

/**
 * The ref a local name resolves to, when `spec` names one here (as
 * LocalStore.resolveId reads it: `name:tag`, or a bare name that is a ref
 * before it is an id prefix); undefined for an id or an id prefix.
 */
export async function localNamedRef(store: LocalStore, spec: string): Promise<{ref: RefName; id: string} | undefined> {
  if (!spec.includes(':') && !isValidRefPart(spec)) return undefined
  const ref = parseRef(spec)
  const id = await store.readRef(ref)
  return id === undefined ? undefined : {ref, id}
}

/** A local ref, its signature verified when `signers` are given (a local image named by id or prefix needs none). */
export async function resolveLocal(store: LocalStore, spec: string, signers?: AllowedSigner[]): Promise<ResolvedTarget> {
  const named = await localNamedRef(store, spec)
  if (!named) return {id: await store.resolveId(spec)}
  const {ref, id} = named
  return {id, ref, signature: await checkSigned(signers, ref, id, store.name, () => store.readRefSignature(ref))}
}

/**
 * Resolve what to pull: `name:tag` (asked of the seed), or a full image id.
 * With `signers`, a name's signature is fetched and verified here, before
 * anything else of the image is.
 */
export async function resolveTarget(chain: FetchChain, spec: string, signal?: AbortSignal, signers?: AllowedSigner[]): Promise<ResolvedTarget> {
  if (isValidId(spec)) return {id: spec}
  if (/^[0-9a-f]{4,63}$/.test(spec)) {
    // a prefix is only meaningful locally
    try {
      return {id: await chain.local.resolveId(spec)}
    } catch {
      throw new UsageError(`${spec} looks like an id prefix; pull needs a full image id or NAME:TAG`)
    }
  }
  const ref = parseRef(spec)
  if (!chain.seed) {
    const local = await chain.local.readRef(ref)
    if (local) return resolveLocal(chain.local, formatRef(ref), signers)
    throw new UsageError(`pulling ${formatRef(ref)} by name needs a seed (remote) to look the name up; with peers only, pull by image id`)
  }
  const id = await chain.seed.getRef(ref.name, ref.tag, {signal})
  if (!id && !(await chain.seed.looksLikeStore({signal}))) throw notAStore(chain.seed, `no ref ${formatRef(ref)}`)
  if (!id) throw new RefNotFoundError(`${chain.seed.name} has no image ${formatRef(ref)}`, {data: {spec}})
  const seed = chain.seed
  const signature = await checkSigned(signers, ref, id, seed.name, () => seed.getRefSignature(ref.name, ref.tag, {signal}))
  // a host that has seen a newer signature of this ref does not go back
  if (signature) await checkNotOlder(chain.local, ref, signature.verified, signers!, seed.name)
  return {id, ref, remote: seed.url, ...(signature ? {signature} : {})}
}

/**
 * Manifest bytes: local, else peers, else seed — verified against the id.
 * The peers are asked all at once (up to MAX_ASKS), and the first verified
 * copy wins: as a fleet starts none of them has it yet, and asking them in
 * turn cost every host a round trip per peer before the seed.
 * `probeSeed`: when the seed lacks it, ask whether the seed is a vmi store at
 * all (pulling by id; a seed that just answered a ref is one).
 */
export async function fetchManifest(
  chain: FetchChain,
  id: string,
  signal?: AbortSignal,
  opts: {probeSeed?: boolean} = {},
): Promise<{manifest: Manifest; bytes: Buffer; from: string; remote?: string}> {
  const local = await chain.local.getManifestBytes(id)
  if (local) return {manifest: chain.local.decodeStoredManifest(id, local), bytes: local, from: chain.local.name}
  const errors: string[] = []
  type Found = {manifest: Manifest; bytes: Buffer; from: string; remote?: string}
  const fromPeers = await firstFound<RemoteSource, Found>(chain.peerList, signal, async (src, s) => {
    try {
      const bytes = await src.getManifestBytes(id, {signal: s})
      if (bytes) return {manifest: decodeManifest(bytes, id), bytes, from: src.name, remote: src.url}
      errors.push(`${src.name} (missing)`)
    } catch (err) {
      if (!s?.aborted) errors.push(`${src.name} (${(err as Error).message})`)
    }
    return undefined
  })
  signal?.throwIfAborted()
  if (fromPeers) return fromPeers
  const seed = chain.seed
  if (seed) {
    try {
      const bytes = await seed.getManifestBytes(id, {signal})
      if (bytes) return {manifest: decodeManifest(bytes, id), bytes, from: seed.name, remote: seed.url}
      if (opts.probeSeed && !(await seed.looksLikeStore({signal}))) throw notAStore(seed, `no manifest ${id}`)
      errors.push(`${seed.name} (missing)`)
    } catch (err) {
      if (signal?.aborted || err instanceof NotAStoreError) throw err
      errors.push(`${seed.name} (${(err as Error).message})`)
    }
  }
  throw new RemoteError(`no source has image ${id}: tried ${[chain.local.name + ' (missing)', ...errors].join(', ')}`, {data: {id}})
}

/**
 * Sources asked at once for a manifest or a profile: a fleet's worth, and
 * half the bulk path's bound on open connections (each ask is one).
 */
const MAX_ASKS = MAX_BULK_CONNECTIONS / 2

/**
 * `ask` of the sources, MAX_ASKS at once: the first answer that is not
 * undefined, as soon as it comes, and no more asks started; undefined once
 * every ask has found nothing (`ask` reports its own failures). The asks
 * still running then are not aborted: a peer's failure to connect is what
 * its circuit breaker learns it is down from before the chunks are asked.
 */
function firstFound<S, T>(sources: readonly S[], signal: AbortSignal | undefined, ask: (src: S, signal?: AbortSignal) => Promise<T | undefined>): Promise<T | undefined> {
  return new Promise((resolve) => {
    let next = 0
    let running = 0
    let done = false
    const start = () => {
      while (!done && running < MAX_ASKS && next < sources.length && !signal?.aborted) {
        running++
        const settle = (r: T | undefined) => {
          running--
          if (done) return
          if (r !== undefined) return void ((done = true), resolve(r))
          if (running === 0 && (next >= sources.length || signal?.aborted)) return void ((done = true), resolve(undefined))
          start()
        }
        // (an ask that throws found nothing)
        ask(sources[next++], signal).then(settle, () => settle(undefined))
      }
      if (!done && running === 0) (done = true), resolve(undefined)
    }
    start()
  })
}

/**
 * Bring the image's boot profile along when a source has one (a hint:
 * failures are ignored): the peers at once, as for the manifest, then the
 * seed.
 */
async function copyProfile(chain: FetchChain, id: string, manifest: Manifest, signal?: AbortSignal): Promise<void> {
  const chunks = chunkCount(manifest.virtualSize, manifest.chunkSize)
  if (await chain.local.getProfile(id, chunks).catch(() => undefined)) return
  const fetchFrom = async (src: RemoteSource, s?: AbortSignal) => {
    // a profile larger than the image's chunks can need is refused before its body is read
    const bytes = await src.getProfileBytes(id, {signal: s, maxBytes: maxProfileBytes(chunks)}).catch(() => undefined)
    try {
      return bytes && decodeProfile(bytes, chunks)
    } catch {
      return undefined // a bad profile is ignored
    }
  }
  const profile = (await firstFound(chain.peerList, signal, fetchFrom)) ?? (chain.seed && !signal?.aborted ? await fetchFrom(chain.seed, signal) : undefined)
  if (profile) await chain.local.putProfile(id, profile).catch(() => {})
}

export async function pullImage(chain: FetchChain, spec: string, init: PullInit = {}): Promise<PullResult> {
  const t0 = performance.now()
  const store: LocalStore = chain.local
  const progress = init.progress ?? silentProgress
  const as = init.as !== undefined ? parseRef(init.as) : undefined
  // the bulk path's threads start while the ref and the manifest are fetched
  const writers = init.bulk === false ? undefined : startWriters(store)
  writers?.forEach(preloadBulkReceive)
  try {
    return await pullWith(chain, spec, init, {t0, store, progress, as, writers})
  } finally {
    if (writers) await closeWriters(writers)
  }
}

/** Each distinct chunk id of `manifest` with its length, entry by entry: a zero run stands for any number of chunks at no cost. */
function distinctChunkLengths(manifest: Manifest): Map<string, number> {
  const lengths = new Map<string, number>()
  let index = 0
  for (const e of manifest.chunks) {
    if (typeof e === 'number') index += e
    else if (!lengths.has(e)) lengths.set(e, chunkLength(manifest, index++))
    else index++
  }
  return lengths
}

/** What each of the chain's remote sources gave since `before`, and whether it is up. */
function sourceReports(chain: FetchChain, before: ChainStats): SourceReport[] {
  const s = chain.stats
  return [...chain.peerList, ...(chain.seed ? [chain.seed] : [])].map((src): SourceReport => {
    const got = s.bySource[src.name] ?? {chunks: 0, bytes: 0}
    const had = before.bySource[src.name] ?? {chunks: 0, bytes: 0}
    return {
      name: src.name,
      url: src.url,
      kind: src.kind,
      up: src.downSince === undefined,
      ...(src.downSince !== undefined ? {downReason: src.downReason, downSince: new Date(src.downSince).toISOString()} : {}),
      chunks: got.chunks - had.chunks,
      bytes: got.bytes - had.bytes,
    }
  })
}

/** Every chunk of image `id` (`lengths`: each distinct chunk's length) through the chain, each checked against its length, with progress. */
async function fetchChunks(chain: FetchChain, id: string, lengths: Map<string, number>, init: PullInit, writers: JobRunner[] | undefined, progress: ProgressReporter): Promise<void> {
  let done = 0
  let doneBytes = 0
  await chain.fetchMany(
    [...lengths].map(([cid, length]) => ({id: cid, length})),
    {
      concurrency: init.concurrency ?? 8,
      bulk: init.bulk,
      writers,
      signal: init.signal,
      onChunk: (cid, length) => {
        if (length !== lengths.get(cid)) throw new VmiError(`chunk ${cid} has ${length} bytes; image ${id} expects ${lengths.get(cid)}`)
        done++
        doneBytes += length
        progress.update(doneBytes, {chunks: done})
      },
    },
  )
}

async function pullWith(
  chain: FetchChain,
  spec: string,
  init: PullInit,
  {t0, store, progress, as, writers}: {t0: number; store: LocalStore; progress: ProgressReporter; as?: RefName; writers?: JobRunner[]},
): Promise<PullResult> {
  const {id, ref, remote: namedBy, signature} = await resolveTarget(chain, spec, init.signal, init.verifySigners)
  const target = as ?? ref
  // the seed's pack list of an image not here whole is asked beside its manifest (each a round trip)
  if (!(await store.hasManifest(id)) || (await store.isLazy(id))) chain.readPacks(id)
  const {manifest, bytes, from, remote} = await fetchManifest(chain, id, init.signal, {probeSeed: ref === undefined})
  const wasComplete = from === store.name && !(await store.isLazy(id))
  // the remotes known to hold the image: its chunks here are cache (evict.ts)
  const holders = [...new Set([namedBy, remote].filter((u): u is string => u !== undefined))]
  // The manifest goes in first, marked lazy (its chunks are on their way), and
  // a root lock names it: gc and cache eviction then keep every chunk of it,
  // the ones already here and the ones fetched. The lock waits for a running
  // gc, which may have removed the manifest meanwhile: store it again after.
  const storeManifest = async () => {
    if (await store.hasManifest(id)) return
    await store.setLazy(id, true)
    await store.putManifestBytes(id, bytes)
  }
  await storeManifest()
  const lock = await acquireLock(store.layout, {op: 'pull', kind: 'root', roots: [id], signal: init.signal})
  try {
    await storeManifest()
    await store.addSources(id, holders)
    const lengths = distinctChunkLengths(manifest)
    const distinct = [...lengths.keys()]
    chain.setImage(id, distinct) // owners balanced over this image's chunks; the seed's packs of it
    const before: ChainStats = structuredClone(chain.stats)
    const total = [...lengths.values()].reduce((a, b) => a + b, 0)
    // An image already here whole is not read again: the store trusts its own
    // objects, as a mount does (fsck re-hashes them): a no-op pull costs a
    // stat per chunk, where reading, hashing and touching every chunk would
    // cost seconds. (Its chunks' last-use times are left as they are.)
    const upToDate = wasComplete && store.presentObjectsSync(distinct).size === distinct.length
    progress.start(`pulling ${id.slice(0, 12)}`, total, 'bytes')
    if (!upToDate) await fetchChunks(chain, id, lengths, init, writers, progress)
    progress.stop()
    await store.setLazy(id, false) // every chunk is here now
    // After the chunks, not beside them: it asks every peer, and while a fleet
    // fills, each answer waits behind that peer's queue of chunks (the 16-host
    // lab fill took 1.13x as long with it beside them, asking them in turn).
    await copyProfile(chain, id, manifest, init.signal)
    if (target) await store.writeRef(target, id)
    // the verified signature goes beside the ref it signs ('vmi verify', save); under another name it would not verify
    if (signature && target && ref && formatRef(target) === formatRef(ref)) await store.writeRefSignature(target, signature.data)
    const evicted = init.maxCacheBytes !== undefined ? await evict(store, {maxBytes: init.maxCacheBytes, keep: [id]}) : undefined
    const s = chain.stats
    const diff = (k: SourceKind, field: 'chunks' | 'bytes') => s[field][k] - before[field][k]
    const sources = sourceReports(chain, before)
    return {
      id,
      ref: target ? formatRef(target) : undefined,
      virtualSize: manifest.virtualSize,
      chunks: chunkCount(manifest.virtualSize, manifest.chunkSize),
      distinctChunks: distinct.length,
      fromChunks: {local: upToDate ? distinct.length : diff('local', 'chunks'), peer: diff('peer', 'chunks'), seed: diff('seed', 'chunks')},
      fromBytes: {local: upToDate ? total : diff('local', 'bytes'), peer: diff('peer', 'bytes'), seed: diff('seed', 'bytes')},
      wireBytes: s.wireBytes - before.wireBytes,
      sourceErrors: s.sourceErrors - before.sourceErrors,
      verificationFailures: s.verificationFailures - before.verificationFailures,
      manifestFrom: from,
      upToDate,
      sources,
      ...(evicted ? {evicted} : {}),
      ...(signature ? {signature: signature.verified} : {}),
      seconds: (performance.now() - t0) / 1000,
    }
  } finally {
    progress.stop()
    await lock.release().catch(() => {})
  }
}
