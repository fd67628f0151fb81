// What a pull says about its sources, through the real CLI: one dead peer
// (a closed port on 127.0.0.1) of two costs one warning line, not one per
// chunk; `--verbose` lists every peer and the seed, up or down and what each
// sent; `--json` carries the same as `sources`.
import {test} from 'uvu'
import * as assert from 'uvu/assert'
import path from 'node:path'
import {execAsync, freePort, makeImage, tmpStore} from '../helpers/index.js'
import {startServe} from '../helpers/serve.js'

const K = 1024


test('one dead peer of two: one warning line; --verbose and --json say which sources are up and what each sent', async () => {
  const t = tmpStore()
  const servers = []
  try {
    const src = path.join(t.dir, 'src.raw')
    // 64 chunks: about half of them owned by the dead peer
    await makeImage(src, [{kind: 'random', size: 4096 * K, seed: 'pull-sources'}])
    const seedStore = path.join(t.dir, 'seed')
    const imp = await execAsync(['import', src, 'app:v1', '--chunk-size', '64K'], {store: seedStore})
    assert.is(imp.status, 0, imp.stderr)
    const seed = await startServe(seedStore)
    servers.push(seed)
    const peerStore = path.join(t.dir, 'peer')
    assert.is((await execAsync(['pull', 'app:v1', seed.url], {store: peerStore})).status, 0)
    const peer = await startServe(peerStore)
    servers.push(peer)
    const dead = `http://127.0.0.1:${await freePort()}`
    const args = ['pull', 'app:v1', seed.url, '--peer', dead, '--peer', peer.url]

    for (const bulk of [[], ['--no-bulk']]) {
      const r = await execAsync([...args, ...bulk], {store: path.join(t.dir, `host${bulk.length}`)})
      assert.is(r.status, 0, r.stderr)
      const lines = r.stderr.trim().split('\n')
      assert.is(lines.length, 2, `a warning and the summary, nothing per chunk (${bulk}):\n${r.stderr}`)
      assert.match(lines[0], new RegExp(`^warning: peer ${dead}/? is unreachable \\(ECONNREFUSED\\)`))
      assert.match(lines[1], /^pulled [0-9a-f]{12} as app:v1: 64 distinct chunks/)
      assert.match(r.stdout, /^local 0 B \(0\), peers \S+ MiB \(64\), seed 0 B \(0\)\n$/, 'the live peer gave everything')
    }

    const v = await execAsync([...args, '--verbose'], {store: path.join(t.dir, 'host-v')})
    assert.is(v.status, 0, v.stderr)
    assert.match(v.stderr, new RegExp(`  peer ${dead}/?: down since \\S+ \\(ECONNREFUSED\\), sent 0 chunks`))
    assert.match(v.stderr, new RegExp(`  peer ${peer.url}/?: up, sent 64 chunks`))
    assert.match(v.stderr, new RegExp(`  seed ${seed.url}/?: up, sent 0 chunks`))

    const j = await execAsync([...args, '--json'], {store: path.join(t.dir, 'host-j')})
    assert.is(j.status, 0, j.stderr)
    const {sources} = JSON.parse(j.stdout)
    assert.equal(
      sources.map((s) => [s.kind, s.up, s.chunks, s.downReason]),
      [
        ['peer', false, 0, 'ECONNREFUSED'],
        ['peer', true, 64, undefined],
        ['seed', true, 0, undefined],
      ],
    )
    assert.is(j.stderr.trim().split('\n').length, 1, `one JSON warning line:\n${j.stderr}`)
  } finally {
    for (const s of servers) await s.stop()
    t.cleanup()
  }
})

test.run()
