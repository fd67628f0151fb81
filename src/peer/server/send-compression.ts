/**
 * Compressing on send (PROTOCOL.md "Compressed objects", "Compressing on
 * send"): an object that rests raw goes out as a zstd frame to a client
 * that reads frames, when the policy says the client's link is worth it.
 * Frames made are kept in a bounded cache, so a chunk asked for by many
 * hosts is compressed once while it stays hot; a chunk that does not
 * compress by the store's own rule (object-encoding.ts) is remembered as such and
 * sent raw without another try.
 */
import type {IncomingMessage} from 'node:http'
import {encodeChunk, isFrame} from '../../store/object-encoding.js'
import {canCompress} from '../../store/zstd.js'
import {isLoopbackHost} from '../../util/loopback.js'

/**
 * auto: compress for clients that are not on this machine: neither on a
 * loopback address nor connected from the very address they reached, which
 * only this machine can be (a client on this machine reads at memory speed,
 * where compressing only costs CPU); always / never: for every client, or
 * none.
 */
export const SEND_COMPRESSION_POLICIES = ['auto', 'always', 'never'] as const
export type SendCompressionPolicy = (typeof SEND_COMPRESSION_POLICIES)[number]

/** Bytes of frames kept for chunks that rest raw. */
const CACHE_BYTES = 32 << 20
/** Chunks remembered as not worth compressing, at most (then the oldest are forgotten and tried again). */
const MAX_INCOMPRESSIBLE = 1 << 16

export type SendOutcome = 'compressed' | 'cached' | 'incompressible'

export class SendCompression {
  /** Frames by chunk id, oldest first (a Map keeps insertion order; a hit moves the entry to the end). */
  private readonly frames = new Map<string, Buffer>()
  private frameBytes = 0
  private readonly incompressible = new Set<string>()

  constructor(
    readonly policy: SendCompressionPolicy,
    private readonly count: (outcome: SendOutcome) => void = () => {},
  ) {}

  /** Whether objects resting raw go out compressed to this request's client (which must also ask for frames). */
  private wantedBy(req: IncomingMessage): boolean {
    if (this.policy === 'never' || !canCompress()) return false
    return this.policy === 'always' || !onThisMachine(req)
  }

  /** What to send this request's client (one that asked for frames) for the object `stored` of chunk `id`: encode() when the policy wants it, else the object as it is. */
  outgoing(req: IncomingMessage, id: string, stored: Buffer): Buffer {
    return this.wantedBy(req) ? this.encode(id, stored) : stored
  }

  /** What to send for the object `stored` of chunk `id`: a frame as it is, else the chunk's frame when it compresses, else the chunk. */
  private encode(id: string, stored: Buffer): Buffer {
    if (isFrame(stored)) return stored
    const hit = this.frames.get(id)
    if (hit) {
      this.frames.delete(id)
      this.frames.set(id, hit)
      this.count('cached')
      return hit
    }
    if (this.incompressible.has(id)) return stored
    const frame = encodeChunk(stored)
    if (frame === stored) {
      if (this.incompressible.size >= MAX_INCOMPRESSIBLE) this.incompressible.delete(this.incompressible.values().next().value!)
      this.incompressible.add(id)
      this.count('incompressible')
      return stored
    }
    this.frames.set(id, frame)
    this.frameBytes += frame.length
    for (const [old, f] of this.frames) {
      if (this.frameBytes <= CACHE_BYTES) break
      this.frames.delete(old)
      this.frameBytes -= f.length
    }
    this.count('compressed')
    return frame
  }
}

/**
 * Whether the request's client runs on this machine: it came from a loopback
 * address, or from the address it connected to (a host pulling from its own
 * vmi serve by the name its peers use).
 */
function onThisMachine(req: IncomingMessage): boolean {
  const {remoteAddress, localAddress} = req.socket
  return isLoopbackHost(remoteAddress ?? 'localhost') || (remoteAddress !== undefined && remoteAddress === localAddress)
}
