// An S3 bucket as the seed, against a real S3 server (Ceph radosgw, started
// here): push/pull/mount round trips, resume after kill -9, refused
// credentials and unknown buckets, fetch-through owners, and the same bucket
// read anonymously as a plain http:// seed.
import {test} from 'uvu'
import * as assert from 'uvu/assert'
import {spawnSync} from 'node:child_process'
import {promises as fsp} from 'node:fs'
import path from 'node:path'
import {exec, execAsync, fsckClean, hasCommand, makeImage, sha256File, skip, spawnCli, tmpStore, ROOT} from '../helpers/index.js'
import {killMidway} from '../helpers/crash.js'
import {startMount} from '../helpers/mount.js'
import {radosgwUnavailable, startRadosgw} from '../helpers/radosgw.js'
import {metricSum, startServe} from '../helpers/serve.js'
import {forwarder} from '../helpers/peers.js'
import {oldVmi} from '../helpers/old-vmi.js'

/** The last commit whose vmi read buckets without packs. */
const BEFORE_PACKS = '286968210b583a8e9818dfc22aeccaba14c43127'

const {LocalStore, S3Store, bulkGet, uniqueChunkIds} = await import(path.join(ROOT, 'dist', 'index.js'))

const M = 1024 * 1024
const why = radosgwUnavailable()
/** @type {Awaited<ReturnType<typeof startRadosgw>> | undefined} */
let rgw

test.before(async () => {
  if (!why) rgw = await startRadosgw()
})
test.after(() => rgw?.stop())

function ok(r, what) {
  assert.is(r.status, 0, `${what} failed (exit ${r.status}): ${r.stderr}`)
  return r
}

/** An image imported into a fresh store: 3 MiB random, 2 MiB zeros, 1 MiB repeated (48 distinct 64K chunks). */
async function built(t, name = 'app:v1', layout = [{kind: 'random', size: 3 * M, seed: 1}, {kind: 'zero', size: 2 * M}, {kind: 'repeat', size: M}]) {
  const src = path.join(t.dir, 'src.raw')
  await makeImage(src, layout)
  const build = path.join(t.dir, 'build')
  ok(exec(['import', src, name, '--chunk-size', '64K'], {store: build}), 'import')
  return {src, build}
}

async function sameExport(store, image, src, dir, env) {
  const out = path.join(dir, `out-${Math.random().toString(36).slice(2)}.raw`)
  ok(exec(['export', image, out], {store, env}), 'export')
  assert.is(await sha256File(out), await sha256File(src), `${image} in ${store} is byte-identical to its source`)
}

