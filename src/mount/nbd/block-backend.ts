/**
 * The storage behind an NBD export: a flat range of `size` bytes.
 *
 * The NBD server validates every request (bounds, read-only, payload
 * limits: validate.ts) before calling a backend, so implementations may assume
 * 0 ≤ offset, offset + length ≤ size and length ≥ 1. Errors thrown may
 * carry `errno` ('EIO' | 'ENOSPC' | 'EPERM' | 'EINVAL'); anything else is
 * reported to the client as EIO.
 *
 * MemoryBackend and FileBackend are simple implementations for tests and
 * tools; the image-backed one is ../image-backend.ts.
 */
import fs from 'node:fs'
import {promisify} from 'node:util'

/** base:allocation status of one extent. */
export const STATE_HOLE = 1
export const STATE_ZERO = 2

export interface Extent {
  length: number
  /** NBD_STATE_HOLE = 1, NBD_STATE_ZERO = 2 (base:allocation) */
  flags: number
}

export interface BlockBackend {
  readonly size: number
  readonly readOnly: boolean
  /** true when concurrent connections see each other's writes after flush (safe to advertise multi-conn) */
  readonly multiConnSafe: boolean
  /** Exactly `length` bytes, or throws. */
  /**
   * `length` bytes at `offset`. When `into` is given (exactly `length`
   * bytes), the backend may fill and return it instead of allocating.
   */
  read(offset: number, length: number, signal?: AbortSignal, into?: Buffer): Promise<Buffer>
  /**
   * Optional fast path: when the bytes can be produced at once, without
   * waiting on anything (no fetch, no overlay I/O in flight), write them to
   * `into` at `at` and return true; false to send the request down the
   * normal read path (`into` may then hold anything).
   */
  readNow?(offset: number, length: number, into: Buffer, at: number): boolean
  /**
   * Optional fast path: true when the range is known, at once, to read as
   * zeros (all-zero chunks of the base, nothing written over them).
   */
  zeroNow?(offset: number, length: number): boolean
  write(offset: number, data: Buffer, opts?: {fua?: boolean}): Promise<void>
  flush(): Promise<void>
  trim(offset: number, length: number): Promise<void>
  writeZeroes(offset: number, length: number, opts?: {noHole?: boolean; fua?: boolean}): Promise<void>
  /** Prefetch hint. */
  cache(offset: number, length: number): Promise<void>
  /** Extents covering [offset, offset + ≥1 byte); may stop before offset + length. */
  blockStatus(offset: number, length: number): Promise<Extent[]>
  /** Optional: release resources (the server never calls it; its owner does). */
  close?(): Promise<void>
}

export type BackendErrno = 'EIO' | 'ENOSPC' | 'EPERM' | 'EINVAL'

export class BackendError extends Error {
  constructor(
    readonly errno: BackendErrno,
    message: string,
  ) {
    super(message)
    this.name = 'BackendError'
  }
}

const ZERO_BLOCK = 4096
const ZEROS = Buffer.alloc(1 << 20)
const SCAN_PIECE = 1 << 20

/** True when buf[start, end) is all zeros (no allocation: native memcmp against a zero buffer). */
export function isZeroRange(buf: Buffer, start = 0, end = buf.length): boolean {
  // cheap rejection first: random data almost never starts with zeros
  if (end > start && (buf[start] !== 0 || buf[end - 1] !== 0)) return false
  for (let o = start; o < end; o += ZEROS.length) {
    const n = Math.min(ZEROS.length, end - o)
    if (ZEROS.compare(buf, o, o + n, 0, n) !== 0) return false
  }
  return true
}

/** True when every byte of buf is 0. */
export function isZero(buf: Buffer): boolean {
  return isZeroRange(buf, 0, buf.length)
}

/**
 * Classify `buf` (the bytes at absolute `offset`) into extents: runs of
 * all-zero 4 KiB blocks (aligned to absolute offsets) get `zeroFlags`,
 * everything else 0. Adjacent extents with the same flags are merged.
 */
