#!/usr/bin/env node
// @ts-check
// An S3 bucket as the seed: `node bench/s3.js` (or `npm run bench -- --only s3`): vmi push and
// pull against a throwaway radosgw (scripts/radosgw.sh) vs `aws s3 cp` and vs nginx, then the S3
// client choice; see bench/README.md, "s3" (why the image is 256 MiB of the Debian one: radosgw's
// memstore keeps every byte in RAM). Writes bench/results/<date>-s3.md and latest-s3.json.
import {spawnSync} from 'node:child_process'
import {existsSync, promises as fsp, readFileSync, statSync} from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {f} from './lib/format.js'
import {renderS3Report} from './lib/dist-report.js'
import {cpuOf, runTimed, stats} from './lib/measure.js'
import {findBootImage, MiB, parseOptions, prepare, prepMethod, prepSettings, ROOT, startNginx, startRun, treeCpuSeconds, vmiTimed} from './lib/common.js'

const {reps, gets: GETS, image: IMAGE_CHOICE} = parseOptions(
  's3',
  {
    reps: ['--reps N', 3, Number, 'runs of each push, pull and aws s3 cp, contenders alternating'],
    gets: ['--gets N', 2000, Number, 'GETs per S3 client in the client choice'],
    image: ['--image whole|sample', os.totalmem() >= 20 * 2 ** 30 ? 'whole' : 'sample', String, 'the whole Debian boot image (default with 20 GiB of RAM or more), or 256 MiB of it'],
  },
  (o) => (o.reps >= 1 && o.gets >= 16 && (o.image === 'whole' || o.image === 'sample') ? false : '--reps must be at least 1, --gets at least 16, --image whole or sample'),
)
// radosgw's memstore keeps every byte in RAM, ~2.6x over: the whole image's raw file (1.5 GiB) and
// a few pushed prefixes need ~10 GiB of it; the 256 MiB sample fits anywhere
const SAMPLE = 256 * MiB
const boot = findBootImage()
const IMAGE = IMAGE_CHOICE === 'whole' && boot.file ? statSync(boot.file).size : SAMPLE
if (process.getuid?.() !== 0) {
  console.error('bench s3: radosgw needs root')
  process.exit(1)
}
const run = await startRun('s3', {tools: ['ceph-mon', 'ceph-osd', 'radosgw', 'aws', 'nginx']})
const {log, workDir, dist, discard} = run

// ----------------------------------------------------------------- radosgw
const started = spawnSync(path.join(ROOT, 'scripts', 'radosgw.sh'), ['start'], {encoding: 'utf8', env: {...process.env, RGW_MEMSTORE_BYTES: String((IMAGE > SAMPLE ? 14 : 8) * 2 ** 30)}})
if (started.status !== 0) {
  console.error(`bench s3: radosgw did not start: ${started.stderr}`)
  process.exit(1)
}
const rgw = Object.fromEntries(started.stdout.trim().split('\n').map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]))
process.on('exit', () => spawnSync(path.join(ROOT, 'scripts', 'radosgw.sh'), ['stop', rgw.RGW_DIR], {stdio: 'ignore'}))
const awsEnv = {
  AWS_ACCESS_KEY_ID: rgw.S3_ACCESS_KEY,
  AWS_SECRET_ACCESS_KEY: rgw.S3_SECRET_KEY,
  AWS_REGION: rgw.S3_REGION,
  AWS_ENDPOINT_URL: rgw.S3_ENDPOINT,
  AWS_SHARED_CREDENTIALS_FILE: '/nonexistent',
  AWS_CONFIG_FILE: '/nonexistent',
  AWS_PAGER: '',
}
// Debian's awscli (a pip-installed aws earlier on PATH would be another client); 2.9 does not read
// AWS_ENDPOINT_URL (newer ones do), so the endpoint goes on its command line
const AWS = existsSync('/usr/bin/aws') ? '/usr/bin/aws' : 'aws'
/** @param {string[]} args */
const aws = (args) => runTimed(AWS, ['--endpoint-url', rgw.S3_ENDPOINT, ...args], {env: {...process.env, ...awsEnv}, scratch: workDir})
await aws(['s3api', 'create-bucket', '--bucket', 'bench'])
const awsVersion = spawnSync(AWS, ['--version'], {encoding: 'utf8'}).stdout.trim()
log(`radosgw at ${rgw.S3_ENDPOINT}; ${awsVersion}`)

