/**
 * Sources of fixed-size chunks: a file read by position, or any byte stream
 * (stdin, a converter's stdout) cut into chunks. Memory use is bounded by a
 * chunk or two.
 */
import fs from 'node:fs'

/**
 * Reads the open file `fd` in `chunkSize` pieces with synchronous reads into
 * one reused buffer: each yielded chunk is only valid until the next one is
 * requested. Synchronous reads of a file in the page cache cost a fraction of
 * a thread-pool round trip; every `yieldEvery` chunks the generator lets the
 * event loop run, so signals, timers and progress output are not starved.
 */
export async function* fileChunks(
  fd: number,
  size: number,
  chunkSize: number,
  opts: {signal?: AbortSignal; yieldEvery?: number} = {},
): AsyncGenerator<Buffer> {
  const buf = Buffer.allocUnsafeSlow(chunkSize)
  const yieldEvery = opts.yieldEvery ?? 32
  let n = 0
  for (let pos = 0; pos < size; pos += chunkSize) {
    if (++n % yieldEvery === 0) await new Promise((resolve) => setImmediate(resolve))
    opts.signal?.throwIfAborted()
    const len = Math.min(chunkSize, size - pos)
    readFullSync(fd, buf, len, pos)
    yield len === chunkSize ? buf : buf.subarray(0, len)
  }
}

/**
 * Read exactly `len` bytes at `pos` into the start of `buf`. A file that
 * ends first is an error with code 'VMI_SHORT_READ'; read errors are thrown
 * as they come.
 */
export function readFullSync(fd: number, buf: Buffer, len: number, pos: number): void {
  let off = 0
  while (off < len) {
    const got = fs.readSync(fd, buf, off, len - off, pos + off)
    if (got === 0) throw Object.assign(new Error(`unexpected end of file at byte ${pos + off}`), {code: 'VMI_SHORT_READ'})
    off += got
  }
}

/**
 * Cuts a byte stream into `chunkSize` buffers (the last may be short). Like
 * fileChunks, one buffer is reused: a chunk is valid until the next is asked for.
 */
export async function* streamChunks(stream: AsyncIterable<Uint8Array>, chunkSize: number, signal?: AbortSignal): AsyncGenerator<Buffer> {
  const cur = Buffer.allocUnsafeSlow(chunkSize)
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
