// A web server that answers 404 to everything is not "a seed without the
// image": pull says the URL does not look like a vmi seed (exit 9). A static
// server over a store directory (which carries vmi-store.json) still says
// "has no image" (exit 3), and a store without the marker (written by an
// older vmi) still serves what it has.
import {test} from 'uvu'
import * as assert from 'uvu/assert'
import {createReadStream, existsSync, rmSync, statSync} from 'node:fs'
import http from 'node:http'
import path from 'node:path'
import {execAsync, makeImage, tmpStore} from '../helpers/index.js'

/** A plain static file server over `root` (404 for anything else), or 404 for everything without one. */
async function staticServer(root) {
  const server = http.createServer((req, res) => {
    const file = root && path.join(root, decodeURIComponent(new URL(req.url, 'http://x').pathname))
    if (!file || !file.startsWith(root) || !existsSync(file) || !statSync(file).isFile()) {
      res.writeHead(404, {'content-type': 'text/html'}).end('<h1>Not Found</h1>')
      return
    }
    res.writeHead(200, {'content-length': statSync(file).size})
    if (req.method === 'HEAD') res.end()
    else createReadStream(file).pipe(res)
  })
  await new Promise((r) => server.listen(0, '127.0.0.1', r))
  return {url: `http://127.0.0.1:${server.address().port}`, close: () => new Promise((r) => server.close(r))}
}

test('pull from a server answering 404 to everything: "does not look like a vmi seed", exit 9; from a static store: "has no image", exit 3', async () => {
  const t = tmpStore()
  const servers = []
  try {
    const nothing = await staticServer(undefined)
    servers.push(nothing)
    const host = path.join(t.dir, 'host')
    const byName = await execAsync(['pull', 'web:v1', nothing.url], {store: host})
    assert.is(byName.status, 9, byName.stderr)
    assert.match(byName.stderr, /does not look like a vmi seed \(no ref web:v1/)
    assert.not.match(byName.stderr, /has no image/)
    assert.is(byName.stdout, '')
    const byId = await execAsync(['pull', 'ab'.repeat(32), nothing.url, '--json'], {store: host})
    assert.is(byId.status, 9, byId.stderr)
    assert.is(JSON.parse(byId.stderr).error.code, 'VMI_NOT_A_STORE')

    const seedStore = path.join(t.dir, 'seed')
    const src = path.join(t.dir, 'src.raw')
    await makeImage(src, [{kind: 'random', size: 256 * 1024, seed: 'not-a-seed'}])
    const imp = await execAsync(['import', src, 'web:v1'], {store: seedStore})
    assert.is(imp.status, 0, imp.stderr)
    assert.ok(existsSync(path.join(seedStore, 'vmi-store.json')), 'a store carries its marker')
    const stat = await staticServer(seedStore)
    servers.push(stat)
    const absent = await execAsync(['pull', 'web:v2', stat.url], {store: host})
    assert.is(absent.status, 3, absent.stderr)
    assert.match(absent.stderr, /has no image web:v2/)

    // a store from before the marker: what it has still pulls
    rmSync(path.join(seedStore, 'vmi-store.json'))
    const old = await execAsync(['pull', 'web:v1', stat.url], {store: host})
    assert.is(old.status, 0, old.stderr)
  } finally {
    for (const s of servers) await s.close()
    t.cleanup()
  }
})

test.run()
