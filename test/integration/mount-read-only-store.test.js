// mount --read-only from a store on a read-only filesystem: it works,
// writing nothing into the store (no lock file, socket in the system tmp).
// Root ignores file modes, so the store is made read-only by a read-only
// bind mount in a private mount namespace (unshare -m).
import {test} from 'uvu'
import * as assert from 'uvu/assert'
import {readdirSync, rmSync} from 'node:fs'
import path from 'node:path'
import {BIN, exec, hasCommand, isRoot, listFiles, makeImage, runAsync, sha256File, skip, tmpStore} from '../helpers/index.js'

const M = 1024 * 1024

test('mount --read-only works from a read-only store and writes nothing to it; a fetch it would need is refused clearly', async () => {
  if (!isRoot) return skip('needs root for a read-only bind mount (unshare -m)')
  if (!hasCommand('unshare') || !hasCommand('qemu-img')) return skip('unshare or qemu-img is not installed')
  const t = tmpStore()
  try {
    const src = path.join(t.dir, 'src.raw')
    await makeImage(src, [{kind: 'random', size: M, seed: 'ro-store'}, {kind: 'zero', size: M}])
    assert.is(exec(['import', src, 'ro:1', '--chunk-size', '64K'], {store: t.store}).status, 0)
    const before = await listFiles(t.store)
    const out = path.join(t.dir, 'out.raw')
    const inNs = (vmiArgs) =>
      runAsync('unshare', [
        '-m',
        'sh',
        '-c',
        `mount --bind -o ro "$0" "$0" && touch "$0/probe" 2>/dev/null && exit 99; exec "${process.execPath}" "${BIN}" "$@"`,
        t.store,
        ...vmiArgs,
        '--store',
        t.store,
      ])
    const r = await inNs(['mount', 'ro:1', '--read-only', '--exec', `qemu-img convert -f raw -O raw {nbd} ${out}`])
    assert.is.not(r.status, 99, 'the store was writable inside the namespace')
    assert.is(r.status, 0, r.out)
    assert.is(await sha256File(out), await sha256File(src))
    assert.equal(await listFiles(t.store), before, 'nothing written to the store')
    // chunks it lacks cannot be fetched into a read-only store: refused before mounting (exit 6), naming the store
    const objects = path.join(t.store, 'objects')
    const shard = readdirSync(objects)[0]
    rmSync(path.join(objects, shard, readdirSync(path.join(objects, shard))[0]))
    const r2 = await inNs(['mount', 'ro:1', '--read-only', '--exec', 'true'])
    assert.is(r2.status, 6, r2.out)
    assert.match(r2.out, /is not writable and lacks 1 chunks/)
  } finally {
    t.cleanup()
  }
})

test.run()
