/**
 * The NBD wire format of transmission: where each field of a request and of
 * simple and structured replies sits, with encoders and decoders for both
 * ends (the server, and clients in tests). Written from the NBD protocol
 * specification (doc/proto.md of the NBD project); the values live in
 * protocol.ts, handshake messages in wire-handshake.ts. All integers are
 * big-endian.
 *
 * No other module knows a field's offset. The server's synchronous read path
 * uses the in-place accessors and writers below, which read and write the
 * same layouts as the general decoders and encoders without allocating (no
 * BigInt, no objects); unit tests hold the two to agree.
 */
import {
  CMD_READ,
  REPLY_FLAG_DONE,
  REPLY_TYPE_BLOCK_STATUS,
  REPLY_TYPE_ERROR,
  REPLY_TYPE_NONE,
  REPLY_TYPE_OFFSET_DATA,
  REPLY_TYPE_OFFSET_HOLE,
  REQUEST_MAGIC,
  SIMPLE_REPLY_MAGIC,
  STRUCTURED_REPLY_MAGIC,
} from './protocol.js'

/** Request: magic u32, command flags u16, type u16, cookie u64, offset u64, length u32 (then a WRITE's payload). */
const REQ_MAGIC = 0
const REQ_FLAGS = 4
const REQ_TYPE = 6
const REQ_COOKIE = 8
const REQ_OFFSET = 16
const REQ_LENGTH = 24
export const REQUEST_HEADER_SIZE = 28

/** Simple reply: magic u32, error u32, cookie u64 (then a successful READ's data). */
const SIMPLE_MAGIC = 0
const SIMPLE_ERROR = 4
const SIMPLE_COOKIE = 8
export const SIMPLE_REPLY_SIZE = 16

/** Structured reply chunk: magic u32, flags u16, type u16, cookie u64, payload length u32, then the payload. */
const SR_MAGIC = 0
const SR_FLAGS = 4
const SR_TYPE = 6
const SR_COOKIE = 8
const SR_LENGTH = 16
export const STRUCTURED_HEADER_SIZE = 20

/** OFFSET_DATA payload: offset u64, then the data. OFFSET_HOLE payload: offset u64, hole length u32. */
const CHUNK_OFFSET = STRUCTURED_HEADER_SIZE
const HOLE_LENGTH = STRUCTURED_HEADER_SIZE + 8
/** Payload bytes of an OFFSET_DATA chunk before its data. */
const DATA_PREFIX = 8
export const OFFSET_DATA_HEADER_SIZE = STRUCTURED_HEADER_SIZE + DATA_PREFIX
export const HOLE_REPLY_SIZE = STRUCTURED_HEADER_SIZE + 12

/** BLOCK_STATUS payload: context id u32, then per extent length u32, flags u32. */
const BS_CONTEXT = STRUCTURED_HEADER_SIZE
const BS_EXTENTS = STRUCTURED_HEADER_SIZE + 4
const BS_EXTENT_SIZE = 8

/** ERROR payload: error u32, message length u16, message. */
const ERR_ERROR = STRUCTURED_HEADER_SIZE
const ERR_MESSAGE_LENGTH = STRUCTURED_HEADER_SIZE + 4
const ERR_MESSAGE = STRUCTURED_HEADER_SIZE + 6
/** Longest message this module puts in an ERROR chunk (the rest is cut). */
const MAX_ERROR_MESSAGE = 1024

/** An unsigned 64-bit field from a safe integer, without a BigInt. */
function writeU64(b: Buffer, at: number, n: number): void {
  b.writeUInt32BE(Math.floor(n / 2 ** 32), at)
  b.writeUInt32BE(n >>> 0, at + 4)
}

export interface RequestHeader {
  magic: number
  flags: number
  type: number
  /** Opaque 8 bytes, echoed in replies. */
  cookie: bigint
  /** Exact 64-bit offset; see `offset` for a safe number. */
  offset64: bigint
  /** offset as a number, or -1 when it exceeds Number.MAX_SAFE_INTEGER. */
  offset: number
  length: number
}

// In-place accessors of a raw request header, for the synchronous read path
// (decodeRequestHeader gives the same values).
export const requestFlags = (b: Buffer): number => b.readUInt16BE(REQ_FLAGS)
export const requestLength = (b: Buffer): number => b.readUInt32BE(REQ_LENGTH)

/** The request's offset as a number, or -1 when it exceeds Number.MAX_SAFE_INTEGER. */
export function requestOffset(b: Buffer, at = 0): number {
  const high = b.readUInt32BE(at + REQ_OFFSET)
  // 2^53 - 1 is the largest offset a number holds exactly
  if (high > 0x1fffff) return -1
  return high * 2 ** 32 + b.readUInt32BE(at + REQ_OFFSET + 4)
}

