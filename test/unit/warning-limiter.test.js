// WarningLimiter: per source and kind, the first few per-chunk warnings
// print, the rest are summed up at most once an interval and at flush; state
// changes always print. A fake clock drives the interval; one test waits for the real timer.
import {test} from 'uvu'
import * as assert from 'uvu/assert'
import {WarningLimiter} from '../../dist/peer/warning-limiter.js'

function setup(init = {}) {
  const out = []
  let now = 1000
  const lim = new WarningLimiter((message, data) => out.push({message, data}), {now: () => now, ...init})
  return {out, lim, advance: (ms) => (now += ms)}
}

const fail = (source, n) => ({type: 'source-error', id: `c${n}`, source, message: `${source} failed chunk c${n}: HTTP 503`})

test('the first three of a source print, the rest are held and summed up at flush', () => {
  const {out, lim} = setup()
  for (let i = 0; i < 10; i++) lim.warn(fail('peer A', i))
  assert.equal(
    out.map((o) => o.message),
    ['peer A failed chunk c0: HTTP 503', 'peer A failed chunk c1: HTTP 503', 'peer A failed chunk c2: HTTP 503'],
  )
  lim.flush()
  assert.is(out.length, 4)
  assert.is(out[3].message, '7 more failures from peer A not shown (the last: peer A failed chunk c9: HTTP 503)')
  assert.is(out[3].data.suppressed, 7)
  assert.is(out[3].data.id, 'c9')
  lim.flush()
  assert.is(out.length, 4, 'nothing held: flush prints nothing')
})

test('held warnings are summed up when the next comes an interval after the last line', () => {
  const {out, lim, advance} = setup({burst: 1, intervalMs: 10_000})
  lim.warn(fail('peer A', 0))
  advance(4000)
  lim.warn(fail('peer A', 1))
  lim.warn(fail('peer A', 2))
  assert.is(out.length, 1)
  advance(6000)
  lim.warn(fail('peer A', 3))
  assert.is(out.length, 2)
  assert.is(out[1].data.suppressed, 3)
  advance(1000)
  lim.warn(fail('peer A', 4))
  assert.is(out.length, 2, 'the interval counts from the sum')
  lim.flush()
  assert.is(out[2].data.suppressed, 1)
})

test('what is held is summed up once the interval is over, without waiting for another warning', async () => {
  const out = []
  const lim = new WarningLimiter((message, data) => out.push({message, data}), {burst: 1, intervalMs: 60})
  for (let i = 0; i < 5; i++) lim.warn(fail('peer A', i))
  assert.is(out.length, 1)
  await new Promise((r) => setTimeout(r, 150))
  assert.is(out.length, 2, 'summed up by the timer')
  assert.is(out[1].data.suppressed, 4)
  lim.flush()
  assert.is(out.length, 2, 'nothing left for flush')
})

test('sources and kinds are counted apart; state changes always print', () => {
  const {out, lim} = setup({burst: 1})
  lim.warn(fail('peer A', 0))
  lim.warn(fail('peer B', 0))
  lim.warn({type: 'verification-failure', id: 'c1', source: 'peer A', message: 'peer A sent wrong bytes for chunk c1'})
  lim.warn(fail('peer A', 1))
  for (let i = 0; i < 5; i++) lim.warn({type: 'source-down', source: 'peer A', message: 'peer A is unreachable'})
  assert.equal(
    out.map((o) => o.data.type),
    ['source-error', 'source-error', 'verification-failure', 'source-down', 'source-down', 'source-down', 'source-down', 'source-down'],
  )
  lim.flush()
  assert.is(out.at(-1).message, '1 more failure from peer A not shown (the last: peer A failed chunk c1: HTTP 503)')
})

test.run()
