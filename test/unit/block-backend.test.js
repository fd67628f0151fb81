// The simple BlockBackends (block-backend.ts) and the zero-extent scan.
import {test} from 'uvu'
import * as assert from 'uvu/assert'
import {MemoryBackend, zeroExtents} from '../../dist/mount/nbd/block-backend.js'

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

test.run()
