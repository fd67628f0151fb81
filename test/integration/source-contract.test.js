// Every chunk source there is, against the one ChunkSource contract
// (test/helpers/source-contract.js): the local store, HttpStore against a
// real `vmi serve` and against nginx over a store directory, S3Store against
// a real radosgw (root only), BatchedSource,
// the circuit-breaker wrappers, and the fetch chain built by buildChain from
// a peer and a seed. Lying and stalling remotes are test/helpers/hostile-store.js;
// a remote that is down is a loopback port nothing listens on.
import {test} from 'uvu'
import * as assert from 'uvu/assert'
import {LocalStore} from '../../dist/store/local-store.js'
import {LocalSource} from '../../dist/peer/local-source.js'
import {HttpStore} from '../../dist/peer/http-store.js'
import {BatchedSource} from '../../dist/peer/batched-source.js'
import {guardRemote} from '../../dist/peer/circuit-breaker.js'
import {buildChain, upstreamSource} from '../../dist/peer/factory.js'
import {freePort, hasCommand, skip, tmpDir} from '../helpers/index.js'
import {startServe} from '../helpers/serve.js'
import {startNginx} from '../helpers/nginx.js'
import {startHostileStore} from '../helpers/hostile-store.js'
import {sourceContract} from '../helpers/source-contract.js'
import {S3Store} from '../../dist/peer/s3/s3-store.js'
import {radosgwUnavailable, startRadosgw} from '../helpers/radosgw.js'

/** How long a slow remote takes to answer each request. */
const SLOW_MS = 300
const fastRetry = {retries: 1, baseMs: 10, maxMs: 20}
const http = (url, init = {}) => new HttpStore(url, {kind: 'seed', retry: fastRetry, connectTimeoutMs: 2000, ...init})

/** A store directory holding exactly `chunks`. */
async function storeWith(chunks) {
  const t = tmpDir('vmi-contract-')
  const store = await LocalStore.open(t.dir)
  for (const c of chunks) await store.putObject(c.id, c.body)
  return {store, dir: t.dir, cleanup: t.cleanup}
}

/** `vmi serve` over a store holding exactly `chunks`. */
async function servedStore(chunks) {
  const s = await storeWith(chunks)
  const srv = await startServe(s.dir)
  return {url: srv.url, cleanup: async () => (await srv.stop(), s.cleanup())}
}

/** A remote factory set for one way of wrapping an HttpStore (`wrap(httpStore) → {source, close?}`). */
function remote(wrap, serveChunks = servedStore) {
  const made = async (url, close) => {
    const w = wrap(url)
    return {source: w.source, cleanup: async () => (w.close?.(), await close())}
  }
  return {
    create: async (chunks) => {
      const s = await serveChunks(chunks)
      return made(s.url, s.cleanup)
    },
    createLying: async (id, wrong) => {
      const h = await startHostileStore({bodies: new Map([[id, wrong]])})
      return made(h.url, h.close)
    },
    createStalled: async () => {
      const h = await startHostileStore({stall: true})
      return made(h.url, h.close)
    },
    createSlow: async (chunks) => {
      const h = await startHostileStore({bodies: new Map(chunks.map((c) => [c.id, c.body])), delayMs: SLOW_MS})
      return made(h.url, h.close)
    },
    createDown: async () => made(`http://127.0.0.1:${await freePort()}`, async () => {}),
    createFailing: async () => {
      const h = await startHostileStore({status: 503})
      return made(h.url, h.close)
    },
  }
}

sourceContract('LocalSource (the local store)', {
  create: async (chunks) => {
    const s = await storeWith(chunks)
    return {source: new LocalSource(s.store), cleanup: s.cleanup}
  },
  createLying: async (id, wrong) => {
    const s = await storeWith([])
    await s.store.putObject(id, wrong) // unverified put: the store now holds wrong bytes under `id`
    return {source: new LocalSource(s.store), cleanup: s.cleanup}
  },
})

sourceContract('HttpStore against vmi serve', remote((url) => ({source: http(url)})))

test('a read refused with 403 is reported as forbidden, not as a wrong token (reads carry no token)', async () => {
  const h = await startHostileStore({status: 403})
  try {
    const id = 'a'.repeat(64)
    for (const op of ['get', 'has']) {
      const err = await http(h.url)[op](id).then(
        () => undefined,
        (e) => e,
      )
      assert.ok(err, `${op} rejects`)
      assert.is(err.code, 'VMI_REMOTE_AUTH')
      assert.match(err.message, /HTTP 403 \(forbidden\)/, err.message)
      assert.ok(err.message.includes(`seed ${h.url}`), err.message)
    }
  } finally {
    await h.close()
  }
})

if (hasCommand('nginx'))
  sourceContract(
    'HttpStore against nginx over a store directory',
    remote(
      (url) => ({source: http(url)}),
      async (chunks) => {
        const s = await storeWith(chunks)
        const ng = await startNginx(s.dir)
        return {url: ng.url, cleanup: async () => (await ng.close(), s.cleanup())}
      },
    ),
  )
else {
  test('HttpStore against nginx over a store directory', () => skip('nginx is not installed (scripts/install-deps.sh installs nginx-light)'))
}

