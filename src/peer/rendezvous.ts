/**
 * Rendezvous (highest-random-weight) hashing: every host computes the same
 * owner for a chunk from the same peer list, and when a peer joins or leaves
 * only the chunks it owned move.
 */
import {hash} from '../store/hash.js'

export function rendezvousScore(peer: string, id: string): string {
  return hash(Buffer.from(`${peer}\n${id}`))
}

/** Peers ordered by their weight for `id`, owner first. */
export function rankPeers<T extends {url: string}>(peers: readonly T[], id: string): T[] {
  return peers
    .map((p) => ({p, s: rendezvousScore(p.url, id)}))
    .sort((a, b) => (a.s < b.s ? 1 : a.s > b.s ? -1 : 0))
    .map((x) => x.p)
}
