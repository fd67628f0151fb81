/**
 * Reading a manifest file without holding its chunk list in memory: one pass
 * checks it (hash, canonical form, chunk count: verifyManifestFile), a
 * second walks its entries (manifestFileEntries). The writing side, the
 * hasher and the framing constants are in manifest-stream.ts.
 */
import fs, {promises as fsp} from 'node:fs'
import {BadManifestError} from '../errors.js'
import {digestMismatch, hash} from './hash.js'
import {canonicalJson, chunkCount, MAX_MANIFEST_BYTES, validateManifest, type ChunkEntry, type Manifest} from './manifest.js'
import {BLOCK, CHUNKS_KEY, createHasher, MAX_PREFIX, MAX_SUFFIX, ONE_SHOT_MAX, release, type Hasher, type ManifestHead} from './manifest-stream.js'

const COMMA = 0x2c
const CLOSE = 0x5d
const QUOTE = 0x22
/** Longest entry: a quoted id; a zero-run length has at most 16 digits. */
const MAX_ENTRY = 66

/** True when b[at, at+64) is 64 lowercase hex digits. */
function isHexId(b: Uint8Array, at: number): boolean {
  for (let i = at; i < at + 64; i++) {
    const c = b[i]
    if (!((c >= 0x30 && c <= 0x39) || (c >= 0x61 && c <= 0x66))) return false
  }
  return true
}

/**
 * Streaming tokenizer for the chunk list of a canonical manifest: feed it the
 * bytes after `"chunks":[`; it reports each entry and stops at `]`. An id is
 * reported by position (`onId(bytes, at)`: 64 hex bytes at `at`, valid only
 * during the call), so a caller that only counts makes no string. Anything
 * that is not canonical (whitespace, leading zeros, bad ids, two zero runs in
 * a row) is an error.
 *
 * It works on the bytes, not on strings: a block taken as a latin1 string is
 * external memory, freed only by a full GC, and entries built a character at
 * a time leave garbage per chunk in each of export's two passes.
 */
class EntryScanner {
  /** An entry cut by the end of a block, carried into the next. */
  private readonly carry = Buffer.allocUnsafe(MAX_ENTRY)
  private carried = 0
  private lastWasRun = false
  entries = 0
  /** True once the closing `]` was consumed. */
  done = false

  constructor(
    private readonly where: string,
    private readonly onId: (bytes: Buffer, at: number) => void,
    private readonly onRun: (zeros: number) => void,
  ) {}

  private bad(msg: string): never {
    throw new BadManifestError(`${this.where}: ${msg}`)
  }

  /** The entry in b[start, end), delimited by `delim` (',' or ']'). */
  private finishEntry(b: Buffer, start: number, end: number, delim: number): void {
    const len = end - start
    if (len === 0) {
      // "[]" (empty list) is the only place an entry may be empty
      if (delim === CLOSE && this.entries > 0) this.bad('trailing comma in the chunk list')
      if (delim === COMMA || this.entries > 0) this.bad('empty chunk entry')
      return
    }
    if (len > MAX_ENTRY) this.bad('malformed chunk entry')
    if (b[start] === QUOTE) {
      if (len !== 66 || b[end - 1] !== QUOTE || !isHexId(b, start + 1)) this.bad(`chunk id ${b.toString('latin1', start, end)} is not 64 lowercase hex`)
      this.lastWasRun = false
      this.entries++
      this.onId(b, start + 1)
      return
    }
    // a zero run: 1 to 16 digits, no leading zero
    let n = 0
    let ok = len <= 16 && b[start] !== 0x30
    for (let i = start; ok && i < end; i++) {
      const c = b[i]
      if (c < 0x30 || c > 0x39) ok = false
      else n = n * 10 + (c - 0x30)
    }
    if (!ok) this.bad(`chunk entry ${b.toString('latin1', start, end)} is neither an id nor a positive zero-run length`)
    if (!Number.isSafeInteger(n)) this.bad(`zero run ${b.toString('latin1', start, end)} is too long`)
    if (this.lastWasRun) this.bad('two zero runs in a row (not canonical)')
    this.lastWasRun = true
    this.entries++
    this.onRun(n)
  }

