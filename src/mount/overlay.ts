/**
 * The copy-on-write overlay of a mount: guest writes land here, the
 * content-addressed base is never modified.
 *
 *   <dir>/meta.json   {"version":1,"base":"<image id>","virtualSize":N,"blockSize":4096}
 *   <dir>/data        sparse file of the virtual size; written blocks hold their bytes
 *   <dir>/map         two bitmaps, one bit per block: "written" then "zeroed"
 *
 * A block is in one of three states: base (read through the image), written
 * (read from `data`), or zeroed (reads as zeros: TRIM / WRITE_ZEROES).
 *
 * Durability: a FLUSH copies the bitmaps first, then fsyncs `data`, then
 * writes the copy to a temporary file of its own, fsyncs it and renames it
 * over `map`. A block's bit is set only after its bytes are in `data`, so
 * every block the copied map calls written had its bytes written before the
 * fsync: after a kill -9 the map on disk never points at bytes that were not
 * synced. Flushes run one at a time; a flush asked for while one runs waits
 * for the next one, which covers every write acknowledged before it was asked
 * for, and all the flushes asked for meanwhile share it.
 *
 * Callers serialize writes to the same block (ImageBackend's range lock):
 * writeBlocks and markZero only record, they do not order.
 */
import {promises as fsp} from 'node:fs'
import path from 'node:path'
import {UsageError, VmiError} from '../errors.js'

export const OVERLAY_BLOCK = 4096
/** Largest disk an overlay covers (16 TiB: its two bitmaps take 1 GiB of memory). */
export const MAX_OVERLAY_SIZE = 2 ** 44

export interface OverlayMeta {
  version: 1
  base: string
  virtualSize: number
  blockSize: number
}

export class Bitmap {
  readonly bits: Uint8Array
  constructor(readonly length: number, bits?: Uint8Array) {
    this.bits = bits ?? new Uint8Array(Math.ceil(length / 8))
  }
  get(i: number): boolean {
    return (this.bits[i >> 3] & (1 << (i & 7))) !== 0
  }
  set(i: number, on: boolean): void {
    if (on) this.bits[i >> 3] |= 1 << (i & 7)
    else this.bits[i >> 3] &= ~(1 << (i & 7))
  }
  any(from: number, to: number): boolean {
    for (let i = from; i < to; i++) if (this.get(i)) return true
    return false
  }
  count(): number {
    let n = 0
    for (let i = 0; i < this.length; i++) if (this.get(i)) n++
    return n
  }
}

let tmpCounter = 0

export class Overlay {
  /** Bumped by every change to the bitmaps; the map on disk holds savedGeneration's. */
  private generation = 0
  private savedGeneration = 0
  private flushing?: Promise<void>
  private failed?: VmiError
  private nextFlush?: Promise<void>
  private constructor(
    readonly dir: string,
    readonly meta: OverlayMeta,
    private readonly fh: fsp.FileHandle,
    readonly written: Bitmap,
    readonly zeroed: Bitmap,
  ) {}

  get blocks(): number {
    return this.written.length
  }

