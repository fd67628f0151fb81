/**
 * The NBD wire format of the fixed-newstyle handshake: where each field of
 * the greeting, the option requests and the option replies sits, with
 * encoders and decoders for both ends (the server, and clients in tests).
 * Written from the NBD protocol specification (doc/proto.md of the NBD
 * project); the values live in protocol.ts, transmission messages in
 * wire-transmission.ts. All integers are big-endian.
 */
import {IHAVEOPT, INFO_BLOCK_SIZE, INFO_EXPORT, MAX_STRING, NBDMAGIC, OPTION_REPLY_MAGIC, type INFO_DESCRIPTION, type INFO_NAME} from './protocol.js'

/** Server greeting: NBDMAGIC u64, IHAVEOPT u64, handshake flags u16. */
export const GREETING_SIZE = 18
/** The client's answer to the greeting: client flags u32. */
export const CLIENT_FLAGS_SIZE = 4

/** Option request: IHAVEOPT u64, option u32, data length u32, then the data. */
const OPT_MAGIC = 0
const OPT_OPTION = 8
const OPT_LENGTH = 12
export const OPTION_HEADER_SIZE = 16

/** Option reply: magic u64, option u32, reply type u32, data length u32, then the data. */
const OPTREP_MAGIC = 0
const OPTREP_OPTION = 8
const OPTREP_TYPE = 12
const OPTREP_LENGTH = 16
export const OPTION_REPLY_HEADER_SIZE = 20

/** Server greeting: NBDMAGIC, IHAVEOPT, 16-bit handshake flags. */
export function encodeGreeting(handshakeFlags: number): Buffer {
  const b = Buffer.alloc(GREETING_SIZE)
  b.writeBigUInt64BE(NBDMAGIC, 0)
  b.writeBigUInt64BE(IHAVEOPT, 8)
  b.writeUInt16BE(handshakeFlags & 0xffff, 16)
  return b
}

export function decodeClientFlags(b: Buffer): number {
  return b.readUInt32BE(0)
}

export interface OptionHeader {
  magic: bigint
  option: number
  length: number
}

export function decodeOptionHeader(b: Buffer): OptionHeader {
  if (b.length < OPTION_HEADER_SIZE) throw new RangeError('option header too short')
  return {magic: b.readBigUInt64BE(OPT_MAGIC), option: b.readUInt32BE(OPT_OPTION), length: b.readUInt32BE(OPT_LENGTH)}
}

/** Client side (tests): an option request. */
export function encodeOption(option: number, data: Buffer = Buffer.alloc(0)): Buffer {
  const b = Buffer.alloc(OPTION_HEADER_SIZE + data.length)
  b.writeBigUInt64BE(IHAVEOPT, OPT_MAGIC)
  b.writeUInt32BE(option >>> 0, OPT_OPTION)
  b.writeUInt32BE(data.length, OPT_LENGTH)
  data.copy(b, OPTION_HEADER_SIZE)
  return b
}

/** A fixed-newstyle option reply (header + data). */
export function encodeOptionReply(option: number, type: number, data: Buffer = Buffer.alloc(0)): Buffer {
  const b = Buffer.alloc(OPTION_REPLY_HEADER_SIZE + data.length)
  b.writeBigUInt64BE(OPTION_REPLY_MAGIC, OPTREP_MAGIC)
  b.writeUInt32BE(option >>> 0, OPTREP_OPTION)
  b.writeUInt32BE(type >>> 0, OPTREP_TYPE)
  b.writeUInt32BE(data.length, OPTREP_LENGTH)
  data.copy(b, OPTION_REPLY_HEADER_SIZE)
  return b
}

export interface OptionReply {
  magic: bigint
  option: number
  type: number
  length: number
}

export function decodeOptionReplyHeader(b: Buffer): OptionReply {
  return {
    magic: b.readBigUInt64BE(OPTREP_MAGIC),
    option: b.readUInt32BE(OPTREP_OPTION),
    type: b.readUInt32BE(OPTREP_TYPE),
    length: b.readUInt32BE(OPTREP_LENGTH),
  }
}

