/**
 * The image manifest: canonical JSON (keys sorted, no whitespace, UTF-8);
 * the image id is the BLAKE3 of these bytes. See docs/FORMAT.md.
 */
import {BadManifestError, NewerManifestError} from '../errors.js'
import {hash, verifyContent} from './hash.js'
import {isValidId} from './layout.js'

export const MANIFEST_VERSION = 1
export const MIN_CHUNK_SIZE = 64 * 1024
export const MAX_CHUNK_SIZE = 4 * 1024 * 1024
/** Largest virtual size a manifest may declare (1 PiB). */
export const MAX_VIRTUAL_SIZE = 2 ** 50
/** Largest manifest accepted, in bytes (checked before parsing). */
export const MAX_MANIFEST_BYTES = 256 * 1024 * 1024
/**
 * Most chunks expandChunks() lists one by one (16 TiB at the default chunk
 * size): a valid sparse manifest may declare up to 2^34, more than a list can hold.
 */
export const MAX_EXPANDED_CHUNKS = 2 ** 26

/** One entry per run: a chunk id, or a positive count of all-zero chunks. */
export type ChunkEntry = string | number

export interface Manifest {
  version: number
  virtualSize: number
  chunkSize: number
  chunks: ChunkEntry[]
  sourceFormat: string
  created: string
  parent?: string
  annotations?: Record<string, string>
}

export function isValidChunkSize(n: number): boolean {
  return Number.isInteger(n) && n >= MIN_CHUNK_SIZE && n <= MAX_CHUNK_SIZE && (n & (n - 1)) === 0
}

export function chunkCount(virtualSize: number, chunkSize: number): number {
  return Math.ceil(virtualSize / chunkSize)
}

/** Canonical JSON: object keys sorted, no insignificant whitespace. */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') {
    if (typeof value === 'number' && !Number.isFinite(value)) throw new TypeError('non-finite number')
    return JSON.stringify(value)
  }
  if (Array.isArray(value)) return '[' + value.map((v) => canonicalJson(v)).join(',') + ']'
  const keys = Object.keys(value as object)
    .filter((k) => (value as Record<string, unknown>)[k] !== undefined)
    .sort()
  return '{' + keys.map((k) => JSON.stringify(k) + ':' + canonicalJson((value as Record<string, unknown>)[k])).join(',') + '}'
}

/** Builds the run-length chunk list from per-chunk ids (null = all-zero). */
export class ChunkListBuilder {
  readonly entries: ChunkEntry[] = []
  count = 0

  push(id: string | null): void {
    this.count++
    if (id !== null) {
      this.entries.push(id)
      return
    }
    const last = this.entries.length - 1
    if (last >= 0 && typeof this.entries[last] === 'number') (this.entries[last] as number)++
    else this.entries.push(1)
  }
}

/** Per-chunk ids in disk order; null marks an all-zero chunk. */
export function expandChunks(m: Pick<Manifest, 'chunks'>): (string | null)[] {
  let n = 0
  for (const e of m.chunks) n += typeof e === 'string' ? 1 : e
  if (n > MAX_EXPANDED_CHUNKS)
    throw new BadManifestError(`the image has ${n} chunks; vmi handles at most ${MAX_EXPANDED_CHUNKS} chunks per image in this operation`, {data: {chunks: n}})
  const out: (string | null)[] = []
  for (const e of m.chunks) {
    if (typeof e === 'string') out.push(e)
    else for (let i = 0; i < e; i++) out.push(null)
  }
  return out
}

/** Distinct non-zero chunk ids of a manifest. */
export function uniqueChunkIds(m: Pick<Manifest, 'chunks'>): Set<string> {
  const s = new Set<string>()
  for (const e of m.chunks) if (typeof e === 'string') s.add(e)
  return s
}

/** Byte length of chunk `index` (the last one may be short). */
export function chunkLength(m: Pick<Manifest, 'virtualSize' | 'chunkSize'>, index: number): number {
  return Math.min(m.chunkSize, m.virtualSize - index * m.chunkSize)
}

export function encodeManifest(m: Manifest): {bytes: Buffer; id: string} {
  validateManifest(m)
  const bytes = Buffer.from(canonicalJson(m), 'utf8')
  return {bytes, id: hash(bytes)}
}

const KEYS = new Set(['version', 'virtualSize', 'chunkSize', 'chunks', 'sourceFormat', 'created', 'parent', 'annotations'])

