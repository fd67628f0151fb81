/**
 * An image as a block device: reads resolve chunks through the fetch chain
 * (local → peers → seed) on first touch; writes go to a copy-on-write
 * overlay. Chunks fetched are stored locally (so this host lends them).
 */
import fs from 'node:fs'
import type {LocalStore} from '../store/local-store.js'
import {chunkLength, expandChunks, type Manifest} from '../store/manifest.js'
import type {FetchChain} from '../peer/chain.js'
import {BackendError, STATE_HOLE, STATE_ZERO, type BlockBackend, type Extent} from './nbd/block-backend.js'
import {FdCache} from '../util/fd-cache.js'
import {OVERLAY_BLOCK, type Overlay} from './overlay.js'
import {RangeLock} from '../util/range-lock.js'
import {RawRewriter} from './raw-rewriter.js'

// object files kept open (Node raises the descriptor limit to the hard limit at start)
const MAX_OPEN_CHUNKS = 8192
/** Milliseconds without a guest read before background work (RawRewriter) runs. */
const QUIET_MS = 20

export interface ImageBackendInit {
  overlay?: Overlay
  readOnly?: boolean
  /** Chunks kept in memory after a fetch (default 64). */
  cacheChunks?: number
  /** Called with a chunk index the first time the guest reads it (boot profile). */
  onFirstRead?: (index: number) => void
  /** Called for every chunk read and verified for the first time (or again after its copy was dropped), with where it came from: local, peer or seed. */
  onFetch?: (index: number, source: string) => void
}


export class ImageBackend implements BlockBackend {
  readonly size: number
  readonly readOnly: boolean
  readonly multiConnSafe = true // one process, one overlay: every connection sees every write
  private readonly ids: (string | null)[]
  private readonly verified: Uint8Array
  /** 1 where a verified chunk's object file is compressed: read whole and decoded, never sliced (FORMAT.md "Compressed objects"). */
  private readonly encoded: Uint8Array
  private readonly touched: Uint8Array
  private readonly chunkCache = new Map<number, Buffer>()
  /** Open descriptors of verified chunks' object files. */
  private readonly fds = new FdCache(MAX_OPEN_CHUNKS)
  private readonly fetching = new Map<number, Promise<Buffer>>()
  /** Rewrites the compressed objects of chunks read here raw, while no read waits (raw-rewriter.ts). */
  private readonly rewriter: RawRewriter
  private readonly cacheMax: number
  /** Overlay blocks being changed (see changing()). */
  private readonly blockLock = new RangeLock()
  /** Demand reads in flight (prefetch yields to them). */
  demandInFlight = 0
  /** When the last guest read ended (performance.now()). */
  private lastReadAt = 0
  /** Chunks isLocal() is true for, kept as they change (a count over all chunks would stall reads: up to 2^26 of them). */
  private localCount = 0

  constructor(
    readonly store: LocalStore,
    readonly chain: FetchChain,
    readonly id: string,
    readonly manifest: Manifest,
    private readonly init: ImageBackendInit = {},
  ) {
    this.size = manifest.virtualSize
    this.readOnly = init.readOnly ?? !init.overlay
    this.ids = expandChunks(manifest)
    this.verified = new Uint8Array(this.ids.length)
    this.encoded = new Uint8Array(this.ids.length)
    // idle: no read in flight, and none for a moment (a guest reading one request at a time is not idle between them)
    this.rewriter = new RawRewriter(store, () => this.demandInFlight === 0 && performance.now() - this.lastReadAt > QUIET_MS)
    this.touched = new Uint8Array(this.ids.length)
    this.cacheMax = init.cacheChunks ?? 64
    for (const id of this.ids) if (id === null) this.localCount++
  }

  /** How many chunks are all zeros or verified here. */
  get localChunks(): number {
    return this.localCount
  }

  get chunkCount(): number {
    return this.ids.length
  }

  chunkId(index: number): string | null {
    return this.ids[index]
  }

  /** True when chunk `index` is all zeros or already verified here. */
  isLocal(index: number): boolean {
    return this.ids[index] === null || this.verified[index] === 1
  }

  private remember(index: number, data: Buffer): void {
    this.chunkCache.delete(index)
    this.chunkCache.set(index, data)
    if (this.chunkCache.size > this.cacheMax) this.chunkCache.delete(this.chunkCache.keys().next().value!)
  }