/** Reply to NBD_OPT_EXPORT_NAME: size u64, transmission flags u16, 124 zero bytes unless the client said NO_ZEROES. */
export function encodeExportNameReply(size: number, transmissionFlags: number, noZeroes: boolean): Buffer {
  const b = Buffer.alloc(10 + (noZeroes ? 0 : 124))
  b.writeBigUInt64BE(BigInt(size), 0)
  b.writeUInt16BE(transmissionFlags & 0xffff, 8)
  return b
}

/** NBD_REP_SERVER payload: name length u32, name, description. */
export function encodeRepServer(name: string, description = ''): Buffer {
  const n = Buffer.from(name, 'utf8')
  const d = Buffer.from(description, 'utf8')
  const b = Buffer.alloc(4 + n.length + d.length)
  b.writeUInt32BE(n.length, 0)
  n.copy(b, 4)
  d.copy(b, 4 + n.length)
  return b
}

/** NBD_INFO_EXPORT: type u16, size u64, transmission flags u16. */
export function encodeInfoExport(size: number, transmissionFlags: number): Buffer {
  const b = Buffer.alloc(12)
  b.writeUInt16BE(INFO_EXPORT, 0)
  b.writeBigUInt64BE(BigInt(size), 2)
  b.writeUInt16BE(transmissionFlags & 0xffff, 10)
  return b
}

/** NBD_INFO_NAME / NBD_INFO_DESCRIPTION: type u16, text. */
export function encodeInfoString(type: typeof INFO_NAME | typeof INFO_DESCRIPTION, text: string): Buffer {
  const s = Buffer.from(text, 'utf8')
  const b = Buffer.alloc(2 + s.length)
  b.writeUInt16BE(type, 0)
  s.copy(b, 2)
  return b
}

/** NBD_INFO_BLOCK_SIZE: type u16, minimum, preferred, maximum u32. */
export function encodeInfoBlockSize(minimum: number, preferred: number, maximum: number): Buffer {
  const b = Buffer.alloc(14)
  b.writeUInt16BE(INFO_BLOCK_SIZE, 0)
  b.writeUInt32BE(minimum >>> 0, 2)
  b.writeUInt32BE(preferred >>> 0, 6)
  b.writeUInt32BE(maximum >>> 0, 10)
  return b
}

/** NBD_REP_META_CONTEXT payload: context id u32, name. */
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

/** The export name (length u32, string) that starts `data`, where at least `tail` more bytes must follow; undefined when invalid. */
function decodeName(data: Buffer, tail: number): {name: string; end: number} | undefined {
  if (data.length < 4 + tail) return undefined
  const nameLen = data.readUInt32BE(0)
  if (nameLen > data.length - 4 - tail) return undefined
  const name = decodeString(data.subarray(4, 4 + nameLen))
  return name === undefined ? undefined : {name, end: 4 + nameLen}
}

export interface InfoRequest {
  name: string
  /** NBD_INFO_* types requested (duplicates removed). */
  infos: number[]
}

/** NBD_OPT_INFO / NBD_OPT_GO data (name length u32, name, count u16, types u16…); undefined when syntactically invalid. */
export function decodeInfoRequest(data: Buffer): InfoRequest | undefined {
  const head = decodeName(data, 2)
  if (!head) return undefined
  const count = data.readUInt16BE(head.end)
  if (data.length !== head.end + 2 + 2 * count) return undefined
  const infos: number[] = []
  for (let i = 0; i < count; i++) {
    const t = data.readUInt16BE(head.end + 2 + 2 * i)
    if (!infos.includes(t)) infos.push(t)
  }
  return {name: head.name, infos}
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

/** NBD_OPT_LIST/SET_META_CONTEXT data (name length u32, name, count u32, then length u32 + query each); undefined when invalid. */
export function decodeMetaContextRequest(data: Buffer): MetaContextRequest | undefined {
  const head = decodeName(data, 4)
  if (!head) return undefined
  const name = head.name
  let pos = head.end
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