test('push to s3:// and pull back: byte-identical, a re-push sends nothing, origin may be a bucket, no secret shown', async () => {
  if (why) return skip(why)
  const t = tmpStore()
  try {
    await rgw.mkBucket('vmi-roundtrip')
    const {src, build} = await built(t)
    const url = 's3://vmi-roundtrip/prod/images'
    const push = JSON.parse(ok(exec(['push', 'app:v1', url, '--json'], {store: build, env: rgw.env}), 'push').stdout)
    assert.is(push.uploadedChunks, 48, 'only distinct non-zero chunks are sent')
    assert.is(push.remote, url)
    const again = JSON.parse(ok(exec(['push', 'app:v1', url, '--json'], {store: build, env: rgw.env}), 'push again').stdout)
    assert.is(again.uploadedChunks, 0)
    assert.is(again.alreadyThere, 48)
    // the layout in the bucket is the store layout, the chunks in a pack (FORMAT.md "Packs")
    const ls = await rgw.aws(['s3', 'ls', '--recursive', 's3://vmi-roundtrip/prod/images/'])
    const keys = ls.out.split('\n').filter(Boolean).map((l) => l.split(/\s+/).pop())
    assert.ok(keys.includes('prod/images/refs/app/v1'), keys.join(' '))
    assert.ok(keys.includes('prod/images/vmi-store.json'))
    assert.ok(keys.includes(`prod/images/manifests/${push.id.slice(0, 2)}/${push.id.slice(2)}`))
    assert.ok(keys.includes(`prod/images/packs/by-manifest/${push.id}`))
    assert.is(keys.filter((k) => k.includes('/objects/')).length, 0)
    assert.is(keys.filter((k) => /\/packs\/[0-9a-f]{64}\.pack$/.test(k)).length, 1, 'the 3 MiB of chunks in one pack')
    assert.is(keys.filter((k) => /\/packs\/[0-9a-f]{64}\.idx$/.test(k)).length, 1)

    const host = path.join(t.dir, 'host')
    ok(exec(['remote', 'add', 'origin', url, '--endpoint', rgw.endpoint, '--region', 'us-east-1'], {store: host}), 'remote add')
    const remotes = ok(exec(['remote', 'ls', '--json'], {store: host, env: rgw.env}), 'remote ls')
    assert.equal(JSON.parse(remotes.stdout).remotes, [{name: 'origin', url}])
    const envNoEndpoint = {...rgw.env, AWS_ENDPOINT_URL: ''}
    const pull = JSON.parse(ok(exec(['pull', 'app:v1', '--json'], {store: host, env: envNoEndpoint}), 'pull from origin (endpoint from the remote config)').stdout)
    assert.is(pull.fromChunks.seed, 48)
    assert.is(pull.fromBytes.seed, 3 * M)
    await sameExport(host, 'app:v1', src, t.dir)
    fsckClean(host)
    // status probes the bucket like any remote
    const status = ok(exec(['status', '--json'], {store: host, env: envNoEndpoint}), 'status')
    const origin = JSON.parse(status.stdout).sources.find((x) => x.name === 'origin')
    assert.is(origin?.up, true, status.stdout)
    assert.is(origin.url, url)
    // the bucket is where the pulled image's chunks come from again: the pull recorded it, the hint names it
    ok(exec(['gc', '--max-cache', '0'], {store: host}), 'gc evicting the cache')
    const again2 = exec(['export', 'app:v1', path.join(t.dir, 'evicted.raw')], {store: host})
    assert.is(again2.status, 8, again2.stderr)
    assert.ok(again2.stderr.includes(`vmi pull app:v1 ${url}`), again2.stderr)
    const config = await fsp.readFile(path.join(host, 'config.json'), 'utf8')
    assert.not.match(config, rgw.secretKey, 'the secret is never stored')
    assert.not.match(remotes.stdout + remotes.stderr + JSON.stringify(push) + status.stdout + status.stderr, rgw.secretKey, 'nor printed')
  } finally {
    t.cleanup()
  }
})

test('a store directory copied with aws s3 sync is a valid seed', async () => {
  if (why) return skip(why)
  const t = tmpStore()
  try {
    await rgw.mkBucket('vmi-synced')
    const {src, build} = await built(t, 'app:v1', [{kind: 'random', size: M, seed: 5}, {kind: 'zero', size: M}])
    ok(await rgw.aws(['s3', 'sync', '--quiet', build, 's3://vmi-synced/store', '--exclude', '*.lock', '--exclude', 'tmp/*']).then((r) => ({status: r.status, stderr: r.err})), 'aws s3 sync')
    const host = path.join(t.dir, 'host')
    ok(exec(['pull', 'app:v1', 's3://vmi-synced/store'], {store: host, env: rgw.env}), 'pull')
    await sameExport(host, 'app:v1', src, t.dir)
  } finally {
    t.cleanup()
  }
})

test('mount from s3://: the NBD export reads byte-identical (qemu-img convert)', async () => {
  if (why) return skip(why)
  if (!hasCommand('qemu-img')) return skip('qemu-img not installed')
  const t = tmpStore()
  let m
  try {
    await rgw.mkBucket('vmi-mount')
    const {src, build} = await built(t)
    ok(exec(['push', 'app:v1', 's3://vmi-mount/x'], {store: build, env: rgw.env}), 'push')
    const host = path.join(t.dir, 'host')
    m = await startMount(host, ['app:v1', 's3://vmi-mount/x', '--read-only'], {env: rgw.env})
    const out = path.join(t.dir, 'mounted.raw')
    const c = spawnSync('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', m.nbd, out], {encoding: 'utf8'})
    assert.is(c.status, 0, c.stderr)
    assert.is(await sha256File(out), await sha256File(src))
  } finally {
    await m?.stop()
    t.cleanup()
  }
})

