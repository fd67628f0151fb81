// A lazy mount asks each chunk of its image from the chunk's owner as a pull
// does: owners balanced over the image's chunks (docs/PROTOCOL.md, "Owner
// hashing"), seen at the peers' side, through the real CLI and qemu-img.
import {test} from 'uvu'
import * as assert from 'uvu/assert'
import path from 'node:path'
import {balancedOwners, rankPeers} from '../../dist/index.js'
import {hasCommand, runAsync, sha256File, skip, tmpStore} from '../helpers/index.js'
import {startMount} from '../helpers/mount.js'
import {forwarder, objectIds, seedImage} from '../helpers/peers.js'
import {startServe} from '../helpers/serve.js'

test('a mount reading every chunk asks each one of its balanced owner, and of no other peer', async () => {
  if (!hasCommand('qemu-img')) return skip('qemu-img is not installed')
  const t = tmpStore()
  const servers = []
  let m
  try {
    const {seed, seedStore, src} = await seedImage(t.dir, 'mount-owners', servers)
    const peer = await startServe(path.join(t.dir, 'peer'), ['--seed', seed.url])
    servers.push(peer)
    const ids = await objectIds(seedStore)
    assert.is(ids.length, 64)
    // 12 peers or more: until the balance gives some chunk another owner than its
    // first-ranked peer (the ports vary; mostly at once), so that this test tells them apart
    const peers = []
    let owners
    const listed = () => peers.map((p) => ({url: new URL(p.url).href, p})) // in their normal form, as the chain ranks them
    while (peers.length < 12 || ids.every((id) => owners.get(id).url === rankPeers(listed(), id)[0].url)) {
      const p = await forwarder(peer.url)
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
