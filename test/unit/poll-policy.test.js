// PollPolicy: when the NBD server polls its socket after a burst, and how it backs off.
import {test} from 'uvu'
import * as assert from 'uvu/assert'
import {MAX_MISS_STREAK, PollPolicy} from '../../dist/mount/nbd/poll-policy.js'

/** Bursts every `gap` ms from `t`; returns how many of `n` bursts polled. */
function bursts(p, n, t, gap, outcome) {
  let polled = 0
  for (let i = 0; i < n; i++) {
    t += gap
    if (p.afterBurst(t)) {
      polled++
      if (outcome) p.record(outcome)
      p.burstEnd(t)
    }
  }
  return {polled, t}
}

test('polls only when bursts come back to back', () => {
  const p = new PollPolicy(0.05)
  assert.not.ok(p.afterBurst(0), 'the first burst has nothing to follow')
  assert.ok(p.afterBurst(0.1), 'a burst 100 µs later polls')
  assert.not.ok(p.afterBurst(10), 'a burst 10 ms later does not')
  p.interrupted()
  assert.not.ok(p.afterBurst(10.01), 'nor one after a request the loop handled')
})

test('hits keep polling on; misses and preemptions back off exponentially up to the cap', () => {
  const p = new PollPolicy(0.05)
  p.afterBurst(0)
  assert.is(bursts(p, 100, 0, 0.03, 'hit').polled, 100)
  for (const bad of ['miss', 'preempted']) {
    const q = new PollPolicy(0.05)
    q.afterBurst(0)
    // every poll wasted: polls at bursts 1, 3, 7, 15, … — about log2 of the count until the cap
    const n = 1000
    const {polled} = bursts(q, n, 0, 0.03, bad)
    const cap = 2 ** MAX_MISS_STREAK
    assert.ok(polled >= n / cap && polled <= MAX_MISS_STREAK + n / cap + 1, `${bad}: ${polled} polls in ${n} bursts`)
    assert.is(q.stats[bad], polled)
  }
})

test('a request there at the first read neither resets nor extends the backoff', () => {
  const p = new PollPolicy(0.05)
  p.afterBurst(0)
  let t = 0
  // the pattern of a client on the same core: every poll either finds the request at once or runs out
  let polled = 0
  for (let i = 0; i < 2000; i++) {
    t += 0.02
    if (p.afterBurst(t)) {
      polled++
      p.record(polled % 2 ? 'ready' : 'miss')
      p.burstEnd(t)
    }
  }
  // were 'ready' a hit, every second poll would reset the streak: ~1 poll in 2-3 bursts
  assert.ok(polled < 2000 / 16, `${polled} polls in 2000 bursts`)
  // the next poll that finds a request after spinning (a hit) brings polling back for every burst
  let waited = 0
  while (!p.afterBurst((t += 0.02))) waited++
  assert.ok(waited < 2 ** MAX_MISS_STREAK, `the next poll comes within the cap: ${waited} bursts`)
  p.record('hit')
  p.burstEnd(t)
  assert.is(bursts(p, 50, t, 0.02, 'hit').polled, 50)
})

test.run()
