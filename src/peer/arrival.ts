/** Bytes told to listeners at a time, at least: an owner's share of a busy seed's link arrives in reads of a few KiB, and a write to every requester per read costs more CPU than the bytes gain. */
const STEP_BYTES = 32 * 1024
/**
 * What has arrived short of a step is told this long after it came, at the
 * latest: a guard for an upstream that pauses mid-body, longer than
 * a step takes on the slowest share of a seed's link the fleet lab has
 * (a shorter wait told most bodies in slices of a few KiB there, and cost
 * the relays and their clients more CPU than the relaying saved).
 */
const STEP_WAIT_MS = 200

/**
 * An object's body while it arrives from an upstream, for relaying it on
 * as it comes (cut-through: PROTOCOL.md "Relaying as it arrives"). The
 * bulk client fills `body` in order; `filled` only grows, so every byte
 * below it is final and may be sent on before the rest has come. Nothing
 * here is verified until `verified` is set, which happens only once the
 * whole body has hashed to its id: a relay holds its last byte until then.
 */
export class Arrival {
  /** Bytes of `body` received so far, from its start, as last told to listeners (see STEP_BYTES). */
  filled = 0
  /** Bytes received so far. */
  private received = 0
  private timer?: NodeJS.Timeout
  /** The whole body came and hashed (decoded, when a frame) to the id. */
  verified = false
  private readonly listeners = new Set<() => void>()

  constructor(
    readonly id: string,
    /** The object's bytes as the upstream sends them (a frame or the raw chunk), its length from Content-Length. */
    readonly body: Buffer,
    /** The upstream said it tried to compress this chunk by the store's rule and it did not compress. */
    readonly incompressible: boolean,
  ) {}

  /** More bytes have arrived: `filled` in all. Listeners are told in steps, and of the whole body at once. */
  progress(filled: number): void {
    this.received = filled
    if (filled === this.body.length || filled - this.filled >= STEP_BYTES) this.tell()
    else this.timer ??= setTimeout(() => this.tell(), STEP_WAIT_MS)
  }

  private tell(): void {
    clearTimeout(this.timer)
    this.timer = undefined
    if (this.received === this.filled) return
    this.filled = this.received
    for (const l of this.listeners) l()
  }

  /** Call `fn` each time bytes arrive; returns the call that stops it. */
  onProgress(fn: () => void): () => void {
    this.listeners.add(fn)
    return () => this.listeners.delete(fn)
  }
}

/** Told of each object body as it begins to arrive (its head has been read). */
export type ArrivalListener = (arrival: Arrival) => void
