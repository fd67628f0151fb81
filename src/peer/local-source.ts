/**
 * The local store as a ChunkSource: what a chain, a server or a test asks
 * through the same interface as a peer or the seed. Every read is verified:
 * a corrupt object is an IntegrityError naming the store, never returned.
 */
import {IntegrityError, StoreError} from '../errors.js'
import {checkReceived} from '../store/object-encoding.js'
import type {LocalStore} from '../store/local-store.js'
import {assertChunkId, type ChunkSource, type FetchOptions} from './source.js'

export class LocalSource implements ChunkSource {
  readonly kind = 'local' as const
  readonly name: string

  constructor(readonly store: LocalStore) {
    this.name = store.name
  }

  async get(id: string, opts: FetchOptions = {}): Promise<Buffer | undefined> {
    assertChunkId(id)
    opts.signal?.throwIfAborted()
    let data: Buffer | undefined
    try {
      data = this.store.readObjectStored(id)
    } catch (err) {
      // not a regular file, or larger than any chunk: say which store
      if (err instanceof IntegrityError) throw new IntegrityError(`${this.name}: ${err.message}`, {cause: err, data: {id, source: this.name}})
      throw new StoreError(`${this.name} could not read chunk ${id}: ${(err as Error).message}`, {cause: err, data: {id, source: this.name}})
    }
    if (data === undefined) return undefined
    // decoded when compressed, then hashed
    return checkReceived(id, data, (actual) => new IntegrityError(`chunk ${id} in ${this.name} is corrupt (hashes to ${actual})`, {data: {id, actual, source: this.name}}))
  }

  async has(id: string, opts: FetchOptions = {}): Promise<boolean> {
    assertChunkId(id)
    opts.signal?.throwIfAborted()
    return this.store.hasObject(id)
  }
}