sourceContract('BatchedSource over HttpStore', remote((url) => ({source: new BatchedSource(http(url))})))

sourceContract(
  'GuardedRemote (circuit breaker) over HttpStore',
  remote((url) => {
    const source = guardRemote(http(url))
    return {source, close: () => source.breaker.close()}
  }),
)

sourceContract(
  'GuardedSource over BatchedSource (serve --seed upstream, factory.upstreamSource)',
  remote((url) => {
    const source = upstreamSource(url)
    return {source, close: () => source.breaker.close()}
  }),
)

/** radosgw, started by the first S3 factory that needs it and stopped after the last test. */
let rgw
test.after(() => rgw && rgw.then((r) => r.stop()))
const rgwUp = () =>
  (rgw ??= startRadosgw().then(async (r) => {
    await r.mkBucket('vmi-contract')
    return r
  }))

/** An S3Store at an endpoint (a hostile store answers any bucket and ignores the signature). */
const s3 = (endpoint, prefix, r) =>
  new S3Store(`s3://vmi-contract/${prefix}`, {
    region: 'us-east-1',
    endpoint,
    credentials: r ? {accessKeyId: r.accessKey, secretAccessKey: r.secretKey} : {accessKeyId: 'K', secretAccessKey: 'S'},
    retry: fastRetry,
    connectTimeoutMs: 2000,
  })

/** Factories for one way of wrapping an S3Store (`wrap(s3Store) → {source, close?}`): real chunks in radosgw, the hostile ones from startHostileStore. */
function s3remote(wrap) {
  const made = (store, close) => {
    const w = wrap(store)
    return {source: w.source, cleanup: async () => (w.close?.(), await store.close(), await close())}
  }
  const hostile = async (opts) => {
    const h = await startHostileStore(opts)
    return made(s3(h.url, 'p'), h.close)
  }
  return {
    create: async (chunks) => {
      const r = await rgwUp()
      const store = s3(r.endpoint, `c${Math.random().toString(36).slice(2)}`, r)
      for (const c of chunks) await store.putObject(c.id, c.body)
      return made(store, async () => {})
    },
    createLying: (id, wrong) => hostile({bodies: new Map([[id, wrong]])}),
    createStalled: () => hostile({stall: true}),
    createSlow: (chunks) => hostile({bodies: new Map(chunks.map((c) => [c.id, c.body])), delayMs: SLOW_MS}),
    createDown: async () => made(s3(`http://127.0.0.1:${await freePort()}`, 'p'), async () => {}),
    createFailing: () => hostile({status: 503}),
  }
}

const noRgw = radosgwUnavailable()
if (noRgw) test('S3Store against radosgw', () => skip(noRgw))
else {
  sourceContract('S3Store against radosgw', s3remote((store) => ({source: store})))
  sourceContract(
    'GuardedRemote (circuit breaker) over S3Store',
    s3remote((store) => {
      const source = guardRemote(store)
      return {source, close: () => source.breaker.close()}
    }),
  )
}

/** A chain from buildChain over an empty local store: one peer, one seed. */
async function chain(peerUrl, seedUrl, cleanups) {
  const local = await storeWith([])
  const built = await buildChain(local.store, {peers: [peerUrl], seedUrl, connectTimeoutMs: 2000})
  return {
    source: built.chain,
    cleanup: async () => {
      built.close()
      for (const c of cleanups) await c()
      local.cleanup()
    },
  }
}

sourceContract('FetchChain (factory.buildChain) with a peer and a seed', {
  // the peer holds every other chunk, the seed the rest
  create: async (chunks) => {
    const peer = await servedStore(chunks.filter((_, i) => i % 2 === 0))
    const seed = await servedStore(chunks.filter((_, i) => i % 2 === 1))
    return chain(peer.url, seed.url, [peer.cleanup, seed.cleanup])
  },
  createLying: async (id, wrong) => {
    const peer = await servedStore([])
    const seed = await startHostileStore({bodies: new Map([[id, wrong]])})
    return chain(peer.url, seed.url, [peer.cleanup, seed.close])
  },
  createStalled: async () => {
    const peer = await servedStore([])
    const seed = await startHostileStore({stall: true})
    return chain(peer.url, seed.url, [peer.cleanup, seed.close])
  },
  createSlow: async (chunks) => {
    const peer = await servedStore([])
    const seed = await startHostileStore({bodies: new Map(chunks.map((c) => [c.id, c.body])), delayMs: SLOW_MS})
    return chain(peer.url, seed.url, [peer.cleanup, seed.close])
  },
  createFailing: async () => {
    const peer = await servedStore([])
    const seed = await startHostileStore({status: 503})
    return {...(await chain(peer.url, seed.url, [peer.cleanup, seed.close])), downName: `seed ${seed.url}`}
  },
  createDown: async () => {
    const seedUrl = `http://127.0.0.1:${await freePort()}`
    const made = await chain(`http://127.0.0.1:${await freePort()}`, seedUrl, [])
    return {...made, downName: `seed ${seedUrl}`}
  },
})

test.run()
