/**
 * The storage behind an NBD export: a flat range of `size` bytes.
 *
 * The NBD server (nbd-server.ts) validates every request (bounds, read-only,
 * payload limits) before calling a backend, so implementations may assume
 * 0 ≤ offset, offset + length ≤ size and length ≥ 1. Errors thrown may
 * carry `errno` ('EIO' | 'ENOSPC' | 'EPERM' | 'EINVAL'); anything else is
 * reported to the client as EIO.
 *
 * MemoryBackend and FileBackend are simple implementations for tests and
 * tools; the image-backed implementation lives in image-backend.ts.
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
  read(offset: number, length: number, signal?: AbortSignal): Promise<Buffer>
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

/** True when every byte of buf is 0 (memcmp against a shared zero buffer). */
export function isZero(buf: Buffer): boolean {
  for (let o = 0; o < buf.length; o += ZEROS.length) {
    const n = Math.min(ZEROS.length, buf.length - o)
    if (!buf.subarray(o, o + n).equals(ZEROS.subarray(0, n))) return false
  }
  return true
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
    const flags = isZero(buf.subarray(pos, next)) ? zeroFlags : 0
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
 * A regular file (or block device) through a file descriptor. blockStatus
 * reads the range and reports all-zero 4 KiB blocks as HOLE|ZERO.
 */
export class FileBackend implements BlockBackend {
  readonly size: number
  readonly readOnly: boolean
  readonly multiConnSafe = true
  /** Upper bound on bytes scanned by one blockStatus call. */
  statusScanLimit = 8 << 20
  private fd: number | undefined

  constructor(
    readonly path: string,
    opts: {readOnly?: boolean} = {},
  ) {
    this.readOnly = opts.readOnly ?? false
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

  async write(offset: number, data: Buffer, opts: {fua?: boolean} = {}): Promise<void> {
    checkWritable(this.readOnly)
    checkRange(this.size, offset, data.length)
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
    const n = Math.min(length, this.statusScanLimit)
    return zeroExtents(await this.read(offset, n), offset)
  }

  async close(): Promise<void> {
    const fd = this.fd
    this.fd = undefined
    if (fd !== undefined) await fsClose(fd)
  }
}
