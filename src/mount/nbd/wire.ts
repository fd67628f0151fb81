/**
 * NBD wire protocol: constants and pure encode/decode helpers (no I/O).
 * Written from the NBD protocol specification (doc/proto.md of the NBD
 * project). All integers are big-endian.
 */

// ---- magic numbers ----
export const NBDMAGIC = 0x4e42444d41474943n // "NBDMAGIC"
export const IHAVEOPT = 0x49484156454f5054n // "IHAVEOPT"
export const OPTION_REPLY_MAGIC = 0x3e889045565a9n
export const REQUEST_MAGIC = 0x25609513
export const EXTENDED_REQUEST_MAGIC = 0x21e41c71
export const SIMPLE_REPLY_MAGIC = 0x67446698
export const STRUCTURED_REPLY_MAGIC = 0x668e33ef

// ---- handshake flags (server, 16 bits) ----
export const FLAG_FIXED_NEWSTYLE = 1 << 0
export const FLAG_NO_ZEROES = 1 << 1
// ---- client flags (32 bits) ----
export const FLAG_C_FIXED_NEWSTYLE = 1 << 0
export const FLAG_C_NO_ZEROES = 1 << 1

// ---- transmission flags (16 bits) ----
export const FLAG_HAS_FLAGS = 1 << 0
export const FLAG_READ_ONLY = 1 << 1
export const FLAG_SEND_FLUSH = 1 << 2
export const FLAG_SEND_FUA = 1 << 3
export const FLAG_ROTATIONAL = 1 << 4
export const FLAG_SEND_TRIM = 1 << 5
export const FLAG_SEND_WRITE_ZEROES = 1 << 6
export const FLAG_SEND_DF = 1 << 7
export const FLAG_CAN_MULTI_CONN = 1 << 8
export const FLAG_SEND_RESIZE = 1 << 9
export const FLAG_SEND_CACHE = 1 << 10
export const FLAG_SEND_FAST_ZERO = 1 << 11

// ---- options ----
export const OPT_EXPORT_NAME = 1
export const OPT_ABORT = 2
export const OPT_LIST = 3
export const OPT_PEEK_EXPORT = 4
export const OPT_STARTTLS = 5
export const OPT_INFO = 6
export const OPT_GO = 7
export const OPT_STRUCTURED_REPLY = 8
export const OPT_LIST_META_CONTEXT = 9
export const OPT_SET_META_CONTEXT = 10
export const OPT_EXTENDED_HEADERS = 11

// ---- option replies ----
export const REP_ACK = 1
export const REP_SERVER = 2
export const REP_INFO = 3
export const REP_META_CONTEXT = 4
export const REP_FLAG_ERROR = 0x80000000
export const REP_ERR_UNSUP = REP_FLAG_ERROR + 1
export const REP_ERR_POLICY = REP_FLAG_ERROR + 2
export const REP_ERR_INVALID = REP_FLAG_ERROR + 3
export const REP_ERR_PLATFORM = REP_FLAG_ERROR + 4
export const REP_ERR_TLS_REQD = REP_FLAG_ERROR + 5
export const REP_ERR_UNKNOWN = REP_FLAG_ERROR + 6
export const REP_ERR_SHUTDOWN = REP_FLAG_ERROR + 7
export const REP_ERR_BLOCK_SIZE_REQD = REP_FLAG_ERROR + 8
export const REP_ERR_TOO_BIG = REP_FLAG_ERROR + 9

// ---- NBD_REP_INFO types ----
export const INFO_EXPORT = 0
export const INFO_NAME = 1
export const INFO_DESCRIPTION = 2
export const INFO_BLOCK_SIZE = 3

// ---- commands ----
export const CMD_READ = 0
export const CMD_WRITE = 1
export const CMD_DISC = 2
export const CMD_FLUSH = 3
export const CMD_TRIM = 4
export const CMD_CACHE = 5
export const CMD_WRITE_ZEROES = 6
export const CMD_BLOCK_STATUS = 7
export const CMD_RESIZE = 8

// ---- command flags ----
export const CMD_FLAG_FUA = 1 << 0
export const CMD_FLAG_NO_HOLE = 1 << 1
export const CMD_FLAG_DF = 1 << 2
export const CMD_FLAG_REQ_ONE = 1 << 3
export const CMD_FLAG_FAST_ZERO = 1 << 4
export const CMD_FLAG_PAYLOAD_LEN = 1 << 5

