// The NBD wire format (protocol.ts, wire-handshake.ts, wire-transmission.ts):
// encoders and decoders, pure functions, no sockets.
import {test} from 'uvu'
import {randomBytes, randomInt} from 'node:crypto'
import * as assert from 'uvu/assert'
import {P} from '../helpers/nbd-raw.js'

test('greeting: NBDMAGIC, IHAVEOPT, handshake flags', () => {
  const g = P.encodeGreeting(P.FLAG_FIXED_NEWSTYLE | P.FLAG_NO_ZEROES)
  assert.is(g.length, 18)
  assert.is(g.subarray(0, 8).toString('latin1'), 'NBDMAGIC')
  assert.is(g.subarray(8, 16).toString('latin1'), 'IHAVEOPT')
  assert.is(g.readUInt16BE(16), 3)
})

test('option request round trip and option reply layout', () => {
  const o = P.encodeOption(P.OPT_GO, Buffer.from('abc'))
  const h = P.decodeOptionHeader(o)
  assert.is(h.magic, P.IHAVEOPT)
  assert.is(h.option, 7)
  assert.is(h.length, 3)
  assert.is(o.subarray(16).toString(), 'abc')

  const r = P.encodeOptionReply(P.OPT_LIST, P.REP_ERR_UNSUP, Buffer.from('no'))
  assert.is(r.length, 22)
  const rh = P.decodeOptionReplyHeader(r)
  assert.is(rh.magic, 0x3e889045565a9n)
  assert.is(rh.option, 3)
  assert.is(rh.type, 0x80000001)
  assert.is(rh.length, 2)
})

test('constants match the specification', () => {
  assert.is(P.OPT_STRUCTURED_REPLY, 8)
  assert.is(P.OPT_LIST_META_CONTEXT, 9)
  assert.is(P.OPT_SET_META_CONTEXT, 10)
  assert.is(P.REP_ERR_UNKNOWN, 2 ** 31 + 6)
  assert.is(P.REP_ERR_TOO_BIG, 2 ** 31 + 9)
  assert.is(P.FLAG_SEND_CACHE, 1 << 10)
  assert.is(P.FLAG_CAN_MULTI_CONN, 1 << 8)
  assert.is(P.CMD_BLOCK_STATUS, 7)
  assert.is(P.REPLY_TYPE_ERROR, 32769)
  assert.is(P.REPLY_TYPE_ERROR_OFFSET, 32770)
  assert.is(P.EOVERFLOW, 75)
  assert.is(P.ESHUTDOWN, 108)
})

test('export-name reply: 124 zero bytes unless NO_ZEROES', () => {
  const a = P.encodeExportNameReply(1 << 20, 0x1234, false)
  assert.is(a.length, 134)
  assert.is(a.readBigUInt64BE(0), 1048576n)
  assert.is(a.readUInt16BE(8), 0x1234)
  assert.ok(a.subarray(10).every((b) => b === 0))
  assert.is(P.encodeExportNameReply(5, 1, true).length, 10)
})

test('NBD_REP_INFO payloads', () => {
  const e = P.encodeInfoExport(2 ** 40 + 3, 0x0101)
  assert.is(e.length, 12)
  assert.is(e.readUInt16BE(0), P.INFO_EXPORT)
  assert.is(e.readBigUInt64BE(2), 2n ** 40n + 3n)
  assert.is(e.readUInt16BE(10), 0x0101)
  const b = P.encodeInfoBlockSize(1, 4096, 32 << 20)
  assert.is(b.length, 14)
  assert.equal([b.readUInt16BE(0), b.readUInt32BE(2), b.readUInt32BE(6), b.readUInt32BE(10)], [3, 1, 4096, 33554432])
  const n = P.encodeInfoString(P.INFO_NAME, 'disk')
  assert.is(n.readUInt16BE(0), 1)
  assert.is(n.subarray(2).toString(), 'disk')
  const s = P.encodeRepServer('x', 'desc')
  assert.is(s.readUInt32BE(0), 1)
  assert.is(s.subarray(4).toString(), 'xdesc')
  const m = P.encodeMetaContext(1, 'base:allocation')
  assert.is(m.readUInt32BE(0), 1)
  assert.is(m.subarray(4).toString(), 'base:allocation')
})

