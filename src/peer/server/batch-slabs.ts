/**
 * An object batch's frames laid into slabs as they arrive: buffers of at
 * least SLAB_BYTES (one frame's size when larger), each filled with whole
 * frames and handed to the writer threads in turn, where every object is
 * checked and stored on its own (ObjectWriter.putSlab). The bytes are copied
 * once, from the socket's pieces into the slab, as they were into a buffer
 * per frame; the threads get one message per slab instead of one per object.
 */
import type {ObjectWriter, SlabOutcome} from '../../store/object-writer.js'

/** The size of a slab: small enough that a writer starts soon, large enough to hold many compressed chunks. */
export const SLAB_BYTES = 2 << 20

export class SlabDealer {
  private slab?: Buffer
  private used = 0
  private ids: string[] = []
  private offsets: number[] = []
  private lengths: number[] = []
  private turn = 0

  constructor(
    private readonly writers: ObjectWriter[],
    /** Each slab handed over: its objects' ids and what became of each. */
    private readonly onSlab: (ids: string[], outcomes: Promise<SlabOutcome[]>) => void,
  ) {}

  /** Room for the next frame's `length` bytes (BatchParser's alloc). */
  alloc(length: number): Buffer {
    if (!this.slab || this.slab.length - this.used < length) {
      this.flush()
      this.slab = this.writers[this.turn % this.writers.length].takeBuffer(Math.max(SLAB_BYTES, length))
      this.used = 0
    }
    const room = this.slab.subarray(this.used, this.used + length)
    this.used += length
    return room
  }

  /** A frame filled (BatchParser's onFrame): `data` is the room alloc gave it. */
  frame(id: string, data: Buffer): void {
    this.ids.push(id)
    this.offsets.push(data.byteOffset)
    this.lengths.push(data.length)
  }

  /** Hand the slab being filled to its writer, when it holds any frame. */
  flush(): void {
    if (!this.slab || this.ids.length === 0) return
    const writer = this.writers[this.turn++ % this.writers.length]
    const ids = this.ids
    this.onSlab(ids, writer.putSlab({buffer: this.slab.buffer as ArrayBuffer, ids, offsets: this.offsets, lengths: this.lengths}))
    this.slab = undefined
    this.ids = []
    this.offsets = []
    this.lengths = []
  }
}