// ---- structured reply ----
export const REPLY_FLAG_DONE = 1 << 0
export const REPLY_TYPE_NONE = 0
export const REPLY_TYPE_OFFSET_DATA = 1
export const REPLY_TYPE_OFFSET_HOLE = 2
export const REPLY_TYPE_BLOCK_STATUS = 5
export const REPLY_TYPE_ERROR = (1 << 15) + 1
export const REPLY_TYPE_ERROR_OFFSET = (1 << 15) + 2

// ---- base:allocation ----
export const STATE_HOLE = 1
export const STATE_ZERO = 2
export const META_BASE_ALLOCATION = 'base:allocation'

// ---- error values ----
export const EPERM = 1
export const EIO = 5
export const ENOMEM = 12
export const EINVAL = 22
export const ENOSPC = 28
export const EOVERFLOW = 75
export const ENOTSUP = 95
export const ESHUTDOWN = 108

export const OPTION_HEADER_SIZE = 16
export const REQUEST_HEADER_SIZE = 28
export const SIMPLE_REPLY_SIZE = 16
export const STRUCTURED_HEADER_SIZE = 20
/** Longest string the spec allows (export names, messages, queries). */
export const MAX_STRING = 4096

export const COMMAND_NAMES: Record<number, string> = {
  [CMD_READ]: 'read',
  [CMD_WRITE]: 'write',
  [CMD_DISC]: 'disc',
  [CMD_FLUSH]: 'flush',
  [CMD_TRIM]: 'trim',
  [CMD_CACHE]: 'cache',
  [CMD_WRITE_ZEROES]: 'write-zeroes',
  [CMD_BLOCK_STATUS]: 'block-status',
}

export const OPTION_NAMES: Record<number, string> = {
  [OPT_EXPORT_NAME]: 'EXPORT_NAME',
  [OPT_ABORT]: 'ABORT',
  [OPT_LIST]: 'LIST',
  [OPT_PEEK_EXPORT]: 'PEEK_EXPORT',
  [OPT_STARTTLS]: 'STARTTLS',
  [OPT_INFO]: 'INFO',
  [OPT_GO]: 'GO',
  [OPT_STRUCTURED_REPLY]: 'STRUCTURED_REPLY',
  [OPT_LIST_META_CONTEXT]: 'LIST_META_CONTEXT',
  [OPT_SET_META_CONTEXT]: 'SET_META_CONTEXT',
  [OPT_EXTENDED_HEADERS]: 'EXTENDED_HEADERS',
}

/** Backend errno (or Node error code) → NBD error value; EIO by default. */
export function errnoToNbd(code: unknown): number {
  switch (code) {
    case 'EPERM':
    case 'EACCES':
    case 'EROFS':
      return EPERM
    case 'EINVAL':
      return EINVAL
    case 'ENOSPC':
    case 'EDQUOT':
    case 'EFBIG':
      return ENOSPC
    case 'ENOMEM':
      return ENOMEM
    case 'EOVERFLOW':
      return EOVERFLOW
    case 'ENOTSUP':
    case 'EOPNOTSUPP':
      return ENOTSUP
    case 'ESHUTDOWN':
      return ESHUTDOWN
    default:
      return EIO
  }
}

/** The NBD error value for an exception thrown by a backend. */
export function errorToNbd(err: unknown): number {
  if (err && typeof err === 'object') {
    const e = err as {errno?: unknown; code?: unknown}
    if (typeof e.errno === 'string') return errnoToNbd(e.errno)
    if (typeof e.code === 'string') return errnoToNbd(e.code)
  }
  return EIO
}

// ---------------------------------------------------------------- handshake

/** Server greeting: NBDMAGIC, IHAVEOPT, 16-bit handshake flags. */
export function encodeGreeting(handshakeFlags: number): Buffer {
  const b = Buffer.alloc(18)
  b.writeBigUInt64BE(NBDMAGIC, 0)
  b.writeBigUInt64BE(IHAVEOPT, 8)
  b.writeUInt16BE(handshakeFlags & 0xffff, 16)
  return b
}

export interface OptionHeader {
  magic: bigint
  option: number
  length: number
}

export function decodeOptionHeader(b: Buffer): OptionHeader {
  if (b.length < OPTION_HEADER_SIZE) throw new RangeError('option header too short')
  return {magic: b.readBigUInt64BE(0), option: b.readUInt32BE(8), length: b.readUInt32BE(12)}
}

