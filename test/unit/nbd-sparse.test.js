// Sparse data on the NBD wire (nbd/sparse.ts): holes in read replies, extent lists in block-status replies.
import {test} from 'uvu'
import * as assert from 'uvu/assert'
import {hasZeroBlock, normalizeExtents, splitHoles} from '../../dist/mount/nbd/sparse.js'
import {isZero} from '../../dist/mount/nbd/block-backend.js'

test('splitHoles: zero runs of whole aligned blocks become holes', () => {
  const data = Buffer.alloc(5 * 4096)
  data.fill(1, 0, 100) // block 0 data
  data.fill(2, 4 * 4096 + 10, 4 * 4096 + 11) // block 4 data
  assert.equal(splitHoles(data, 0), [
    {offset: 0, length: 4096, hole: false},
    {offset: 4096, length: 3 * 4096, hole: true},
    {offset: 4 * 4096, length: 4096, hole: false},
  ])
  // unaligned start: the partial first block stays data
  const z = Buffer.alloc(3 * 4096)
  assert.equal(splitHoles(z, 100), [
    {offset: 100, length: 3996, hole: false},
    {offset: 4096, length: 8192, hole: true},
    {offset: 12288, length: 100, hole: false},
  ])
  assert.equal(splitHoles(Buffer.alloc(4096), 0), [{offset: 0, length: 4096, hole: true}])
  assert.equal(splitHoles(Buffer.alloc(0), 0), [])
  // minHole: short zero runs are folded into data
  const d2 = Buffer.alloc(3 * 4096, 7)
  d2.fill(0, 4096, 8192)
  assert.equal(splitHoles(d2, 0, 4096, 8192), [{offset: 0, length: 3 * 4096, hole: false}])
  // coverage is exact for random layouts
  for (let round = 0; round < 50; round++) {
    const len = 1 + Math.floor(Math.random() * 40000)
    const off = Math.floor(Math.random() * 10000)
    const b = Buffer.alloc(len)
    for (let i = 0; i < 5; i++) b[Math.floor(Math.random() * len)] = 1
    const parts = splitHoles(b, off)
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
    const holes = splitHoles(data, offset, 4096, 4096).some((x) => x.hole)
    assert.is(hasZeroBlock(data, offset), holes, `${data.length} bytes at ${offset}`)
  }
})

test.run()
