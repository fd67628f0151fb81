/**
 * Manifests written and read as files, without holding the chunk list in
 * memory: import spills the list to a staging file as it goes and assembles
 * the canonical JSON at the end; export checks a manifest file (hash,
 * canonical form, chunk count) in one pass and then walks its entries in a
 * second. Memory stays flat whatever the image size (bench/results, "peak
 * RSS"), where a decoded chunk list costs ~100 bytes per chunk.
 *
 * The bytes are exactly those of canonicalJson(manifest) (manifest.ts): the
 * image id does not depend on which path wrote them.
 */
import fs, {promises as fsp} from 'node:fs'
import {createRequire} from 'node:module'
import {BadManifestError, VmiError} from '../errors.js'
import {hash} from './hash.js'
import {isValidId} from './layout.js'
import {canonicalJson, chunkCount, MAX_MANIFEST_BYTES, validateManifest, type ChunkEntry, type Manifest} from './manifest.js'

const require = createRequire(import.meta.url)

/** Everything in a manifest but its chunk list. */
export type ManifestHead = Omit<Manifest, 'chunks'>

interface Hasher {
  update(data: Uint8Array): void
  digest(encoding: 'hex'): string
}

/** Manifests up to this size are hashed in one piece by hash() (native when it loads). */
const ONE_SHOT_MAX = 32 << 20

/**
 * BLAKE3 over bytes given piece by piece. The native package hashes whole
 * buffers only, so up to ONE_SHOT_MAX the pieces are collected and hashed at
 * the end; beyond that blake3-wasm hashes incrementally (it needs several GB
 * of address space, which a `ulimit -v` may refuse: hence not by default).
 */
function createHasher(totalSize: number): Hasher {
  if (totalSize <= ONE_SHOT_MAX) {
    const parts: Buffer[] = []
    return {
      update: (b) => void parts.push(Buffer.from(b)),
      digest: () => hash(Buffer.concat(parts)),
    }
  }
  try {
    const mod = require('blake3-wasm') as {createHash(): Hasher}
    return mod.createHash()
  } catch (err) {
    throw new VmiError(`cannot hash a ${totalSize}-byte manifest incrementally: ${(err as Error).message}`, {cause: err})
  }
}

const BLOCK = 1 << 20
const CHUNKS_KEY = '"chunks":['
/** Longest prefix (annotations included) and suffix accepted around the chunk list. */
const MAX_PREFIX = 32 << 20
const MAX_SUFFIX = 64 << 10

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

/**
 * Streaming tokenizer for the chunk list of a canonical manifest: feed it the
 * bytes after `"chunks":[`; it calls `onEntry` per entry and stops at `]`.
 * Anything that is not canonical (whitespace, leading zeros, bad ids, two
 * zero runs in a row) is an error.
 */
class EntryScanner {
  private token = ''
  private lastWasRun = false
  private expectEntry = true
  entries = 0

  constructor(
    private readonly where: string,
    private readonly onEntry: (e: ChunkEntry) => void,
  ) {}

  private bad(msg: string): never {
    throw new BadManifestError(`${this.where}: ${msg}`)
  }

  private finishToken(): void {
    const t = this.token
    this.token = ''
    if (t.length === 0) {
      // "[]" (empty list) is fine only before any entry
      if (this.entries > 0 || !this.expectEntry) this.bad('empty chunk entry')
      return
    }
    if (t.charCodeAt(0) === 0x22) {
      const id = t.slice(1, -1)
      if (t.length !== 66 || t.charCodeAt(65) !== 0x22 || !isValidId(id)) this.bad(`chunk id ${t.slice(0, 80)} is not 64 lowercase hex`)
      this.lastWasRun = false
      this.onEntry(id)
    } else {
      if (!/^[1-9][0-9]{0,15}$/.test(t)) this.bad(`chunk entry ${t.slice(0, 80)} is neither an id nor a positive zero-run length`)
      const n = Number(t)
      if (!Number.isSafeInteger(n)) this.bad(`zero run ${t} is too long`)
      if (this.lastWasRun) this.bad('two zero runs in a row (not canonical)')
      this.lastWasRun = true
      this.onEntry(n)
    }
    this.entries++
  }

  /** Consume `s`; returns the index just past the closing `]`, or -1. */
  feed(s: string): number {
    for (let i = 0; i < s.length; i++) {
      const c = s.charCodeAt(i)
      if (c === 0x2c) {
        // ','
        this.finishToken()
        this.expectEntry = true
      } else if (c === 0x5d) {
        // ']'
        if (this.token.length === 0 && this.entries > 0) this.bad('trailing comma in the chunk list')
        this.finishToken()
        return i + 1
      } else {
        if (this.token.length >= 66) this.bad('malformed chunk entry')
        this.token += s[i]
        this.expectEntry = false
      }
    }
    return -1
  }
}

/**
 * A manifest file a block at a time (the buffer is reused: each block is valid
 * until the next). Refused unread when not a regular file or over the size
 * limit; `onStart` gets the size before the first block.
 */