/** A raw request header that is a well-formed READ. */
export function isReadRequest(b: Buffer): boolean {
  return b.readUInt32BE(REQ_MAGIC) === REQUEST_MAGIC && b.readUInt16BE(REQ_TYPE) === CMD_READ
}

export function decodeRequestHeader(b: Buffer, at = 0): RequestHeader {
  if (b.length - at < REQUEST_HEADER_SIZE) throw new RangeError('request header too short')
  return {
    magic: b.readUInt32BE(at + REQ_MAGIC),
    flags: b.readUInt16BE(at + REQ_FLAGS),
    type: b.readUInt16BE(at + REQ_TYPE),
    cookie: b.readBigUInt64BE(at + REQ_COOKIE),
    offset64: b.readBigUInt64BE(at + REQ_OFFSET),
    offset: requestOffset(b, at),
    length: b.readUInt32BE(at + REQ_LENGTH),
  }
}

/** Client side (tests): a request header (+ payload appended by the caller). */
export function encodeRequest(type: number, flags: number, cookie: bigint, offset: number | bigint, length: number): Buffer {
  const b = Buffer.alloc(REQUEST_HEADER_SIZE)
  b.writeUInt32BE(REQUEST_MAGIC, REQ_MAGIC)
  b.writeUInt16BE(flags & 0xffff, REQ_FLAGS)
  b.writeUInt16BE(type & 0xffff, REQ_TYPE)
  b.writeBigUInt64BE(BigInt.asUintN(64, BigInt(cookie)), REQ_COOKIE)
  b.writeBigUInt64BE(BigInt.asUintN(64, BigInt(offset)), REQ_OFFSET)
  b.writeUInt32BE(length >>> 0, REQ_LENGTH)
  return b
}

/** A reply's cookie, copied from the raw request it answers. */
function copyCookie(out: Buffer, at: number, request: Buffer): void {
  request.copy(out, at, REQ_COOKIE, REQ_COOKIE + 8)
}

function writeSimpleReply(b: Buffer, error: number): void {
  b.writeUInt32BE(SIMPLE_REPLY_MAGIC, SIMPLE_MAGIC)
  b.writeUInt32BE(error >>> 0, SIMPLE_ERROR)
}

/** A structured chunk's header but its cookie. */
function writeStructuredHeader(b: Buffer, flags: number, type: number, length: number): void {
  b.writeUInt32BE(STRUCTURED_REPLY_MAGIC, SR_MAGIC)
  b.writeUInt16BE(flags & 0xffff, SR_FLAGS)
  b.writeUInt16BE(type & 0xffff, SR_TYPE)
  b.writeUInt32BE(length >>> 0, SR_LENGTH)
}

export function encodeSimpleReply(error: number, cookie: bigint): Buffer {
  const b = Buffer.alloc(SIMPLE_REPLY_SIZE)
  writeSimpleReply(b, error)
  b.writeBigUInt64BE(cookie, SIMPLE_COOKIE)
  return b
}

/** The error reply to a request in the negotiated style: an ERROR chunk with DONE, or a simple reply. */
export function encodeErrorReply(structured: boolean, cookie: bigint, error: number, message: string): Buffer {
  return structured ? encodeErrorChunk(REPLY_FLAG_DONE, cookie, error, message) : encodeSimpleReply(error, cookie)
}

/** A structured chunk header followed by `extra` zero bytes for its payload. */
function structuredChunk(flags: number, type: number, cookie: bigint, payloadLength: number, extra = payloadLength): Buffer {
  const b = Buffer.alloc(STRUCTURED_HEADER_SIZE + extra)
  writeStructuredHeader(b, flags, type, payloadLength)
  b.writeBigUInt64BE(cookie, SR_COOKIE)
  return b
}

export function encodeStructuredHeader(flags: number, type: number, cookie: bigint, length: number): Buffer {
  return structuredChunk(flags, type, cookie, length, 0)
}

/** NBD_REPLY_TYPE_NONE with DONE. */
export function encodeStructuredDone(cookie: bigint): Buffer {
  return structuredChunk(REPLY_FLAG_DONE, REPLY_TYPE_NONE, cookie, 0)
}

/** Header + offset of an OFFSET_DATA chunk; the data follows separately. */
export function encodeOffsetDataHeader(flags: number, cookie: bigint, offset: number, dataLength: number): Buffer {
  const b = structuredChunk(flags, REPLY_TYPE_OFFSET_DATA, cookie, DATA_PREFIX + dataLength, DATA_PREFIX)
  writeU64(b, CHUNK_OFFSET, offset)
  return b
}