test('decodeInfoRequest: valid, and every malformed variant rejected', () => {
  assert.equal(P.decodeInfoRequest(P.encodeInfoRequest('disk', [3, 1, 3])), {name: 'disk', infos: [3, 1]})
  assert.equal(P.decodeInfoRequest(P.encodeInfoRequest('', [])), {name: '', infos: []})
  assert.is(P.decodeInfoRequest(Buffer.alloc(5)), undefined, 'too short')
  const good = P.encodeInfoRequest('disk', [0])
  assert.is(P.decodeInfoRequest(good.subarray(0, good.length - 1)), undefined, 'truncated info list')
  assert.is(P.decodeInfoRequest(Buffer.concat([good, Buffer.alloc(1)])), undefined, 'trailing byte')
  const huge = Buffer.from(good)
  huge.writeUInt32BE(0xffffffff, 0)
  assert.is(P.decodeInfoRequest(huge), undefined, 'name length past the end')
  assert.is(P.decodeInfoRequest(P.encodeInfoRequest('a\0b', [])), undefined, 'NUL in name')
  const bad = P.encodeInfoRequest('ab', [])
  bad[4] = 0xff // invalid UTF-8
  assert.is(P.decodeInfoRequest(bad), undefined, 'invalid UTF-8')
})

test('decodeMetaContextRequest: valid, and malformed variants rejected', () => {
  const d = P.encodeMetaContextRequest('', ['base:allocation', 'qemu:dirty-bitmap:x'])
  assert.equal(P.decodeMetaContextRequest(d), {name: '', queries: ['base:allocation', 'qemu:dirty-bitmap:x']})
  assert.equal(P.decodeMetaContextRequest(P.encodeMetaContextRequest('n', [])), {name: 'n', queries: []})
  assert.is(P.decodeMetaContextRequest(d.subarray(0, d.length - 1)), undefined, 'truncated')
  assert.is(P.decodeMetaContextRequest(Buffer.concat([d, Buffer.alloc(2)])), undefined, 'trailing')
  const many = P.encodeMetaContextRequest('', [])
  many.writeUInt32BE(0x7fffffff, 4)
  assert.is(P.decodeMetaContextRequest(many), undefined, 'query count larger than the data')
  const longq = P.encodeMetaContextRequest('', ['x'])
  longq.writeUInt32BE(1000, 8)
  assert.is(P.decodeMetaContextRequest(longq), undefined, 'query length past the end')
  assert.is(P.decodeMetaContextRequest(Buffer.alloc(3)), undefined)
})

test('decodeString limits', () => {
  assert.is(P.decodeString(Buffer.from('héllo')), 'héllo')
  assert.is(P.decodeString(Buffer.alloc(4097, 0x61)), undefined)
  assert.is(P.decodeString(Buffer.alloc(4096, 0x61))?.length, 4096)
  assert.is(P.decodeString(Buffer.from([0xc3])), undefined)
})

test('request header round trip, with 64-bit offsets beyond 2^53', () => {
  const b = P.encodeRequest(P.CMD_WRITE, P.CMD_FLAG_FUA, 0xdeadbeefcafef00dn, 12345, 4096)
  assert.is(b.length, 28)
  const h = P.decodeRequestHeader(b)
  assert.equal(
    {magic: h.magic, flags: h.flags, type: h.type, cookie: h.cookie, offset: h.offset, length: h.length},
    {magic: P.REQUEST_MAGIC, flags: 1, type: 1, cookie: 0xdeadbeefcafef00dn, offset: 12345, length: 4096},
  )
  const far = P.decodeRequestHeader(P.encodeRequest(P.CMD_READ, 0, 1n, 2n ** 63n + 5n, 1))
  assert.is(far.offset, -1, 'unsafe offsets are flagged, not rounded')
  assert.is(far.offset64, 2n ** 63n + 5n)
  assert.throws(() => P.decodeRequestHeader(Buffer.alloc(27)))
})

