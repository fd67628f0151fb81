// util/young-gc.ts: a young-generation collection after every so many bytes
// received, forced through a collector V8 exposes on demand (no global `gc`).
import {test} from 'uvu'
import * as assert from 'uvu/assert'
import {constants, PerformanceObserver} from 'node:perf_hooks'
import {YoungGcPacer} from '../../dist/util/young-gc.js'

/** The forced young collections V8 reports while `fn` runs (entries arrive asynchronously). */
async function forcedMinor(fn) {
  const seen = []
  const obs = new PerformanceObserver((list) => seen.push(...list.getEntries()))
  obs.observe({entryTypes: ['gc']})
  fn()
  await new Promise((r) => setTimeout(r, 50))
  obs.disconnect()
  return seen.filter((e) => e.detail.kind === constants.NODE_PERFORMANCE_GC_MINOR && e.detail.flags & constants.NODE_PERFORMANCE_GC_FLAGS_FORCED).length
}

test('a young collection once every `every` bytes, counted across calls; none before', async () => {
  const pacer = new YoungGcPacer(1 << 20)
  assert.is(await forcedMinor(() => pacer.received(512 << 10)), 0)
  assert.is(await forcedMinor(() => pacer.received(512 << 10)), 1)
  // the count starts again after each collection: 3 MiB at once is one
  assert.is(await forcedMinor(() => pacer.received(3 << 20)), 1)
  assert.is(await forcedMinor(() => [1, 2, 3, 4].forEach(() => pacer.received(1 << 20))), 4)
})

test('no global gc appears in the program', () => {
  new YoungGcPacer(1).received(1)
  assert.is(typeof globalThis.gc, 'undefined')
})

test.run()
