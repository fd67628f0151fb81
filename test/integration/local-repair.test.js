// A chunk that went bad in the local store (a flipped bit on disk) is found
// when a mount reads it: moved aside to quarantine/, fetched again from the
// seed and verified, and the guest reads the right bytes. The store is
// fsck-clean afterwards. When it cannot be moved aside, the warning says so.
import {test} from 'uvu'
import * as assert from 'uvu/assert'
import {promises as fsp} from 'node:fs'
import path from 'node:path'
import {execAsync, fsckCleanAsync, hasCommand, listFiles, makeImage, sha256File, skip, tmpDir} from '../helpers/index.js'
import {startServe} from '../helpers/serve.js'

const M = 1024 * 1024

test('a mount reading a corrupt local chunk moves it aside, fetches it again from the seed and reads the right bytes', async () => {
  if (!hasCommand('qemu-img')) return skip('qemu-img is not installed (the NBD client that reads the mount)')
  const t = tmpDir()
  let seed
  try {
    const src = path.join(t.dir, 'src.raw')
    await makeImage(src, [{kind: 'random', size: 4 * M, seed: 'local-repair'}])
    const seedStore = path.join(t.dir, 'seed')
    const host = path.join(t.dir, 'host')
    assert.is((await execAsync(['import', src, 'app:v1'], {store: seedStore})).status, 0)
    seed = await startServe(seedStore)
    const pull = await execAsync(['pull', 'app:v1', seed.url], {store: host})
    assert.is(pull.status, 0, pull.stderr)
    // one object of the host goes bad on disk
    const objects = (await listFiles(path.join(host, 'objects'))).filter((f) => /^[0-9a-f]{2}\/[0-9a-f]{62}$/.test(f))
    const victim = objects[3]
    const file = path.join(host, 'objects', victim)
    const bytes = await fsp.readFile(file)
    bytes[1000] ^= 1
    await fsp.chmod(file, 0o644)
    await fsp.writeFile(file, bytes)
    const out = path.join(t.dir, 'out.raw')
    const m = await execAsync(['mount', 'app:v1', seed.url, '--read-only', '--prefetch', 'none', '--exec', `qemu-img convert -f raw -O raw {nbd} ${out}`], {store: host})
    assert.is(m.status, 0, m.stderr)
    const id = victim.replace('/', '')
    assert.match(m.stderr, new RegExp(`local chunk ${id} was corrupt; moved to \\S+quarantine/${id}\\.`))
    assert.is(await sha256File(out), await sha256File(src), 'the guest read the right bytes')
    const aside = await fsp.readdir(path.join(host, 'quarantine'))
    assert.equal(aside.length, 1)
    assert.ok(aside[0].startsWith(`${id}.`))
    assert.ok((await fsp.readFile(path.join(host, 'quarantine', aside[0]))).equals(bytes), 'the bad copy is kept aside as it was')
    await fsckCleanAsync(host)
  } finally {
    await seed?.stop()
    t.cleanup()
  }
})

test('when the corrupt chunk cannot be moved aside, the mount says so (not "moved to"), and still reads the right bytes from the seed', async () => {
  if (!hasCommand('qemu-img')) return skip('qemu-img is not installed (the NBD client that reads the mount)')
  const t = tmpDir()
  let seed
  try {
    const src = path.join(t.dir, 'src.raw')
    await makeImage(src, [{kind: 'random', size: 2 * M, seed: 'local-repair-2'}])
    const seedStore = path.join(t.dir, 'seed')
    const host = path.join(t.dir, 'host')
    assert.is((await execAsync(['import', src, 'app:v1'], {store: seedStore})).status, 0)
    seed = await startServe(seedStore)
    assert.is((await execAsync(['pull', 'app:v1', seed.url], {store: host})).status, 0)
    const victim = (await listFiles(path.join(host, 'objects'))).filter((f) => /^[0-9a-f]{2}\/[0-9a-f]{62}$/.test(f))[0]
    const file = path.join(host, 'objects', victim)
    const bytes = await fsp.readFile(file)
    bytes[7] ^= 1
    await fsp.chmod(file, 0o644)
    await fsp.writeFile(file, bytes)
    // quarantine/ cannot be made: a file has its name
    await fsp.writeFile(path.join(host, 'quarantine'), 'in the way\n')
    const out = path.join(t.dir, 'out.raw')
    const m = await execAsync(['mount', 'app:v1', seed.url, '--read-only', '--prefetch', 'none', '--exec', `qemu-img convert -f raw -O raw {nbd} ${out}`], {store: host})
    assert.is(m.status, 0, m.stderr)
    const id = victim.replace('/', '')
    assert.match(m.stderr, new RegExp(`local chunk ${id} was corrupt; could not move it aside \\(`))
    assert.not.match(m.stderr, /moved to/)
    assert.is(await sha256File(out), await sha256File(src), 'the guest read the right bytes')
  } finally {
    await seed?.stop()
    t.cleanup()
  }
})

test.run()