/**
 * Parse and strictly validate manifest bytes. When `expectedId` is given the
 * bytes must hash to it. Rejects anything non-canonical, so one image has
 * exactly one id.
 */
export function decodeManifest(bytes: Uint8Array, expectedId?: string): Manifest {
  const where = expectedId ? `manifest ${expectedId}` : 'manifest'
  if (bytes.length > MAX_MANIFEST_BYTES) throw new BadManifestError(`${where} is ${bytes.length} bytes, larger than the ${MAX_MANIFEST_BYTES} limit`)
  if (expectedId !== undefined)
    verifyContent(expectedId, bytes, (actual) => new BadManifestError(`${where} does not match its id (content hashes to ${actual})`, {data: {expectedId, actual}}))
  let parsed: unknown
  try {
    parsed = JSON.parse(Buffer.from(bytes).toString('utf8'))
  } catch (err) {
    throw new BadManifestError(`${where} is not valid JSON`, {cause: err})
  }
  const m = parsed as Manifest
  validateManifest(m, where)
  if (canonicalJson(m) !== Buffer.from(bytes).toString('utf8')) throw new BadManifestError(`${where} is not in canonical form`)
  return m
}

export function validateManifest(m: Manifest, where = 'manifest'): void {
  const bad = (msg: string): never => {
    throw new BadManifestError(`${where}: ${msg}`)
  }
  if (m === null || typeof m !== 'object' || Array.isArray(m)) bad('not a JSON object')
  // the version first: a newer format may have fields this vmi does not know
  if (m.version !== MANIFEST_VERSION) {
    if (Number.isInteger(m.version) && m.version > MANIFEST_VERSION)
      throw new NewerManifestError(`${where}: format version ${m.version} is newer than this vmi reads (${MANIFEST_VERSION}); upgrade vmi`)
    bad(`unsupported format version ${JSON.stringify(m.version)}`)
  }
  for (const k of Object.keys(m)) if (!KEYS.has(k)) bad(`unknown field ${JSON.stringify(k)}`)
  if (!isValidChunkSize(m.chunkSize)) bad(`chunk size ${JSON.stringify(m.chunkSize)} is not a power of two between 64 KiB and 4 MiB`)
  if (!Number.isSafeInteger(m.virtualSize) || m.virtualSize <= 0 || m.virtualSize > MAX_VIRTUAL_SIZE || m.virtualSize % 512 !== 0)
    bad(`virtual size ${JSON.stringify(m.virtualSize)} is not a positive multiple of 512 up to 1 PiB`)
  if (!Array.isArray(m.chunks)) bad('chunks is not a list')
  const expected = chunkCount(m.virtualSize, m.chunkSize)
  if (m.chunks.length > expected) bad(`lists ${m.chunks.length} entries for ${expected} chunks`)
  let n = 0
  let prevZero = false
  for (const e of m.chunks) {
    if (typeof e === 'string') {
      if (!isValidId(e)) bad(`chunk id ${JSON.stringify(e).slice(0, 80)} is not 64 lowercase hex`)
      n++
      prevZero = false
    } else if (Number.isSafeInteger(e) && e > 0) {
      if (prevZero) bad('two zero runs in a row (not canonical)')
      n += e
      prevZero = true
    } else bad(`chunk entry ${JSON.stringify(e).slice(0, 80)} is neither an id nor a positive zero-run length`)
    if (n > expected) bad(`chunks cover more than the ${expected} chunks of the virtual size`)
  }
  if (n !== expected) bad(`chunks cover ${n} chunks, the virtual size needs ${expected}`)
  if (typeof m.sourceFormat !== 'string' || !/^[a-z0-9-]{1,32}$/.test(m.sourceFormat)) bad('sourceFormat is missing or malformed')
  if (typeof m.created !== 'string' || Number.isNaN(Date.parse(m.created)) || m.created.length > 40) bad('created is not a timestamp')
  if (m.parent !== undefined && !isValidId(m.parent)) bad('parent is not a 64-hex id')
  if (m.annotations !== undefined) {
    if (m.annotations === null || typeof m.annotations !== 'object' || Array.isArray(m.annotations)) bad('annotations is not an object')
    for (const [k, v] of Object.entries(m.annotations)) {
      if (typeof v !== 'string') bad(`annotation ${JSON.stringify(k)} is not a string`)
      if (k.length === 0 || k.length > 256 || v.length > 65536) bad(`annotation ${JSON.stringify(k).slice(0, 80)} is too long or empty`)
    }
  }
}