/** Client side (tests): an option request. */
export function encodeOption(option: number, data: Buffer = Buffer.alloc(0)): Buffer {
  const b = Buffer.alloc(OPTION_HEADER_SIZE + data.length)
  b.writeBigUInt64BE(IHAVEOPT, 0)
  b.writeUInt32BE(option >>> 0, 8)
  b.writeUInt32BE(data.length, 12)
  data.copy(b, OPTION_HEADER_SIZE)
  return b
}

/** A fixed-newstyle option reply (header + data). */
export function encodeOptionReply(option: number, type: number, data: Buffer = Buffer.alloc(0)): Buffer {
  const b = Buffer.alloc(20 + data.length)
  b.writeBigUInt64BE(OPTION_REPLY_MAGIC, 0)
  b.writeUInt32BE(option >>> 0, 8)
  b.writeUInt32BE(type >>> 0, 12)
  b.writeUInt32BE(data.length, 16)
  data.copy(b, 20)
  return b
}

export interface OptionReply {
  magic: bigint
  option: number
  type: number
  length: number
}

export function decodeOptionReplyHeader(b: Buffer): OptionReply {
  return {magic: b.readBigUInt64BE(0), option: b.readUInt32BE(8), type: b.readUInt32BE(12), length: b.readUInt32BE(16)}
}

/** Reply to NBD_OPT_EXPORT_NAME: size, transmission flags, optional 124 zero bytes. */
export function encodeExportNameReply(size: number, transmissionFlags: number, noZeroes: boolean): Buffer {
  const b = Buffer.alloc(10 + (noZeroes ? 0 : 124))
  b.writeBigUInt64BE(BigInt(size), 0)
  b.writeUInt16BE(transmissionFlags & 0xffff, 8)
  return b
}

/** NBD_REP_SERVER payload: name length, name, description. */
export function encodeRepServer(name: string, description = ''): Buffer {
  const n = Buffer.from(name, 'utf8')
  const d = Buffer.from(description, 'utf8')
  const b = Buffer.alloc(4 + n.length + d.length)
  b.writeUInt32BE(n.length, 0)
  n.copy(b, 4)
  d.copy(b, 4 + n.length)
  return b
}

export function encodeInfoExport(size: number, transmissionFlags: number): Buffer {
  const b = Buffer.alloc(12)
  b.writeUInt16BE(INFO_EXPORT, 0)
  b.writeBigUInt64BE(BigInt(size), 2)
  b.writeUInt16BE(transmissionFlags & 0xffff, 10)
  return b
}

export function encodeInfoString(type: typeof INFO_NAME | typeof INFO_DESCRIPTION, text: string): Buffer {
  const s = Buffer.from(text, 'utf8')
  const b = Buffer.alloc(2 + s.length)
  b.writeUInt16BE(type, 0)
  s.copy(b, 2)
  return b
}

export function encodeInfoBlockSize(minimum: number, preferred: number, maximum: number): Buffer {
  const b = Buffer.alloc(14)
  b.writeUInt16BE(INFO_BLOCK_SIZE, 0)
  b.writeUInt32BE(minimum >>> 0, 2)
  b.writeUInt32BE(preferred >>> 0, 6)
  b.writeUInt32BE(maximum >>> 0, 10)
  return b
}

/** NBD_REP_META_CONTEXT payload: context id, name. */
export function encodeMetaContext(id: number, name: string): Buffer {
  const s = Buffer.from(name, 'utf8')
  const b = Buffer.alloc(4 + s.length)
  b.writeUInt32BE(id >>> 0, 0)
  s.copy(b, 4)
  return b
}

/** Strings on the wire: valid UTF-8, no NUL, ≤ 4096 bytes. undefined when not. */
export function decodeString(b: Buffer): string | undefined {
  if (b.length > MAX_STRING || b.includes(0)) return undefined
  const s = b.toString('utf8')
  // round trip rejects invalid UTF-8 (replacement characters)
  if (!Buffer.from(s, 'utf8').equals(b)) return undefined
  return s
}

export interface InfoRequest {
  name: string
  /** NBD_INFO_* types requested (duplicates removed). */
  infos: number[]
}

