/**
 * How a chunk rests in an object file and travels as an object body
 * (FORMAT.md "Compressed objects"): its raw bytes, or one zstd frame of
 * them. The id is always the BLAKE3 of the raw bytes, so a reader decodes
 * first and then verifies. A file is a frame when it begins with zstd's
 * magic number; a writer of format 2 never leaves a raw chunk beginning with
 * it (such a chunk is stored as a frame), but format 1 wrote every chunk raw,
 * so a reader whose decoded bytes do not match hashes the file as it is too.
 */
import {isAllZero} from './chunker.js'
import {contentMismatch} from './hash.js'
import {MAX_CHUNK_SIZE} from './manifest.js'
import {canCompress, zstdCompress, zstdDecompress} from './zstd.js'

/** zstd's frame magic number, little-endian 0xFD2FB528: the first 4 bytes of a compressed object. */
export const ZSTD_MAGIC = Buffer.from([0x28, 0xb5, 0x2f, 0xfd])

/**
 * The largest object file or object body: a chunk's maximum, plus room for
 * the frame of an incompressible 4 MiB chunk that begins with the magic
 * (zstd adds a few bytes per 128 KiB block).
 */
export const MAX_STORED_OBJECT = MAX_CHUNK_SIZE + 4096

/** The names of the encodings this vmi reads, for negotiation (PROTOCOL.md "Compressed objects"). */
export const OBJECT_ENCODINGS = ['zstd'] as const

/** Whether `stored` begins with the zstd magic (so it is, or claims to be, a frame). */
export function isFrame(stored: Uint8Array): boolean {
  return stored.length >= 4 && stored[0] === 0x28 && stored[1] === 0xb5 && stored[2] === 0x2f && stored[3] === 0xfd
}

/**
 * The chunk an object holds, not verified: a frame decoded, else the bytes
 * as they are (also a frame that does not decode, which then fails whatever
 * verification follows, or is a format 1 raw chunk beginning with the magic).
 */
export function decodeObject(stored: Buffer): Buffer {
  if (!isFrame(stored)) return stored
  try {
    return zstdDecompress(stored, MAX_CHUNK_SIZE)
  } catch {
    return stored
  }
}

export type Opened = {data: Buffer; encoded: boolean; actual?: undefined} | {data?: undefined; encoded?: undefined; actual: string}

/**
 * The one check of an object against its id: the chunk (decoded when the
 * object is a frame) when it hashes to `id`, with whether it was encoded;
 * else what it hashes to (of the decoded bytes when it decoded, as the
 * bytes are otherwise). `length`, when known (a manifest's chunk length),
 * must match too.
 */
export function openObject(id: string, stored: Buffer, length?: number): Opened {
  let decodedMismatch: string | undefined
  if (isFrame(stored)) {
    let raw: Buffer | undefined
    try {
      raw = zstdDecompress(stored, length ?? MAX_CHUNK_SIZE)
    } catch {
      // not a frame that decodes: maybe a format 1 raw chunk; hashed as it is below
    }
    if (raw !== undefined && (length === undefined || raw.length === length)) {
      decodedMismatch = contentMismatch(id, raw)
      if (decodedMismatch === undefined) return {data: raw, encoded: true}
    }
  }
  if (length !== undefined && stored.length !== length) return {actual: decodedMismatch ?? contentMismatch(id, stored) ?? id}
  const rawMismatch = contentMismatch(id, stored)
  if (rawMismatch === undefined) return {data: stored, encoded: false}
  return {actual: decodedMismatch ?? rawMismatch}
}

/**
 * Only a frame at least this much smaller than the chunk is kept: a frame
 * that saves less costs a decode on every read for almost no bytes.
 */
const MIN_SAVING = 1 / 16

/**
 * The form a writer stores and sends chunk `raw` in, when it may compress:
 * a zstd frame when that is at least MIN_SAVING smaller, else the raw bytes;
 * always a frame when the raw bytes begin with the magic (so a format 2
 * object is a frame exactly when it begins with the magic). Without the
 * native module, raw (such a chunk then stays as format 1 wrote it).
 */
export function encodeChunk(raw: Buffer): Buffer {
  if (!canCompress()) return raw
  const frame = zstdCompress(raw)
  if (isFrame(raw) || frame.length <= raw.length - raw.length * MIN_SAVING) return frame
  return raw
}

/** The bytes to store for a verified upload or fetch: as received, except a raw chunk beginning with the magic, which becomes a frame. */
export function storedForm(received: Buffer, opened: {data: Buffer; encoded: boolean}): Buffer {
  if (opened.encoded || !isFrame(received) || !canCompress()) return received
  return zstdCompress(opened.data)
}

export type Admitted = {store: Buffer; raw: Buffer; mismatch?: undefined; zero?: undefined} | {mismatch: string; zero?: undefined} | {zero: true; mismatch?: undefined}

/**
 * An object received from an untrusted side (an upload, a fetch), checked
 * before it is stored: what to store and the chunk, or why it is refused
 * (its chunk does not hash to `id`; or it is all zeros, which a store never
 * holds: manifests mark zero chunks).
 */
export function admitObject(id: string, received: Buffer, length?: number): Admitted {
  const o = openObject(id, received, length)
  if (o.actual !== undefined) return {mismatch: o.actual}
  if (o.data.length === 0 || isAllZero(o.data)) return {zero: true}
  return {store: storedForm(received, o), raw: o.data}
}

/** The stored form of chunks checkReceived returned, kept beside them (see storedFormOf). */
const storedForms = new WeakMap<Buffer, Buffer>()

/**
 * An object received from a source, checked against its id: the chunk, or
 * `fail(actual)` thrown. The form it came in is remembered beside the
 * chunk, so that whoever stores it (a pull, an owner's fetch-through) keeps
 * it compressed as the seed sent it (storedFormOf), while every reader
 * still gets the chunk itself.
 */
export function checkReceived(id: string, received: Buffer, fail: (actual: string) => Error, length?: number): Buffer {
  const o = openObject(id, received, length)
  if (o.actual !== undefined) throw fail(o.actual)
  if (o.encoded) storedForms.set(o.data, received)
  return o.data
}

/** The form a chunk checkReceived returned came in: its frame, else the chunk itself. */
export function receivedFormOf(raw: Buffer): Buffer {
  return storedForms.get(raw) ?? raw
}

/** What to store for a chunk checkReceived returned: the frame it came as, else the chunk (as a frame when it begins with the magic). */
export function storedFormOf(raw: Buffer): Buffer {
  return storedForms.get(raw) ?? storedForm(raw, {data: raw, encoded: false})
}