// ----------------------------------------------------------------- the image
const raw = path.join(workDir, 'disk.raw')
let imageLabel
if (boot.file && IMAGE > SAMPLE) {
  // the whole image, sparse as it is (aws s3 cp reads and sends its holes as zeros)
  spawnSync('cp', ['--sparse=always', boot.file, raw])
  imageLabel = `the Debian boot image (${path.basename(boot.dir ?? '')}), whole: ${f(IMAGE / MiB, 0)} MiB`
} else if (boot.file) {
  // evenly spread 4 MiB blocks of the whole image: its mix of zeros, files and metadata (its first
  // 256 MiB are 96 % non-zero, the whole image 40 %)
  const src = await fsp.open(boot.file, 'r')
  const dst = await fsp.open(raw, 'w')
  const size = (await src.stat()).size
  const blocks = IMAGE / (4 * MiB)
  const stride = Math.max(1, Math.floor(size / (4 * MiB) / blocks))
  const buf = Buffer.alloc(4 * MiB)
  for (let k = 0; k < blocks; k++) {
    const {bytesRead} = await src.read(buf, 0, buf.length, k * stride * 4 * MiB)
    if (bytesRead > 0 && !dist.isAllZero(buf.subarray(0, bytesRead))) await dst.write(buf, 0, bytesRead, k * 4 * MiB)
  }
  await dst.truncate(IMAGE)
  await Promise.all([src.close(), dst.close()])
  imageLabel = `${IMAGE / MiB} MiB of the Debian boot image (${path.basename(boot.dir ?? '')}): every ${stride}th 4 MiB block`
} else {
  const fh = await fsp.open(raw, 'w')
  const rnd = (/** @type {number} */ n) => Buffer.from(Array.from({length: n / 4}, () => Math.floor(Math.random() * 2 ** 32)).flatMap((x) => [x & 255, (x >> 8) & 255, (x >> 16) & 255, x >>> 24]))
  const block = rnd(4 * MiB)
  for (let off = 0; off < IMAGE; off += 4 * MiB) {
    const r = (off / (4 * MiB)) % 20
    if (r < 9) await fh.write(rnd(4 * MiB), 0, 4 * MiB, off)
    else if (r < 12) await fh.write(block, 0, 4 * MiB, off)
  }
  await fh.truncate(IMAGE)
  await fh.close()
  imageLabel = `${IMAGE / MiB} MiB generated: 45 % random, 15 % one repeated 4 MiB block, 40 % zeros (${boot.reason})`
}
const build = path.join(workDir, 'build')
const imp = await vmiTimed(['import', raw, 'bench:s3', '--json'], build, {scratch: workDir})
const id = imp.json.id
const unique = imp.json.newBytes ?? imp.json.storedBytes
log(`image: ${imageLabel}; id ${id.slice(0, 12)}, ${JSON.stringify({newChunks: imp.json.newChunks, newBytes: imp.json.newBytes})}`)

