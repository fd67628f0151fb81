/**
 * Rendezvous (highest-random-weight) hashing: every host computes the same
 * owner for a chunk from the same peer list, and when a peer joins or leaves
 * only the chunks it owned move.
 *
 * The weight of (peer, chunk) mixes a key of the peer's URL (BLAKE3 of the
 * URL, computed once per URL) with the chunk id's first 32 bits, which are
 * uniform already (an id is a BLAKE3 digest). Ranking a chunk over P peers
 * then costs P integer mixes instead of P hashes, which is what makes a
 * peer list of a thousand hosts affordable per chunk. PROTOCOL.md ("Owner
 * hashing") states the function: hosts must compute it alike to agree on
 * owners.
 */
import {hash} from '../store/hash.js'

/** The murmur3 finalizer: a bijection of 32-bit integers with full avalanche. */
function fmix32(h: number): number {
  h ^= h >>> 16
  h = Math.imul(h, 0x85ebca6b)
  h ^= h >>> 13
  h = Math.imul(h, 0xc2b2ae35)
  h ^= h >>> 16
  return h >>> 0
}

/** Peer keys by URL; bounded, as a long-running serve may see many peer lists. */
const peerKeys = new Map<string, number>()
const MAX_PEER_KEYS = 65536

/** The peer's key: the first 4 bytes of BLAKE3(URL as listed), big-endian. */
export function peerKey(url: string): number {
  let k = peerKeys.get(url)
  if (k === undefined) {
    k = Number.parseInt(hash(Buffer.from(url, 'utf8')).slice(0, 8), 16)
    if (peerKeys.size >= MAX_PEER_KEYS) peerKeys.clear()
    peerKeys.set(url, k)
  }
  return k
}

/** The chunk's key: its id's first 8 hex digits as a 32-bit integer. */
function chunkKey(id: string): number {
  const k = Number.parseInt(id.slice(0, 8), 16)
  if (!(k >= 0)) throw new TypeError(`not a chunk id: ${JSON.stringify(id)}`)
  return k
}

/** The weight of a peer for a chunk, from their keys: fmix32(chunk key XOR peer key), an integer in [0, 2^32). */
function weight(chunk: number, peer: number): number {
  return fmix32((chunk ^ peer) >>> 0)
}

/** The weight of `peer` for chunk `id`. */
export function rendezvousScore(peer: string, id: string): number {
  return weight(chunkKey(id), peerKey(peer))
}

/** Whether a outranks b: the higher weight, and between equal weights the URL first in code-unit order. */
function outranks(wa: number, ua: string, wb: number, ub: string): boolean {
  return wa > wb || (wa === wb && ua < ub)
}

/** Peers ordered by their weight for `id`, owner first. */
export function rankPeers<T extends {url: string}>(peers: readonly T[], id: string): T[] {
  const c = chunkKey(id)
  return peers
    .map((p) => ({p, w: weight(c, peerKey(p.url))}))
    .sort((a, b) => (outranks(a.w, a.p.url, b.w, b.p.url) ? -1 : outranks(b.w, b.p.url, a.w, a.p.url) ? 1 : 0))
    .map((x) => x.p)
}

/**
 * The owner of each chunk among `peers` (rankPeers(peers, id)[0]) for many
 * chunks: the peers' keys are looked up once, and each chunk costs one mix
 * per peer, without a sort. Undefined when `peers` is empty.
 */
export function ownerPicker<T extends {url: string}>(peers: readonly T[]): (id: string) => T | undefined {
  const keys = Uint32Array.from(peers, (p) => peerKey(p.url))
  return (id) => {
    const c = chunkKey(id)
    let best = -1
    let bestW = -1
    for (let i = 0; i < peers.length; i++) {
      const w = weight(c, keys[i])
      if (best < 0 || outranks(w, peers[i].url, bestW, peers[best].url)) {
        best = i
        bestW = w
      }
    }
    return best < 0 ? undefined : peers[best]
  }
}

/**
 * rankPeers(peers, id), one peer at a time: each step is one pass over the
 * list. A chunk's owner usually answers, so most walks stop after the first
 * step, where a sort of a thousand peers would cost ten times as much.
 */
export function* walkRanked<T extends {url: string}>(peers: readonly T[], id: string): Generator<T, void, undefined> {
  const c = chunkKey(id)
  const w = Float64Array.from(peers, (p) => weight(c, peerKey(p.url)))
  for (let left = peers.length; left > 0; left--) {
    let best = -1
    for (let i = 0; i < peers.length; i++) if (w[i] >= 0 && (best < 0 || outranks(w[i], peers[i].url, w[best], peers[best].url))) best = i
    w[best] = -1 // yielded
    yield peers[best]
  }
}

/**
 * How far above the mean a balanced owner's share may go (balancedOwners):
 * none. Every owner's uplink sends its share to every other host, so the
 * largest share sets the end of a fill; a change of the peer list then moves
 * more chunks between owners than with room to spare, and each moved chunk
 * still needed crosses the seed link again. Both measured, and the choice
 * argued, in docs/PROTOCOL.md ("Owner hashing"). Part of the wire contract:
 * hosts must agree on owners.
 */
export const OWNER_SLACK = 0

/**
 * Each chunk of one image to an owner among `peers`, no peer owning more than
 * ⌈(1 + slack) · chunks ÷ peers⌉. Plain rendezvous hashing leaves one owner
 * with a share well above the mean (512 chunks over 16 peers: 1.2–1.3×;
 * 4,929 over 1,000: 3×), and in a fleet fill that owner's uplink is the
 * last to finish.
 *
 * Deferred acceptance in rounds: in round k every chunk not yet placed asks
 * the k-th peer of its ranking, in ascending order of chunk id, and a peer
 * takes a chunk while it has room. The result depends only on the set of ids
 * and the peer list, not on their order, so every host pulling the image
 * computes the same owners.
 */
export function balancedOwners<T extends {url: string}>(ids: Iterable<string>, peers: readonly T[], slack = OWNER_SLACK): Map<string, T> {
  const owners = new Map<string, T>()
  if (peers.length === 0) return owners
  const sorted = [...new Set(ids)].sort()
  const cap = Math.ceil(((1 + slack) * sorted.length) / peers.length)
  const load = new Map<T, number>()
  const take = (id: string, p: T): boolean => {
    const n = load.get(p) ?? 0
    if (n >= cap) return false
    load.set(p, n + 1)
    owners.set(id, p)
    return true
  }
  const first = ownerPicker(peers)
  let open: {id: string; walk?: Iterator<T>}[] = []
  for (const id of sorted) if (!take(id, first(id)!)) open.push({id})
  while (open.length > 0) {
    const next: typeof open = []
    for (const o of open) {
      if (!o.walk) {
        o.walk = walkRanked(peers, o.id)
        o.walk.next() // the first-ranked peer, which refused it in round 0
      }
      const r = o.walk.next()
      // (cap · peers ≥ chunks: some peer always has room, so no walk runs out)
      if (!r.done && !take(o.id, r.value)) next.push(o)
    }
    open = next
  }
  return owners
}