for (const [mode, flags, mib] of [
  ['in packs', [], 48],
  ['one object per chunk (--no-pack)', ['--no-pack', '--concurrency', '1'], 16],
]) {
  test(`a push ${mode} killed with -9 resumes: the re-push sends only what is missing, the ref comes last`, async () => {
    if (why) return skip(why)
    const t = tmpStore()
    try {
      const bucket = `vmi-resume-${flags.length}`
      await rgw.mkBucket(bucket)
      const {src, build} = await built(t, 'big:v1', [{kind: 'random', size: mib * M, seed: 9}])
      const url = `s3://${bucket}/p`
      const local = await LocalStore.open(build)
      const {id, manifest} = await local.resolve('big:v1')
      const ids = [...uniqueChunkIds(manifest)]
      assert.is(ids.length, mib * 16)
      // a fresh client each time: one reads the bucket's packs once
      const open = () => new S3Store(url, {region: rgw.region, endpoint: rgw.endpoint, credentials: {accessKeyId: rgw.accessKey, secretAccessKey: rgw.secretKey}})
      const uploaded = async () => {
        const store = open()
        const n = ids.length - (await store.missing(ids)).length
        await store.close()
        return n
      }
      // through a forwarder that holds the push's PUT of the chunk past the first `stuck` (the
      // third pack, or the 129th object): the push cannot finish, and the kill lands mid-way
      const stuck = flags.includes('--no-pack') ? ids.length / 2 : 2
      let puts = 0
      const fwd = await forwarder(rgw.endpoint, {holdAt: (line) => /^PUT \S*\/(packs\/\S+\.pack|objects\/[0-9a-f]{2}\/[0-9a-f]{62})(\?|$)/.test(line) && ++puts > stuck})
      let k
      try {
        k = await killMidway(['push', 'big:v1', url, ...flags], build, async () => fwd.isHeld(), 100, {env: {...rgw.env, AWS_ENDPOINT_URL: fwd.url}})
      } finally {
        await fwd.stop()
      }
      assert.ok(k.killed, `the push was killed mid-way: ${k.result.stderr}`)
      const before = await uploaded()
      assert.ok(before > 0 && before < ids.length, `part of the chunks are there: ${before}/${ids.length}`)
      console.log(`  ${mode}: killed with ${before} of ${ids.length} chunks in the bucket`)
      const store = open()
      assert.is(await store.getRef('big', 'v1'), undefined, 'no ref names the half-pushed image')
      const host = path.join(t.dir, 'host')
      const half = exec(['pull', 'big:v1', url], {store: host, env: rgw.env})
      assert.is(half.status, 3, `the image is not there yet: ${half.stderr}`)
      const again = JSON.parse(ok(exec(['push', 'big:v1', url, '--json', ...flags], {store: build, env: rgw.env}), 're-push').stdout)
      assert.is(again.alreadyThere, before)
      assert.is(again.uploadedChunks, ids.length - before, 'only the missing chunks are sent')
      assert.is(await store.getRef('big', 'v1'), id)
      ok(exec(['pull', 'big:v1', url], {store: host, env: rgw.env}), 'pull')
      await sameExport(host, 'big:v1', src, t.dir)
      fsckClean(host)
      await store.close()
    } finally {
      t.cleanup()
    }
  })
}

