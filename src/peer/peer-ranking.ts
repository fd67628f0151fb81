/**
 * The order a fetch chain asks its peers for a chunk. With owner hashing,
 * the chunk's owner comes first, then the other peers by rendezvous rank
 * (rendezvous.ts). The owner is balanced over the image's chunks when they
 * are known (setChunks), the same on every host with the same peer list,
 * and is the chunk's first-ranked peer when they are not. Without owner
 * hashing, the peers are asked in the order listed.
 */
import {balancedOwners, ownerPicker, walkRanked} from './rendezvous.js'
import type {RemoteSource} from './source.js'

export class PeerRanking {
  private peers: RemoteSource[]
  /** The image's distinct chunks (setChunks). */
  private chunks?: readonly string[]
  /** Each chunk's balanced owner, while the chunks are known and owner hashing is on. */
  private owners?: Map<string, RemoteSource>

  constructor(
    peers: RemoteSource[],
    private readonly ownerHashing: boolean,
  ) {
    this.peers = peers
  }

  get list(): readonly RemoteSource[] {
    return this.peers
  }

  /** Replace the peer list: owners are balanced over the new one. */
  setPeers(peers: RemoteSource[]): void {
    this.peers = peers
    this.balance()
  }

  /** The distinct chunks of the image being fetched: owners are balanced over them. */
  setChunks(ids: Iterable<string>): void {
    this.chunks = [...ids]
    this.balance()
  }

  private balance(): void {
    this.owners = this.chunks && this.peers.length > 0 && this.ownerHashing ? balancedOwners(this.chunks, this.peers) : undefined
  }

  /** The peers in the order chunk `id` asks them. Lazy: most walks stop at the owner. */
  *order(id: string): Generator<RemoteSource, void, undefined> {
    if (!this.ownerHashing) {
      yield* this.peers
      return
    }
    const owner = this.owners?.get(id)
    if (owner) yield owner
    for (const p of walkRanked(this.peers, id)) if (p !== owner) yield p
  }

  /**
   * For each chunk, the first peer up in the order it asks them: its owner
   * while the owner is up (with owner hashing), else the next one up; the
   * first peer listed and up without owner hashing. Undefined when no peer
   * is up. The peers' states are read when this is called.
   */
  firstUp(): ((id: string) => RemoteSource | undefined) | undefined {
    const up = this.peers.filter((p) => p.downSince === undefined)
    if (up.length === 0) return undefined
    if (!this.ownerHashing) return () => up[0]
    if (this.owners)
      return (id) => {
        for (const p of this.order(id)) if (p.downSince === undefined) return p
        return undefined
      }
    return ownerPicker(up)
  }
}