// ----------------------------------------------------------------- push, pull, aws s3 cp, nginx
// nginx serves the same layout as the bucket: a copy of a pushed prefix (packs, compressed objects)
await vmiTimed(['push', 'bench:s3', 's3://bench/copy', '--json'], build, {env: awsEnv, scratch: workDir})
const copy = path.join(workDir, 'bucket-copy')
await aws(['s3', 'sync', '--quiet', 's3://bench/copy', copy])
const nginx = await startNginx(copy)
/** @type {Record<string, number[]>} */
const t = {push: [], pushLoose: [], awsUp: [], pullS3: [], pullS3Loose: [], awsDown: [], pullNginx: []}
// CPU seconds of each job: the client's, and the server's (radosgw and its OSD, or nginx)
const rgwPids = readFileSync(path.join(rgw.RGW_DIR, 'pids'), 'utf8').trim().split('\n').map((l) => Number(l.split(' ')[0])).filter(Boolean)
/** @type {Record<string, {client: number[], server: number[]}>} */
const cpu = Object.fromEntries(Object.keys(t).map((k) => [k, {client: [], server: []}]))
// before every job: sync, a bounded wait for a quiet machine, memory pre-touched (as bench/dist.js; without
// the pre-touch the same pull took 1× or 2.5× the time, by which pages the hypervisor had taken back)
const settings = {...prepSettings(), quietWaitMs: Math.min(prepSettings().quietWaitMs, 10_000)}
/** Time one job `key`, its client's and its server's CPU. @param {string} key @param {number[]} servers @param {() => Promise<Record<string, any>>} job */
async function timed(key, servers, job) {
  await prepare({}, settings)
  const s0 = treeCpuSeconds(servers)
  const r = await job()
  cpu[key].server.push(treeCpuSeconds(servers) - s0)
  cpu[key].client.push(cpuOf(r))
  t[key].push(r.wall)
}
const vmiEnv = {...awsEnv}
for (let r = 0; r < reps; r++) {
  const steps = [
    () => timed('push', rgwPids, () => vmiTimed(['push', 'bench:s3', `s3://bench/r${r}`, '--json'], build, {env: vmiEnv, scratch: workDir})),
    () => timed('pushLoose', rgwPids, () => vmiTimed(['push', 'bench:s3', `s3://bench/l${r}`, '--no-pack', '--json'], build, {env: vmiEnv, scratch: workDir})),
    () => timed('awsUp', rgwPids, () => aws(['s3', 'cp', '--quiet', raw, 's3://bench/raw/disk.raw'])),
  ]
  for (const s of r % 2 ? steps.reverse() : steps) await s()
  const pulls = [
    async () => {
      const store = path.join(workDir, `pull-s3-${r}`)
      await timed('pullS3', rgwPids, () => vmiTimed(['pull', 'bench:s3', `s3://bench/r${r}`, '--json'], store, {env: vmiEnv, scratch: workDir}))
      await discard(store)
    },
    async () => {
      const store = path.join(workDir, `pull-s3-loose-${r}`)
      await timed('pullS3Loose', rgwPids, () => vmiTimed(['pull', 'bench:s3', `s3://bench/l${r}`, '--json'], store, {env: vmiEnv, scratch: workDir}))
      await discard(store)
    },
    async () => {
      const out = path.join(workDir, 'down.raw')
      await timed('awsDown', rgwPids, () => aws(['s3', 'cp', '--quiet', 's3://bench/raw/disk.raw', out]))
      await fsp.rm(out, {force: true})
    },
    async () => {
      const store = path.join(workDir, `pull-nginx-${r}`)
      await timed('pullNginx', [nginx.pid], () => vmiTimed(['pull', 'bench:s3', nginx.url, '--json'], store, {scratch: workDir}))
      await discard(store)
    },
  ]
  for (const s of r % 2 ? pulls.reverse() : pulls) await s()
  // memstore holds every prefix in RAM: drop this run's (the first run's loose prefix stays: the client choice reads it)
  await aws(['s3', 'rm', '--quiet', '--recursive', `s3://bench/r${r}`])
  if (r > 0) await aws(['s3', 'rm', '--quiet', '--recursive', `s3://bench/l${r}`])
  log(
    `run ${r + 1}/${reps}: push ${f(t.push[r])} s (loose ${f(t.pushLoose[r])} s), aws up ${f(t.awsUp[r])} s, pull s3 ${f(t.pullS3[r])} s (loose ${f(t.pullS3Loose[r])} s), aws down ${f(t.awsDown[r])} s, pull nginx ${f(t.pullNginx[r])} s`,
  )
}
await nginx.close()