  /**
   * Consume b[from, …) up to the closing `]` (then `done`), or the end of
   * the block, or until `max` entries were reported; returns the index to go
   * on from (just past the `]` when done; b.length when the block is used up).
   */
  feed(b: Buffer, from = 0, max = Infinity): number {
    let start = from
    let n = 0
    for (let i = from; i < b.length; i++) {
      const c = b[i]
      if (c !== COMMA && c !== CLOSE) continue
      if (this.carried > 0) {
        // the entry began in an earlier block
        if (this.carried + (i - start) > MAX_ENTRY) this.bad('malformed chunk entry')
        b.copy(this.carry, this.carried, start, i)
        const len = this.carried + (i - start)
        this.carried = 0
        this.finishEntry(this.carry, 0, len, c)
      } else this.finishEntry(b, start, i, c)
      start = i + 1
      if (c === CLOSE) {
        this.done = true
        return start
      }
      if (++n >= max) return start
    }
    if (this.carried + (b.length - start) > MAX_ENTRY) this.bad('malformed chunk entry')
    b.copy(this.carry, this.carried, start, b.length)
    this.carried += b.length - start
    return b.length
  }
}

const KEY = Buffer.from(CHUNKS_KEY, 'latin1')

/**
 * Finds `"chunks":[` in a file's blocks (it may straddle two), keeping the
 * bytes before it when asked.
 */
class KeyFinder {
  /** The last KEY.length - 1 bytes seen, copied. */
  private tail = Buffer.alloc(0)
  private readonly parts: Buffer[] = []
  /** Bytes before the current block. */
  seen = 0

  constructor(private readonly keep: boolean) {}

  /** Offset in `block` just past the key, or -1 (then the block is taken in). */
  find(block: Buffer): number {
    const window = this.tail.length > 0 ? Buffer.concat([this.tail, block]) : block
    const at = window.indexOf(KEY)
    if (at >= 0) {
      const end = at + KEY.length - this.tail.length
      if (this.keep) this.parts.push(Buffer.from(block.subarray(0, end)))
      return end
    }
    if (this.keep) this.parts.push(Buffer.from(block))
    this.seen += block.length
    this.tail = Buffer.from(window.subarray(Math.max(0, window.length - (KEY.length - 1))))
    return -1
  }

  /** Everything up to and including the key (when kept). */
  prefix(): Buffer {
    return Buffer.concat(this.parts)
  }
}

/**
 * A manifest file a block at a time (the buffer is reused: each block is valid
 * until the next). A file of at most `wholeUpTo` bytes comes first as one
 * block spanning a buffer of its own, which stays the caller's (any bytes past
 * the size it had when opened follow in ordinary blocks). Refused unread when
 * not a regular file or over the size limit; `onStart` gets the size before
 * the first block.
 */
