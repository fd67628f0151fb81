/**
 * Open descriptors on object files, keyed by chunk index, at most `capacity`
 * at once. Eviction is CLOCK (second chance): a hit only sets a bit, so the
 * hot path of a cached read does one Map lookup and no Map writes.
 */
import fs from 'node:fs'

export class FdCache {
  private readonly slotOf = new Map<number, number>()
  private readonly keys: Float64Array
  private readonly fds: Int32Array
  private readonly referenced: Uint8Array
  private used = 0
  private hand = 0

  constructor(readonly capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError(`fd cache capacity ${capacity}`)
    this.keys = new Float64Array(capacity)
    this.fds = new Int32Array(capacity).fill(-1)
    this.referenced = new Uint8Array(capacity)
  }

  get size(): number {
    return this.slotOf.size
  }

  /** The descriptor cached for `key`, or undefined. */
  get(key: number): number | undefined {
    const slot = this.slotOf.get(key)
    if (slot === undefined) return undefined
    this.referenced[slot] = 1
    return this.fds[slot]
  }

  /** Cache `fd` for `key` (not already cached), closing the descriptor it displaces. */
  add(key: number, fd: number): void {
    let slot: number
    if (this.used < this.capacity) slot = this.used++
    else {
      // sweep: clear second chances until a slot without one comes round
      // (an emptied slot is taken at once; it ends within two rounds)
      while (this.fds[this.hand] >= 0 && this.referenced[this.hand] === 1) {
        this.referenced[this.hand] = 0
        this.hand = (this.hand + 1) % this.capacity
      }
      slot = this.hand
      this.hand = (this.hand + 1) % this.capacity
      if (this.fds[slot] >= 0) {
        this.slotOf.delete(this.keys[slot])
        closeQuietly(this.fds[slot])
      }
    }
    this.keys[slot] = key
    this.fds[slot] = fd
    this.referenced[slot] = 0
    this.slotOf.set(key, slot)
  }

  /** Forget `key` and close its descriptor (if cached). */
  drop(key: number): void {
    const slot = this.slotOf.get(key)
    if (slot === undefined) return
    this.slotOf.delete(key)
    closeQuietly(this.fds[slot])
    this.fds[slot] = -1
    this.referenced[slot] = 0
  }

  /** Close every descriptor. */
  clear(): void {
    for (const slot of this.slotOf.values()) closeQuietly(this.fds[slot])
    this.slotOf.clear()
    this.fds.fill(-1)
    this.referenced.fill(0)
    this.used = 0
    this.hand = 0
  }
}

function closeQuietly(fd: number): void {
  fs.close(fd, () => {})
}