export function zeroExtents(buf: Buffer, offset: number, zeroFlags = STATE_HOLE | STATE_ZERO): Extent[] {
  const out: Extent[] = []
  let pos = 0
  while (pos < buf.length) {
    const abs = offset + pos
    const next = Math.min(buf.length, pos + (ZERO_BLOCK - (abs % ZERO_BLOCK)))
    const flags = isZeroRange(buf, pos, next) ? zeroFlags : 0
    const last = out[out.length - 1]
    if (last && last.flags === flags) last.length += next - pos
    else out.push({length: next - pos, flags})
    pos = next
  }
  return out
}

function checkWritable(readOnly: boolean): void {
  if (readOnly) throw new BackendError('EPERM', 'read-only backend')
}

function checkRange(size: number, offset: number, length: number): void {
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > size) {
    throw new BackendError('EINVAL', `range ${offset}+${length} outside 0..${size}`)
  }
}

/** A byte array in memory (copied from the Buffer given, or zero-filled). */
export class MemoryBackend implements BlockBackend {
  readonly size: number
  readonly readOnly: boolean
  readonly multiConnSafe = true
  readonly data: Buffer
  /** Upper bound on bytes scanned by one blockStatus call. */
  statusScanLimit = 8 << 20

  constructor(init: number | Buffer, opts: {readOnly?: boolean} = {}) {
    this.data = typeof init === 'number' ? Buffer.alloc(init) : Buffer.from(init)
    this.size = this.data.length
    this.readOnly = opts.readOnly ?? false
  }

  async read(offset: number, length: number): Promise<Buffer> {
    checkRange(this.size, offset, length)
    return Buffer.from(this.data.subarray(offset, offset + length))
  }

  async write(offset: number, data: Buffer): Promise<void> {
    checkWritable(this.readOnly)
    checkRange(this.size, offset, data.length)
    data.copy(this.data, offset)
  }

  async flush(): Promise<void> {}

  async trim(offset: number, length: number): Promise<void> {
    checkWritable(this.readOnly)
    checkRange(this.size, offset, length)
    this.data.fill(0, offset, offset + length)
  }

  async writeZeroes(offset: number, length: number): Promise<void> {
    checkWritable(this.readOnly)
    checkRange(this.size, offset, length)
    this.data.fill(0, offset, offset + length)
  }

  async cache(offset: number, length: number): Promise<void> {
    checkRange(this.size, offset, length)
  }

  async blockStatus(offset: number, length: number): Promise<Extent[]> {
    checkRange(this.size, offset, length)
    const n = Math.min(length, this.statusScanLimit)
    return zeroExtents(this.data.subarray(offset, offset + n), offset)
  }

  async close(): Promise<void> {}
}

const fsRead = promisify(fs.read)
const fsWrite = promisify(fs.write)
const fsFdatasync = promisify(fs.fdatasync)
const fsClose = promisify(fs.close)

/**
 * A regular file through a file descriptor. blockStatus reads the range
 * and reports all-zero 4 KiB blocks as HOLE|ZERO (Node has no
 * SEEK_DATA/SEEK_HOLE); with `detectZeroes: false` it reports everything
 * as allocated data without reading.
 */
export class FileBackend implements BlockBackend {
  readonly size: number
  readonly readOnly: boolean
  readonly multiConnSafe = true
  /** Upper bound on bytes scanned by one blockStatus call. */
  statusScanLimit = 8 << 20
  private fd: number | undefined
  private scratch: Buffer[] = []
  /** Recent scans (clients often ask twice about the same range); dropped on any write. */
  private statusCache: {offset: number; extents: Extent[]}[] = []
  private generation = 0

  readonly detectZeroes: boolean

  constructor(
    readonly path: string,
    opts: {readOnly?: boolean; detectZeroes?: boolean} = {},
  ) {
    this.readOnly = opts.readOnly ?? false
    this.detectZeroes = opts.detectZeroes ?? true
    const fd = fs.openSync(path, this.readOnly ? 'r' : 'r+')
    try {
      const st = fs.fstatSync(fd)
      if (!st.isFile()) throw new BackendError('EINVAL', `${path}: not a regular file`)
      this.size = st.size
    } catch (e) {
      fs.closeSync(fd)
      throw e
    }
    this.fd = fd
  }

