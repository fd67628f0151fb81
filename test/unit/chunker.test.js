import {test} from 'uvu'
import * as assert from 'uvu/assert'
import {promises as fsp} from 'node:fs'
import path from 'node:path'
import {Readable} from 'node:stream'
import {BufferPool, fileChunks, isAllZero, streamChunks} from '../../dist/store/chunker.js'
import {seededBytes, tmpDir} from '../helpers/index.js'

async function collect(it) {
  const out = []
  for await (const c of it) out.push(Buffer.from(c))
  return out
}

test('streamChunks cuts any piece sizes into exact chunks, last one short', async () => {
  const data = seededBytes('s', 1000)
  for (const piece of [1, 7, 64, 100, 999, 5000]) {
    const pieces = []
    for (let o = 0; o < data.length; o += piece) pieces.push(data.subarray(o, o + piece))
    const chunks = await collect(streamChunks(Readable.from(pieces), 128))
    assert.equal(chunks.map((c) => c.length), [128, 128, 128, 128, 128, 128, 128, 104])
    assert.ok(Buffer.concat(chunks).equals(data), `piece ${piece}`)
  }
})

test('fileChunks reads a file by position in order, with read-ahead', async () => {
  const t = tmpDir()
  try {
    const data = seededBytes('f', 300_000)
    const file = path.join(t.dir, 'f')
    await fsp.writeFile(file, data)
    const fh = await fsp.open(file)
    const chunks = await collect(fileChunks(fh, data.length, 65536, {readAhead: 3}))
    await fh.close()
    assert.equal(chunks.map((c) => c.length), [65536, 65536, 65536, 65536, 37856])
    assert.ok(Buffer.concat(chunks).equals(data))
  } finally {
    t.cleanup()
  }
})

test('fileChunks reports a file that shrank', async () => {
  const t = tmpDir()
  try {
    const file = path.join(t.dir, 'f')
    await fsp.writeFile(file, Buffer.alloc(1000, 1))
    const fh = await fsp.open(file)
    let err
    try {
      await collect(fileChunks(fh, 4096, 1024))
    } catch (e) {
      err = e
    }
    await fh.close()
    assert.is(err?.code, 'VMI_SHORT_READ')
  } finally {
    t.cleanup()
  }
})

test('fileChunks with a BufferPool reuses buffers and waits when all are in use', async () => {
  const t = tmpDir()
  try {
    const data = seededBytes('p', 10 * 65536 + 100)
    const file = path.join(t.dir, 'f')
    await fsp.writeFile(file, data)
    const fh = await fsp.open(file)
    const pool = new BufferPool(65536, 3)
    const seen = new Set()
    const parts = []
    for await (const c of fileChunks(fh, data.length, 65536, {readAhead: 2, pool})) {
      parts.push(Buffer.from(c))
      seen.add(c.buffer)
      pool.release(c)
    }
    await fh.close()
    assert.ok(Buffer.concat(parts).equals(data))
    assert.ok(seen.size <= 3, `at most 3 distinct buffers used, saw ${seen.size}`)
    // a waiter is served by the next release
    const a = await pool.acquire()
    const b = await pool.acquire()
    const c = await pool.acquire()
    let got
    pool.acquire().then((x) => (got = x))
    await new Promise((r) => setImmediate(r))
    assert.is(got, undefined)
    pool.release(b)
    await new Promise((r) => setImmediate(r))
    assert.is(got.buffer, b.buffer)
    pool.release(Buffer.alloc(10)) // foreign buffers are ignored
    pool.release(a)
    pool.release(c)
  } finally {
    t.cleanup()
  }
})

test('isAllZero', () => {
  assert.ok(isAllZero(Buffer.alloc(5 << 20)))
  const b = Buffer.alloc(5 << 20)
  b[b.length - 1] = 1
  assert.not.ok(isAllZero(b))
  b[b.length - 1] = 0
  b[0] = 1
  assert.not.ok(isAllZero(b))
  assert.ok(isAllZero(Buffer.alloc(0)))
})

test.run()
