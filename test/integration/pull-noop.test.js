// A pull of an image already here whole reads, re-hashes and touches
// nothing (the store trusts its own objects, as a mount does; fsck verifies),
// and still reports the image complete. A chunk gone from the store is still
// noticed and fetched.
import {test} from 'uvu'
import * as assert from 'uvu/assert'
import {readdirSync, rmSync, statSync, utimesSync} from 'node:fs'
import path from 'node:path'
import {execAsync, fsckCleanAsync, listFiles, makeImage, tmpStore} from '../helpers/index.js'
import {startServe} from '../helpers/serve.js'

const K = 1024
const OLD = new Date('2001-01-01T00:00:00Z')

async function pull(args, store) {
  const r = await execAsync(['pull', ...args, '--json'], {store})
  assert.is(r.status, 0, r.stderr)
  return JSON.parse(r.stdout)
}

test('a no-op pull leaves every object untouched and reports the image whole; a missing chunk is fetched again', async () => {
  const t = tmpStore()
  let seed
  try {
    const src = path.join(t.dir, 'src.raw')
    await makeImage(src, [{kind: 'random', size: 1024 * K, seed: 'noop'}, {kind: 'zero', size: 256 * K}])
    const seedStore = path.join(t.dir, 'seed')
    const imp = await execAsync(['import', src, 'app:v1', '--chunk-size', '64K'], {store: seedStore})
    assert.is(imp.status, 0, imp.stderr)
    seed = await startServe(seedStore)
    const host = path.join(t.dir, 'host')
    const first = await pull(['app:v1', seed.url], host)
    assert.is(first.fromChunks.seed, 16)
    assert.is(first.upToDate, false)

    const objects = (await listFiles(path.join(host, 'objects'))).map((f) => path.join(host, 'objects', f))
    assert.is(objects.length, 16)
    for (const f of objects) utimesSync(f, OLD, OLD)
    const again = await pull(['app:v1', seed.url], host)
    assert.is(again.upToDate, true, 'reported as already here whole')
    assert.equal(again.fromChunks, {local: 16, peer: 0, seed: 0})
    assert.is(again.fromBytes.local, 1024 * K)
    assert.is(again.ref, 'app:v1')
    for (const f of objects) assert.is(statSync(f).mtimeMs, OLD.getTime(), `${f} was not touched`)

    // a chunk gone (say, moved aside by fsck --repair): no longer a no-op
    const shard = readdirSync(path.join(host, 'objects'))[0]
    const victim = path.join(host, 'objects', shard, readdirSync(path.join(host, 'objects', shard))[0])
    rmSync(victim)
    const heal = await pull(['app:v1', seed.url], host)
    assert.is(heal.upToDate, false)
    assert.is(heal.fromChunks.seed, 1, 'the missing chunk came from the seed')
    await fsckCleanAsync(host)
  } finally {
    await seed?.stop()
    t.cleanup()
  }
})

test.run()