  /** Open an overlay directory, creating it for `base` when empty. */
  static async open(dir: string, init: {base: string; virtualSize: number; readOnly?: boolean}): Promise<Overlay> {
    // the guest's writes are its own: a new overlay is for its owner only, whatever the umask (an existing one keeps its modes)
    await fsp.mkdir(dir, {recursive: true, mode: 0o700})
    const metaFile = path.join(dir, 'meta.json')
    let meta: OverlayMeta
    try {
      meta = JSON.parse(await fsp.readFile(metaFile, 'utf8'))
      if (meta.version !== 1 || meta.blockSize !== OVERLAY_BLOCK) throw new VmiError(`overlay ${dir} has an unsupported format`)
      if (meta.base !== init.base)
        throw new UsageError(`overlay ${dir} belongs to image ${meta.base}, not ${init.base}`, {data: {overlayBase: meta.base}})
      // checked before the bitmaps are sized from it
      if (meta.virtualSize !== init.virtualSize) throw new VmiError(`overlay ${dir} is damaged: its virtual size ${JSON.stringify(meta.virtualSize)} is not the image's ${init.virtualSize}`)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
        if (err instanceof VmiError) throw err
        throw new VmiError(`overlay ${dir} is damaged: ${(err as Error).message}`, {cause: err})
      }
      meta = {version: 1, base: init.base, virtualSize: init.virtualSize, blockSize: OVERLAY_BLOCK}
      await fsp.writeFile(metaFile + '.tmp', JSON.stringify(meta) + '\n', {mode: 0o600})
      await fsp.rename(metaFile + '.tmp', metaFile)
    }
    if (!init.readOnly)
      for (const name of await fsp.readdir(dir)) if (name.startsWith('map.tmp')) await fsp.rm(path.join(dir, name), {force: true})
    const blocks = Math.ceil(meta.virtualSize / OVERLAY_BLOCK)
    const mapBytes = Math.ceil(blocks / 8)
    let written = new Bitmap(blocks)
    let zeroed = new Bitmap(blocks)
    try {
      const map = await fsp.readFile(path.join(dir, 'map'))
      if (map.length !== 2 * mapBytes) throw new VmiError(`overlay ${dir}: map has the wrong size`)
      written = new Bitmap(blocks, new Uint8Array(map.subarray(0, mapBytes)))
      zeroed = new Bitmap(blocks, new Uint8Array(map.subarray(mapBytes)))
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
    }
    const fh = await fsp.open(path.join(dir, 'data'), init.readOnly ? 'r' : (await exists(path.join(dir, 'data'))) ? 'r+' : 'w+', 0o600)
    if (!init.readOnly && (await fh.stat()).size !== meta.virtualSize) await fh.truncate(meta.virtualSize)
    return new Overlay(dir, meta, fh, written, zeroed)
  }

  /** State of block i: 'base' | 'written' | 'zeroed'. */
  state(i: number): 'base' | 'written' | 'zeroed' {
    return this.zeroed.get(i) ? 'zeroed' : this.written.get(i) ? 'written' : 'base'
  }

  /** True when any block in [from, to) differs from the base. */
  touched(from: number, to: number): boolean {
    return this.written.any(from, to) || this.zeroed.any(from, to)
  }

  async readBlocks(offset: number, length: number): Promise<Buffer> {
    const buf = Buffer.alloc(length)
    let off = 0
    while (off < length) {
      const {bytesRead} = await this.fh.read(buf, off, length - off, offset + off)
      if (bytesRead === 0) break
      off += bytesRead
    }
    return buf
  }

  /** Write whole blocks (offset and length multiples of the block size, or up to the end). */
  async writeBlocks(offset: number, data: Buffer): Promise<void> {
    // a write can be short (the disk filled up mid-way): write the rest, which then fails with the real error
    for (let done = 0; done < data.length; ) {
      const {bytesWritten} = await this.fh.write(data, done, data.length - done, offset + done)
      if (bytesWritten <= 0) throw new VmiError(`overlay ${this.dir}: write at ${offset + done} wrote nothing`)
      done += bytesWritten
    }
    const first = offset / OVERLAY_BLOCK
    const last = Math.ceil((offset + data.length) / OVERLAY_BLOCK)
    for (let i = first; i < last; i++) {
      this.written.set(i, true)
      this.zeroed.set(i, false)
    }
    this.generation++
  }

  markZero(firstBlock: number, endBlock: number): void {
    for (let i = firstBlock; i < endBlock; i++) {
      this.zeroed.set(i, true)
      this.written.set(i, false)
    }
    this.generation++
  }

  /** Make every write that completed before this call durable. */
  flush(): Promise<void> {
    if (!this.flushing) return this.startFlush()
    // the running flush may have copied the map before the caller's writes completed: wait for the next one
    this.nextFlush ??= this.flushing.then(
      () => this.startFlush(),
      () => this.startFlush(),
    )
    return this.nextFlush
  }

  private startFlush(): Promise<void> {
    this.nextFlush = undefined
    const p = this.flushOnce().finally(() => {
      if (this.flushing === p) this.flushing = undefined
    })
    this.flushing = p
    return p
  }

  private async flushOnce(): Promise<void> {
    if (this.failed) throw this.failed
    const gen = this.generation
    const map = gen === this.savedGeneration ? undefined : Buffer.concat([this.written.bits, this.zeroed.bits])
    try {
      await this.fh.datasync()
    } catch (err) {
      // the kernel may drop the pages whose write-back failed and report success to the next fsync:
      // from here on no flush can vouch for the data, so every later one fails too
      this.failed = new VmiError(`overlay ${this.dir}: syncing its data failed, its acknowledged writes may be lost: ${(err as Error).message}`, {cause: err})
      throw this.failed
    }
    if (!map) return
    const file = path.join(this.dir, 'map')
    const tmp = `${file}.tmp-${process.pid}-${++tmpCounter}`
    try {
      const h = await fsp.open(tmp, 'w', 0o600)
      try {
        await h.writeFile(map)
        await h.datasync()
      } finally {
        await h.close()
      }
      await fsp.rename(tmp, file)
    } catch (err) {
      await fsp.rm(tmp, {force: true}).catch(() => {})
      throw err
    }
    const d = await fsp.open(this.dir, 'r')
    try {
      await d.sync()
    } catch {
      /* some filesystems cannot sync a directory */
    } finally {
      await d.close()
    }
    if (gen > this.savedGeneration) this.savedGeneration = gen
  }

  async close(): Promise<void> {
    await this.flushing?.catch(() => {})
    await this.nextFlush?.catch(() => {})
    await this.fh.close()
  }
}

async function exists(f: string): Promise<boolean> {
  try {
    await fsp.access(f)
    return true
  } catch {
    return false
  }
}
