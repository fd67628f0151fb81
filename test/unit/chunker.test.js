import {test} from 'uvu'
import * as assert from 'uvu/assert'
import {promises as fsp} from 'node:fs'
import path from 'node:path'
import {Readable} from 'node:stream'
import {fileChunks, isAllZero, streamChunks} from '../../dist/store/chunker.js'
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

test('fileChunks reads a file by position in order, reusing one buffer', async () => {
  const t = tmpDir()
  try {
    const data = seededBytes('f', 300_000)
    const file = path.join(t.dir, 'f')
    await fsp.writeFile(file, data)
    const fh = await fsp.open(file)
    const buffers = new Set()
    const chunks = []
    for await (const c of fileChunks(fh.fd, data.length, 65536, {yieldEvery: 2})) {
      buffers.add(c.buffer)
      chunks.push(Buffer.from(c))
    }
    await fh.close()
    assert.equal(chunks.map((c) => c.length), [65536, 65536, 65536, 65536, 37856])
    assert.ok(Buffer.concat(chunks).equals(data))
    assert.is(buffers.size, 1, 'one buffer reused for every chunk')
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
      await collect(fileChunks(fh.fd, 4096, 1024))
    } catch (e) {
      err = e
    }
    await fh.close()
    assert.is(err?.code, 'VMI_SHORT_READ')
  } finally {
    t.cleanup()
  }
})

test('fileChunks stops when its signal is aborted', async () => {
  const t = tmpDir()
  try {
    const file = path.join(t.dir, 'f')
    await fsp.writeFile(file, seededBytes('a', 8 * 65536))
    const fh = await fsp.open(file)
    const ac = new AbortController()
    let n = 0
    let err
    try {
      for await (const c of fileChunks(fh.fd, 8 * 65536, 65536, {signal: ac.signal})) {
        assert.is(c.length, 65536)
        if (++n === 3) ac.abort()
      }
    } catch (e) {
      err = e
    }
    await fh.close()
    assert.is(n, 3)
    assert.is(err?.name, 'AbortError')
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