  private get handle(): number {
    if (this.fd === undefined) throw new BackendError('EIO', 'backend closed')
    return this.fd
  }

  async read(offset: number, length: number): Promise<Buffer> {
    checkRange(this.size, offset, length)
    const buf = Buffer.allocUnsafe(length)
    let done = 0
    while (done < length) {
      const {bytesRead: n} = await fsRead(this.handle, buf, done, length - done, offset + done)
      if (n === 0) {
        // the file shrank under us: past its end reads as zeros would be a lie
        throw new BackendError('EIO', `short read at ${offset + done}`)
      }
      done += n
    }
    return buf
  }

  private invalidate(): void {
    this.generation++
    this.statusCache = []
  }

  async write(offset: number, data: Buffer, opts: {fua?: boolean} = {}): Promise<void> {
    checkWritable(this.readOnly)
    checkRange(this.size, offset, data.length)
    this.invalidate()
    let done = 0
    while (done < data.length) {
      const {bytesWritten} = await fsWrite(this.handle, data, done, data.length - done, offset + done)
      done += bytesWritten
    }
    if (opts.fua) await fsFdatasync(this.handle)
  }

  async flush(): Promise<void> {
    if (!this.readOnly) await fsFdatasync(this.handle)
  }

  /** A hint only: the data stays (TRIM does not promise zeros). */
  async trim(offset: number, length: number): Promise<void> {
    checkWritable(this.readOnly)
    checkRange(this.size, offset, length)
  }

  async writeZeroes(offset: number, length: number, opts: {noHole?: boolean; fua?: boolean} = {}): Promise<void> {
    checkWritable(this.readOnly)
    checkRange(this.size, offset, length)
    this.invalidate()
    let done = 0
    while (done < length) {
      const n = Math.min(ZEROS.length, length - done)
      const {bytesWritten} = await fsWrite(this.handle, ZEROS, 0, n, offset + done)
      done += bytesWritten
    }
    if (opts.fua) await fsFdatasync(this.handle)
  }

  async cache(offset: number, length: number): Promise<void> {
    checkRange(this.size, offset, length)
  }

  async blockStatus(offset: number, length: number): Promise<Extent[]> {
    checkRange(this.size, offset, length)
    if (!this.detectZeroes) return [{length, flags: 0}]
    const hit = this.statusCache.find((c) => c.offset === offset)
    if (hit) return hit.extents.map((e) => ({...e}))
    const generation = this.generation
    const n = Math.min(length, this.statusScanLimit)
    // scan through reused scratch buffers: fresh multi-MiB buffers cost page faults
    const scratch = this.scratch.pop() ?? Buffer.allocUnsafe(SCAN_PIECE)
    try {
      const out: Extent[] = []
      for (let done = 0; done < n; ) {
        const k = Math.min(SCAN_PIECE, n - done)
        const {bytesRead} = await fsRead(this.handle, scratch, 0, k, offset + done)
        if (bytesRead === 0) throw new BackendError('EIO', `short read at ${offset + done}`)
        for (const e of zeroExtents(scratch.subarray(0, bytesRead), offset + done)) {
          const last = out[out.length - 1]
          if (last && last.flags === e.flags) last.length += e.length
          else out.push(e)
        }
        done += bytesRead
      }
      if (generation === this.generation) {
        this.statusCache.push({offset, extents: out.map((e) => ({...e}))})
        if (this.statusCache.length > 4) this.statusCache.shift()
      }
      return out
    } finally {
      if (this.scratch.length < 4) this.scratch.push(scratch)
    }
  }

  async close(): Promise<void> {
    const fd = this.fd
    this.fd = undefined
    if (fd !== undefined) await fsClose(fd)
  }
}