export function encodeOffsetHole(flags: number, cookie: bigint, offset: number, holeLength: number): Buffer {
  const b = structuredChunk(flags, REPLY_TYPE_OFFSET_HOLE, cookie, HOLE_REPLY_SIZE - STRUCTURED_HEADER_SIZE)
  writeU64(b, CHUNK_OFFSET, offset)
  b.writeUInt32BE(holeLength >>> 0, HOLE_LENGTH)
  return b
}

/** A whole BLOCK_STATUS chunk: context id and (length, flags) descriptors. */
export function encodeBlockStatus(flags: number, cookie: bigint, contextId: number, extents: {length: number; flags: number}[]): Buffer {
  const b = structuredChunk(flags, REPLY_TYPE_BLOCK_STATUS, cookie, BS_EXTENTS - STRUCTURED_HEADER_SIZE + BS_EXTENT_SIZE * extents.length)
  b.writeUInt32BE(contextId >>> 0, BS_CONTEXT)
  let at = BS_EXTENTS
  for (const e of extents) {
    b.writeUInt32BE(e.length >>> 0, at)
    b.writeUInt32BE(e.flags >>> 0, at + 4)
    at += BS_EXTENT_SIZE
  }
  return b
}

/** A whole NBD_REPLY_TYPE_ERROR chunk (the message cut to MAX_ERROR_MESSAGE bytes). */
export function encodeErrorChunk(flags: number, cookie: bigint, error: number, message = ''): Buffer {
  let m = Buffer.from(message, 'utf8')
  if (m.length > MAX_ERROR_MESSAGE) m = m.subarray(0, MAX_ERROR_MESSAGE)
  const b = structuredChunk(flags, REPLY_TYPE_ERROR, cookie, ERR_MESSAGE - STRUCTURED_HEADER_SIZE + m.length)
  b.writeUInt32BE(error >>> 0, ERR_ERROR)
  b.writeUInt16BE(m.length, ERR_MESSAGE_LENGTH)
  m.copy(b, ERR_MESSAGE)
  return b
}

export interface StructuredHeader {
  magic: number
  flags: number
  type: number
  cookie: bigint
  length: number
}

export function decodeStructuredHeader(b: Buffer, at = 0): StructuredHeader {
  return {
    magic: b.readUInt32BE(at + SR_MAGIC),
    flags: b.readUInt16BE(at + SR_FLAGS),
    type: b.readUInt16BE(at + SR_TYPE),
    cookie: b.readBigUInt64BE(at + SR_COOKIE),
    length: b.readUInt32BE(at + SR_LENGTH),
  }
}

// In-place writers for the synchronous read path: the reply to the raw
// request `request`, written at the start of `out`, its cookie copied.

/** Length of what writeReadReplyPrefix writes. */
export function readReplyPrefixSize(structured: boolean): number {
  return structured ? OFFSET_DATA_HEADER_SIZE : SIMPLE_REPLY_SIZE
}

/**
 * What precedes `dataLength` bytes of read data: a simple reply, or an
 * OFFSET_DATA chunk with DONE. Returns its length. Byte for byte
 * encodeSimpleReply / encodeOffsetDataHeader.
 */
export function writeReadReplyPrefix(out: Buffer, structured: boolean, request: Buffer, offset: number, dataLength: number): number {
  if (!structured) {
    writeSimpleReply(out, 0)
    copyCookie(out, SIMPLE_COOKIE, request)
    return SIMPLE_REPLY_SIZE
  }
  writeStructuredHeader(out, REPLY_FLAG_DONE, REPLY_TYPE_OFFSET_DATA, DATA_PREFIX + dataLength)
  copyCookie(out, SR_COOKIE, request)
  writeU64(out, CHUNK_OFFSET, offset)
  return OFFSET_DATA_HEADER_SIZE
}

/** A whole reply saying the read range is a hole (OFFSET_HOLE with DONE): HOLE_REPLY_SIZE bytes, byte for byte encodeOffsetHole. */
export function writeHoleReply(out: Buffer, request: Buffer, offset: number, length: number): void {
  writeStructuredHeader(out, REPLY_FLAG_DONE, REPLY_TYPE_OFFSET_HOLE, HOLE_REPLY_SIZE - STRUCTURED_HEADER_SIZE)
  copyCookie(out, SR_COOKIE, request)
  writeU64(out, CHUNK_OFFSET, offset)
  out.writeUInt32BE(length >>> 0, HOLE_LENGTH)
}