test('simple and structured reply encodings', () => {
  const s = P.encodeSimpleReply(P.EINVAL, 7n)
  assert.equal([s.readUInt32BE(0), s.readUInt32BE(4), s.readBigUInt64BE(8)], [P.SIMPLE_REPLY_MAGIC, 22, 7n])

  const d = P.encodeOffsetDataHeader(0, 9n, 4096, 512)
  const dh = P.decodeStructuredHeader(d)
  assert.equal(dh, {magic: P.STRUCTURED_REPLY_MAGIC, flags: 0, type: P.REPLY_TYPE_OFFSET_DATA, cookie: 9n, length: 520})
  assert.is(d.readBigUInt64BE(20), 4096n)

  const hole = P.encodeOffsetHole(P.REPLY_FLAG_DONE, 9n, 8192, 4096)
  assert.equal(P.decodeStructuredHeader(hole), {magic: P.STRUCTURED_REPLY_MAGIC, flags: 1, type: 2, cookie: 9n, length: 12})
  assert.equal([hole.readBigUInt64BE(20), hole.readUInt32BE(28)], [8192n, 4096])

  const bs = P.encodeBlockStatus(1, 3n, 1, [{length: 4096, flags: 3}, {length: 512, flags: 0}])
  assert.is(P.decodeStructuredHeader(bs).length, 4 + 16)
  assert.equal([bs.readUInt32BE(20), bs.readUInt32BE(24), bs.readUInt32BE(28), bs.readUInt32BE(32), bs.readUInt32BE(36)], [1, 4096, 3, 512, 0])

  const e = P.encodeErrorChunk(1, 3n, P.EIO, 'boom')
  const eh = P.decodeStructuredHeader(e)
  assert.is(eh.type, P.REPLY_TYPE_ERROR)
  assert.is(eh.length, 10)
  assert.equal([e.readUInt32BE(20), e.readUInt16BE(24), e.subarray(26).toString()], [5, 4, 'boom'])
  assert.is(P.decodeStructuredHeader(P.encodeErrorChunk(1, 1n, 5, 'x'.repeat(10000))).length, 6 + 1024, 'message capped')

  const none = P.encodeStructuredDone(4n)
  assert.equal(P.decodeStructuredHeader(none), {magic: P.STRUCTURED_REPLY_MAGIC, flags: 1, type: 0, cookie: 4n, length: 0})
})

test('fast-path reply prefixes are byte for byte the general encoders, for offsets past 4 GiB too', () => {
  for (const offset of [0, 4096, 5 * 2 ** 32 + 77, 2 ** 52 + 4096]) {
    const raw = Buffer.alloc(P.REQUEST_HEADER_SIZE)
    raw.writeUInt32BE(P.REQUEST_MAGIC, 0)
    raw.writeUInt16BE(P.CMD_READ, 6)
    raw.writeBigUInt64BE(0xfedcba9876543210n, 8)
    raw.writeBigUInt64BE(BigInt(offset), 16)
    raw.writeUInt32BE(4096, 24)
    const h = P.decodeRequestHeader(raw)
    const s = Buffer.alloc(40, 0xaa)
    assert.is(P.writeReadReplyPrefix(s, true, raw, offset, 4096), P.readReplyPrefixSize(true))
    assert.equal(s.subarray(0, 28), P.encodeOffsetDataHeader(P.REPLY_FLAG_DONE, h.cookie, h.offset, 4096))
    const p = Buffer.alloc(40, 0xaa)
    assert.is(P.writeReadReplyPrefix(p, false, raw, offset, 4096), P.readReplyPrefixSize(false))
    assert.equal(p.subarray(0, 16), P.encodeSimpleReply(0, h.cookie))
    const hole = Buffer.alloc(P.HOLE_REPLY_SIZE)
    P.writeHoleReply(hole, raw, offset, 4096)
    assert.equal(hole, P.encodeOffsetHole(P.REPLY_FLAG_DONE, h.cookie, h.offset, 4096))
  }
})

/** A random request header; magic, type and offset drawn to hit the interesting cases often. */
function randomRequest() {
  const raw = randomBytes(P.REQUEST_HEADER_SIZE)
  if (randomInt(4) > 0) raw.writeUInt32BE(P.REQUEST_MAGIC, 0)
  if (randomInt(2) > 0) raw.writeUInt16BE(randomInt(2) ? P.CMD_READ : randomInt(10), 6)
  const edges = [0n, 4096n, 2n ** 32n - 1n, 2n ** 32n, 2n ** 53n - 1n, 2n ** 53n, 2n ** 64n - 1n]
  if (randomInt(2) > 0) raw.writeBigUInt64BE(edges[randomInt(edges.length)], 16)
  else if (randomInt(2) > 0) raw.writeBigUInt64BE(BigInt(randomInt(2 ** 47)) * 4096n, 16)
  return raw
}

