// Faults between a host and its seed, through a fault-injecting TCP proxy:
// pulls recover (retries, next source) or fail with a clear error naming
// the chunk and every source tried; nothing wrong is ever stored or read.
import {test} from 'uvu'
import * as assert from 'uvu/assert'
import path from 'node:path'
import {exec, execAsync, runAsync, fsckClean, hasCommand, makeImage, sha256File, skip, tmpStore} from '../helpers/index.js'
import {startFaultProxy} from '../helpers/fault-proxy.js'
import {startMount} from '../helpers/mount.js'
import {startServe} from '../helpers/serve.js'

const M = 1024 * 1024

async function seed(t) {
  const src = path.join(t.dir, 'src.raw')
  await makeImage(src, [{kind: 'random', size: 2 * M, seed: 'faults'}, {kind: 'zero', size: M}])
  const store = path.join(t.dir, 'seed')
  const id = exec(['import', src, 'app:v1', '--chunk-size', '64K'], {store}).stdout.trim()
  const server = await startServe(store)
  return {src, store, id, server}
}


async function verifyHost(host, src, id, t) {
  const out = path.join(t.dir, `out-${path.basename(host)}.raw`)
  const e = exec(['export', id, out], {store: host})
  assert.is(e.status, 0, e.stderr)
  assert.is(await sha256File(out), await sha256File(src))
  fsckClean(host)
}

for (const [mode, opts] of [
  ['reset', {after: 30_000, every: 2}],
  ['truncate', {after: 20_000, every: 2}],
  ['http500', {count: 4}],
  ['trickle', {rate: 16384, every: 3}],
]) {
  test(`pull through a proxy that does "${mode}" recovers and stores only verified chunks`, async () => {
    const t = tmpStore()
    let s
    let proxy
    try {
      s = await seed(t)
      proxy = await startFaultProxy(s.server.url, {mode, ...opts})
      const host = path.join(t.dir, 'host')
      const r = await execAsync(['pull', s.id, proxy.url, '--json', '--concurrency', '4'], {store: host, timeout: 180_000})
      assert.is(r.status, 0, `${mode}: ${r.stderr} ${r.stdout}`)
      await verifyHost(host, s.src, s.id, t)
      assert.ok(proxy.connections() > 1, 'the faults forced new connections (retries)')
    } finally {
      await proxy?.close()
      await s?.server.stop()
      t.cleanup()
    }
  })
}

test('a seed link that flips bytes: the pull fails naming the chunk and the source, stores nothing bad, and a re-run completes', async () => {
  const t = tmpStore()
  let s
  let proxy
  try {
    s = await seed(t)
    proxy = await startFaultProxy(s.server.url, {mode: 'flip', after: 5_000, every: 2})
    const host = path.join(t.dir, 'host')
    const r = await execAsync(['pull', s.id, proxy.url, '--concurrency', '4'], {store: host, timeout: 120_000})
    // a hash mismatch is never retried against the same source: with no other source the pull stops clearly
    if (r.status !== 0) {
      assert.is(r.status, 9, r.stderr)
      assert.match(r.stderr, /chunk [0-9a-f]{64}|manifest [0-9a-f]{64}/)
      assert.match(r.stderr, /wrong bytes/)
      fsckClean(host)
    }
    proxy.set({mode: 'pass'})
    const again = await execAsync(['pull', s.id, proxy.url], {store: host, timeout: 120_000})
    assert.is(again.status, 0, again.stderr)
    await verifyHost(host, s.src, s.id, t)
  } finally {
    await proxy?.close()
    await s?.server.stop()
    t.cleanup()
  }
})

test('a seed that always corrupts: the pull fails naming the chunk and every source; nothing stored', async () => {
  const t = tmpStore()
  let s
  let proxy
  let peerProxy
  try {
    s = await seed(t)
    proxy = await startFaultProxy(s.server.url, {mode: 'flip', after: 600})
    const host = path.join(t.dir, 'host')
    // manifests are small: let the manifest through, corrupt every object
    const r0 = await execAsync(['pull', s.id, s.server.url, '--concurrency', '1'], {store: path.join(t.dir, 'warm')})
    assert.is(r0.status, 0)
    peerProxy = await startFaultProxy(s.server.url, {mode: 'flip', after: 10})
    const r = await execAsync(['pull', s.id, proxy.url, '--peer', peerProxy.url, '--no-owner-hashing'], {store: host, timeout: 120_000})
    assert.is(r.status, 9, r.stderr)
    assert.match(r.stderr, /could not fetch chunk [0-9a-f]{64}|sent wrong bytes for manifest|no source has image/)
    assert.match(r.stderr, /seed|peer/)
    fsckClean(host)
  } finally {
    await peerProxy?.close()
    await proxy?.close()
    await s?.server.stop()
    t.cleanup()
  }
})

test('a mounted guest reading through a corrupting seed gets an I/O error, never wrong data', async () => {
  if (!hasCommand('qemu-io')) return skip('qemu-io not installed')
  const t = tmpStore()
  let s
  let proxy
  let m
  try {
    s = await seed(t)
    const host = path.join(t.dir, 'host')
    proxy = await startFaultProxy(s.server.url, {mode: 'pass'})
    m = await startMount(host, [s.id, proxy.url, '--read-only', '--prefetch', 'none'])
    proxy.set({mode: 'flip', after: 300, every: 1})
    // async: the proxy lives in this process
    const r = await runAsync('qemu-io', ['-r', '-f', 'raw', '-c', 'read 0 4096', m.nbd])
    assert.match(r.out, /(Input\/output error|read failed)/i, `qemu-io said: ${r.out}`)
    proxy.set({mode: 'pass'})
    const good = await runAsync('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', m.nbd, path.join(t.dir, 'after.raw')])
    assert.is(good.status, 0, good.out)
    assert.is(await sha256File(path.join(t.dir, 'after.raw')), await sha256File(s.src), 'once the seed behaves, the disk reads correctly')
    await m.stop()
    fsckClean(host)
  } finally {
    await m?.stop()
    await proxy?.close()
    await s?.server.stop()
    t.cleanup()
  }
})

test.run()