async function* manifestBlocks(file: string, onStart?: (size: number) => void, wholeUpTo = 0): AsyncGenerator<Buffer> {
  const fh = await fsp.open(file, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK)
  try {
    const st = await fh.stat()
    if (!st.isFile()) throw new BadManifestError(`manifest ${file} is not a regular file`)
    if (st.size > MAX_MANIFEST_BYTES) throw new BadManifestError(`manifest ${file} is ${st.size} bytes, larger than the ${MAX_MANIFEST_BYTES} limit`)
    onStart?.(st.size)
    let total = 0
    if (st.size <= wholeUpTo) {
      const whole = Buffer.allocUnsafeSlow(st.size)
      while (total < whole.length) {
        const {bytesRead} = await fh.read(whole, total, whole.length - total, null)
        if (bytesRead === 0) break
        total += bytesRead
      }
      yield total === whole.length ? whole : whole.subarray(0, total)
    }
    const buf = Buffer.allocUnsafe(BLOCK)
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
async function scanManifestFile(file: string, expectedId: string, onId: () => void): Promise<ManifestHead> {
  const where = `manifest ${expectedId}`
  let hasher: Hasher | undefined
  const keyFinder = new KeyFinder(true)
  const suffixParts: Buffer[] = []
  let suffixLength = 0
  let phase: 'prefix' | 'entries' | 'suffix' = 'prefix'
  let covered = 0
  const scanner = new EntryScanner(
    where,
    () => {
      covered++
      onId()
    },
    (n) => {
      covered += n
    },
  )
  // Up to ONE_SHOT_MAX, the file is read whole into a buffer of its own and
  // hashed as it stands (no second copy for a hasher), then released.
  let pieces: Buffer[] | undefined
  const onStart = (size: number) => {
    if (size <= ONE_SHOT_MAX) pieces = []
    else hasher = createHasher(size)
  }
  for await (const block of manifestBlocks(file, onStart, ONE_SHOT_MAX)) {
    // the first block is the whole file, ours to keep; later ones (a file that grew while read) are copied
    if (pieces) pieces.push(pieces.length === 0 ? block : Buffer.from(block))
    else hasher!.update(block)
    // manifests are ASCII apart from annotation values, which only the head holds
    let from = 0
    if (phase === 'prefix') {
      from = keyFinder.find(block)
      if (from < 0) {
        if (keyFinder.seen > MAX_PREFIX) throw new BadManifestError(`${where}: no chunk list in the first ${MAX_PREFIX} bytes`)
        continue
      }
      phase = 'entries'
    }
    if (phase === 'entries') {
      const end = scanner.feed(block, from)
      if (!scanner.done) continue
      from = end - 1 // keep the ']'
      phase = 'suffix'
    }
    suffixParts.push(Buffer.from(block.subarray(from)))
    suffixLength += block.length - from
    if (suffixLength > MAX_SUFFIX) throw new BadManifestError(`${where}: ${suffixLength} bytes after the chunk list`)
  }
  let actual: string
  if (pieces) {
    actual = hash(pieces.length === 1 ? pieces[0] : Buffer.concat(pieces))
    // the whole file was read into a buffer of its own (the frame, head and
    // suffix, are copies): give it back before the caller goes on
    if (pieces[0]) release(pieces[0])
    pieces = undefined
  } else actual = hasher!.digest('hex')
  if (digestMismatch(expectedId, actual) !== undefined)
    throw new BadManifestError(`${where} does not match its id (content hashes to ${actual})`, {data: {expectedId, actual}})
  if (phase === 'prefix') throw new BadManifestError(`${where}: no chunk list in canonical form ("chunks":[…])`)
  if (phase !== 'suffix') throw new BadManifestError(`${where}: the chunk list is not terminated (truncated?)`)
  const frameText = Buffer.concat([keyFinder.prefix(), ...suffixParts]).toString('utf8')
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
  const head = await scanManifestFile(file, id, () => nonZero++)
  return {head, nonZero}
}

/** Entries per batch of manifestFileEntries. */
const BATCH = 32

/**
 * The chunk entries of a manifest file already checked by verifyManifestFile,
 * in order, in batches of up to 32. Small batches: a batch's ids live until
 * the caller is done with it, so they are what survives each young-generation
 * collection. Batches of a whole block (~15,000 ids, 1.5 MB) were copied and
 * promoted at every collection and grew V8's heap with the image size; at 256
 * ids, the 25 KB that survived each collection still made V8 grow its young
 * generation to the maximum on long exports (16 MB more RSS at 1M chunks).
 */
export async function* manifestFileEntries(file: string): AsyncGenerator<ChunkEntry[]> {
  let batch: ChunkEntry[] = []
  const keyFinder = new KeyFinder(false)
  let inList = false
  const scanner = new EntryScanner(
    `manifest ${file}`,
    (b, at) => batch.push(b.toString('latin1', at, at + 64)),
    (n) => batch.push(n),
  )
  for await (const block of manifestBlocks(file)) {
    let from = 0
    if (!inList) {
      // still looking for the start of the list
      from = keyFinder.find(block)
      if (from < 0) continue
      inList = true
    }
    while (from < block.length && !scanner.done) {
      from = scanner.feed(block, from, BATCH)
      if (batch.length > 0) {
        yield batch
        batch = []
      }
    }
    if (scanner.done) return
  }
}
