// Peers for the owner-hashing tests: a seed with a random image, the chunk
// ids in a store, and TCP forwarders that give one server many addresses.
import {promises as fsp} from 'node:fs'
import net from 'node:net'
import path from 'node:path'
import * as assert from 'uvu/assert'
import {execAsync, makeImage} from './index.js'
import {startServe} from './serve.js'

/**
 * A random image of `kib` KiB in 64 KiB chunks imported as app:v1 into DIR/seed and served
 * there: {seed (its server, pushed onto `servers` for the caller to stop), seedStore, src}.
 */
export async function seedImage(dir, imageSeed, servers, kib = 4096) {
  const src = path.join(dir, 'src.raw')
  await makeImage(src, [{kind: 'random', size: kib * 1024, seed: imageSeed}])
  const seedStore = path.join(dir, 'seed')
  const imp = await execAsync(['import', src, 'app:v1', '--chunk-size', '64K'], {store: seedStore})
  assert.is(imp.status, 0, imp.stderr)
  const seed = await startServe(seedStore)
  servers.push(seed)
  return {seed, seedStore, src}
}

/** The chunk ids in a store's objects/ (each file is objects/XX/REST). */
export async function objectIds(store) {
  const root = path.join(store, 'objects')
  const ids = []
  for (const d of await fsp.readdir(root)) for (const f of await fsp.readdir(path.join(root, d))) ids.push(d + f)
  return ids
}

/**
 * A TCP forwarder on a free port of 127.0.0.1 to `target` (http://HOST:PORT): one more address
 * for the same server. `opts.delayMs`: hold each connection that long before forwarding it;
 * `opts.open`: counts the connections open across the forwarders sharing it ({now, max}).
 * `asked()`: the ids of the objects GET through it, each once. `requestLines()`: every request
 * line that went through ("GET /path"), in order per connection. `stop()` closes it.
 * `opts.holdAt(line)`: called with each request line as it passes ("PUT /path"); when it
 * returns true, that request and all after it on its connection never reach the target, and
 * `isHeld()` is true from then on (a client stuck mid-way, for kill -9 tests).
 */
export async function forwarder(target, opts = {}) {
  const {hostname, port} = new URL(target)
  const requests = [] // what each client connection sent
  const server = net.createServer((c) => {
    if (opts.open) {
      opts.open.max = Math.max(opts.open.max, ++opts.open.now)
      // closed by the client when it sends its FIN ('end'): the full close also waits for the server's side
      let counted = true
      const closed = () => counted && ((counted = false), opts.open.now--)
      c.once('end', closed)
      c.once('close', closed)
    }
    const sent = {text: ''}
    requests.push(sent)
    c.on('data', (d) => (sent.text += d.toString('latin1')))
    c.pause()
    setTimeout(() => {
      const up = net.connect(Number(port), hostname)
      if (opts.holdAt) forwardUntilHeld(c, up, sent)
      else c.pipe(up)
      up.pipe(c)
      c.resume()
      const end = () => (c.destroy(), up.destroy())
      c.on('error', end)
      up.on('error', end)
    }, opts.delayMs ?? 0)
  })
  let isHeld = false
  function forwardUntilHeld(c, up, sent) {
    c.once('close', () => up.destroy())
    let scanned = 0
    const lineRe = /(GET|PUT|HEAD|POST) (\/\S*) HTTP\/1\.1\r\n/g
    c.on('data', () => {
      // the request lines completed by this read (one may straddle two reads: its start is then
      // forwarded already, and holding the rest still keeps that request from completing)
      const text = sent.text
      lineRe.lastIndex = Math.max(0, scanned - 4096)
      let stopAt
      for (let m; (m = lineRe.exec(text)); ) {
        if (m.index + m[0].length <= scanned) continue
        if (opts.holdAt(`${m[1]} ${m[2]}`)) {
          stopAt = Math.max(m.index, scanned)
          break
        }
      }
      const end = stopAt ?? text.length
      if (end > scanned) up.write(Buffer.from(text.slice(scanned, end), 'latin1'))
      scanned = end
      if (stopAt !== undefined) {
        // read on and drop, so that the client's close is seen (and closes the target's side)
        c.removeAllListeners('data')
        c.on('data', () => {})
        isHeld = true
      }
    })
  }
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    isHeld: () => isHeld,
    url: `http://127.0.0.1:${server.address().port}`,
    requestLines: () => requests.flatMap((s) => [...s.text.matchAll(/((?:GET|PUT|HEAD|POST) \/\S*) HTTP\/1\.1\r\n/g)].map((m) => m[1])),
    asked: () => new Set(requests.flatMap((s) => [...s.text.matchAll(/GET \S*objects\/([0-9a-f]{2})\/([0-9a-f]{62})/g)].map((m) => m[1] + m[2]))),
    stop: () => new Promise((resolve) => server.close(resolve)),
  }
}