/** NBD_OPT_INFO / NBD_OPT_GO data; undefined when syntactically invalid. */
export function decodeInfoRequest(data: Buffer): InfoRequest | undefined {
  if (data.length < 6) return undefined
  const nameLen = data.readUInt32BE(0)
  if (nameLen > data.length - 6) return undefined
  const name = decodeString(data.subarray(4, 4 + nameLen))
  if (name === undefined) return undefined
  const count = data.readUInt16BE(4 + nameLen)
  if (data.length !== 6 + nameLen + 2 * count) return undefined
  const infos: number[] = []
  for (let i = 0; i < count; i++) {
    const t = data.readUInt16BE(6 + nameLen + 2 * i)
    if (!infos.includes(t)) infos.push(t)
  }
  return {name, infos}
}

export function encodeInfoRequest(name: string, infos: number[] = []): Buffer {
  const n = Buffer.from(name, 'utf8')
  const b = Buffer.alloc(6 + n.length + 2 * infos.length)
  b.writeUInt32BE(n.length, 0)
  n.copy(b, 4)
  b.writeUInt16BE(infos.length, 4 + n.length)
  infos.forEach((t, i) => b.writeUInt16BE(t, 6 + n.length + 2 * i))
  return b
}

export interface MetaContextRequest {
  name: string
  queries: string[]
}

/** NBD_OPT_LIST_META_CONTEXT / NBD_OPT_SET_META_CONTEXT data; undefined when invalid. */
export function decodeMetaContextRequest(data: Buffer): MetaContextRequest | undefined {
  if (data.length < 8) return undefined
  const nameLen = data.readUInt32BE(0)
  if (nameLen > data.length - 8) return undefined
  const name = decodeString(data.subarray(4, 4 + nameLen))
  if (name === undefined) return undefined
  let pos = 4 + nameLen
  const count = data.readUInt32BE(pos)
  pos += 4
  // every query needs at least its 4-byte length
  if (count > (data.length - pos) / 4) return undefined
  const queries: string[] = []
  for (let i = 0; i < count; i++) {
    if (pos + 4 > data.length) return undefined
    const len = data.readUInt32BE(pos)
    pos += 4
    if (len > data.length - pos) return undefined
    const q = decodeString(data.subarray(pos, pos + len))
    if (q === undefined) return undefined
    queries.push(q)
    pos += len
  }
  if (pos !== data.length) return undefined
  return {name, queries}
}

export function encodeMetaContextRequest(name: string, queries: string[]): Buffer {
  const parts: Buffer[] = []
  const n = Buffer.from(name, 'utf8')
  const head = Buffer.alloc(4)
  head.writeUInt32BE(n.length, 0)
  const cnt = Buffer.alloc(4)
  cnt.writeUInt32BE(queries.length, 0)
  parts.push(head, n, cnt)
  for (const q of queries) {
    const s = Buffer.from(q, 'utf8')
    const l = Buffer.alloc(4)
    l.writeUInt32BE(s.length, 0)
    parts.push(l, s)
  }
  return Buffer.concat(parts)
}

// ------------------------------------------------------------- transmission

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

export function decodeRequestHeader(b: Buffer, at = 0): RequestHeader {
  if (b.length - at < REQUEST_HEADER_SIZE) throw new RangeError('request header too short')
  const offset64 = b.readBigUInt64BE(at + 16)
  return {
    magic: b.readUInt32BE(at),
    flags: b.readUInt16BE(at + 4),
    type: b.readUInt16BE(at + 6),
    cookie: b.readBigUInt64BE(at + 8),
    offset64,
    offset: offset64 <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(offset64) : -1,
    length: b.readUInt32BE(at + 24),
  }
}

/** Client side (tests): a request header (+ payload appended by the caller). */
export function encodeRequest(type: number, flags: number, cookie: bigint, offset: number | bigint, length: number): Buffer {
  const b = Buffer.alloc(REQUEST_HEADER_SIZE)
  b.writeUInt32BE(REQUEST_MAGIC, 0)
  b.writeUInt16BE(flags & 0xffff, 4)
  b.writeUInt16BE(type & 0xffff, 6)
  b.writeBigUInt64BE(BigInt.asUintN(64, BigInt(cookie)), 8)
  b.writeBigUInt64BE(BigInt.asUintN(64, BigInt(offset)), 16)
  b.writeUInt32BE(length >>> 0, 24)
  return b
}

export function encodeSimpleReply(error: number, cookie: bigint): Buffer {
  const b = Buffer.alloc(SIMPLE_REPLY_SIZE)
  b.writeUInt32BE(SIMPLE_REPLY_MAGIC, 0)
  b.writeUInt32BE(error >>> 0, 4)
  b.writeBigUInt64BE(cookie, 8)
  return b
}

