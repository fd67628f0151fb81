// `vmi status` through the real CLI: a running mount is listed with its
// addresses, overlay and bytes by source (local, peer, seed, measured by
// reading the whole disk over NBD); a mount killed with SIGKILL is no longer
// listed and its record is removed; peers and seeds are probed up or down.
import {test} from 'uvu'
import * as assert from 'uvu/assert'
import {spawnSync} from 'node:child_process'
import {existsSync, promises as fsp} from 'node:fs'
import path from 'node:path'
import {exec, freePort, makeImage, tmpDir, tmpStore} from '../helpers/index.js'
import {startMount} from '../helpers/mount.js'
import {startServe} from '../helpers/serve.js'

const K = 1024

function status(store, argv = []) {
  const r = exec(['status', '--json', ...argv], {store})
  assert.is(r.status, 0, r.stderr)
  return JSON.parse(r.stdout)
}

test('status lists a running mount with its bytes by source, probes peers, and forgets a killed mount', async () => {
  const seed = tmpStore()
  const peer = tmpStore()
  const host = tmpStore()
  const work = tmpDir()
  let seedServe, peerServe, mount
  try {
    // B = 512K the host has (A) + 256K the peer has (C) + 256K only the seed has
    const b = path.join(work.dir, 'b.raw')
    await makeImage(b, [
      {kind: 'random', size: 512 * K, seed: 'status-a'},
      {kind: 'random', size: 256 * K, seed: 'status-c'},
      {kind: 'random', size: 256 * K, seed: 'status-seed'},
    ])
    const a = path.join(work.dir, 'a.raw')
    await makeImage(a, [{kind: 'random', size: 512 * K, seed: 'status-a'}])
    const c = path.join(work.dir, 'c.raw')
    await makeImage(c, [{kind: 'random', size: 256 * K, seed: 'status-c'}])
    for (const [store, file, ref] of [
      [seed.store, b, 'web:b'],
      [host.store, a, 'web:a'],
      [peer.store, c, 'web:c'],
    ])
      assert.is(exec(['import', file, ref, '--chunk-size', '64K', '-q'], {store}).status, 0)
    seedServe = await startServe(seed.store)
    peerServe = await startServe(peer.store)
    const dead = `http://127.0.0.1:${await freePort()}`
    assert.is(exec(['remote', 'add', 'origin', seedServe.url], {store: host.store}).status, 0)
    assert.is(exec(['config', 'set', 'peers', `${peerServe.url},${dead}`], {store: host.store}).status, 0)

    const overlay = path.join(work.dir, 'overlay')
    mount = await startMount(host.store, ['web:b', '--peer', peerServe.url, '--prefetch', 'none', '--overlay', overlay])
    const copy = spawnSync('nbdcopy', [mount.nbd, 'null:'], {encoding: 'utf8'})
    assert.is(copy.status, 0, copy.stderr)

    // the record is rewritten every 2 s: wait for the counters of the whole read
    let st
    const deadline = Date.now() + 20_000
    for (;;) {
      st = status(host.store)
      const m = st.mounts.find((x) => x.pid === mount.child.pid)
      if (m && m.bytes.local + m.bytes.peer + m.bytes.seed === 1024 * K) break
      assert.ok(Date.now() < deadline, `status never showed the whole read: ${JSON.stringify(st.mounts)}`)
      await new Promise((r) => setTimeout(r, 500))
    }
    assert.is(st.mounts.length, 1)
    const [m] = st.mounts
    assert.is(m.image, mount.mounted)
    assert.is(m.spec, 'web:b')
    assert.is(m.nbd, mount.nbd)
    assert.is(m.socket, mount.socket)
    assert.is(m.overlay, overlay)
    assert.is(m.readOnly, false)
    assert.equal(m.bytes, {local: 512 * K, peer: 256 * K, seed: 256 * K})
    assert.is(m.stats.chunks, 16)
    assert.is(m.stats.localChunks, 16, 'every chunk is verified here after the whole read')

    const byUrl = Object.fromEntries(st.sources.map((s) => [s.url, s]))
    assert.is(byUrl[peerServe.url].up, true, JSON.stringify(byUrl[peerServe.url]))
    assert.is(byUrl[peerServe.url].kind, 'peer')
    assert.type(byUrl[peerServe.url].latencyMs, 'number')
    assert.is(byUrl[dead].up, false)
    assert.match(byUrl[dead].error, /ECONNREFUSED/)
    assert.is(byUrl[seedServe.url].kind, 'seed')
    assert.is(byUrl[seedServe.url].name, 'origin')
    assert.is(byUrl[seedServe.url].up, true)

    const human = exec(['status'], {store: host.store})
    assert.is(human.status, 0, human.stderr)
    assert.match(human.stdout, new RegExp(`^${mount.child.pid}\\s+web:b `, 'm'))
    assert.match(human.stdout, new RegExp(`${dead.replaceAll('.', '\\.')}\\s+down`))

    // kill -9: no clean-up ran, the record stays until a status sees its process gone
    const record = path.join(host.store, 'run', 'mounts', `${mount.child.pid}.json`)
    assert.ok(existsSync(record))
    await mount.stop('SIGKILL')
    mount = undefined
    assert.equal(status(host.store, ['--no-probe']).mounts, [])
    assert.not.ok(existsSync(record), 'the stale record is removed')
  } finally {
    await mount?.stop()
    await seedServe?.stop()
    await peerServe?.stop()
    for (const t of [seed, peer, host, work]) t.cleanup()
  }
})

test('a mount that stops cleanly removes its record at once', async () => {
  const t = tmpStore()
  try {
    const src = path.join(t.dir, 'src.raw')
    await makeImage(src, [{kind: 'random', size: 256 * K, seed: 'status-clean'}])
    assert.is(exec(['import', src, 'img:1', '--chunk-size', '64K', '-q'], {store: t.store}).status, 0)
    const mount = await startMount(t.store, ['img:1', '--read-only'])
    const record = path.join(t.store, 'run', 'mounts', `${mount.child.pid}.json`)
    const rec = JSON.parse(await fsp.readFile(record, 'utf8'))
    assert.is(rec.readOnly, true)
    assert.is(rec.overlay, undefined)
    const {code} = await mount.stop('SIGTERM')
    assert.is(code, 0)
    assert.not.ok(existsSync(record))
    const r = exec(['status'], {store: t.store})
    assert.match(r.stdout, /^no mounts$/m)
    assert.match(r.stdout, /no peers or remotes configured/)
  } finally {
    t.cleanup()
  }
})

test('records no mount of this vmi wrote (fields missing, not JSON) are left out of status, and removed once their pid is gone', async () => {
  const t = tmpStore()
  try {
    const dir = path.join(t.store, 'run', 'mounts')
    await fsp.mkdir(dir, {recursive: true})
    // pid 1 is alive; the one in the dead record's name is past pid_max
    const partial = path.join(dir, '1.json')
    const garbage = path.join(dir, '4194305.json')
    await fsp.writeFile(partial, JSON.stringify({pid: 1, image: 'x'}))
    await fsp.writeFile(garbage, '{garbage')
    for (const argv of [['--no-probe'], []]) {
      const r = exec(['status', '--json', ...argv], {store: t.store})
      assert.is(r.status, 0, r.stderr)
      assert.equal(JSON.parse(r.stdout).mounts, [])
    }
    assert.ok(existsSync(partial), 'a live pid’s record is not removed')
    assert.not.ok(existsSync(garbage), 'a dead pid’s record is removed')
  } finally {
    t.cleanup()
  }
})

test.run()