test('random request headers: the read path accessors and decodeRequestHeader agree, and encodeRequest rebuilds them', () => {
  for (let i = 0; i < 5000; i++) {
    const raw = randomRequest()
    const what = raw.toString('hex')
    const h = P.decodeRequestHeader(raw)
    // independent of the module: the fields by their offsets in the specification
    assert.equal(
      [h.magic, h.flags, h.type, h.cookie, h.offset64, h.length],
      [raw.readUInt32BE(0), raw.readUInt16BE(4), raw.readUInt16BE(6), raw.readBigUInt64BE(8), raw.readBigUInt64BE(16), raw.readUInt32BE(24)],
      what,
    )
    assert.is(h.offset, h.offset64 <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(h.offset64) : -1, what)
    assert.is(P.requestFlags(raw), h.flags, what)
    assert.is(P.requestOffset(raw), h.offset, what)
    assert.is(P.requestLength(raw), h.length, what)
    assert.is(P.isReadRequest(raw), h.magic === P.REQUEST_MAGIC && h.type === P.CMD_READ, what)
    // inside a larger buffer
    const pad = randomInt(1, 64)
    assert.equal(P.decodeRequestHeader(Buffer.concat([randomBytes(pad), raw, randomBytes(3)]), pad), h, what)
    if (h.magic === P.REQUEST_MAGIC) assert.equal(P.encodeRequest(h.type, h.flags, h.cookie, h.offset64, h.length), raw, what)
  }
})

test('random replies: the read path writers are byte for byte the general encoders, which decode back', () => {
  const out = Buffer.alloc(64)
  for (let i = 0; i < 5000; i++) {
    const raw = randomRequest()
    const cookie = raw.readBigUInt64BE(8)
    const offset = randomInt(2) ? randomInt(2 ** 48 - 1) : Number.MAX_SAFE_INTEGER - randomInt(2 ** 20)
    const length = randomInt(2 ** 32 - 9)
    const what = `cookie ${cookie} offset ${offset} length ${length}`
    out.fill(0xaa)
    assert.is(P.writeReadReplyPrefix(out, false, raw, offset, length), P.readReplyPrefixSize(false))
    assert.equal(out.subarray(0, P.readReplyPrefixSize(false)), P.encodeSimpleReply(0, cookie), what)
    out.fill(0xaa)
    assert.is(P.writeReadReplyPrefix(out, true, raw, offset, length), P.readReplyPrefixSize(true))
    const data = P.encodeOffsetDataHeader(P.REPLY_FLAG_DONE, cookie, offset, length)
    assert.equal(out.subarray(0, P.readReplyPrefixSize(true)), data, what)
    assert.equal(P.decodeStructuredHeader(data), {magic: P.STRUCTURED_REPLY_MAGIC, flags: P.REPLY_FLAG_DONE, type: P.REPLY_TYPE_OFFSET_DATA, cookie, length: length + 8}, what)
    assert.is(data.readBigUInt64BE(P.STRUCTURED_HEADER_SIZE), BigInt(offset), what)
    out.fill(0xaa)
    P.writeHoleReply(out, raw, offset, length)
    const hole = P.encodeOffsetHole(P.REPLY_FLAG_DONE, cookie, offset, length)
    assert.equal(out.subarray(0, P.HOLE_REPLY_SIZE), hole, what)
    assert.equal([hole.readBigUInt64BE(20), hole.readUInt32BE(28)], [BigInt(offset), length], what)
  }
})

test('random option requests and replies round trip', () => {
  for (let i = 0; i < 1000; i++) {
    const option = randomInt(2 ** 32 - 1)
    const type = randomInt(2 ** 32 - 1)
    const data = randomBytes(randomInt(100))
    const o = P.encodeOption(option, data)
    assert.equal(P.decodeOptionHeader(o), {magic: P.IHAVEOPT, option, length: data.length})
    assert.equal(o.subarray(P.OPTION_HEADER_SIZE), data)
    const r = P.encodeOptionReply(option, type, data)
    assert.equal(P.decodeOptionReplyHeader(r), {magic: P.OPTION_REPLY_MAGIC, option, type, length: data.length})
    assert.equal(r.subarray(P.OPTION_REPLY_HEADER_SIZE), data)
    const flags = randomInt(2 ** 32 - 1)
    const f = Buffer.alloc(P.CLIENT_FLAGS_SIZE)
    f.writeUInt32BE(flags)
    assert.is(P.decodeClientFlags(f), flags)
  }
})

test.run()