  /**
   * Bytes [start, end) of chunk `index` from the base image, copied into
   * `out` at `at`. A chunk is read whole and verified the first time; after
   * that slices are read straight from the object file, synchronously: the
   * object is almost always in the page cache, and a synchronous read costs
   * a few microseconds where a thread-pool round trip costs tens
   * (bench/results, "Cached reads").
   */
  private async baseInto(index: number, start: number, end: number, out: Buffer, at: number, demand = true): Promise<void> {
    const id = this.ids[index]
    if (id === null) {
      out.fill(0, at, at + end - start)
      return
    }
    if (demand && this.touched[index] === 0) {
      this.touched[index] = 1
      this.init.onFirstRead?.(index)
    }
    const cached = this.chunkCache.get(index)
    if (cached) {
      cached.copy(out, at, start, end)
      return
    }
    // a verified chunk is read straight from its file (if that fails, it is fetched again)
    if (this.verified[index] === 1 && this.baseIntoNow(index, start, end, out, at)) return
    const data = await this.fetchChunk(index)
    data.copy(out, at, start, end)
  }

  /** Bytes [start, end) of chunk `index` from the base image. */
  async baseSlice(index: number, start: number, end: number, demand = true): Promise<Buffer> {
    const out = Buffer.allocUnsafe(end - start)
    await this.baseInto(index, start, end, out, 0, demand)
    return out
  }

  /** An open descriptor on a verified chunk's object file (cached: no open/close per read). */
  private fd(index: number, id: string): number {
    const open = this.fds.get(index)
    if (open !== undefined) return open
    const fd = fs.openSync(this.store.layout.objectPath(id), fs.constants.O_RDONLY | fs.constants.O_NONBLOCK)
    this.fds.add(index, fd)
    return fd
  }

  private dropFd(index: number): void {
    this.fds.drop(index)
  }

  async close(): Promise<void> {
    this.rewriter.close()
    this.fds.clear()
  }


  /** Fetch (or read locally) and verify chunk `index`; stores it locally. */
  fetchChunk(index: number): Promise<Buffer> {
    // joined per chunk, so a fetch is verified, cached and counted once however many reads wait on it
    let p = this.fetching.get(index)
    if (!p) {
      p = this.fetchChunkOnce(index).finally(() => this.fetching.delete(index))
      this.fetching.set(index, p)
    }
    return p
  }

  private async fetchChunkOnce(index: number): Promise<Buffer> {
    const id = this.ids[index]!
    let f
    try {
      f = await this.chain.fetch(id)
    } catch (err) {
      throw new BackendError('EIO', (err as Error).message)
    }
    if (f.data.length !== chunkLength(this.manifest, index)) throw new BackendError('EIO', `chunk ${id} has the wrong length`)
    this.init.onFetch?.(index, f.source)
    if (this.verified[index] === 0) this.localCount++
    this.verified[index] = 1
    // a chunk this mount fetched rests raw (the chain stores it so); one pulled here may rest compressed:
    // it is read decoded until rewritten raw in the background
    this.encoded[index] = this.store.objectIsFrameSync(id) ? 1 : 0
    if (this.encoded[index] === 1)
      this.rewriter.queue(id, f.data.length, () => {
        this.dropFd(index)
        this.encoded[index] = 0
      })
    this.remember(index, f.data)
    return f.data
  }

  /** Prefetch hint: make sure chunk `index` is local (no first-read accounting). */
  async prefetch(index: number): Promise<void> {
    if (this.isLocal(index)) return
    await this.fetchChunk(index)
  }

