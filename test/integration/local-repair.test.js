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

/**
 * A seed (vmi serve over an imported image of `size` random bytes) and a host that pulled it,
 * one of whose objects then had a bit flipped on disk: {src, host, seed, id, bytes} (the bad
 * object's bytes as they are now). The caller stops seed.
 */
async function hostWithCorruptChunk(dir, size, name) {
  const src = path.join(dir, 'src.raw')
  await makeImage(src, [{kind: 'random', size, seed: name}])
  const seedStore = path.join(dir, 'seed')
  const host = path.join(dir, 'host')
  assert.is((await execAsync(['import', src, 'app:v1'], {store: seedStore})).status, 0)
  const seed = await startServe(seedStore)
  const pull = await execAsync(['pull', 'app:v1', seed.url], {store: host})
  assert.is(pull.status, 0, pull.stderr)
  const victim = (await listFiles(path.join(host, 'objects'))).filter((f) => /^[0-9a-f]{2}\/[0-9a-f]{62}$/.test(f))[1]
  const file = path.join(host, 'objects', victim)
  const bytes = await fsp.readFile(file)
  bytes[1000] ^= 1
  await fsp.chmod(file, 0o644)
  await fsp.writeFile(file, bytes)
  return {src, host, seed, id: victim.replace('/', ''), bytes}
}

/** Mount app:v1 on `host` read-only, lazily, copying the disk to `out` with qemu-img. */
const mountAndCopy = (host, seedUrl, out) => execAsync(['mount', 'app:v1', seedUrl, '--read-only', '--prefetch', 'none', '--exec', `qemu-img convert -f raw -O raw {nbd} ${out}`], {store: host})

test('a mount reading a corrupt local chunk moves it aside, fetches it again from the seed and reads the right bytes', async () => {
  if (!hasCommand('qemu-img')) return skip('qemu-img is not installed (the NBD client that reads the mount)')
  const t = tmpDir()
  let seed
  try {
    const r = await hostWithCorruptChunk(t.dir, 4 * M, 'local-repair')
    seed = r.seed
    const {src, host, id, bytes} = r
    const out = path.join(t.dir, 'out.raw')
    const m = await mountAndCopy(host, seed.url, out)
    assert.is(m.status, 0, m.stderr)
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

test('export and save of an image with a corrupt local chunk: refused (exit 8), the chunk moved aside, and the pull the hint names brings it back', async () => {
  const t = tmpDir()
  let seed
  try {
    const r = await hostWithCorruptChunk(t.dir, 4 * M, 'export-repair')
    seed = r.seed
    const {src, host, id} = r
    const out = path.join(t.dir, 'out.raw')
    const e = await execAsync(['export', 'app:v1', out], {store: host})
    assert.is(e.status, 8, e.stderr)
    assert.match(e.stderr, new RegExp(`chunk ${id} in .* is corrupt .*; moved to quarantine/${id}\\.`))
    assert.ok(e.stderr.includes(`vmi pull app:v1 ${seed.url}`), e.stderr)
    const s = await execAsync(['save', 'app:v1', '-o', path.join(t.dir, 'b.tar')], {store: host})
    assert.is(s.status, 8, `save: the chunk is missing now: ${s.stderr}`)
    const p = await execAsync(['pull', 'app:v1', seed.url], {store: host})
    assert.is(p.status, 0, p.stderr)
    assert.match(p.stdout, /seed \S+ \S+ \(1\)/, `the pull fetched the one chunk again: ${p.stdout}`)
    assert.is((await execAsync(['export', 'app:v1', out], {store: host})).status, 0)
    assert.is(await sha256File(out), await sha256File(src))
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
    const r = await hostWithCorruptChunk(t.dir, 2 * M, 'local-repair-2')
    seed = r.seed
    const {src, host, id} = r
    // quarantine/ cannot be made: a file has its name
    await fsp.writeFile(path.join(host, 'quarantine'), 'in the way\n')
    const out = path.join(t.dir, 'out.raw')
    const m = await mountAndCopy(host, seed.url, out)
    assert.is(m.status, 0, m.stderr)
    assert.match(m.stderr, new RegExp(`local chunk ${id} was corrupt; could not move it aside \\(`))
    assert.not.match(m.stderr, /moved to/)
    assert.is(await sha256File(out), await sha256File(src), 'the guest read the right bytes')
  } finally {
    await seed?.stop()
    t.cleanup()
  }
})

test.run()
