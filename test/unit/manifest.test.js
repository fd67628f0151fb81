import {test} from 'uvu'
import * as assert from 'uvu/assert'
import {hash} from '../../dist/store/hash.js'
import {
  canonicalJson,
  ChunkListBuilder,
  decodeManifest,
  encodeManifest,
  expandChunks,
  isValidChunkSize,
  uniqueChunkIds,
} from '../../dist/store/manifest.js'

const A = 'a'.repeat(64)
const B = 'b'.repeat(64)

function manifest(extra = {}) {
  return {
    version: 1,
    virtualSize: 5 * 65536,
    chunkSize: 65536,
    chunks: [A, 2, B, A],
    sourceFormat: 'raw',
    created: '2026-01-01T00:00:00.000Z',
    ...extra,
  }
}

test('canonical JSON sorts keys at every depth and has no whitespace', () => {
  assert.is(canonicalJson({b: 1, a: {d: [1, {z: 1, y: 2}], c: 'x'}}), '{"a":{"c":"x","d":[1,{"y":2,"z":1}]},"b":1}')
  assert.is(canonicalJson({a: undefined, b: null}), '{"b":null}')
})

test('encode → decode round trip; id is the BLAKE3 of the bytes', () => {
  const {bytes, id} = encodeManifest(manifest({annotations: {k: 'v'}, parent: B}))
  assert.is(id, hash(bytes))
  const m = decodeManifest(bytes, id)
  assert.equal(m.chunks, [A, 2, B, A])
  assert.is(m.parent, B)
  assert.equal(m.annotations, {k: 'v'})
})

test('decode refuses bytes that do not match the expected id', () => {
  const {bytes} = encodeManifest(manifest())
  assert.throws(() => decodeManifest(bytes, 'c'.repeat(64)), /does not match its id/)
})

test('decode refuses non-canonical JSON', () => {
  const {bytes} = encodeManifest(manifest())
  const pretty = Buffer.from(JSON.stringify(JSON.parse(bytes.toString()), null, 2))
  assert.throws(() => decodeManifest(pretty), /canonical/)
})

test('validation rejects wrong counts, bad ids, bad sizes and unknown fields', () => {
  const bad = [
    [{chunks: [A, 2, B]}, /cover 4 chunks/],
    [{chunks: [A, 2, B, A, A]}, /more than|lists/],
    [{chunks: [A, 0, B, A, A]}, /neither an id/],
    [{chunks: ['A'.repeat(64), 2, B, A]}, /not 64 lowercase hex/],
    [{chunks: [A, 1, 1, B, A]}, /two zero runs/],
    [{chunkSize: 65537}, /power of two/],
    [{chunkSize: 32768}, /power of two/],
    [{virtualSize: 5 * 65536 + 1}, /multiple of 512/],
    [{virtualSize: -512}, /multiple of 512/],
    [{version: 2}, /newer than this vmi/],
    [{extra: 1}, /unknown field/],
    [{parent: 'xyz'}, /parent/],
    [{annotations: {k: 5}}, /not a string/],
    [{created: 'yesterday'}, /created/],
  ]
  for (const [extra, re] of bad) assert.throws(() => encodeManifest(manifest(extra)), re, JSON.stringify(extra))
})

test('an absurd chunk count is refused before expansion', () => {
  // 1 PiB + 512 is over the limit; a huge zero run is checked against the size
  assert.throws(() => encodeManifest(manifest({virtualSize: 2 ** 50 + 512})), /up to 1 PiB/)
  assert.throws(() => encodeManifest(manifest({chunks: [A, 2 ** 40, B, A]})), /cover/)
})

test('ChunkListBuilder run-length encodes zero chunks; expandChunks inverts it', () => {
  const b = new ChunkListBuilder()
  for (const id of [null, null, A, null, B, B, null, null, null]) b.push(id)
  assert.equal(b.entries, [2, A, 1, B, B, 3])
  assert.is(b.count, 9)
  assert.equal(expandChunks({chunks: b.entries}), [null, null, A, null, B, B, null, null, null])
  assert.equal([...uniqueChunkIds({chunks: b.entries})].sort(), [A, B])
})

test('chunk sizes: powers of two from 64 KiB to 4 MiB', () => {
  for (const n of [65536, 131072, 262144, 1 << 20, 4 << 20]) assert.ok(isValidChunkSize(n), String(n))
  for (const n of [0, 4096, 32768, 65535, 8 << 20, 3 * 65536, 1.5]) assert.not.ok(isValidChunkSize(n), String(n))
})

test.run()