async function* manifestBlocks(file: string, onStart?: (size: number) => void): AsyncGenerator<Buffer> {
  const fh = await fsp.open(file, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK)
  try {
    const st = await fh.stat()
    if (!st.isFile()) throw new BadManifestError(`manifest ${file} is not a regular file`)
    if (st.size > MAX_MANIFEST_BYTES) throw new BadManifestError(`manifest ${file} is ${st.size} bytes, larger than the ${MAX_MANIFEST_BYTES} limit`)
    onStart?.(st.size)
    const buf = Buffer.allocUnsafe(BLOCK)
    let total = 0
    for (;;) {
      const {bytesRead} = await fh.read(buf, 0, buf.length, null)
      if (bytesRead === 0) break
      total += bytesRead
      if (total > MAX_MANIFEST_BYTES) throw new BadManifestError(`manifest ${file} grew past the ${MAX_MANIFEST_BYTES}-byte limit while read`)
      yield buf.subarray(0, bytesRead)
    }
  } finally {
    await fh.close()
  }
}

/**
 * One pass over a manifest file: hash, framing and every entry. The bytes
 * must hash to `expectedId`. Returns the head.
 */
async function scanManifestFile(file: string, expectedId: string, onEntry: (e: ChunkEntry) => void): Promise<ManifestHead> {
  const where = `manifest ${expectedId}`
  let hasher: Hasher | undefined
  let prefix = ''
  let suffix = ''
  let phase: 'prefix' | 'entries' | 'suffix' = 'prefix'
  let covered = 0
  const scanner = new EntryScanner(where, (e) => {
    covered += typeof e === 'number' ? e : 1
    onEntry(e)
  })
  for await (const block of manifestBlocks(file, (size) => (hasher = createHasher(size)))) {
    hasher!.update(block)
    // manifests are ASCII apart from annotation values; latin1 keeps one char per byte
    let s = block.toString('latin1')
    if (phase === 'prefix') {
      prefix += s
      const at = prefix.indexOf(CHUNKS_KEY)
      if (at < 0) {
        if (prefix.length > MAX_PREFIX) throw new BadManifestError(`${where}: no chunk list in the first ${MAX_PREFIX} bytes`)
        continue
      }
      s = prefix.slice(at + CHUNKS_KEY.length)
      prefix = prefix.slice(0, at + CHUNKS_KEY.length)
      phase = 'entries'
    }
    if (phase === 'entries') {
      const end = scanner.feed(s)
      if (end < 0) continue
      s = s.slice(end - 1) // keep the ']'
      phase = 'suffix'
    }
    suffix += s
    if (suffix.length > MAX_SUFFIX) throw new BadManifestError(`${where}: ${suffix.length} bytes after the chunk list`)
  }
  const actual = hasher!.digest('hex')
  if (actual !== expectedId) throw new BadManifestError(`${where} does not match its id (content hashes to ${actual})`, {data: {expectedId, actual}})
  if (phase === 'prefix') throw new BadManifestError(`${where}: no chunk list in canonical form ("chunks":[…])`)
  if (phase !== 'suffix') throw new BadManifestError(`${where}: the chunk list is not terminated (truncated?)`)
  const frameText = Buffer.from(prefix + suffix, 'latin1').toString('utf8')
  let parsed: Manifest
  try {
    parsed = JSON.parse(frameText) as Manifest
  } catch (err) {
    throw new BadManifestError(`${where} is not valid JSON`, {cause: err})
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new BadManifestError(`${where}: not a JSON object`)
  const {chunks: _empty, ...head} = parsed
  void _empty
  const expected = chunkCount(parsed.virtualSize, parsed.chunkSize)
  // head fields and the count, with the entries summarized as one run
  validateManifest({...head, chunks: covered > 0 ? [covered] : []} as Manifest, where)
  if (covered !== expected) throw new BadManifestError(`${where}: chunks cover ${covered} chunks, the virtual size needs ${expected}`)
  if (canonicalJson({...head, chunks: []}) !== frameText) throw new BadManifestError(`${where} is not in canonical form`)
  return head
}

/**
 * Check a manifest file (hash against `id`, canonical form, chunk ids and
 * count) without keeping its chunk list; returns the head and the number of
 * distinct-or-not non-zero entries.
 */
export async function verifyManifestFile(file: string, id: string): Promise<{head: ManifestHead; nonZero: number}> {
  let nonZero = 0
  const head = await scanManifestFile(file, id, (e) => {
    if (typeof e === 'string') nonZero++
  })
  return {head, nonZero}
}

/**
 * The chunk entries of a manifest file already checked by verifyManifestFile,
 * in order, a block at a time.
 */
export async function* manifestFileEntries(file: string): AsyncGenerator<ChunkEntry[]> {
  let batch: ChunkEntry[] = []
  let carry: string | undefined = ''
  const scanner = new EntryScanner(`manifest ${file}`, (e) => batch.push(e))
  for await (const block of manifestBlocks(file)) {
    let s = block.toString('latin1')
    if (carry !== undefined) {
      // still looking for the start of the list
      carry += s
      const at = carry.indexOf(CHUNKS_KEY)
      if (at < 0) continue
      s = carry.slice(at + CHUNKS_KEY.length)
      carry = undefined
    }
    const end = scanner.feed(s)
    if (batch.length > 0) {
      yield batch
      batch = []
    }
    if (end >= 0) return
  }
}