  private check(offset: number, length: number): void {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > this.size)
      throw new BackendError('EINVAL', `request [${offset}, +${length}) is outside the disk`)
  }

  async read(offset: number, length: number, _signal?: AbortSignal, into?: Buffer): Promise<Buffer> {
    this.check(offset, length)
    this.demandInFlight++
    try {
      const out = into?.length === length ? into : Buffer.allocUnsafe(length)
      const cs = this.manifest.chunkSize
      const ov = this.init.overlay
      let pos = offset
      while (pos < offset + length) {
        const index = Math.floor(pos / cs)
        const chunkStart = index * cs
        const end = Math.min(offset + length, chunkStart + chunkLength(this.manifest, index))
        if (!ov || !ov.touched(Math.floor(pos / OVERLAY_BLOCK), Math.ceil(end / OVERLAY_BLOCK))) {
          await this.baseInto(index, pos - chunkStart, end - chunkStart, out, pos - offset)
        } else {
          // block by block: overlay where written or zeroed, base elsewhere
          let p = pos
          while (p < end) {
            const b = Math.floor(p / OVERLAY_BLOCK)
            const bEnd = Math.min(end, (b + 1) * OVERLAY_BLOCK)
            const st = ov.state(b)
            if (st === 'zeroed') out.fill(0, p - offset, bEnd - offset)
            else if (st === 'written') (await ov.readBlocks(p, bEnd - p)).copy(out, p - offset)
            else await this.baseInto(index, p - chunkStart, bEnd - chunkStart, out, p - offset)
            p = bEnd
          }
        }
        pos = end
      }
      return out
    } finally {
      this.demandInFlight--
      this.lastReadAt = performance.now()
    }
  }

  zeroNow(offset: number, length: number): boolean {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length <= 0 || offset + length > this.size) return false
    const cs = this.manifest.chunkSize
    const last = Math.floor((offset + length - 1) / cs)
    for (let i = Math.floor(offset / cs); i <= last; i++) if (this.ids[i] !== null) return false
    const ov = this.init.overlay
    return !(ov && ov.touched(Math.floor(offset / OVERLAY_BLOCK), Math.ceil((offset + length) / OVERLAY_BLOCK)))
  }

  readNow(offset: number, length: number, into: Buffer, at: number): boolean {
    this.lastReadAt = performance.now()
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length <= 0 || offset + length > this.size) return false
    if (!Number.isSafeInteger(at) || at < 0 || into.length - at < length) return false
    const cs = this.manifest.chunkSize
    const first = Math.floor(offset / cs)
    const last = Math.floor((offset + length - 1) / cs)
    for (let i = first; i <= last; i++) if (this.ids[i] !== null && this.verified[i] !== 1 && !this.chunkCache.has(i)) return false
    const ov = this.init.overlay
    if (ov && ov.touched(Math.floor(offset / OVERLAY_BLOCK), Math.ceil((offset + length) / OVERLAY_BLOCK))) return false
    let pos = offset
    while (pos < offset + length) {
      const index = Math.floor(pos / cs)
      const chunkStart = index * cs
      const end = Math.min(offset + length, chunkStart + chunkLength(this.manifest, index))
      if (!this.baseIntoNow(index, pos - chunkStart, end - chunkStart, into, at + pos - offset)) return false
      pos = end
    }
    return true
  }

  /** baseInto's synchronous cases; false when the chunk must be fetched after all. */
  private baseIntoNow(index: number, start: number, end: number, out: Buffer, at: number): boolean {
    const id = this.ids[index]
    if (id === null) {
      out.fill(0, at, at + end - start)
      return true
    }
    if (this.touched[index] === 0) {
      this.touched[index] = 1
      this.init.onFirstRead?.(index)
    }
    const cached = this.chunkCache.size === 0 ? undefined : this.chunkCache.get(index)
    if (cached) {
      cached.copy(out, at, start, end)
      return true
    }
    try {
      if (this.encoded[index] === 1) {
        // whole, decoded, and kept among the cached chunks for the reads that follow
        const data = this.store.readObject(id)
        if (data !== undefined && data.length === chunkLength(this.manifest, index)) {
          this.remember(index, data)
          data.copy(out, at, start, end)
          return true
        }
      } else {
        const fd = this.fd(index, id)
        let off = 0
        while (off < end - start) {
          const n = fs.readSync(fd, out, at + off, end - start - off, start + off)
          if (n === 0) break
          off += n
        }
        if (off === end - start) return true
      }
    } catch {
      /* evicted or removed meanwhile */
    }
    this.dropFd(index)
    if (this.verified[index] === 1) this.localCount--
    this.verified[index] = 0
    return false
  }

  private overlayOrFail(): Overlay {
    if (this.readOnly || !this.init.overlay) throw new BackendError('EPERM', 'the export is read-only')
    return this.init.overlay
  }

  /**
   * Hold the overlay blocks [offset, offset + length) touches while `fn`
   * changes them. A write that does not cover whole blocks reads the rest of
   * its edge blocks and writes them back: without the lock a concurrent
   * change to the same block, landing between that read and that write,
   * would be lost although it was acknowledged.
   */
  private async changing<T>(offset: number, length: number, fn: () => Promise<T>): Promise<T> {
    const release = await this.blockLock.acquire(Math.floor(offset / OVERLAY_BLOCK), Math.ceil((offset + length) / OVERLAY_BLOCK))
    try {
      return await fn()
    } finally {
      release()
    }
  }

  async write(offset: number, data: Buffer, opts: {fua?: boolean} = {}): Promise<void> {
    this.check(offset, data.length)
    const ov = this.overlayOrFail()
    if (data.length === 0) return
    try {
      await this.changing(offset, data.length, () => this.writeLocked(ov, offset, data))
      if (opts.fua) await ov.flush()
    } catch (err) {
      throw overlayWriteError(err)
    }
  }

  /** write() with its blocks held: widen to whole overlay blocks, filling the edges from the current content. */
  private async writeLocked(ov: Overlay, offset: number, data: Buffer): Promise<void> {
    const start = Math.floor(offset / OVERLAY_BLOCK) * OVERLAY_BLOCK
    const end = Math.min(this.size, Math.ceil((offset + data.length) / OVERLAY_BLOCK) * OVERLAY_BLOCK)
    let buf = data
    if (start !== offset || end !== offset + data.length) {
      buf = Buffer.alloc(end - start)
      if (start < offset) (await this.read(start, Math.min(OVERLAY_BLOCK, end - start))).copy(buf, 0)
      if (end > offset + data.length) {
        const tailStart = Math.max(start, end - OVERLAY_BLOCK)
        ;(await this.read(tailStart, end - tailStart)).copy(buf, tailStart - start)
      }
      data.copy(buf, offset - start)
    }
    await ov.writeBlocks(start, buf)
  }

  async writeZeroes(offset: number, length: number, opts: {noHole?: boolean; fua?: boolean} = {}): Promise<void> {
    this.check(offset, length)
    const ov = this.overlayOrFail()
    const firstFull = Math.ceil(offset / OVERLAY_BLOCK)
    const endFull = Math.floor((offset + length) / OVERLAY_BLOCK)
    const endAligned = offset + length === this.size ? Math.ceil(this.size / OVERLAY_BLOCK) : endFull
    if (firstFull >= endAligned) return this.write(offset, Buffer.alloc(length), opts)
    try {
      await this.changing(offset, length, async () => {
        if (offset < firstFull * OVERLAY_BLOCK) await this.writeLocked(ov, offset, Buffer.alloc(firstFull * OVERLAY_BLOCK - offset))
        if (offset + length > endAligned * OVERLAY_BLOCK)
          await this.writeLocked(ov, endAligned * OVERLAY_BLOCK, Buffer.alloc(offset + length - endAligned * OVERLAY_BLOCK))
        ov.markZero(firstFull, endAligned)
      })
      if (opts.fua) await ov.flush()
    } catch (err) {
      throw overlayWriteError(err)
    }
  }

  async trim(offset: number, length: number): Promise<void> {
    // reads after a trim may return anything; zeros are the honest choice here
    this.check(offset, length)
    const ov = this.overlayOrFail()
    const first = Math.ceil(offset / OVERLAY_BLOCK)
    const end = Math.floor((offset + length) / OVERLAY_BLOCK)
    if (end > first) await this.changing(first * OVERLAY_BLOCK, (end - first) * OVERLAY_BLOCK, async () => ov.markZero(first, end))
  }

  async flush(): Promise<void> {
    if (this.init.overlay && !this.readOnly) await this.init.overlay.flush()
  }

  async cache(offset: number, length: number): Promise<void> {
    this.check(offset, length)
    const cs = this.manifest.chunkSize
    const first = Math.floor(offset / cs)
    const last = Math.floor((offset + Math.max(0, length - 1)) / cs)
    await Promise.all(Array.from({length: last - first + 1}, (_, k) => this.prefetch(first + k)))
  }

  async blockStatus(offset: number, length: number): Promise<Extent[]> {
    this.check(offset, length)
    const cs = this.manifest.chunkSize
    const ov = this.init.overlay
    const out: Extent[] = []
    const push = (len: number, flags: number) => {
      const last = out[out.length - 1]
      if (last && last.flags === flags) last.length += len
      else out.push({length: len, flags})
    }
    let pos = offset
    const end = offset + length
    while (pos < end) {
      const index = Math.floor(pos / cs)
      const cEnd = Math.min(end, index * cs + chunkLength(this.manifest, index))
      if (ov && ov.touched(Math.floor(pos / OVERLAY_BLOCK), Math.ceil(cEnd / OVERLAY_BLOCK))) {
        for (let p = pos; p < cEnd; ) {
          const b = Math.floor(p / OVERLAY_BLOCK)
          const bEnd = Math.min(cEnd, (b + 1) * OVERLAY_BLOCK)
          const st = ov.state(b)
          push(bEnd - p, st === 'zeroed' ? STATE_ZERO : st === 'written' ? 0 : this.ids[index] === null ? STATE_HOLE | STATE_ZERO : 0)
          p = bEnd
        }
      } else push(cEnd - pos, this.ids[index] === null ? STATE_HOLE | STATE_ZERO : 0)
      pos = cEnd
    }
    return out
  }
}

/** A failed overlay change as the NBD error the client gets. */
function overlayWriteError(err: unknown): BackendError {
  if (err instanceof BackendError) return err
  const code = (err as NodeJS.ErrnoException).code
  return new BackendError(code === 'ENOSPC' || code === 'EDQUOT' ? 'ENOSPC' : 'EIO', `overlay write failed: ${(err as Error).message}`)
}
