// Segments of a raw-file import: on the calling thread (processSegment) and
// on the writer thread (ObjectWriter.segment), with the same results and the
// same kinds of failure.
import {test} from 'uvu'
import * as assert from 'uvu/assert'
import {randomBytes} from 'node:crypto'
import {mkdtempSync, openSync, closeSync, rmSync, writeFileSync} from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {processSegment, SegmentReadError} from '../../dist/store/import-segment.js'
import {ObjectWriter} from '../../dist/store/object-writer.js'
import {LocalStore} from '../../dist/store/local-store.js'
import {hash} from '../../dist/store/hash.js'
import {StoreError} from '../../dist/errors.js'
import {importImage} from '../../dist/store/import.js'

const CS = 65536

async function fixture() {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'vmi-seg-'))
  const store = await LocalStore.open(path.join(dir, 'store'))
  const a = randomBytes(CS)
  const b = randomBytes(CS)
  const tail = randomBytes(4608)
  // chunks: a, zero, b, a, tail (short)
  const bytes = Buffer.concat([a, Buffer.alloc(CS), b, a, tail])
  const file = path.join(dir, 'src.raw')
  writeFileSync(file, bytes)
  const fd = openSync(file, 'r')
  return {dir, store, fd, bytes, ids: [hash(a), null, hash(b), hash(a), hash(tail)], cleanup: () => (closeSync(fd), rmSync(dir, {recursive: true, force: true}))}
}

test('here and on the thread: ids in order, zeros as null, repeats and stored objects counted as present', async () => {
  const fx = await fixture()
  try {
    const scratch = Buffer.alloc(CS)
    const req = (first, count) => ({fd: fx.fd, size: fx.bytes.length, chunkSize: CS, first, count})
    const here = processSegment(fx.store, req(0, 3), scratch)
    assert.equal(here.ids, fx.ids.slice(0, 3))
    assert.equal([here.bytes, here.zero, here.stored, here.storedBytes, here.present], [3 * CS, 1, 2, 2 * CS, 0])
    const w = new ObjectWriter(fx.store.root)
    // past the end of the file: only the chunks that exist
    const there = await w.segment(req(3, 10))
    assert.equal(there.ids, fx.ids.slice(3))
    assert.equal([there.bytes, there.zero, there.stored, there.present], [CS + 4608, 0, 1, 1])
    for (const id of fx.ids.filter(Boolean)) assert.ok(fx.store.hasObjectSync(id))
    // a file that is shorter than the size given: a read error with the short-read code, on both sides
    const short = {fd: fx.fd, size: fx.bytes.length + CS, chunkSize: CS, first: 4, count: 2}
    const e1 = (() => {
      try {
        processSegment(fx.store, short, scratch)
      } catch (e) {
        return e
      }
    })()
    assert.instance(e1, SegmentReadError)
    assert.is(e1.code, 'VMI_SHORT_READ')
    const e2 = await w.segment(short).catch((e) => e)
    assert.instance(e2, SegmentReadError)
    assert.is(e2.code, 'VMI_SHORT_READ')
    // an unwritable store: a StoreError from the thread
    rmSync(fx.store.layout.tmpDir, {recursive: true})
    writeFileSync(fx.store.layout.tmpDir, 'x')
    const fresh = path.join(fx.dir, 'fresh.raw')
    writeFileSync(fresh, randomBytes(CS))
    const fd2 = openSync(fresh, 'r')
    const e3 = await w.segment({fd: fd2, size: CS, chunkSize: CS, first: 0, count: 1}).catch((e) => e)
    closeSync(fd2)
    assert.instance(e3, StoreError)
    await w.close()
    // after close nothing hangs: a new request is refused at once
    const e4 = await w.segment(req(0, 1)).catch((e) => e)
    assert.instance(e4, StoreError)
  } finally {
    fx.cleanup()
  }
})

test('two-thread import with one-chunk segments: every interleaving of here, thread, ahead and waiting completes with the same chunk list', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'vmi-seg-'))
  try {
    const store = await LocalStore.open(path.join(dir, 'store'))
    // 300 chunks: random, zero and repeated ones
    const parts = []
    for (let i = 0; i < 300; i++) parts.push(i % 7 === 3 ? Buffer.alloc(CS) : i % 5 === 4 ? parts[i - 4] : randomBytes(CS))
    const bytes = Buffer.concat(parts)
    const file = path.join(dir, 'src.raw')
    writeFileSync(file, bytes)
    const created = new Date('2026-01-01T00:00:00Z')
    const ref = await importImage(store, '-', {stdin: [bytes], chunkSize: CS, created})
    // a re-import is all deduplicated, so this thread races ahead of the writer thread:
    // the cases where it must wait (and where it must not) come up again and again
    for (const [chunks, maxAhead] of [[1, 1], [1, 2], [2, 1], [3, 4], [1, 16]]) {
      for (let round = 0; round < 4; round++) {
        const r = await Promise.race([
          importImage(store, file, {chunkSize: CS, created, segments: {chunks, maxAhead}}),
          new Promise((_, reject) => setTimeout(() => reject(new Error(`import hung (segments of ${chunks}, ${maxAhead} ahead)`)), 20_000)),
        ])
        assert.is(r.id, ref.id, `segments of ${chunks}, ${maxAhead} ahead: same manifest as from stdin`)
        assert.is(r.newChunks, 0)
        assert.is(r.zeroChunks + r.dedupedChunks, 300)
      }
    }
  } finally {
    rmSync(dir, {recursive: true, force: true})
  }
})

test.run()
