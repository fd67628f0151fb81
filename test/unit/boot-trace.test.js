// The boot-storm replay's two ends: the trace parsed from nbdkit's log filter
// (bench/lib/mount-nbd.js parseNbdkitTrace) and the replaying NBD client
// (bench/lib/replay-trace.py) against a real nbdkit.
import {test} from 'uvu'
import * as assert from 'uvu/assert'
import {spawn, spawnSync} from 'node:child_process'
import {existsSync, readFileSync, writeFileSync} from 'node:fs'
import path from 'node:path'
import {parseNbdkitTrace} from '../../bench/lib/mount-nbd.js'
import {hasCommand, ROOT, skip, tmpDir} from '../helpers/index.js'

const LOG = `2026-12-05 20:30:31.948744 Ready thread_model=3
2026-12-05 20:30:33.110907 connection=1 Connect export="" tls=0 size=0x100000 write=0
2026-12-05 20:30:33.500000 connection=1 Read id=1 offset=0x0 count=0x1000 ...
2026-12-05 20:30:33.500250 connection=1 ...Read id=1 return=0
2026-12-05 20:30:34.000250 connection=1 Read id=2 offset=0x10000 count=0x200 ...
2026-12-05 20:30:34.000300 connection=1 Read id=3 offset=0x20000 count=0x400 ...
2026-12-05 20:30:34.000900 connection=1 ...Read id=2 return=0
2026-12-05 20:30:34.001000 connection=1 ...Read id=3 return=0
2026-12-05 20:30:34.001100 connection=1 Flush id=4 ...
2026-12-05 20:30:34.001200 connection=1 ...Flush id=4 return=0
2026-12-05 20:30:59.999990 connection=1 Read id=5 offset=0x30000 count=0x200 ...
2026-12-05 20:31:00.000010 connection=1 ...Read id=5 return=0
`

test('parseNbdkitTrace: reads in start order, think = start − the previous read’s completion (0 when overlapping), the first from the connection', () => {
  const t = parseNbdkitTrace(LOG)
  assert.equal(
    t.map((r) => [r.offset, r.count]),
    [
      [0, 4096],
      [0x10000, 512],
      [0x20000, 1024],
      [0x30000, 512],
    ],
  )
  assert.is(t[0].think, 0.389093)
  assert.is(t[1].think, 0.5)
  assert.is(t[2].think, 0, 'read 3 started while read 2 was in flight')
  assert.is(t[3].think, 25.99899, 'across a minute boundary, from read 3’s completion')
  assert.equal(
    t.map((r) => r.at),
    [0.389093, 0.889343, 0.889393, 26.889083],
  )
})

test('replay-trace.py reads every traced extent from a real NBD server (or a local file), waiting the think times', async () => {
  const py = '/usr/bin/python3'
  if (!hasCommand('nbdkit') || spawnSync(py, ['-c', 'import nbd'], {stdio: 'ignore'}).status !== 0) return skip('nbdkit or python3-libnbd not installed')
  const {dir, cleanup} = tmpDir('vmi-replay-')
  const sock = path.join(dir, 'nbd.sock')
  const logFile = path.join(dir, 'log')
  const nb = spawn('nbdkit', ['-f', '-r', '-U', sock, '--filter=log', 'memory', '1M', `logfile=${logFile}`], {stdio: 'ignore'})
  try {
    for (let i = 0; i < 200 && !existsSync(sock); i++) await new Promise((r) => setTimeout(r, 25))
    const trace = path.join(dir, 'trace.json')
    const reads = [
      {offset: 0, count: 4096, think: 0},
      {offset: 65536, count: 512, think: 0.2},
      {offset: 131072, count: 1024, think: 0.1},
    ]
    writeFileSync(trace, JSON.stringify({reads}))
    const r = spawnSync(py, [path.join(ROOT, 'bench', 'lib', 'replay-trace.py'), `nbd+unix:///?socket=${sock}`, trace], {encoding: 'utf8', timeout: 30_000})
    assert.is(r.status, 0, r.stderr)
    const out = JSON.parse(r.stdout)
    assert.is(out.reads, 3)
    assert.is(out.bytes, 4096 + 512 + 1024)
    assert.ok(out.end - out.connected >= 0.3, `the think times were waited (${out.end - out.connected} s)`)
    // the server saw exactly the traced reads, in order
    await new Promise((r) => setTimeout(r, 100))
    const seen = parseNbdkitTrace(readFileSync(logFile, 'utf8'))
    assert.equal(
      seen.map((x) => [x.offset, x.count]),
      reads.map((x) => [x.offset, x.count]),
    )
    assert.ok(seen[1].think >= 0.19 && seen[2].think >= 0.09, `gaps at the server: ${seen.map((x) => x.think)}`)
    // a local file (copy-then-boot) is read with pread
    const file = path.join(dir, 'disk.raw')
    writeFileSync(file, Buffer.alloc(1 << 20, 7))
    const l = spawnSync(py, [path.join(ROOT, 'bench', 'lib', 'replay-trace.py'), file, trace], {encoding: 'utf8', timeout: 30_000})
    assert.is(l.status, 0, l.stderr)
    assert.is(JSON.parse(l.stdout).bytes, 4096 + 512 + 1024)
  } finally {
    nb.kill()
    cleanup()
  }
})

test.run()
