// @ts-check
// In-process split of a pull's cost, with vmi's public API (dist/index.js): fetching
// every chunk over HTTP one request at a time per connection — through
// HttpStore (its general HTTP client + hash verification, as `pull --no-bulk` does) and with bare
// node:http (no client layer, no hashing), 8 in flight — then the same GETs pipelined
// (bulkGet, as vmi pull does, bodies dropped), hashing every chunk, and
// storing them with LocalStore.putObjectSync. Wall and this process's CPU time.
import http from 'node:http'
import {loadVmi} from './common.js'
import {pool} from './measure.js'

async function timed(fn) {
  const c0 = process.cpuUsage()
  const t0 = performance.now()
  const r = await fn()
  const cpu = process.cpuUsage(c0)
  return {wall: (performance.now() - t0) / 1000, cpu: (cpu.user + cpu.system) / 1e6, result: r}
}

/**
 * objects: [{id, path, size}]; baseUrl: a static server over a store. Returns
 * {httpStore, bareHttp, pipelined, hash, putObject}: each {wall, cpu, perChunkCpuUs}.
 */
/**
 * @param {string} baseUrl @param {{id: string, path: string, size: number}[]} objects
 * @param {{concurrency?: number, storeDir: string, discard?: (dir: string) => Promise<void>}} opts
 */
export async function pullComponents(baseUrl, objects, {concurrency = 8, storeDir, discard}) {
  const {HttpStore, LocalStore, bulkGet, hash} = await loadVmi()
  const n = objects.length
  const per = (x) => ({...x, result: undefined, perChunkCpuUs: (x.cpu / n) * 1e6, perChunkWallUs: (x.wall / n) * 1e6})

  const remote = new HttpStore(baseUrl, {kind: 'seed'})
  await remote.get(objects[0].id) // connect, warm
  const bufs = new Array(n)
  const viaGot = await timed(() =>
    pool(objects, concurrency, async (o, k) => {
      bufs[k] = await remote.get(o.id)
    }),
  )

  const agent = new http.Agent({keepAlive: true, maxSockets: concurrency})
  const u = new URL(baseUrl)
  const bare = await timed(() =>
    pool(objects, concurrency, (o) => new Promise((resolve, reject) => {
      http
        .get({host: u.hostname, port: u.port, path: o.path, agent}, (res) => {
          const parts = []
          res.on('data', (d) => parts.push(d))
          res.on('end', () => resolve(Buffer.concat(parts)))
          res.on('error', reject)
        })
        .on('error', reject)
    })),
  )
  agent.destroy()

  let received = 0
  const items = objects.map((o, k) => ({id: o.id, path: o.path.replace(/^\//, ''), length: bufs[k].length}))
  const pipelined = await timed(() =>
    bulkGet(baseUrl, items, {onBody: (_, b) => (received += b.length), onMissing: () => {}, onFailed: () => {}}, {connections: 2}),
  )
  if (received !== bufs.reduce((a, b) => a + b.length, 0)) throw new Error(`bulkGet received ${received} bytes`)
  const hashed = await timed(async () => bufs.forEach((b) => hash(b)))

  const store = await LocalStore.open(storeDir)
  const put = await timed(async () => bufs.forEach((b, k) => store.putObjectSync(objects[k].id, b, {probe: false})))
  if (discard) await discard(storeDir)
  return {concurrency, chunks: n, httpStore: per(viaGot), bareHttp: per(bare), pipelined: per(pipelined), hash: per(hashed), putObject: per(put)}
}
