/**
 * Manifests written and read as files, without holding the chunk list in
 * memory: import spills the list to a staging file as it goes and assembles
 * the canonical JSON at the end (ManifestWriter, here); export checks a
 * manifest file (hash, canonical form, chunk count) in one pass and then
 * walks its entries in a second (manifest-scan.ts). Memory stays flat
 * whatever the image size (bench/results, "peak RSS"), where a decoded chunk
 * list costs about 100 bytes per chunk.
 *
 * The bytes are exactly those of canonicalJson(manifest) (manifest.ts): the
 * image id does not depend on which path wrote them.
 */
import fs from 'node:fs'
import {createRequire} from 'node:module'
import {BadManifestError, VmiError} from '../errors.js'
import {hash} from './hash.js'
import {canonicalJson, MAX_MANIFEST_BYTES, validateManifest, type Manifest} from './manifest.js'

const require = createRequire(import.meta.url)

/** Everything in a manifest but its chunk list. */
export type ManifestHead = Omit<Manifest, 'chunks'>

export interface Hasher {
  update(data: Uint8Array): void
  digest(encoding: 'hex'): string
}

/**
 * Gives a buffer's memory back now instead of at some later full GC: its bytes
 * move to a fresh ArrayBuffer that nothing holds, which the next young-
 * generation collection frees. For buffers of their own (allocUnsafeSlow),
 * large enough to have been promoted while in use; `buf` and every view of its
 * memory are empty afterwards. (Otherwise a manifest buffer promoted by a
 * full GC while the manifest is checked stays for the whole export, as no
 * full GC may come after.)
 */
export function release(buf: Buffer): void {
  // only a buffer that is all of its ArrayBuffer (never a pooled one)
  if (buf.byteOffset !== 0 || buf.length !== buf.buffer.byteLength || buf.length === 0) return
  try {
    structuredClone(buf.buffer, {transfer: [buf.buffer]})
  } catch {
    // not transferable: left to the GC
  }
}

/** Manifests up to this size are hashed in one piece by hash() (native when it loads). */
export const ONE_SHOT_MAX = 32 << 20

/**
 * BLAKE3 over bytes given piece by piece. The native package hashes whole
 * buffers only, so up to ONE_SHOT_MAX the pieces are collected and hashed at
 * the end; beyond that blake3-wasm hashes incrementally (it needs several GB
 * of address space, which a `ulimit -v` may refuse: hence not by default).
 */
export function createHasher(totalSize: number): Hasher {
  if (totalSize <= ONE_SHOT_MAX) {
    // the pieces go into one buffer of the announced size, so the bytes are
    // held once (collecting copies and concatenating them held them twice)
    let buf: Buffer | undefined = Buffer.allocUnsafeSlow(totalSize)
    let fill = 0
    return {
      update: (b) => {
        if (!buf) throw new Error('hasher already digested')
        if (fill + b.length > buf.length) {
          // more bytes than announced (a file that grew while read): still hashed in full
          const bigger = Buffer.allocUnsafeSlow(Math.max(fill + b.length, 2 * buf.length))
          buf.copy(bigger, 0, 0, fill)
          buf = bigger
        }
        buf.set(b, fill)
        fill += b.length
      },
      digest: () => {
        if (!buf) throw new Error('hasher already digested')
        const d = hash(buf.subarray(0, fill))
        release(buf)
        buf = undefined
        return d
      },
    }
  }
  try {
    const mod = require('blake3-wasm') as {createHash(): Hasher}
    return mod.createHash()
  } catch (err) {
    throw new VmiError(`cannot hash a ${totalSize}-byte manifest incrementally: ${(err as Error).message}`, {cause: err})
  }
}

export const BLOCK = 1 << 20
export const CHUNKS_KEY = '"chunks":['
/** Longest prefix (annotations included) and suffix accepted around the chunk list. */
export const MAX_PREFIX = 32 << 20
export const MAX_SUFFIX = 64 << 10