export function encodeStructuredHeader(flags: number, type: number, cookie: bigint, length: number): Buffer {
  const b = Buffer.alloc(STRUCTURED_HEADER_SIZE)
  writeStructuredHeader(b, 0, flags, type, cookie, length)
  return b
}

function writeStructuredHeader(b: Buffer, at: number, flags: number, type: number, cookie: bigint, length: number): void {
  b.writeUInt32BE(STRUCTURED_REPLY_MAGIC, at)
  b.writeUInt16BE(flags & 0xffff, at + 4)
  b.writeUInt16BE(type & 0xffff, at + 6)
  b.writeBigUInt64BE(cookie, at + 8)
  b.writeUInt32BE(length >>> 0, at + 16)
}

/** NBD_REPLY_TYPE_NONE with DONE. */
export function encodeStructuredDone(cookie: bigint): Buffer {
  return encodeStructuredHeader(REPLY_FLAG_DONE, REPLY_TYPE_NONE, cookie, 0)
}

/** Header + 8-byte offset of an OFFSET_DATA chunk; the data follows separately. */
export function encodeOffsetDataHeader(flags: number, cookie: bigint, offset: number, dataLength: number): Buffer {
  const b = Buffer.alloc(STRUCTURED_HEADER_SIZE + 8)
  writeStructuredHeader(b, 0, flags, REPLY_TYPE_OFFSET_DATA, cookie, dataLength + 8)
  b.writeBigUInt64BE(BigInt(offset), STRUCTURED_HEADER_SIZE)
  return b
}

export function encodeOffsetHole(flags: number, cookie: bigint, offset: number, holeLength: number): Buffer {
  const b = Buffer.alloc(STRUCTURED_HEADER_SIZE + 12)
  writeStructuredHeader(b, 0, flags, REPLY_TYPE_OFFSET_HOLE, cookie, 12)
  b.writeBigUInt64BE(BigInt(offset), STRUCTURED_HEADER_SIZE)
  b.writeUInt32BE(holeLength >>> 0, STRUCTURED_HEADER_SIZE + 8)
  return b
}

/** A whole BLOCK_STATUS chunk: context id and (length, flags) descriptors. */
export function encodeBlockStatus(flags: number, cookie: bigint, contextId: number, extents: {length: number; flags: number}[]): Buffer {
  const len = 4 + 8 * extents.length
  const b = Buffer.alloc(STRUCTURED_HEADER_SIZE + len)
  writeStructuredHeader(b, 0, flags, REPLY_TYPE_BLOCK_STATUS, cookie, len)
  b.writeUInt32BE(contextId >>> 0, STRUCTURED_HEADER_SIZE)
  let at = STRUCTURED_HEADER_SIZE + 4
  for (const e of extents) {
    b.writeUInt32BE(e.length >>> 0, at)
    b.writeUInt32BE(e.flags >>> 0, at + 4)
    at += 8
  }
  return b
}

/** A whole NBD_REPLY_TYPE_ERROR chunk (message truncated to fit the limits). */
export function encodeErrorChunk(flags: number, cookie: bigint, error: number, message = ''): Buffer {
  let m = Buffer.from(message, 'utf8')
  if (m.length > 1024) m = m.subarray(0, 1024)
  const len = 6 + m.length
  const b = Buffer.alloc(STRUCTURED_HEADER_SIZE + len)
  writeStructuredHeader(b, 0, flags, REPLY_TYPE_ERROR, cookie, len)
  b.writeUInt32BE(error >>> 0, STRUCTURED_HEADER_SIZE)
  b.writeUInt16BE(m.length, STRUCTURED_HEADER_SIZE + 4)
  m.copy(b, STRUCTURED_HEADER_SIZE + 6)
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
    magic: b.readUInt32BE(at),
    flags: b.readUInt16BE(at + 4),
    type: b.readUInt16BE(at + 6),
    cookie: b.readBigUInt64BE(at + 8),
    length: b.readUInt32BE(at + 16),
  }
}

/**
 * Split `data` (the bytes at absolute `offset`) into content chunks for a
 * structured read reply: runs of all-zero blocks of `granularity` bytes
 * (aligned to absolute offsets) at least `minHole` long become holes,
 * the rest data. Returns the pieces in order; their lengths sum to data.length.
 */
