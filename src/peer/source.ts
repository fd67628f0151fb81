/**
 * The small interfaces every chunk source implements (local store, peer,
 * seed, and the chain built from them). Only "missing" falls through a
 * chain; every other failure is an error naming its source.
 *
 * A new kind of source implements ChunkSource (RemoteSource for a remote,
 * opened by URL in factory.openRemote) and joins the factories of
 * test/integration/source-contract.test.js, which hold it to the contract below.
 */
import {isValidId} from '../store/layout.js'
import type {PackSpan} from './packs.js'
import type {BulkOptions} from './pipelined-get.js'

export interface FetchOptions {
  signal?: AbortSignal
}

/** Where a chunk came from, for counters and summaries. */
export type SourceKind = 'local' | 'peer' | 'seed'

/**
 * The contract (test/helpers/source-contract.js runs it against every
 * source): get returns exactly the chunk's bytes (a zero-length chunk is an
 * empty Buffer, not undefined), or undefined when the source does not have
 * it — never an error for "missing". Bytes that do not hash to the id are
 * an error (code VMI_INTEGRITY or VMI_REMOTE_INTEGRITY, or for a chain an
 * error naming every source tried), never returned. has() agrees with get().
 * An id that is not 64 lowercase hex digits rejects with a TypeError before
 * any I/O. A signal already aborted, or aborted while waiting, rejects the
 * call promptly. Any other failure (unreachable, 5xx, timeout) rejects with
 * an error whose message names the source.
 */
export interface ChunkSource {
  /** Human-readable name used in messages ("peer http://10.0.0.2:7070"). */
  readonly name: string
  readonly kind: SourceKind
  /** Verified chunk bytes, or undefined when the source does not have it. Throws on any other failure. */
  get(id: string, opts?: FetchOptions): Promise<Buffer | undefined>
  has(id: string, opts?: FetchOptions): Promise<boolean>
}

/** The id check every source makes first (ChunkSource's contract): a TypeError, before any I/O. */
export function assertChunkId(id: unknown): asserts id is string {
  if (!isValidId(id)) throw new TypeError(`bad chunk id ${JSON.stringify(id)}`)
}

export interface ManifestSource {
  readonly name: string
  /** Verified manifest bytes, or undefined when absent. */
  getManifestBytes(id: string, opts?: FetchOptions): Promise<Buffer | undefined>
  /** The id a ref points at, or undefined when absent. */
  getRef(name: string, tag: string, opts?: FetchOptions): Promise<string | undefined>
}

/**
 * A remote store as the fetch chain, pull and mount use it (HttpStore, or a
 * wrapper around one): chunks, manifests, refs, boot profiles, and what the
 * bulk path needs to open its own connections.
 */
export interface RemoteSource extends ChunkSource, ManifestSource {
  readonly url: string
  /** `fetchThrough` asks a peer to fetch a chunk it lacks from its upstream (owner role). */
  get(id: string, opts?: FetchOptions & {fetchThrough?: boolean}): Promise<Buffer | undefined>
  /** A ref's signature file (unchecked: the caller verifies it), or undefined when the ref is not signed there. */
  getRefSignature(name: string, tag: string, opts?: FetchOptions): Promise<Buffer | undefined>
  /** A boot profile, or undefined when the source has none. */
  getProfileBytes(id: string, opts?: FetchOptions & {maxBytes?: number}): Promise<Buffer | undefined>
  /**
   * Connection settings for pipelined bulk GETs from this source; undefined
   * when it has no such path, and the chain then asks it chunk by chunk.
   */
  bulkOptions(fetchThrough: boolean): BulkOptions | undefined
  /**
   * A seed that may keep chunks in packs (packs.ts; a bucket, a static copy
   * of one): read where manifest `manifestId`'s chunks are packed, once;
   * `get` then reads those from their packs. Resolves to the number of
   * packs (0: all loose). Absent on sources that never hold packs.
   */
  usePacks?(manifestId: string, opts?: FetchOptions): Promise<number>
  /** Whether a pack list is being read (usePacks): a chunk missing loose may still be packed. */
  readonly packsPending?: boolean
  /** A peer: the image the next fetch-throughs are for (sent with them, wire.ts IMAGE_HEADER). */
  forImage?(manifestId: string): void
  /** Ranged pack reads for the bulk path (by index into `items`), when any of them are in a known pack; else undefined. */
  packPlan?(items: readonly {id: string}[]): {spans: PackSpan[]; loose: number[]} | undefined
  /** Whether the server is a vmi store at all (its marker, or vmi serve's /healthz), asked after a telling 404. */
  looksLikeStore(opts?: FetchOptions): Promise<boolean>
  /** Resolves when the source answers HTTP at all (any status); throws when it cannot be reached. */
  ping(opts?: FetchOptions): Promise<void>
  /** While the source is known to be down (requests fail at once): since when, ms since the epoch. Else undefined. */
  readonly downSince?: number
  /** While the source is known to be down: why. */
  readonly downReason?: string
}

/**
 * A remote that push writes to (the seed: vmi serve, or an object-storage
 * bucket). Push's order is the contract that keeps a remote consistent:
 * chunks first, then the manifest (refused with status 409 while a chunk it
 * names is missing), then the profile, then the ref, and its signature last. Every write is
 * idempotent, so a push resumed after an interruption sends only what
 * `missing` still reports.
 */
export interface WritableRemote {
  readonly name: string
  readonly url: string
  /** Whether writes carry credentials (a push token, keys): without them push asks nothing. */
  readonly canWrite: boolean
  /** Whether the remote hashes every upload and refuses wrong bytes (vmi serve); else (a bucket) the pusher verifies what it sends. */
  readonly verifiesUploads: boolean
  /**
   * Whether the remote stores compressed objects as sent (FORMAT.md
   * "Compressed objects"): a vmi serve that says so, a bucket. Asked once
   * per push; false for a server that takes raw chunks only.
   */
  storesEncoded(opts?: FetchOptions): Promise<boolean>
  /** The ids among `ids` the remote does not hold. */
  missing(ids: string[], opts?: FetchOptions): Promise<string[]>
  /** Store a chunk; true when it was new. */
  putObject(id: string, data: Buffer, opts?: FetchOptions): Promise<boolean>
  /**
   * Store many chunks at once, when the remote can (vmi serve: one object
   * batch; a bucket: one pack and its index); undefined: it cannot, and the
   * caller puts them one by one. Rejects when any was
   * refused. `onSent(i)` as objects[i] has gone out (progress; not yet stored).
   * Holds no reference to the objects' bytes once settled: the caller reuses
   * their memory for the next batch.
   */
  putObjects?(objects: {id: string; data: Buffer}[], opts?: FetchOptions & {onSent?: (index: number) => void}): Promise<{stored: number; present: number} | undefined>
  putManifest(id: string, bytes: Buffer, opts?: FetchOptions): Promise<void>
  putProfile(id: string, bytes: Buffer, opts?: FetchOptions): Promise<void>
  putRef(name: string, tag: string, id: string, opts?: FetchOptions): Promise<void>
  /** A ref's signature file, after the ref it signs (refused with 409 when the remote's ref points elsewhere). */
  putRefSignature(name: string, tag: string, data: Buffer, opts?: FetchOptions): Promise<void>
}