// ----------------------------------------------------------------- client choice: load time and GET rate
/** Milliseconds to import modules in a fresh node, 5 times. @param {string[]} specs */
function loadMs(specs) {
  const xs = []
  const code = `const t=performance.now(); ${specs.map((s) => `await import(${JSON.stringify(s)});`).join(' ')} console.log(performance.now()-t)`
  for (let i = 0; i < 5; i++) {
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', code], {cwd: ROOT, encoding: 'utf8'})
    if (r.status !== 0) return undefined
    xs.push(Number(r.stdout.trim()))
  }
  return stats(xs)
}
const chunkIds = (await fsp.readdir(path.join(build, 'objects'))).filter((d) => d.length === 2)
/** @type {string[]} */
const ids = []
for (const d of chunkIds) for (const rest of await fsp.readdir(path.join(build, 'objects', d))) if (rest.length === 62) ids.push(d + rest)
const sample = Array.from({length: GETS}, (_, i) => ids[i % ids.length])
const creds = {accessKeyId: rgw.S3_ACCESS_KEY, secretAccessKey: rgw.S3_SECRET_KEY}
/** GETs/s with 16 in flight. @param {(id: string) => Promise<unknown>} get */
async function rate(get) {
  let next = 0
  const t0 = performance.now()
  await Promise.all(Array.from({length: 16}, async () => {
    while (next < sample.length) await get(sample[next++])
  }))
  return sample.length / ((performance.now() - t0) / 1000)
}
// one object per chunk: the --no-pack push of the first run
const key = (/** @type {string} */ i) => `l0/objects/${i.slice(0, 2)}/${i.slice(2)}`
/** @type {{client: string, loadMs?: ReturnType<typeof stats>, getsPerSecond?: number, note?: string}[]} */
const clients = []
{
  const store = new dist.S3Store('s3://bench/l0', {region: rgw.S3_REGION, endpoint: rgw.S3_ENDPOINT, credentials: creds})
  await rate((i) => store.get(i)) // warm-up
  clients.push({client: "vmi S3Store: own SigV4 signer (node:crypto) + vmi's HTTP client (node:http, keep-alive), BLAKE3-verified", loadMs: loadMs(['node:crypto', 'node:http']) /* the signer is one small module on node:crypto */, getsPerSecond: await rate((i) => store.get(i))})
  await store.close()
}
try {
  const {SignatureV4} = await import('@smithy/signature-v4')
  const http = await import('node:http')
  const {createHash, createHmac} = await import('node:crypto')
  // a node:crypto hash in the shape smithy wants (as @smithy/hash-node does)
  class NodeHash {
    /** @param {any} [secret] */
    constructor(secret) {
      this.h = secret ? createHmac('sha256', secret) : createHash('sha256')
    }
    /** @param {any} d */
    update(d) {
      this.h.update(d)
    }
    async digest() {
      return new Uint8Array(this.h.digest())
    }
  }
  const signer = new SignatureV4({service: 's3', region: rgw.S3_REGION, credentials: creds, sha256: NodeHash, uriEscapePath: false, applyChecksum: true})
  const u = new URL(rgw.S3_ENDPOINT)
  const agent = new http.Agent({keepAlive: true, maxSockets: 16})
  const get = async (/** @type {string} */ i) => {
    const req = await signer.sign({method: 'GET', protocol: 'http:', hostname: u.hostname, port: Number(u.port), path: `/bench/${key(i)}`, headers: {host: u.host, 'x-amz-content-sha256': 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'}})
    const body = await new Promise((resolve, reject) => {
      const r = http.request({host: u.hostname, port: u.port, path: req.path, headers: req.headers, agent}, (res) => {
        /** @type {Buffer[]} */
        const parts = []
        res.on('data', (d) => parts.push(d))
        res.on('end', () => (res.statusCode === 200 ? resolve(Buffer.concat(parts)) : reject(new Error(`HTTP ${res.statusCode}`))))
        res.on('error', reject)
      })
      r.on('error', reject)
      r.end()
    })
    dist.hash(/** @type {Buffer} */ (body))
  }
  await rate(get)
  clients.push({client: '@smithy/signature-v4 + node:http (keep-alive), BLAKE3-verified', loadMs: loadMs(['@smithy/signature-v4', 'node:http']), getsPerSecond: await rate(get)})
  agent.destroy()
} catch (err) {
  clients.push({client: '@smithy/signature-v4 + node:http', note: `not measured: ${/** @type {Error} */ (err).message.split('\n')[0]}`})
}
try {
  const {S3Client, GetObjectCommand} = await import('@aws-sdk/client-s3')
  const c = new S3Client({region: rgw.S3_REGION, endpoint: rgw.S3_ENDPOINT, forcePathStyle: true, credentials: creds, requestChecksumCalculation: 'WHEN_REQUIRED', responseChecksumValidation: 'WHEN_REQUIRED'})
  const get = async (/** @type {string} */ i) => {
    const res = await c.send(new GetObjectCommand({Bucket: 'bench', Key: key(i)}))
    dist.hash(Buffer.from(await /** @type {any} */ (res.Body).transformToByteArray()))
  }
  await rate(get)
  clients.push({client: '@aws-sdk/client-s3 (its node:http handler), BLAKE3-verified', loadMs: loadMs(['@aws-sdk/client-s3']), getsPerSecond: await rate(get)})
  c.destroy()
} catch (err) {
  clients.push({client: '@aws-sdk/client-s3', note: `not measured: ${/** @type {Error} */ (err).message.split('\n')[0]}`})
}

// ----------------------------------------------------------------- report
const S = Object.fromEntries(Object.entries(t).map(([k, xs]) => [k, stats(xs)]))
/** min–median–max of a ratio anchor/vmi over the paired runs. @param {number[]} a @param {number[]} b */
const ratio = (a, b) => stats(a.map((x, i) => x / b[i]))
const R = {
  image: {label: imageLabel, size: IMAGE, id, uniqueBytes: unique},
  reps,
  aws: awsVersion,
  seconds: S,
  ratios: {
    push: ratio(t.awsUp, t.push),
    pull: ratio(t.awsDown, t.pullS3),
    s3VsNginx: ratio(t.pullS3, t.pullNginx),
    pushLoose: ratio(t.awsUp, t.pushLoose),
    pullLoose: ratio(t.awsDown, t.pullS3Loose),
    pushPackedVsLoose: ratio(t.push, t.pushLoose),
    pullPackedVsLoose: ratio(t.pullS3, t.pullS3Loose),
  },
  goals: {vsAws: 2, vsNginx: 1.5},
  // pulled stores are moved aside, not deleted, until the end: deleting thousands of files slows the next run's file creations
  storesMovedAside: true,
  method: prepMethod(settings),
  cpu: Object.fromEntries(Object.entries(cpu).map(([k, v]) => [k, {client: stats(v.client), server: stats(v.server)}])),
  clients,
  gets: GETS,
}
await run.finish(R, renderS3Report)