export function splitHoles(
  data: Buffer,
  offset: number,
  granularity = 4096,
  minHole = 4096,
): {offset: number; length: number; hole: boolean}[] {
  const out: {offset: number; length: number; hole: boolean}[] = []
  if (data.length === 0) return out
  const zeros = zeroBuffer(granularity)
  const push = (start: number, end: number, hole: boolean) => {
    const last = out[out.length - 1]
    if (last && last.hole === hole) last.length += end - start
    else out.push({offset: offset + start, length: end - start, hole})
  }
  let pos = 0
  let zeroStart = -1
  while (pos < data.length) {
    const abs = offset + pos
    const end = Math.min(data.length, pos + (granularity - (abs % granularity)))
    const zero =
      end - pos === granularity && data[pos] === 0 && data[end - 1] === 0 && zeros.compare(data, pos, end, 0, granularity) === 0
    if (zero) {
      if (zeroStart < 0) zeroStart = pos
    } else {
      if (zeroStart >= 0) {
        push(zeroStart, pos, pos - zeroStart >= minHole)
        zeroStart = -1
      }
      push(pos, end, false)
    }
    pos = end
  }
  if (zeroStart >= 0) push(zeroStart, pos, pos - zeroStart >= minHole)
  return out
}

/**
 * Write, in place at the start of `out`, what precedes `dataLength` bytes of
 * read data in a reply: a simple reply, or a structured OFFSET_DATA chunk
 * with the DONE flag. The cookie is copied from the raw request header
 * (`request`, as received). Returns the prefix length. Byte for byte the same
 * as encodeSimpleReply / encodeOffsetDataHeader, without allocating.
 */
export function writeReadReplyPrefix(out: Buffer, structured: boolean, request: Buffer, offset: number, dataLength: number): number {
  if (!structured) {
    out.writeUInt32BE(SIMPLE_REPLY_MAGIC, 0)
    out.writeUInt32BE(0, 4)
    request.copy(out, 8, 8, 16)
    return SIMPLE_REPLY_SIZE
  }
  out.writeUInt32BE(STRUCTURED_REPLY_MAGIC, 0)
  out.writeUInt16BE(REPLY_FLAG_DONE, 4)
  out.writeUInt16BE(REPLY_TYPE_OFFSET_DATA, 6)
  request.copy(out, 8, 8, 16)
  out.writeUInt32BE(dataLength + 8, 16)
  out.writeUInt32BE(Math.floor(offset / 2 ** 32), 20)
  out.writeUInt32BE(offset >>> 0, 24)
  return STRUCTURED_HEADER_SIZE + 8
}

export const HOLE_REPLY_SIZE = STRUCTURED_HEADER_SIZE + 12

/** Write at the start of `out` a whole structured reply saying the read range is a hole (OFFSET_HOLE, DONE), cookie copied from the request. */
export function writeHoleReply(out: Buffer, request: Buffer, offset: number, length: number): void {
  out.writeUInt32BE(STRUCTURED_REPLY_MAGIC, 0)
  out.writeUInt16BE(REPLY_FLAG_DONE, 4)
  out.writeUInt16BE(REPLY_TYPE_OFFSET_HOLE, 6)
  request.copy(out, 8, 8, 16)
  out.writeUInt32BE(12, 16)
  out.writeUInt32BE(Math.floor(offset / 2 ** 32), 20)
  out.writeUInt32BE(offset >>> 0, 24)
  out.writeUInt32BE(length >>> 0, 28)
}

/** Length of the prefix writeReadReplyPrefix writes. */
export function readReplyPrefixSize(structured: boolean): number {
  return structured ? STRUCTURED_HEADER_SIZE + 8 : SIMPLE_REPLY_SIZE
}

/** True when `data` (at image offset `offset`) holds a whole all-zero aligned block (what splitHoles would make a hole). */
export function hasZeroBlock(data: Buffer, offset: number, granularity = 4096, start = 0, end = data.length): boolean {
  const zeros = zeroBuffer(granularity)
  let pos = start + ((granularity - (offset % granularity)) % granularity)
  for (; pos + granularity <= end; pos += granularity) {
    if (data[pos] === 0 && data[pos + granularity - 1] === 0 && zeros.compare(data, pos, pos + granularity, 0, granularity) === 0) return true
  }
  return false
}

let zeroCache: Buffer | undefined
function zeroBuffer(n: number): Buffer {
  if (!zeroCache || zeroCache.length < n) zeroCache = Buffer.alloc(Math.max(n, 65536))
  return zeroCache // (compared by range: no view per call)
}