/** Splits canonical JSON of `head` (with an empty chunk list) around the list. */
function frame(head: ManifestHead, count: number): {prefix: string; suffix: string} {
  // validate the head fields with a chunk list of the right length (one zero run)
  validateManifest({...head, chunks: count > 0 ? [count] : []} as Manifest)
  const skeleton = canonicalJson({...head, chunks: []})
  const at = skeleton.indexOf(CHUNKS_KEY + ']')
  if (at < 0) throw new Error('canonical manifest without a chunk list')
  return {prefix: skeleton.slice(0, at + CHUNKS_KEY.length), suffix: skeleton.slice(at + CHUNKS_KEY.length)}
}

/**
 * Builds a manifest's chunk list on disk, one chunk at a time (null = an
 * all-zero chunk; runs of them become one count, as in ChunkListBuilder).
 */
export class ManifestWriter {
  count = 0
  private readonly fd: number
  private readonly buf = Buffer.allocUnsafe(BLOCK)
  private fill = 0
  private zeros = 0
  private entries = 0
  private closed = false

  constructor(private readonly spillFile: string) {
    this.fd = fs.openSync(spillFile, 'wx', 0o600)
  }

  push(id: string | null): void {
    this.count++
    if (id === null) {
      this.zeros++
      return
    }
    this.flushZeros()
    this.emit(`"${id}"`)
  }

  private flushZeros(): void {
    if (this.zeros > 0) {
      this.emit(String(this.zeros))
      this.zeros = 0
    }
  }

  private emit(text: string): void {
    if (this.fill + text.length + 1 > this.buf.length) this.spill()
    if (this.entries++ > 0) this.buf[this.fill++] = 0x2c // ','
    this.fill += this.buf.write(text, this.fill, 'latin1')
  }

  private spill(): void {
    let off = 0
    while (off < this.fill) off += fs.writeSync(this.fd, this.buf, off, this.fill - off)
    this.fill = 0
  }

  /**
   * Write the finished manifest to `outFile` (created, must not exist);
   * returns its id and size. The spill file is removed.
   */
  finish(head: ManifestHead, outFile: string): {id: string; size: number} {
    this.flushZeros()
    this.spill()
    this.close()
    const {prefix, suffix} = frame(head, this.count)
    const hasher = createHasher(Buffer.byteLength(prefix) + fs.statSync(this.spillFile).size + Buffer.byteLength(suffix))
    const out = fs.openSync(outFile, 'wx', 0o644)
    let size = 0
    const put = (b: Buffer) => {
      hasher.update(b)
      let off = 0
      while (off < b.length) off += fs.writeSync(out, b, off, b.length - off)
      size += b.length
    }
    try {
      put(Buffer.from(prefix, 'utf8'))
      const inFd = fs.openSync(this.spillFile, 'r')
      try {
        for (;;) {
          const n = fs.readSync(inFd, this.buf, 0, this.buf.length, null)
          if (n === 0) break
          put(this.buf.subarray(0, n))
        }
      } finally {
        fs.closeSync(inFd)
      }
      put(Buffer.from(suffix, 'utf8'))
      fs.fsyncSync(out)
    } finally {
      fs.closeSync(out)
      fs.rmSync(this.spillFile, {force: true})
    }
    if (size > MAX_MANIFEST_BYTES) {
      fs.rmSync(outFile, {force: true})
      throw new BadManifestError(`the manifest would be ${size} bytes, more than the ${MAX_MANIFEST_BYTES} limit: use a larger --chunk-size`)
    }
    return {id: hasher.digest('hex'), size}
  }

  private close(): void {
    if (!this.closed) {
      this.closed = true
      fs.closeSync(this.fd)
    }
  }

  /** Give up: close and remove the spill file. */
  abort(): void {
    this.close()
    fs.rmSync(this.spillFile, {force: true})
  }
}

