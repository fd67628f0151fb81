// FdCache: open object-file descriptors by chunk index, CLOCK eviction.
import {test} from 'uvu'
import * as assert from 'uvu/assert'
import fs from 'node:fs'
import {FdCache} from '../../dist/util/fd-cache.js'

const open = () => fs.openSync('/dev/null', 'r')
const isOpen = (fd) => {
  try {
    fs.fstatSync(fd)
    return true
  } catch {
    return false
  }
}
// closes are asynchronous (fs.close): let them run
const settle = () => new Promise((r) => setTimeout(r, 20))

test('hits return the cached descriptor; a full cache evicts one without a second chance and closes it', async () => {
  const c = new FdCache(3)
  const fds = [open(), open(), open()]
  fds.forEach((fd, i) => c.add(i, fd))
  assert.is(c.size, 3)
  assert.is(c.get(1), fds[1])
  assert.is(c.get(7), undefined)
  // 1 was used since it was added: the hand passes it (clearing its bit) and takes 0
  const f3 = open()
  c.add(3, f3)
  await settle()
  assert.is(c.get(0), undefined, 'key 0 evicted')
  assert.not.ok(isOpen(fds[0]), 'its descriptor closed')
  assert.is(c.get(1), fds[1])
  assert.is(c.get(2), fds[2])
  assert.is(c.get(3), f3)
  assert.is(c.size, 3)
  // every slot referenced now: one full sweep clears the bits, then the hand's slot goes
  const f4 = open()
  c.add(4, f4)
  await settle()
  const left = [1, 2, 3].filter((k) => c.get(k) !== undefined)
  assert.is(left.length, 2, 'exactly one of the referenced keys was evicted')
  assert.is(c.get(4), f4)
  c.clear()
  await settle()
  for (const fd of [fds[1], fds[2], f3, f4]) assert.not.ok(isOpen(fd), `fd ${fd} closed by clear()`)
  assert.is(c.size, 0)
})

test('drop closes one descriptor and frees its slot for the next add', async () => {
  const c = new FdCache(2)
  const a = open()
  const b = open()
  c.add(10, a)
  c.add(11, b)
  c.drop(10)
  c.drop(99) // not cached: nothing happens
  await settle()
  assert.not.ok(isOpen(a))
  assert.is(c.get(10), undefined)
  const d = open()
  c.add(12, d)
  assert.is(c.get(11), b, 'the emptied slot was taken, not the live one')
  assert.is(c.get(12), d)
  c.clear()
})

test('a long random workload keeps the map and the slots consistent; clear closes every cached descriptor', async () => {
  const c = new FdCache(16)
  const live = new Map()
  let seed = 42
  const rnd = (n) => (seed = (seed * 1103515245 + 12345) % 2 ** 31) % n
  for (let i = 0; i < 3000; i++) {
    const k = rnd(40)
    const op = rnd(10)
    if (op < 6) {
      const got = c.get(k)
      if (got === undefined) {
        const fd = open()
        c.add(k, fd)
        live.set(k, fd)
      } else assert.is(got, live.get(k))
    } else if (op < 8) {
      c.drop(k)
      live.delete(k)
    }
    assert.ok(c.size <= 16)
  }
  await settle()
  const cached = [...live].filter(([k]) => c.get(k) !== undefined)
  assert.is(cached.length, c.size)
  for (const [, fd] of cached) assert.ok(isOpen(fd))
  c.clear()
  await settle()
  for (const [, fd] of cached) assert.not.ok(isOpen(fd))
  assert.throws(() => new FdCache(0), /capacity/)
})

test.run()