test('packs: a push is a few PUTs and a pull a few ranged GETs where one object per chunk takes one request each; both pull byte-identical', async () => {
  if (why) return skip(why)
  const t = tmpStore()
  const fwd = await forwarder(rgw.endpoint)
  try {
    await rgw.mkBucket('vmi-packs')
    const {src, build} = await built(t)
    const env = {...rgw.env, AWS_ENDPOINT_URL: fwd.url}
    const count = (re) => fwd.requestLines().filter((l) => re.test(l)).length
    const runs = {}
    for (const [mode, flags] of [['packed', []], ['loose', ['--no-pack']]]) {
      const url = `s3://vmi-packs/${mode}`
      const n0 = fwd.requestLines().length
      ok(await execAsync(['push', 'app:v1', url, ...flags], {store: build, env}), `push ${mode}`)
      const pushLines = fwd.requestLines().slice(n0)
      const host = path.join(t.dir, `host-${mode}`)
      const n1 = fwd.requestLines().length
      const pull = JSON.parse(ok(await execAsync(['pull', 'app:v1', url, '--json'], {store: host, env}), `pull ${mode}`).stdout)
      const pullLines = fwd.requestLines().slice(n1)
      assert.is(pull.fromChunks.seed, 48)
      await sameExport(host, 'app:v1', src, t.dir)
      fsckClean(host)
      runs[mode] = {puts: pushLines.filter((l) => l.startsWith('PUT')).length, gets: pullLines.filter((l) => l.startsWith('GET')), objectGets: pullLines.filter((l) => /objects\//.test(l)).length}
    }
    console.log(`  packed: ${runs.packed.puts} PUTs, ${runs.packed.gets.length} GETs; loose: ${runs.loose.puts} PUTs, ${runs.loose.gets.length} GETs`)
    assert.ok(runs.loose.puts >= 48 && runs.loose.objectGets === 48, JSON.stringify(runs.loose))
    assert.ok(runs.packed.puts <= 8, `packed push: ${runs.packed.puts} PUTs`)
    assert.is(runs.packed.objectGets, 0)
    assert.ok(runs.packed.gets.length <= 8, runs.packed.gets.join('\n'))
    assert.ok(runs.packed.gets.some((l) => /\/packs\/[0-9a-f]{64}\.pack$/.test(l)), 'the chunks came from the pack')
    assert.ok(count(/^PUT .*\/packs\/by-manifest\//) === 1)
  } finally {
    await fwd.stop()
    t.cleanup()
  }
})

test('a vmi from before packs: a packed bucket stops its pull with a clear error and nothing wrong stored; a --no-pack push it reads', async () => {
  if (why) return skip(why)
  const old = oldVmi(BEFORE_PACKS)
  if (old.skip) return skip(old.skip)
  const t = tmpStore()
  try {
    await rgw.mkBucket('vmi-old-reader')
    const {src, build} = await built(t)
    ok(await execAsync(['push', 'app:v1', 's3://vmi-old-reader/packed'], {store: build, env: rgw.env}), 'packed push')
    ok(await execAsync(['push', 'app:v1', 's3://vmi-old-reader/loose', '--no-pack'], {store: build, env: rgw.env}), 'loose push')
    const h1 = path.join(t.dir, 'h1')
    const r = await execAsync(['pull', 'app:v1', 's3://vmi-old-reader/packed'], {store: h1, env: rgw.env, bin: old.bin})
    assert.is(r.status, 8, r.stderr)
    assert.match(r.stderr, /is in none of/)
    fsckClean(h1)
    const h2 = path.join(t.dir, 'h2')
    ok(await execAsync(['pull', 'app:v1', 's3://vmi-old-reader/loose'], {store: h2, env: rgw.env, bin: old.bin}), 'the old vmi pulls the loose push')
    await sameExport(h2, 'app:v1', src, t.dir)
  } finally {
    t.cleanup()
  }
})

test('refused credentials exit 10 naming the cause; an unknown bucket exits 9; the secret is never printed', async () => {
  if (why) return skip(why)
  const t = tmpStore()
  try {
    await rgw.mkBucket('vmi-auth')
    const {build} = await built(t, 'app:v1', [{kind: 'random', size: M, seed: 3}])
    ok(exec(['push', 'app:v1', 's3://vmi-auth/x'], {store: build, env: rgw.env}), 'push')
    const host = path.join(t.dir, 'host')
    const wrongSecret = 'not-the-secret-0000000000000000000000000'
    const cases = [
      ['pull', ['pull', 'app:v1', 's3://vmi-auth/x'], {AWS_SECRET_ACCESS_KEY: wrongSecret}, 10, /secret key does not match access key .*SignatureDoesNotMatch/],
      ['push', ['push', 'app:v1', 's3://vmi-auth/y'], {AWS_SECRET_ACCESS_KEY: wrongSecret}, 10, /SignatureDoesNotMatch/],
      ['pull', ['pull', 'app:v1', 's3://vmi-auth/x'], {AWS_ACCESS_KEY_ID: 'NOSUCHKEY00000000000'}, 10, /access key NOSUCHKEY00000000000 is unknown .*InvalidAccessKeyId/],
      ['push', ['push', 'app:v1', 's3://vmi-auth/y'], {AWS_ACCESS_KEY_ID: 'NOSUCHKEY00000000000'}, 10, /InvalidAccessKeyId/],
      ['pull', ['pull', 'app:v1', 's3://vmi-nosuchbucket/x'], {}, 9, /bucket vmi-nosuchbucket does not exist .*NoSuchBucket/],
      ['push', ['push', 'app:v1', 's3://vmi-nosuchbucket/x'], {}, 9, /bucket vmi-nosuchbucket does not exist/],
      ['pull', ['pull', 'app:v1', 's3://vmi-auth/x'], {AWS_ACCESS_KEY_ID: '', AWS_SECRET_ACCESS_KEY: ''}, 10, /access denied: no credentials/],
      ['push', ['push', 'app:v1', 's3://vmi-auth/y'], {AWS_ACCESS_KEY_ID: '', AWS_SECRET_ACCESS_KEY: ''}, 10, /needs S3 credentials/],
    ]
    for (const [what, argv, env, code, re] of cases) {
      const r = exec(argv, {store: what === 'push' ? build : host, env: {...rgw.env, ...env}})
      assert.is(r.status, code, `${argv.join(' ')} with ${JSON.stringify(env)}: ${r.stderr}`)
      assert.match(r.stderr, re)
      assert.not.match(r.stderr + r.stdout, rgw.secretKey)
      assert.not.match(r.stderr + r.stdout, wrongSecret)
    }
    fsckClean(host)
  } finally {
    t.cleanup()
  }
})

test('chunks come in bulk: pipelined GETs on one connection, each signed on its own; a wrong secret is refused on every one', async () => {
  if (why) return skip(why)
  const t = tmpStore()
  try {
    await rgw.mkBucket('vmi-bulk')
    const {build} = await built(t)
    ok(exec(['push', 'app:v1', 's3://vmi-bulk/p/q', '--no-pack'], {store: build, env: rgw.env}), 'push (one object per chunk)')
    const ids = [...uniqueChunkIds((await new LocalStore(build).resolve('app:v1')).manifest)]
    const local = new LocalStore(build)
    const items = await Promise.all(ids.map(async (id) => ({id, path: `objects/${id.slice(0, 2)}/${id.slice(2)}`, length: (await local.getObject(id)).length})))
    // a missing key in the same pipeline is a 404 like any other
    const absent = 'f'.repeat(64)
    items.push({id: absent, path: `objects/ff/${absent.slice(2)}`, length: 10})
    const credentials = {accessKeyId: rgw.accessKey, secretAccessKey: rgw.secretKey}
    const open = (secret) => new S3Store('s3://vmi-bulk/p/q', {region: rgw.region, endpoint: rgw.endpoint, credentials: {...credentials, secretAccessKey: secret}})
    const got = new Map()
    const missing = []
    const failed = []
    const handlers = {onBody: (it, body) => got.set(it.id, body), onMissing: (it) => missing.push(it.id), onFailed: (it, why, status) => failed.push(status)}
    const store = open(rgw.secretKey)
    const r = await bulkGet(store.url, items, handlers, {...store.bulkOptions(false), connections: 1, windowBytes: 1 << 20})
    assert.is(r.connectionsOpened, 1, 'every request went over one connection')
    assert.equal(r.unanswered, [])
    assert.equal(failed, [])
    assert.equal(missing, [absent])
    assert.is(got.size, ids.length)
    for (const id of ids) assert.ok((await local.getObject(id)).equals(got.get(id)), `chunk ${id} came back whole`)
    // radosgw checks every request's signature: with a wrong secret each one is refused (and the chain's get then names why)
    got.clear()
    failed.length = 0
    const bad = open('not-the-secret-0000000000000000000000000')
    await bulkGet(bad.url, items.slice(0, 8), handlers, {...bad.bulkOptions(false), connections: 1})
    assert.is(got.size, 0)
    assert.equal(failed, Array(8).fill(403))
    await Promise.all([store.close(), bad.close()])
  } finally {
    t.cleanup()
  }
})

test('owners fetch through from the bucket (vmi serve --seed s3://): 4 hosts, the bucket sends each chunk about once', async () => {
  if (why) return skip(why)
  const t = tmpStore()
  const serves = []
  try {
    await rgw.mkBucket('vmi-fleet')
    const {src, build} = await built(t, 'app:v1', [{kind: 'random', size: 16 * M, seed: 7}, {kind: 'zero', size: 4 * M}])
    const url = 's3://vmi-fleet/img'
    ok(exec(['push', 'app:v1', url], {store: build, env: rgw.env}), 'push')
    const unique = 16 * M
    const stores = Array.from({length: 4}, (_, i) => path.join(t.dir, `h${i}`))
    for (const st of stores) serves.push(await startServe(st, ['--seed', url], {env: rgw.env}))
    const peerArgs = serves.flatMap((p) => ['--peer', p.url])
    const results = await Promise.all(stores.map((st) => execAsync(['pull', 'app:v1', url, '--json', ...peerArgs], {store: st, env: rgw.env})))
    for (const r of results) assert.is(r.status, 0, r.stderr)
    let fetched = 0
    for (const s of serves) fetched += metricSum(await s.metrics(), 'vmi_fetched_bytes_total', {source: 'seed'})
    const direct = results.reduce((n, r) => n + JSON.parse(r.stdout).fromBytes.seed, 0)
    const egress = fetched + direct
    console.log(`  4 hosts: the bucket sent ${egress} bytes (${fetched} through owners, ${direct} directly) for ${unique} unique (${(egress / unique).toFixed(3)}x)`)
    assert.ok(egress >= unique, 'everything left the bucket at least once')
    assert.ok(egress <= 1.02 * unique, `bucket egress ${egress} within 1.02x of ${unique}`)
    await sameExport(stores[0], 'app:v1', src, t.dir)
    fsckClean(stores[0])
  } finally {
    for (const s of serves) await s.stop()
    t.cleanup()
  }
})

test('a public-read bucket is a plain http:// seed and an anonymous s3:// one, with no credentials', async () => {
  if (why) return skip(why)
  const t = tmpStore()
  try {
    await rgw.mkBucket('vmi-public')
    await rgw.makePublic('vmi-public')
    const {src, build} = await built(t)
    ok(exec(['push', 'app:v1', 's3://vmi-public/pub'], {store: build, env: rgw.env}), 'push')
    const anon = {AWS_ACCESS_KEY_ID: '', AWS_SECRET_ACCESS_KEY: '', AWS_SHARED_CREDENTIALS_FILE: '/nonexistent', AWS_CONFIG_FILE: '/nonexistent'}
    const h1 = path.join(t.dir, 'h1')
    const r = JSON.parse(ok(exec(['pull', 'app:v1', `${rgw.endpoint}/vmi-public/pub`, '--json'], {store: h1, env: anon}), 'pull over plain http').stdout)
    assert.is(r.fromChunks.seed, 48)
    await sameExport(h1, 'app:v1', src, t.dir)
    const h2 = path.join(t.dir, 'h2')
    ok(exec(['pull', 'app:v1', 's3://vmi-public/pub'], {store: h2, env: {...anon, AWS_ENDPOINT_URL: rgw.endpoint}}), 'anonymous s3:// pull')
    await sameExport(h2, 'app:v1', src, t.dir)
    // reading is public, writing is not
    const w = exec(['push', 'app:v1', 's3://vmi-public/pub', '--as', 'app:evil'], {store: build, env: {...anon, AWS_ENDPOINT_URL: rgw.endpoint}})
    assert.is(w.status, 10, w.stderr)
  } finally {
    t.cleanup()
  }
})

test.run()
