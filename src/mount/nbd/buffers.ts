/**
 * Memory bounds of a connection: a byte budget for payloads and replies held
 * in memory, and a pool of large reply buffers.
 */

/** FIFO counting semaphore over bytes. */
export class ByteBudget {
  private waiters: {n: number; resolve: () => void}[] = []
  private free: number
  readonly capacity: number
  constructor(capacity: number) {
    this.free = this.capacity = capacity
  }

  async acquire(n: number): Promise<number> {
    n = Math.min(n, this.capacity)
    if (this.waiters.length === 0 && this.free >= n) {
      this.free -= n
      return n
    }
    await new Promise<void>((resolve) => this.waiters.push({n, resolve}))
    return n
  }

  release(n: number): void {
    this.free += n
    while (this.waiters.length && this.free >= this.waiters[0].n) {
      const w = this.waiters.shift()!
      this.free -= w.n
      w.resolve()
    }
  }
}

/**
 * Reply buffers for large reads, reused once the kernel has taken their
 * bytes: a fresh multi-megabyte buffer per READ keeps the garbage collector
 * busy. Small reads use Node's own pool.
 */
export class ReplyBufferPool {
  private readonly free = new Map<number, Buffer[]>()
  private pooled = 0
  constructor(
    private readonly minSize = 64 * 1024,
    private readonly maxPooled = 32 * 1024 * 1024,
  ) {}

  take(length: number): Buffer | undefined {
    if (length < this.minSize) return undefined
    const b = this.free.get(length)?.pop()
    if (b) {
      this.pooled -= length
      return b
    }
    return Buffer.allocUnsafeSlow(length)
  }

  give(b: Buffer): void {
    if (b.length < this.minSize || this.pooled + b.length > this.maxPooled) return
    let list = this.free.get(b.length)
    if (!list) this.free.set(b.length, (list = []))
    list.push(b)
    this.pooled += b.length
  }
}
