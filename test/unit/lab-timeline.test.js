// Where a fleet fill's time went (bench/lib/lab-run.js runTimeline), from
// samples of the seed's link bytes and the machine's busy CPU.
import {test} from 'uvu'
import * as assert from 'uvu/assert'
import {runTimeline} from '../../bench/lib/lab-run.js'

const U = 1000

/** Samples every 0.5 s: the cores `busyAt(t)` busy over the half second to t, the seed sending `rateAt(t)` bytes/s. */
function samples(until, busyAt, rateAt) {
  const out = [{t: 0, seedSent: 5000, busy: 100}]
  for (let t = 0.5; t <= until + 1e-9; t += 0.5) {
    const last = out[out.length - 1]
    out.push({t, seedSent: last.seedSent + rateAt(t) * 0.5, busy: last.busy + busyAt(t) * 0.5})
  }
  return out
}

test('the opening CPU-bound span, and when the seed carried 1 % and 99 % of the unique bytes', () => {
  // both cores busy until 2 s; the seed silent until 2 s, then 100 bytes/s for 10 s
  const s = samples(14, (t) => (t <= 2 ? 2 : 0.5), (t) => (t > 2 && t <= 12 ? 100 : 0))
  const tl = runTimeline(s, {uniqueBytes: U, cores: 2})
  assert.is(tl.cpuBoundSeconds, 2)
  assert.ok(Math.abs(tl.seedFirst - 2.1) < 1e-9, String(tl.seedFirst))
  assert.ok(Math.abs(tl.seedLast - 11.9) < 1e-9, String(tl.seedLast))
  assert.ok(Math.abs(tl.seedBitsPerSecond - 800) < 1e-6, String(tl.seedBitsPerSecond))
})

test('cores never all busy at the start: no CPU-bound span; a seed that never sent 99 %: no rate', () => {
  const tl = runTimeline(samples(5, () => 1.5, () => 50), {uniqueBytes: U, cores: 2})
  assert.is(tl.cpuBoundSeconds, 0)
  assert.ok(tl.seedFirst !== undefined)
  assert.is(tl.seedLast, undefined)
  assert.is(tl.seedBitsPerSecond, undefined)
  assert.is(runTimeline([{t: 0, seedSent: 0, busy: 0}], {uniqueBytes: U, cores: 2}), undefined)
})

test.run()
