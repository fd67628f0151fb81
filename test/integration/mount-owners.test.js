// A lazy mount asks each chunk of its image from the chunk's owner as a pull
// does: owners balanced over the image's chunks (docs/PROTOCOL.md, "Owner
// hashing"), seen at the peers' side, through the real CLI and qemu-img.
import {test} from 'uvu'
import * as assert from 'uvu/assert'
import {promises as fsp} from 'node:fs'
import net from 'node:net'
import path from 'node:path'
import {balancedOwners, rankPeers} from '../../dist/index.js'
import {execAsync, hasCommand, makeImage, runAsync, sha256File, skip, tmpStore} from '../helpers/index.js'
import {startMount} from '../helpers/mount.js'
import {startServe} from '../helpers/serve.js'

const K = 1024

/** A TCP forwarder to `target` that records the object ids of the GETs passing through it. */
async function recordingForwarder(target) {
  const {hostname, port} = new URL(target)
  const streams = []
  const server = net.createServer((c) => {
    const up = net.connect(Number(port), hostname)
    const seen = {text: ''}
    streams.push(seen)
    c.on('data', (d) => (seen.text += d.toString('latin1')))
    c.pipe(up).pipe(c)
    const end = () => (c.destroy(), up.destroy())
    c.on('error', end)
    up.on('error', end)
  })
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    /** The ids of the objects asked for through this forwarder, each once. */
    asked: () => new Set(streams.flatMap((s) => [...s.text.matchAll(/GET \S*objects\/([0-9a-f]{2})\/([0-9a-f]{62})/g)].map((m) => m[1] + m[2]))),
    stop: () => new Promise((resolve) => server.close(resolve)),
  }
}

test('a mount reading every chunk asks each one of its balanced owner, and of no other peer', async () => {
  if (!hasCommand('qemu-img')) return skip('qemu-img is not installed')
  const t = tmpStore()
  const servers = []
  let m
  try {
    const src = path.join(t.dir, 'src.raw')
    await makeImage(src, [{kind: 'random', size: 4096 * K, seed: 'mount-owners'}])
    const seedStore = path.join(t.dir, 'seed')
    const imp = await execAsync(['import', src, 'app:v1', '--chunk-size', '64K'], {store: seedStore})
    assert.is(imp.status, 0, imp.stderr)
    const seed = await startServe(seedStore)
    servers.push(seed)
    const peer = await startServe(path.join(t.dir, 'peer'), ['--seed', seed.url])
    servers.push(peer)
    const ids = []
    for (const d of await fsp.readdir(path.join(seedStore, 'objects'))) for (const f of await fsp.readdir(path.join(seedStore, 'objects', d))) ids.push(d + f)
    assert.is(ids.length, 64)
    // 12 peers or more: until the balance gives some chunk another owner than its
    // first-ranked peer (the ports vary; mostly at once), so that this test tells them apart
    const peers = []
    let owners
    const listed = () => peers.map((p) => ({url: new URL(p.url).href, p})) // in their normal form, as the chain ranks them
    while (peers.length < 12 || ids.every((id) => owners.get(id).url === rankPeers(listed(), id)[0].url)) {
      const p = await recordingForwarder(peer.url)
      peers.push(p)
      servers.push(p)
      owners = balancedOwners(ids, listed())
    }
    m = await startMount(path.join(t.dir, 'host'), ['app:v1', seed.url, ...peers.flatMap((p) => ['--peer', p.url]), '--read-only', '--prefetch', 'none'])
    const out = path.join(t.dir, 'out.raw')
    await runAsync('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', m.nbd, out])
    assert.is(await sha256File(out), await sha256File(src), 'the guest reads the image byte for byte')
    await m.stop()
    m = undefined
    for (const p of peers) {
      const expected = ids.filter((id) => owners.get(id).p === p).sort()
      assert.equal([...p.asked()].sort(), expected, `${p.url} was asked for exactly the chunks it owns`)
    }
  } finally {
    await m?.stop()
    for (const s of servers) await s.stop()
    t.cleanup()
  }
})

test.run()
