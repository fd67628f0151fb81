/**
 * `pull`: bring an image into the local store through the chain
 * local → peers → seed, every chunk verified before it is stored. Resumable:
 * chunks already here are not fetched again. The manifest goes in first,
 * marked lazy (so gc keeps what has arrived), and the ref last, so a ref never
 * names an image whose chunks are not all here.
 */
import {VmiError} from '../errors.js'
import {silentProgress, type ProgressReporter} from '../progress.js'
import type {LocalStore} from '../store/local-store.js'
import {acquireLock} from '../store/lock.js'
import type {JobRunner} from '../store/job-runner.js'
import {evict, type EvictResult} from '../store/evict.js'
import {chunkCount, chunkLength, type Manifest} from '../store/manifest.js'
import {formatRef, parseRef, type RefName} from '../store/ref.js'
import type {VerifiedSignature} from '../store/ref-signature.js'
import type {AllowedSigner} from '../security/allowed-signers.js'
import {preloadBulkReceive} from './bulk-receive.js'
import {closeWriters, startWriters} from './chain-bulk.js'
import type {ChainStats, FetchChain} from './chain.js'
import {copyProfile, fetchManifest, resolveTarget} from './image-lookup.js'
import type {SourceKind} from './source.js'

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
