// Compressed objects (docs/FORMAT.md "Compressed objects"): a chunk rests and
// travels raw or as one zstd frame; readers decode, then verify against the
// id of the raw bytes. Both zstd backends (the native module and the pure-JS
// fallback, run in a child with VMI_ZSTD=js) must read every frame the writer
// makes, and both must refuse the same bad frames.
import {execFileSync} from 'node:child_process'
import {randomBytes} from 'node:crypto'
import {test} from 'uvu'
import * as assert from 'uvu/assert'
import {hash} from '../../dist/store/hash.js'
import {admitObject, decodeObject, encodeChunk, isFrame, openObject, storedForm, ZSTD_MAGIC} from '../../dist/store/object-encoding.js'
import {canCompress, frameContentSize, zstdBackend, zstdCompress, zstdDecompress} from '../../dist/store/zstd.js'

const CHUNK = 131072
const text = () => Buffer.from('vmi compressed objects '.repeat(CHUNK / 23 + 1)).subarray(0, CHUNK)

test('the native module compresses here (the install builds it; the fallback only reads)', () => {
  assert.is(zstdBackend(), 'native')
  assert.ok(canCompress())
})

test('a compressible chunk is stored as a frame that states its size and opens to the chunk', () => {
  const raw = text()
  const id = hash(raw)
  const stored = encodeChunk(raw)
  assert.ok(isFrame(stored))
  assert.ok(stored.length < raw.length / 10, `${stored.length} bytes`)
  assert.is(frameContentSize(stored), CHUNK)
  const o = openObject(id, stored, CHUNK)
  assert.is(o.encoded, true)
  assert.ok(o.data.equals(raw))
  assert.ok(decodeObject(stored).equals(raw))
})

test('an incompressible chunk stays raw; one that begins with the magic becomes a frame anyway', () => {
  const random = randomBytes(CHUNK)
  random[0] = 0 // not the magic by chance
  assert.ok(encodeChunk(random).equals(random))
  const magic = Buffer.concat([ZSTD_MAGIC, randomBytes(CHUNK - 4)])
  const stored = encodeChunk(magic)
  assert.ok(isFrame(stored))
  assert.ok(stored.length > magic.length, 'a frame of random bytes is larger than they are')
  assert.ok(stored.length <= magic.length + 4096, 'within MAX_STORED_OBJECT')
  const o = openObject(hash(magic), stored)
  assert.is(o.encoded, true)
  assert.ok(o.data.equals(magic))
})

test('a raw chunk written by format 1 that begins with the magic still opens (hashed as it is)', () => {
  const v1 = Buffer.concat([ZSTD_MAGIC, Buffer.alloc(CHUNK - 4, 7)])
  const o = openObject(hash(v1), v1, CHUNK)
  assert.is(o.encoded, false)
  assert.ok(o.data.equals(v1))
  // and an upload of it is stored as a frame (a format 2 store holds no raw chunk with the magic)
  const a = admitObject(hash(v1), v1)
  assert.ok(isFrame(a.store))
  assert.ok(openObject(hash(v1), a.store).data.equals(v1))
  assert.ok(storedForm(v1, {data: v1, encoded: false}).length < v1.length)
})

test('wrong bytes under an id, compressed or not, are a mismatch naming what they hash to', () => {
  const raw = text()
  const other = Buffer.from(raw)
  other[1000] ^= 1
  const frame = zstdCompress(other)
  const o = openObject(hash(raw), frame)
  assert.is(o.data, undefined)
  assert.is(o.actual, hash(other))
  assert.is(admitObject(hash(raw), frame).mismatch, hash(other))
  // the right chunk at the wrong length (a manifest says another length)
  assert.ok(openObject(hash(raw), zstdCompress(raw), CHUNK - 1).actual)
})

test('a frame of zeros is refused as a zero chunk, after decoding', () => {
  const zeros = Buffer.alloc(CHUNK)
  const a = admitObject(hash(zeros), zstdCompress(zeros))
  assert.is(a.zero, true)
})

test('bad frames are refused, never decoded past their stated size', () => {
  const raw = text()
  const frame = zstdCompress(raw)
  // cut
  assert.throws(() => zstdDecompress(frame.subarray(0, frame.length - 5), CHUNK))
  // a stated size over the limit: refused from the header alone
  assert.throws(() => zstdDecompress(frame, CHUNK - 1), /1 to/)
  // trailing bytes
  assert.throws(() => zstdDecompress(Buffer.concat([frame, Buffer.from([1, 2, 3])]), CHUNK))
  // a frame without a content size (a streaming writer's): refused
  const noSize = Buffer.from(frame)
  noSize[4] &= 0x1f // frame content size flag 0, not single-segment
  assert.is(frameContentSize(noSize), undefined)
  assert.throws(() => zstdDecompress(noSize, CHUNK), /content size/)
  // such bytes, opened as an object, are a mismatch (hashed as they are)
  assert.ok(openObject(hash(raw), noSize).actual)
})

test('frameContentSize reads each field width of the header', () => {
  for (const n of [1, 200, 255, 256, 300, 65791, 65792, 131072, 4194304]) {
    const raw = Buffer.alloc(n, 'a')
    assert.is(frameContentSize(zstdCompress(raw)), n, `${n} bytes`)
  }
})

test('the pure-JS fallback decodes the native frames, and writes raw', () => {
  const raw = text()
  const frame = zstdCompress(raw)
  const script = `
    import {zstdBackend, canCompress} from './dist/store/zstd.js'
    import {openObject, encodeChunk} from './dist/store/object-encoding.js'
    const frame = Buffer.from(process.argv[1], 'base64')
    const o = openObject(process.argv[2], frame)
    const raw = Buffer.from('x'.repeat(4096))
    console.log(JSON.stringify({backend: zstdBackend(), canCompress: canCompress(), encoded: o.encoded, length: o.data?.length, writesRaw: encodeChunk(raw).equals(raw)}))
  `
  const out = execFileSync(process.execPath, ['--input-type=module', '-e', script, frame.toString('base64'), hash(raw)], {
    cwd: new URL('../..', import.meta.url),
    env: {...process.env, VMI_ZSTD: 'js'},
    encoding: 'utf8',
  })
  assert.equal(JSON.parse(out), {backend: 'js', canCompress: false, encoded: true, length: CHUNK, writesRaw: true})
})

test.run()
