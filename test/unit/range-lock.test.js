// RangeLock: exclusive block ranges for the overlay's read-modify-write.
import {test} from 'uvu'
import * as assert from 'uvu/assert'
import {RangeLock} from '../../dist/util/range-lock.js'

const tick = () => new Promise((r) => setImmediate(r))

test('ranges that do not overlap are held at once; an overlapping one waits for the release', async () => {
  const l = new RangeLock()
  const a = await l.acquire(0, 2)
  const b = await l.acquire(2, 4) // adjacent: no overlap
  let got = false
  const c = l.acquire(1, 3).then((rel) => ((got = true), rel))
  await tick()
  assert.is(got, false, 'overlaps both holders')
  a()
  await tick()
  assert.is(got, false, 'still overlaps b')
  b()
  const rc = await c
  assert.ok(got)
  assert.equal(l.state, {held: 1, waiting: 0})
  rc()
  rc() // idempotent
  assert.equal(l.state, {held: 0, waiting: 0})
})

test('overlapping requests are granted in arrival order; a later request that overlaps an earlier waiter waits behind it', async () => {
  const l = new RangeLock()
  const order = []
  const first = await l.acquire(0, 1)
  const w1 = l.acquire(0, 2).then((r) => (order.push('w1'), r))
  const w2 = l.acquire(1, 3).then((r) => (order.push('w2'), r)) // free now, but overlaps w1: must not overtake it
  const w3 = l.acquire(5, 6).then((r) => (order.push('w3'), r)) // unrelated: granted at once
  await tick()
  assert.equal(order, ['w3'])
  first()
  const r1 = await w1
  await tick()
  assert.equal(order, ['w3', 'w1'])
  r1()
  ;(await w2)()
  ;(await w3)()
  assert.equal(order, ['w3', 'w1', 'w2'])
  assert.equal(l.state, {held: 0, waiting: 0})
})

test('random acquire/release interleavings never let two holders overlap and always drain', async () => {
  for (let round = 0; round < 50; round++) {
    const l = new RangeLock()
    const holding = new Set()
    const jobs = Array.from({length: 40}, async () => {
      const first = Math.floor(Math.random() * 20)
      const r = {first, end: first + 1 + Math.floor(Math.random() * 4)}
      const release = await l.acquire(r.first, r.end)
      for (const h of holding) assert.ok(h.end <= r.first || r.end <= h.first, `overlap ${JSON.stringify(h)} ${JSON.stringify(r)}`)
      holding.add(r)
      for (let k = Math.floor(Math.random() * 3); k > 0; k--) await tick()
      holding.delete(r)
      release()
    })
    await Promise.all(jobs)
    assert.equal(l.state, {held: 0, waiting: 0})
  }
})

test.run()
