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
  done = false

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
        this.done = true
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

async function readBlocks(file: string, onStart: (size: number) => void, onBlock: (b: Buffer) => void): Promise<number> {
  const fh = await fsp.open(file, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK)
  try {
    const st = await fh.stat()
    if (!st.isFile()) throw new BadManifestError(`manifest ${file} is not a regular file`)
    const size = st.size
    if (size > MAX_MANIFEST_BYTES) throw new BadManifestError(`manifest ${file} is ${size} bytes, larger than the ${MAX_MANIFEST_BYTES} limit`)
    onStart(size)
    const buf = Buffer.allocUnsafe(BLOCK)
    let total = 0
    for (;;) {
      const {bytesRead} = await fh.read(buf, 0, buf.length, null)
      if (bytesRead === 0) break
      total += bytesRead
      if (total > MAX_MANIFEST_BYTES) throw new BadManifestError(`manifest ${file} grew past the ${MAX_MANIFEST_BYTES}-byte limit while read`)
      onBlock(buf.subarray(0, bytesRead))
    }
    return total
  } finally {
    await fh.close()
  }
}

/**
 * One pass over a manifest file: hash, framing and every entry. With
 * `expectedId` the bytes must hash to it. Returns the head.
 */
async function scanManifestFile(file: string, expectedId: string | undefined, onEntry: (e: ChunkEntry) => void): Promise<ManifestHead> {
  const where = expectedId ? `manifest ${expectedId}` : `manifest ${file}`
  let hasher: Hasher | undefined
  let prefix = ''
  let suffix = ''
  let phase: 'prefix' | 'entries' | 'suffix' = 'prefix'
  let covered = 0
  const scanner = new EntryScanner(where, (e) => {
    covered += typeof e === 'number' ? e : 1
    onEntry(e)
  })
  await readBlocks(file, (size) => (hasher = expectedId ? createHasher(size) : undefined), (block) => {
    hasher?.update(block)
    // manifests are ASCII apart from annotation values; latin1 keeps one char per byte
    let s = block.toString('latin1')
    if (phase === 'prefix') {
      prefix += s
      const at = prefix.indexOf(CHUNKS_KEY)
      if (at < 0) {
        if (prefix.length > MAX_PREFIX) throw new BadManifestError(`${where}: no chunk list in the first ${MAX_PREFIX} bytes`)
        return
      }
      s = prefix.slice(at + CHUNKS_KEY.length)
      prefix = prefix.slice(0, at + CHUNKS_KEY.length)
      phase = 'entries'
    }
    if (phase === 'entries') {
      const end = scanner.feed(s)
      if (end < 0) return
      s = s.slice(end - 1) // keep the ']'
      phase = 'suffix'
    }
    suffix += s
    if (suffix.length > MAX_SUFFIX) throw new BadManifestError(`${where}: ${suffix.length} bytes after the chunk list`)
  })
  if (expectedId) {
    const actual = hasher!.digest('hex')
    if (actual !== expectedId) throw new BadManifestError(`${where} does not match its id (content hashes to ${actual})`, {data: {expectedId, actual}})
  }
  if ((phase as string) === 'prefix') throw new BadManifestError(`${where}: no chunk list in canonical form ("chunks":[…])`)
  if ((phase as string) !== 'suffix') throw new BadManifestError(`${where}: the chunk list is not terminated (truncated?)`)
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
  const batches: ChunkEntry[][] = []
  let prefixDone = false
  let carry = ''
  const scanner = new EntryScanner(`manifest ${file}`, (e) => batch.push(e))
  const fh = await fsp.open(file, 'r')
  try {
    const buf = Buffer.allocUnsafe(BLOCK)
    for (;;) {
      const {bytesRead} = await fh.read(buf, 0, buf.length, null)
      if (bytesRead === 0) break
      let s = buf.toString('latin1', 0, bytesRead)
      if (!prefixDone) {
        carry += s
        const at = carry.indexOf(CHUNKS_KEY)
        if (at < 0) continue
        s = carry.slice(at + CHUNKS_KEY.length)
        carry = ''
        prefixDone = true
      }
      const end = scanner.feed(s)
      if (batch.length > 0) {
        batches.push(batch)
        batch = []
      }
      while (batches.length > 0) yield batches.shift()!
      if (end >= 0) return
    }
  } finally {
    await fh.close()
  }
}
