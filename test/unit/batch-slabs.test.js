// An object batch laid into slabs (peer/server/batch-slabs.ts) and stored by
// the writer threads a slab at a time (ObjectWriter.putSlab): every frame
// lands whole in one slab, each object is checked on its own, outcomes come
// back in order, and a store that cannot be written fails the slab.
import {test} from 'uvu'
import * as assert from 'uvu/assert'
import {randomBytes} from 'node:crypto'
import {mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {ObjectWriter} from '../../dist/store/object-writer.js'
import {LocalStore} from '../../dist/store/local-store.js'
import {hash} from '../../dist/store/hash.js'
import {StoreError} from '../../dist/errors.js'
import {canCompress, zstdCompress} from '../../dist/store/zstd.js'
import {BatchParser, batchFrameHead} from '../../dist/peer/wire.js'
import {SLAB_BYTES, SlabDealer} from '../../dist/peer/server/batch-slabs.js'

async function fixture() {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'vmi-slab-'))
  const store = await LocalStore.open(path.join(dir, 'store'))
  return {dir, store, cleanup: () => rmSync(dir, {recursive: true, force: true})}
}

/** `objects` ({id, data}) one after another in one buffer, as a slab. */
function slabOf(objects) {
  const buffer = new ArrayBuffer(objects.reduce((n, o) => n + o.data.length, 0))
  const offsets = []
  let at = 0
  for (const o of objects) {
    Buffer.from(buffer).set(o.data, at)
    offsets.push(at)
    at += o.data.length
  }
  return {buffer, ids: objects.map((o) => o.id), offsets, lengths: objects.map((o) => o.data.length)}
}

test('putSlab: each object checked and stored on its own, one outcome each in order; the memory comes back', async () => {
  const fx = await fixture()
  const w = new ObjectWriter(fx.store.root)
  try {
    const a = randomBytes(4096)
    const b = Buffer.alloc(8192, 'vmi slab text ')
    const wrong = randomBytes(4096)
    const objects = [
      {id: hash(a), data: a},
      {id: hash(a), data: a}, // the same again: present
      {id: hash(randomBytes(16)), data: wrong}, // bytes that do not hash to the id
      {id: hash(Buffer.alloc(4096)), data: Buffer.alloc(4096)}, // zeros, never stored
      {id: hash(b), data: canCompress() ? zstdCompress(b) : b}, // a frame when this vmi compresses: decoded, then checked
    ]
    const out = await w.putSlab(slabOf(objects))
    assert.equal(out, ['stored', 'present', {mismatch: hash(wrong)}, {zero: true}, 'stored'])
    assert.ok(readFileSync(path.join(fx.store.root, 'objects', hash(a).slice(0, 2), hash(a).slice(2))).equals(a))
    assert.ok(fx.store.hasObjectSync(hash(b)))
    assert.not.ok(fx.store.hasObjectSync(objects[2].id), 'nothing under the id the wrong bytes claimed')
    assert.is(w.backlogBytes, 0)
    // the slab's memory is kept for the next one (takeBuffer of the same size class)
    const again = w.takeBuffer(objects.reduce((n, o) => n + o.data.length, 0))
    assert.ok(again.length > 0)
    // a store that cannot be written: the slab fails with a StoreError naming its first chunk
    rmSync(fx.store.layout.tmpDir, {recursive: true, force: true})
    writeFileSync(fx.store.layout.tmpDir, 'x')
    const c = randomBytes(4096)
    const d = randomBytes(4096)
    const err = await w.putSlab(slabOf([{id: hash(c), data: c}, {id: hash(d), data: d}])).catch((e) => e)
    assert.instance(err, StoreError)
    assert.match(err.message, hash(c))
    assert.is(w.backlogBytes, 0)
  } finally {
    await w.close()
    fx.cleanup()
  }
})

test('SlabDealer: a batch cut into pieces at random lands frame by frame in slabs dealt to the writers in turn; a frame larger than a slab gets one of its own', async () => {
  const fx = await fixture()
  const writers = [new ObjectWriter(fx.store.root), new ObjectWriter(fx.store.root)]
  try {
    const sizes = [...Array.from({length: 40}, (_, i) => 100_000 + i * 1000), SLAB_BYTES + 12345, 7, 65536]
    const objects = sizes.map((n) => {
      const data = randomBytes(n)
      return {id: hash(data), data}
    })
    const body = Buffer.concat(objects.flatMap((o) => [batchFrameHead(o.id, o.data.length), o.data]))
    const slabs = []
    const dealer = new SlabDealer(writers, (ids, outcomes) => slabs.push({ids, outcomes}))
    const parser = new BatchParser(
      (id, data) => dealer.frame(id, data),
      (n) => dealer.alloc(n),
    )
    let at = 0
    while (at < body.length) {
      const n = 1 + Math.floor(Math.random() * 70_000)
      parser.push(body.subarray(at, at + n))
      at += n
    }
    parser.end()
    dealer.flush()
    dealer.flush() // nothing more to hand over: no empty slab
    assert.equal(
      slabs.flatMap((s) => s.ids),
      objects.map((o) => o.id),
      'every frame once, in order',
    )
    assert.ok(slabs.length >= 3, `${slabs.length} slabs`)
    assert.ok(slabs.some((s) => s.ids.length === 1 && s.ids[0] === objects[40].id), 'the frame larger than a slab alone in its own')
    const outcomes = (await Promise.all(slabs.map((s) => s.outcomes))).flat()
    assert.equal(outcomes, objects.map(() => 'stored'))
    for (const o of objects) assert.ok(readFileSync(path.join(fx.store.root, 'objects', o.id.slice(0, 2), o.id.slice(2))).equals(o.data), `${o.data.length} bytes stored whole`)
  } finally {
    await Promise.all(writers.map((w) => w.close()))
    fx.cleanup()
  }
})

test.run()
