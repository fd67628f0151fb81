// Progress where stderr is not a TTY (CI logs, journals): import, push and
// pull print a plain progress line every VMI_PROGRESS_INTERVAL_MS (5 s by
// default) while they run, through the real CLI; -q and --json print none.
// The transfers are slowed (stdin written in pieces, a proxy trickling the
// server's answers) so that they outlast a few intervals.
import {test} from 'uvu'
import * as assert from 'uvu/assert'
import path from 'node:path'
import {execAsync, makeImage, seededBytes, spawnCli, tmpStore} from '../helpers/index.js'
import {startFaultProxy} from '../helpers/fault-proxy.js'
import {startServe} from '../helpers/serve.js'

const K = 1024
const env = {VMI_PROGRESS_INTERVAL_MS: '50'}
const UNITS = {B: 1, KiB: K, MiB: K * K, GiB: K * K * K}

/** The byte counts of the progress lines starting with `label`, in order. */
function progressBytes(stderr, label, pattern = /: ([0-9.]+) (B|KiB|MiB|GiB)/) {
  return stderr
    .split('\n')
    .filter((l) => l.startsWith(label))
    .map((l) => {
      const m = pattern.exec(l)
      assert.ok(m, `a progress line with a byte count: ${l}`)
      return Number(m[1]) * UNITS[m[2]]
    })
}

function assertMoving(values, what, stderr) {
  assert.ok(values.length >= 2, `${what}: at least two progress lines:\n${stderr}`)
  assert.ok(values.at(-1) > values[0], `${what}: the bytes grow (${values}):\n${stderr}`)
  for (let i = 1; i < values.length; i++) assert.ok(values[i] >= values[i - 1], `${what}: never backwards (${values})`)
}

/** `vmi import -` fed 8 pieces of 256 KiB, 120 ms apart. */
async function slowImport(store, extra = []) {
  const child = spawnCli(['import', '-', 'slow:1', ...extra], {store, env, stdio: ['pipe', 'pipe', 'pipe']})
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (d) => (stdout += d))
  child.stderr.on('data', (d) => (stderr += d))
  const data = seededBytes('progress', 2048 * K)
  for (let o = 0; o < data.length; o += 256 * K) {
    child.stdin.write(data.subarray(o, o + 256 * K))
    await new Promise((r) => setTimeout(r, 120))
  }
  child.stdin.end()
  const status = await new Promise((r) => child.on('close', r))
  return {status, stdout, stderr}
}

test('import from a slow stdin: progress lines with growing bytes; none with -q or --json', async () => {
  const t = tmpStore()
  try {
    const r = await slowImport(t.store)
    assert.is(r.status, 0, r.stderr)
    assertMoving(progressBytes(r.stderr, 'importing stdin: '), 'import', r.stderr)
    for (const flag of ['-q', '--json']) {
      const q = await slowImport(path.join(t.dir, `store${flag}`), [flag])
      assert.is(q.status, 0, q.stderr)
      assert.not.match(q.stderr, /importing stdin/, `${flag}: no progress`)
    }
  } finally {
    t.cleanup()
  }
})

test('push and pull through a slow link: progress lines with growing bytes', async () => {
  const t = tmpStore()
  let seed
  let proxy
  try {
    const src = path.join(t.dir, 'src.raw')
    await makeImage(src, [{kind: 'random', size: 2048 * K, seed: 'progress-push'}])
    const imp = await execAsync(['import', src, 'app:v1', '--chunk-size', '64K'], {store: t.store})
    assert.is(imp.status, 0, imp.stderr)
    seed = await startServe(path.join(t.dir, 'seed'), [], {env: {VMI_PUSH_TOKEN: 'tok'}})
    // answers trickle out: a PUT's answer takes ~100 ms, a chunk ~100 ms
    proxy = await startFaultProxy(seed.url, {mode: 'trickle', rate: 16})
    const push = await execAsync(['push', 'app:v1', proxy.url, '--concurrency', '2'], {store: t.store, env: {...env, VMI_PUSH_TOKEN: 'tok'}})
    assert.is(push.status, 0, push.stderr)
    assertMoving(progressBytes(push.stderr, 'pushing ', /chunks of \d+ \(\d+%\), ([0-9.]+) (B|KiB|MiB|GiB)/), 'push', push.stderr)
    await proxy.close()

    proxy = await startFaultProxy(seed.url, {mode: 'trickle', rate: 8 * K})
    const pull = await execAsync(['pull', 'app:v1', proxy.url], {store: path.join(t.dir, 'host'), env})
    assert.is(pull.status, 0, pull.stderr)
    assertMoving(progressBytes(pull.stderr, 'pulling '), 'pull', pull.stderr)
  } finally {
    await proxy?.close()
    await seed?.stop()
    t.cleanup()
  }
})

test.run()
