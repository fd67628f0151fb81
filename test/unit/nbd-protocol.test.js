// NBD wire encoding/decoding helpers (pure functions, no sockets).
import {test} from 'uvu'
import * as assert from 'uvu/assert'
import * as P from '../../dist/mount/nbd/wire.js'
import {normalizeExtents} from '../../dist/mount/nbd/server.js'
import {MemoryBackend, isZero, zeroExtents} from '../../dist/mount/block-backend.js'

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

test('errno mapping', () => {
  assert.is(P.errnoToNbd('EPERM'), 1)
  assert.is(P.errnoToNbd('ENOSPC'), 28)
  assert.is(P.errnoToNbd('EDQUOT'), 28)
  assert.is(P.errnoToNbd('EINVAL'), 22)
  assert.is(P.errnoToNbd('EIO'), 5)
  assert.is(P.errnoToNbd('whatever'), 5)
  assert.is(P.errorToNbd(Object.assign(new Error('x'), {errno: 'ENOSPC'})), 28)
  assert.is(P.errorToNbd(Object.assign(new Error('x'), {code: 'EROFS'})), 1)
  assert.is(P.errorToNbd(new Error('plain')), 5)
  assert.is(P.errorToNbd(undefined), 5)
  assert.is(P.errorToNbd('string'), 5)
})

test('splitHoles: zero runs of whole aligned blocks become holes', () => {
  const data = Buffer.alloc(5 * 4096)
  data.fill(1, 0, 100) // block 0 data
  data.fill(2, 4 * 4096 + 10, 4 * 4096 + 11) // block 4 data
  assert.equal(P.splitHoles(data, 0), [
    {offset: 0, length: 4096, hole: false},
    {offset: 4096, length: 3 * 4096, hole: true},
    {offset: 4 * 4096, length: 4096, hole: false},
  ])
  // unaligned start: the partial first block stays data
  const z = Buffer.alloc(3 * 4096)
  assert.equal(P.splitHoles(z, 100), [
    {offset: 100, length: 3996, hole: false},
    {offset: 4096, length: 8192, hole: true},
    {offset: 12288, length: 100, hole: false},
  ])
  assert.equal(P.splitHoles(Buffer.alloc(4096), 0), [{offset: 0, length: 4096, hole: true}])
  assert.equal(P.splitHoles(Buffer.alloc(0), 0), [])
  // minHole: short zero runs are folded into data
  const d2 = Buffer.alloc(3 * 4096, 7)
  d2.fill(0, 4096, 8192)
  assert.equal(P.splitHoles(d2, 0, 4096, 8192), [{offset: 0, length: 3 * 4096, hole: false}])
  // coverage is exact for random layouts
  for (let round = 0; round < 50; round++) {
    const len = 1 + Math.floor(Math.random() * 40000)
    const off = Math.floor(Math.random() * 10000)
    const b = Buffer.alloc(len)
    for (let i = 0; i < 5; i++) b[Math.floor(Math.random() * len)] = 1
    const parts = P.splitHoles(b, off)
    let pos = off
    for (const p of parts) {
      assert.is(p.offset, pos)
      assert.ok(p.length > 0)
      if (p.hole) assert.ok(isZero(b.subarray(p.offset - off, p.offset - off + p.length)))
      pos += p.length
    }
    assert.is(pos, off + len)
  }
})

test('normalizeExtents: clamps, merges, masks, never empty', () => {
  assert.equal(normalizeExtents([{length: 100, flags: 3}, {length: 100, flags: 3}, {length: 50, flags: 0}], 180, 10), [
    {length: 180, flags: 3},
  ])
  assert.equal(normalizeExtents([{length: 10, flags: 0xff}, {length: 10, flags: 0}], 100, 10), [
    {length: 10, flags: 3},
    {length: 10, flags: 0},
  ])
  assert.equal(normalizeExtents([], 4096, 10), [{length: 4096, flags: 0}])
  assert.equal(normalizeExtents([{length: 0, flags: 1}], 4096, 10), [{length: 4096, flags: 0}])
  assert.equal(normalizeExtents([{length: NaN, flags: 1}], 4096, 10), [{length: 4096, flags: 0}])
  assert.equal(normalizeExtents([{length: 5, flags: 1}, {length: 5, flags: 0}, {length: 5, flags: 1}], 100, 1), [{length: 5, flags: 1}])
})

test('zeroExtents and MemoryBackend basics', async () => {
  const b = Buffer.alloc(16384)
  b[5000] = 1
  assert.equal(zeroExtents(b, 0), [
    {length: 4096, flags: 3},
    {length: 4096, flags: 0},
    {length: 8192, flags: 3},
  ])
  const m = new MemoryBackend(b)
  assert.equal(await m.blockStatus(0, 16384), zeroExtents(b, 0))
  await m.write(0, Buffer.from('hi'))
  assert.is((await m.read(0, 2)).toString(), 'hi')
  await m.writeZeroes(0, 2)
  assert.is((await m.read(0, 2)).toString('hex'), '0000')
  let rangeErr
  try {
    await m.read(16000, 1000)
  } catch (e) {
    rangeErr = e
  }
  assert.is(rangeErr?.errno, 'EINVAL')
  const ro = new MemoryBackend(4096, {readOnly: true})
  let err
  try {
    await ro.write(0, Buffer.alloc(1))
  } catch (e) {
    err = e
  }
  assert.is(err?.errno, 'EPERM')
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

test('hasZeroBlock finds an aligned all-zero 4 KiB block exactly when splitHoles would make a hole', () => {
  const cases = [
    [Buffer.alloc(8192, 1), 0],
    [Buffer.concat([Buffer.alloc(4096, 1), Buffer.alloc(4096)]), 0],
    [Buffer.alloc(4096), 2048], // zeros, but not one aligned block
    [Buffer.alloc(6144), 2048], // one aligned block inside
    [Buffer.concat([Buffer.alloc(4095), Buffer.from([1])]), 0],
    [Buffer.alloc(512), 0],
  ]
  for (const [data, offset] of cases) {
    const holes = P.splitHoles(data, offset, 4096, 4096).some((x) => x.hole)
    assert.is(P.hasZeroBlock(data, offset), holes, `${data.length} bytes at ${offset}`)
  }
})

test.run()
