// The benchmarks' child timing (bench/lib/measure.js): a child whose CPU was
// not measured counts as unknown, never as 0 s, so that a sum over a fleet's
// clients cannot leave one out and still look like a figure.
import {test} from 'uvu'
import * as assert from 'uvu/assert'
import {cpuOf, GNU_TIME, runTimed} from '../../bench/lib/measure.js'
import {skip} from '../helpers/index.js'

test('a timed child has its CPU', async () => {
  if (!GNU_TIME) return skip('no GNU time (scripts/install-deps.sh installs it)')
  const r = await runTimed(process.execPath, ['-e', 'let x = 0; for (let i = 0; i < 3e7; i++) x += i'])
  assert.ok(Number.isFinite(cpuOf(r)) && cpuOf(r) > 0, `cpu ${cpuOf(r)}`)
  assert.is(r.cpuLost, undefined)
})

test('a child whose CPU GNU time could not record is unknown, and so is a sum over it', async () => {
  if (!GNU_TIME) return skip('no GNU time (scripts/install-deps.sh installs it)')
  // GNU time cannot create its output file in a directory that does not exist
  const r = await runTimed('true', [], {scratch: '/nonexistent-vmi-bench-dir', allowFail: true})
  assert.ok(Number.isNaN(cpuOf(r)))
  assert.match(r.cpuLost, /ENOENT/)
  const ok = await runTimed('true', [])
  assert.ok(Number.isNaN([ok, r].reduce((a, x) => a + cpuOf(x), 0)))
})

test.run()
