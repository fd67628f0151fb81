/**
 * The small interfaces every chunk source implements (local store, peer,
 * seed, and the chain built from them). Only "missing" falls through a
 * chain; every other failure is an error naming its source.
 */

export interface FetchOptions {
  signal?: AbortSignal
}

/** Where a chunk came from, for counters and summaries. */
export type SourceKind = 'local' | 'peer' | 'seed'

export interface ChunkSource {
  /** Human-readable name used in messages ("peer http://10.0.0.2:7070"). */
  readonly name: string
  readonly kind: SourceKind
  /** Verified chunk bytes, or undefined when the source does not have it. Throws on any other failure. */
  get(id: string, opts?: FetchOptions): Promise<Buffer | undefined>
  has(id: string, opts?: FetchOptions): Promise<boolean>
}

export interface ManifestSource {
  readonly name: string
  /** Verified manifest bytes, or undefined when absent. */
  getManifestBytes(id: string, opts?: FetchOptions): Promise<Buffer | undefined>
  /** The id a ref points at, or undefined when absent. */
  getRef(name: string, tag: string, opts?: FetchOptions): Promise<string | undefined>
}
