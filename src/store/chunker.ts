/**
 * Sources of fixed-size chunks: a file read by position, or any byte stream
 * (stdin, a converter's stdout) cut into chunks. Memory use is bounded by a
 * few chunks in flight.
 */
import {promises as fsp} from 'node:fs'

/**
 * A fixed set of equal buffers handed out and given back, so a long import
 * reuses the same memory instead of allocating (and garbage-collecting) a
 * buffer per chunk. acquire() waits while all are in use.
 */
export class BufferPool {
  private readonly free: Buffer[] = []
  private readonly waiters: ((b: Buffer) => void)[] = []
  private readonly owned = new Set<ArrayBufferLike>()

  constructor(
    readonly size: number,
    count: number,
  ) {
    for (let i = 0; i < count; i++) {
      const b = Buffer.allocUnsafeSlow(size)
      this.owned.add(b.buffer)
      this.free.push(b)
    }
  }

  acquire(): Promise<Buffer> {
    const b = this.free.pop()
    return b ? Promise.resolve(b) : new Promise((resolve) => this.waiters.push(resolve))
  }

  /** Give back a buffer (or any view of one) from this pool; others are ignored. */
  release(view: Buffer): void {
    if (!this.owned.has(view.buffer)) return
    const b = Buffer.from(view.buffer, 0, this.size)
    const w = this.waiters.shift()
    if (w) w(b)
    else this.free.push(b)
  }
}

/**
 * Reads `fh` in `chunkSize` pieces, keeping `readAhead` reads in flight.
 * With a pool, the chunks are views of pool buffers the caller must release.
 */
export async function* fileChunks(
  fh: fsp.FileHandle,
  size: number,
  chunkSize: number,
  opts: {readAhead?: number; signal?: AbortSignal; pool?: BufferPool} = {},
): AsyncGenerator<Buffer> {
  const readAhead = opts.readAhead ?? 4
  const count = Math.ceil(size / chunkSize)
  const pending: Promise<Buffer>[] = []
  let next = 0
  const pool = opts.pool
  const issue = () => {
    const index = next++
    const len = Math.min(chunkSize, size - index * chunkSize)
    const p = pool
      ? pool.acquire().then((b) => readFully(fh, b.subarray(0, len), index * chunkSize))
      : readFully(fh, Buffer.allocUnsafe(len), index * chunkSize)
    p.catch(() => {}) // handled when awaited in order; avoid unhandled-rejection for reads past a failure
    pending.push(p)
  }
  try {
    while (next < count && pending.length < readAhead) issue()
    while (pending.length > 0) {
      opts.signal?.throwIfAborted()
      const buf = await pending.shift()!
      if (next < count) issue()
      yield buf
    }
  } finally {
    // let reads still in flight settle before the caller closes the file
    await Promise.allSettled(pending)
  }
}

async function readFully(fh: fsp.FileHandle, buf: Buffer, position: number): Promise<Buffer> {
  let off = 0
  while (off < buf.length) {
    const {bytesRead} = await fh.read(buf, off, buf.length - off, position + off)
    if (bytesRead === 0) throw Object.assign(new Error(`unexpected end of file at byte ${position + off}`), {code: 'VMI_SHORT_READ'})
    off += bytesRead
  }
  return buf
}

/** Cuts a byte stream into `chunkSize` buffers (the last may be short). */
export async function* streamChunks(stream: AsyncIterable<Uint8Array>, chunkSize: number, signal?: AbortSignal): AsyncGenerator<Buffer> {
  let cur = Buffer.allocUnsafe(chunkSize)
  let fill = 0
  for await (const piece of stream) {
    signal?.throwIfAborted()
    let off = 0
    while (off < piece.length) {
      const n = Math.min(chunkSize - fill, piece.length - off)
      cur.set(piece.subarray(off, off + n), fill)
      fill += n
      off += n
      if (fill === chunkSize) {
        yield cur
        cur = Buffer.allocUnsafe(chunkSize)
        fill = 0
      }
    }
  }
  if (fill > 0) yield cur.subarray(0, fill)
}

const ZERO = Buffer.alloc(4 * 1024 * 1024)

export function isAllZero(buf: Buffer): boolean {
  for (let off = 0; off < buf.length; off += ZERO.length) {
    const n = Math.min(ZERO.length, buf.length - off)
    if (!buf.subarray(off, off + n).equals(ZERO.subarray(0, n))) return false
  }
  return true
}
