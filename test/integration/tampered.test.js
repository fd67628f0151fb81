// Hostile input (issue 5): tampered manifests, refs, bundles and boot profiles
// — in a store, served by a seed, carried in a bundle — give a clear error
// (a VmiError's exit code, a message naming the culprit, no stack trace)
// before any allocation they would cause: every CLI run here is checked for
// its peak RSS (/usr/bin/time) under a 2 GiB address-space limit, and never
// hangs. Stores are left unchanged and fsck-clean where that applies.
import {test} from 'uvu'
import * as assert from 'uvu/assert'
import {spawn, spawnSync} from 'node:child_process'
import http from 'node:http'
import {existsSync, mkdirSync, openSync, closeSync, ftruncateSync, promises as fsp, readFileSync, symlinkSync, writeFileSync} from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {BIN, ROOT, listFiles, makeImage, skip, tmpStore} from '../helpers/index.js'
import {startMount} from '../helpers/mount.js'
import {startServe} from '../helpers/serve.js'
import {canonicalJson} from '../../dist/store/manifest.js'
import {hash} from '../../dist/store/hash.js'
import {HttpStore} from '../../dist/peer/http-store.js'

const K = 1024
const CS = 64 * K
const TOKEN = 'tamper-token-0123456789'
/** Peak RSS a refusal may cost: node itself takes ~80 MB; reading a 300 MB file would show. */
const MAX_RSS_KB = 200 * K
/** Address-space limit for every CLI run: a regression must fail, not eat the machine. */
const VMEM_KB = 2 * K * K
const HAVE_TIME = existsSync('/usr/bin/time')
if (!HAVE_TIME) skip('/usr/bin/time is missing: peak RSS of the CLI is not checked')

let runs = 0
/**
 * Run the real CLI without blocking this process (some tests serve HTTP
 * in-process): {status, signal, stdout, stderr, rssKb}. Killed (with its
 * process group) after `timeout` ms.
 */
function cli(argv, opts = {}) {
  const env = {...process.env, ...(opts.env ?? {})}
  delete env.VMI_HOME
  delete env.FORCE_COLOR
  delete env.NODE_DISABLE_COLORS
  if (opts.store) env.VMI_HOME = opts.store
  const rssFile = path.join(os.tmpdir(), `vmi-tamper-rss-${process.pid}-${runs++}`)
  const cmd = [process.execPath, BIN, ...argv]
  const wrapped = HAVE_TIME ? ['/usr/bin/time', '-o', rssFile, '-f', '%M', ...cmd] : cmd
  const child = spawn('sh', ['-c', `ulimit -v ${VMEM_KB} && exec "$@"`, 'sh', ...wrapped], {env, cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], detached: true})
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (d) => (stdout += d))
  child.stderr.on('data', (d) => (stderr += d))
  let timedOut = false
  const timer = setTimeout(() => {
    timedOut = true
    try {
      process.kill(-child.pid, 'SIGKILL')
    } catch {}
  }, opts.timeout ?? 60_000)
  return new Promise((resolve) =>
    child.on('close', (status, signal) => {
      clearTimeout(timer)
      let rssKb
      try {
        rssKb = Number(readFileSync(rssFile, 'utf8').trim().split('\n').at(-1))
      } catch {}
      fsp.rm(rssFile, {force: true}).catch(() => {})
      resolve({status, signal, timedOut, stdout, stderr, rssKb})
    }),
  )
}

function ctx(r, what) {
  return `${what}: exit ${r.status}${r.timedOut ? ' (timed out)' : ''}, rss ${r.rssKb} KB, stderr ${JSON.stringify(r.stderr.slice(0, 600))}`
}

/** Finished on its own, within the memory budget, without a stack trace. */
function sane(r, what) {
  assert.not.ok(r.timedOut, `${what} hung: ${ctx(r, what)}`)
  if (HAVE_TIME) assert.ok(r.rssKb > 0 && r.rssKb < MAX_RSS_KB, `${what}: peak RSS ${r.rssKb} KB over ${MAX_RSS_KB} KB: ${ctx(r, what)}`)
  assert.not.match(r.stderr, /\n\s+at .*:\d+:\d+/, `${what}: a stack trace leaked: ${ctx(r, what)}`)
  assert.not.match(r.stderr, /VMI_INTERNAL|FATAL|Invalid (typed )?array length/i, `${what}: ${ctx(r, what)}`)
}

/** Refused with exit `code`, a message matching `re`, nothing on stdout. */
function refused(r, code, re, what) {
  sane(r, what)
  assert.is(r.status, code, ctx(r, what))
  assert.is(r.stdout, '', `${what}: stdout must be empty: ${ctx(r, what)}`)
  assert.match(r.stderr, re, ctx(r, what))
}

function ok(r, what) {
  sane(r, what)
  assert.is(r.status, 0, ctx(r, what))
  return r
}

async function fsckClean(store, what) {
  ok(await cli(['fsck'], {store}), `fsck after ${what}`)
}

// ---------------------------------------------------------------- crafting

/** Manifest bytes and their true id (no validation: anything goes). */
function enc(m) {
  const bytes = Buffer.from(canonicalJson(m))
  return {bytes, id: hash(bytes), m}
}

const shard = (id) => `${id.slice(0, 2)}/${id.slice(2)}`

function writeStoreFile(store, rel, data) {
  const f = path.join(store, rel)
  mkdirSync(path.dirname(f), {recursive: true})
  writeFileSync(f, data)
  return f
}

const putManifest = (store, id, bytes) => writeStoreFile(store, `manifests/${shard(id)}`, bytes)
const putRef = (store, name, tag, text) => writeStoreFile(store, `refs/${name}/${tag}`, text)

/** A sparse file of `size` bytes (costs no disk). */
function sparse(file, size) {
  mkdirSync(path.dirname(file), {recursive: true})
  const fd = openSync(file, 'w')
  ftruncateSync(fd, size)
  closeSync(fd)
}

function mkfifo(file) {
  mkdirSync(path.dirname(file), {recursive: true})
  const r = spawnSync('mkfifo', [file])
  assert.is(r.status, 0, `mkfifo: ${r.stderr}`)
}

/** A store with `good:v1`: 3 random 64 KiB chunks. Returns its id, manifest and chunk ids. */
async function storeWithGood(t, name = 'store') {
  const store = path.join(t.dir, name)
  const raw = path.join(t.dir, `${name}.raw`)
  await makeImage(raw, [{kind: 'random', size: 3 * CS, seed: 'tamper'}])
  const r = ok(await cli(['import', raw, 'good:v1', '--chunk-size', '64K'], {store}), 'import good')
  const id = r.stdout.trim()
  const bytes = readFileSync(path.join(store, 'manifests', shard(id)))
  const m = JSON.parse(bytes)
  return {store, raw, id, bytes, m, chunks: m.chunks}
}

/**
 * Manifests that hash to their id but must be refused: each names what is
 * wrong. `c` are real chunk ids (3 chunks of 64 KiB).
 */
function absurdManifests(c) {
  const base = {version: 1, chunkSize: CS, sourceFormat: 'raw', created: '2026-01-01T00:00:00.000Z'}
  return [
    {name: '1 PiB with a one-entry chunk list', m: {...base, virtualSize: 2 ** 50, chunks: [c[0]]}, re: /cover 1 chunks, the virtual size needs 17179869184/},
    {name: 'a chunk list longer than the size needs', m: {...base, virtualSize: 3 * CS, chunks: [c[0], c[1], c[2], c[0]]}, re: /lists 4 entries for 3 chunks/},
    {name: 'a chunk list shorter than the size needs', m: {...base, virtualSize: 3 * CS, chunks: [c[0]]}, re: /cover 1 chunks, the virtual size needs 3/},
    {name: 'a zero run of 2^53', m: {...base, virtualSize: 3 * CS, chunks: [2 ** 53]}, re: /neither an id nor a positive zero-run length/},
    {name: 'a zero run of 2^53 - 1', m: {...base, virtualSize: 3 * CS, chunks: [c[0], 2 ** 53 - 1]}, re: /cover more than the 3 chunks/},
    {name: 'a chunk size that is not a power of two', m: {...base, chunkSize: 100_000, virtualSize: 3 * CS, chunks: [c[0], c[1]]}, re: /chunk size 100000 is not a power of two/},
    {name: 'a chunk size of 1 TiB', m: {...base, chunkSize: 2 ** 40, virtualSize: 2 ** 40, chunks: [1]}, re: /chunk size 1099511627776 is not a power of two between/},
    {name: 'a virtual size of 2^60', m: {...base, virtualSize: 2 ** 60, chunks: [2 ** 44]}, re: /virtual size 1152921504606847000 is not a positive multiple of 512 up to 1 PiB/},
    {name: 'a 1 MiB annotation', m: {...base, virtualSize: 3 * CS, chunks: c, annotations: {note: 'x'.repeat(1 << 20)}}, re: /annotation "note" is too long/},
    // whole but newer: fsck reports it as such, and --repair leaves it for a newer vmi
    {name: 'format version 99', m: {...base, version: 99, virtualSize: 3 * CS, chunks: c}, re: /version 99 is newer.*upgrade vmi/, kind: 'newer-manifest'},
  ].map((x) => ({...x, ...enc(x.m)}))
}

/** Valid sparse manifests of 1 PiB: all zeros (256 KiB chunks), and 2^34 chunks ending in a real one. */
function hugeValidManifests(c) {
  const base = {version: 1, sourceFormat: 'raw', created: '2026-01-01T00:00:00.000Z', virtualSize: 2 ** 50}
  return {
    zeros: enc({...base, chunkSize: 256 * K, chunks: [2 ** 32]}),
    tail: enc({...base, chunkSize: CS, chunks: [2 ** 34 - 1, c[0]]}),
  }
}

// ---------------------------------------------------------------- a parent chain "loop"

test('a store tampered into a parent loop: log/inspect/gc/push/save name the damaged file, fsck names the problem, --repair clears it', async () => {
  const t = tmpStore()
  try {
    const g = await storeWithGood(t)
    const {store} = g
    // A and B are honest (B's parent is A); then A's file is overwritten with
    // a manifest claiming B as parent: A → B → A, which no honest hash allows
    const A = enc({...g.m, created: '2026-01-01T00:00:00.000Z'})
    const B = enc({...g.m, created: '2026-01-02T00:00:00.000Z', parent: A.id})
    const A2 = enc({...g.m, created: '2026-01-01T00:00:00.000Z', parent: B.id})
    putManifest(store, B.id, B.bytes)
    const fileA = putManifest(store, A.id, A2.bytes)
    putRef(store, 'loop', 'a', A.id + '\n')
    putRef(store, 'loop', 'b', B.id + '\n')
    const relA = path.relative(store, fileA)
    const damaged = new RegExp(`${relA.replace('/', '\\/')}.*does not match its id ${A.id}`)
    const before = await listFiles(store)

    for (const argv of [['log', 'loop:a'], ['log', 'loop:b'], ['inspect', 'loop:a'], ['inspect', A.id.slice(0, 10)], ['gc'], ['gc', '--dry-run'], ['export', 'loop:a', path.join(t.dir, 'a.raw')]])
      refused(await cli(argv, {store}), 8, damaged, argv.join(' '))
    const push = await cli(['push', 'loop:a', 'http://127.0.0.1:9', '--token', TOKEN], {store})
    refused(push, 8, damaged, 'push loop:a (refused before any connection)')
    const bundle = path.join(t.dir, 'a.tar')
    refused(await cli(['save', 'loop:a', '-o', bundle], {store}), 8, damaged, 'save loop:a')
    assert.not.ok(existsSync(bundle), 'no bundle written')
    assert.equal(await listFiles(store), before, 'the refusals changed nothing')

    // the honest images still work: B itself, and ls (which leaves A out, saying why)
    const ib = ok(await cli(['inspect', 'loop:b', '--json'], {store}), 'inspect loop:b')
    assert.is(JSON.parse(ib.stdout).parent, A.id)
    const ls = ok(await cli(['ls'], {store}), 'ls')
    assert.match(ls.stdout, /loop:b/)
    assert.match(ls.stdout, /good:v1/)
    assert.not.match(ls.stdout, /loop:a/)
    assert.match(ls.stderr, new RegExp(`warning: image ${A.id} left out`))
    ok(await cli(['save', 'loop:b', '-o', bundle], {store}), 'save loop:b')

    const f = await cli(['fsck'], {store})
    sane(f, 'fsck')
    assert.is(f.status, 1, ctx(f, 'fsck'))
    assert.match(f.stderr, new RegExp(`bad-manifest: ${relA}: manifest ${A.id} does not match its id`))
    assert.match(f.stderr, new RegExp(`dangling-ref: ref loop:a points at image ${A.id}`))
    const rep = await cli(['fsck', '--repair'], {store})
    sane(rep, 'fsck --repair')
    assert.is(rep.status, 1, ctx(rep, 'fsck --repair'))
    assert.match(rep.stderr, /\[repaired: moved to quarantine\//)
    assert.match(rep.stderr, /\[repaired: ref removed\]/)
    await fsckClean(store, 'fsck --repair')
    const log = ok(await cli(['log', 'loop:b'], {store}), 'log loop:b after repair')
    assert.match(log.stdout, new RegExp(`parent ${A.id} \\(not in this store\\)`))
    ok(await cli(['gc'], {store}), 'gc after repair')
    ok(await cli(['export', 'good:v1', path.join(t.dir, 'out.raw')], {store}), 'export good:v1')
    assert.ok(readFileSync(path.join(t.dir, 'out.raw')).equals(readFileSync(g.raw)), 'good:v1 intact')
  } finally {
    t.cleanup()
  }
})

// ---------------------------------------------------------------- absurd manifests in a store

test('absurd manifests in a store (under their true hash) are refused as bad input; ls and fsck carry on', async () => {
  const t = tmpStore()
  try {
    const g = await storeWithGood(t)
    const {store} = g
    const cases = absurdManifests(g.chunks)
    cases.forEach((c, i) => {
      putManifest(store, c.id, c.bytes)
      putRef(store, 'bad', `c${i}`, c.id + '\n')
    })
    const before = await listFiles(store)
    for (const [i, c] of cases.entries()) refused(await cli(['inspect', `bad:c${i}`], {store}), 5, c.re, `inspect (${c.name})`)
    refused(await cli(['export', 'bad:c0', path.join(t.dir, 'x.raw')], {store}), 5, cases[0].re, 'export (1 PiB, one entry)')
    refused(await cli(['log', 'bad:c3'], {store}), 5, cases[3].re, 'log (zero run 2^53)')
    refused(await cli(['mount', 'bad:c0', '--socket', path.join(t.dir, 'm.sock')], {store}), 5, cases[0].re, 'mount (1 PiB, one entry)')
    assert.not.ok(existsSync(path.join(t.dir, 'm.sock')), 'mount never served')
    refused(await cli(['gc'], {store}), 5, /manifest [0-9a-f]{64}: /, 'gc over absurd roots')
    assert.equal(await listFiles(store), before, 'store unchanged')

    const ls = ok(await cli(['ls', '--json'], {store}), 'ls')
    assert.equal(JSON.parse(ls.stdout).images.map((i) => i.refs.join()), ['good:v1'])
    const f = await cli(['fsck'], {store})
    sane(f, 'fsck')
    assert.is(f.status, 1, ctx(f, 'fsck'))
    for (const c of cases) {
      assert.ok(f.stderr.includes(`${c.kind ?? 'bad-manifest'}: manifests/${shard(c.id)}: `), `fsck names ${c.name}: ${f.stderr}`)
      assert.match(f.stderr, c.re, `fsck says what is wrong with ${c.name}`)
    }
  } finally {
    t.cleanup()
  }
})

test('manifest files that are huge, a device, a FIFO: refused before reading, no hang', async () => {
  const t = tmpStore()
  try {
    const g = await storeWithGood(t)
    const {store} = g
    const ids = {big: 'b'.repeat(64), dev: 'd'.repeat(64), fifo: 'f'.repeat(64)}
    sparse(path.join(store, 'manifests', shard(ids.big)), 300 * 1000 * 1000)
    mkdirSync(path.join(store, 'manifests', 'dd'), {recursive: true})
    symlinkSync('/dev/zero', path.join(store, 'manifests', shard(ids.dev)))
    mkfifo(path.join(store, 'manifests', shard(ids.fifo)))
    for (const [k, id] of Object.entries(ids)) putRef(store, k, 'v1', id + '\n')
    const before = await listFiles(store)

    const bigFile = path.join(store, 'manifests', shard(ids.big))
    refused(await cli(['inspect', 'big:v1'], {store}), 5, new RegExp(`manifest ${ids.big} \\(${bigFile}\\) is 300000000 bytes, larger than the 268435456 limit`), 'inspect 300 MB manifest')
    refused(await cli(['log', ids.big], {store}), 5, /larger than the 268435456 limit/, 'log 300 MB manifest')
    refused(await cli(['inspect', 'dev:v1'], {store}), 6, /manifests\/dd\/d+ is not a regular file/, 'inspect /dev/zero manifest')
    refused(await cli(['inspect', 'fifo:v1'], {store}), 6, /manifests\/ff\/f+ is not a regular file/, 'inspect FIFO manifest')
    refused(await cli(['gc'], {store}), 5, /larger than the 268435456 limit|not a regular file/, 'gc')
    const ls = ok(await cli(['ls'], {store}), 'ls')
    assert.match(ls.stdout, /good:v1/)
    assert.is(ls.stderr.match(/warning: image/g)?.length, 3, ls.stderr)
    const f = await cli(['fsck'], {store})
    sane(f, 'fsck')
    assert.is(f.status, 1, ctx(f, 'fsck'))
    assert.match(f.stderr, new RegExp(`bad-manifest: manifests/bb/b+: manifest ${ids.big} is 300000000 bytes`))
    assert.match(f.stderr, /bad-manifest: manifests\/dd\/d+: .* is not a regular file/)
    assert.match(f.stderr, /bad-manifest: manifests\/ff\/f+: .* is not a regular file/)
    assert.equal(await listFiles(store), before, 'store unchanged')
    // an object file larger than any chunk: fsck calls it corrupt without reading it
    const obj = path.join(store, 'objects', shard('0'.repeat(64)))
    sparse(obj, 300 * 1000 * 1000)
    const f2 = await cli(['fsck'], {store})
    sane(f2, 'fsck with a 300 MB object')
    assert.match(f2.stderr, /corrupt-object: object 0{64} is corrupt: 300000000 bytes, more than any chunk/)
  } finally {
    t.cleanup()
  }
})

// ---------------------------------------------------------------- valid but enormous

test('valid 1 PiB sparse manifests: ls/inspect/diff/log/fsck/gc/save/load stay small; export and mount refuse cleanly', async () => {
  const t = tmpStore()
  try {
    const g = await storeWithGood(t)
    const {store} = g
    const {zeros, tail} = hugeValidManifests(g.chunks)
    putManifest(store, zeros.id, zeros.bytes)
    putManifest(store, tail.id, tail.bytes)
    putRef(store, 'pib', 'zeros', zeros.id + '\n')
    putRef(store, 'pib', 'tail', tail.id + '\n')

    const ins = JSON.parse(ok(await cli(['inspect', 'pib:tail', '--json'], {store}), 'inspect pib:tail').stdout)
    assert.is(ins.chunks, 2 ** 34)
    assert.is(ins.zeroChunks, 2 ** 34 - 1)
    assert.is(ins.distinctChunks, 1)
    assert.is(JSON.parse(ok(await cli(['inspect', 'pib:zeros', '--json'], {store}), 'inspect pib:zeros').stdout).chunks, 2 ** 32)
    const ls = JSON.parse(ok(await cli(['ls', '--json'], {store}), 'ls').stdout)
    assert.equal(ls.images.map((i) => i.refs.join()).sort(), ['good:v1', 'pib:tail', 'pib:zeros'])
    const d = JSON.parse(ok(await cli(['diff', 'good:v1', 'pib:tail', '--json'], {store}), 'diff').stdout)
    assert.equal(d.positional.changed, {chunks: 3, bytes: 3 * CS})
    assert.equal(d.positional.onlyB, {chunks: 2 ** 34 - 3, bytes: 2 ** 50 - 3 * CS})
    assert.equal(d.content.shared, {chunks: 1, bytes: CS})
    ok(await cli(['log', 'pib:zeros'], {store}), 'log')
    await fsckClean(store, 'huge manifests')
    ok(await cli(['gc'], {store}), 'gc')

    refused(await cli(['export', 'pib:tail', path.join(t.dir, 'x.raw')], {store}), 5, /17179869184 chunks; vmi (handles|exports) at most 67108864/, 'export 1 PiB')
    assert.not.ok((await fsp.readdir(t.dir)).some((f) => f.includes('x.raw')), 'no export file left behind')
    const sock = path.join(t.dir, 'm.sock')
    refused(await cli(['mount', 'pib:zeros', '--socket', sock], {store}), 5, /too large to mount: 1125899906842624 bytes in 4294967296 chunks/, 'mount 1 PiB')
    refused(await cli(['mount', 'pib:zeros', '--socket', sock, '--read-only'], {store}), 5, /too large to mount/, 'mount 1 PiB read-only')
    assert.not.ok(existsSync(sock), 'mount never served')

    const bundle = path.join(t.dir, 'pib.tar')
    ok(await cli(['save', 'pib:tail', 'pib:zeros', '-o', bundle], {store}), 'save')
    const other = path.join(t.dir, 'other')
    ok(await cli(['load', bundle], {store: other}), 'load')
    assert.equal(await listFiles(path.join(other, 'refs')), ['pib/tail', 'pib/zeros'])
    await fsckClean(other, 'load of 1 PiB images')
  } finally {
    t.cleanup()
  }
})

// ---------------------------------------------------------------- tampered refs in a store

test('tampered refs: garbage, short id, missing manifest, symlink out of the store, FIFO, directory, 300 MB', async () => {
  const t = tmpStore()
  try {
    const g = await storeWithGood(t)
    const {store} = g
    putRef(store, 'garbage', 'v1', 'not an id at all\n')
    putRef(store, 'short', 'v1', 'abcd\n')
    putRef(store, 'missing', 'v1', 'e'.repeat(64) + '\n')
    const outside = path.join(t.dir, 'outside-ref')
    writeFileSync(outside, g.id + '\n')
    mkdirSync(path.join(store, 'refs', 'outside'))
    symlinkSync(outside, path.join(store, 'refs', 'outside', 'v1'))
    mkfifo(path.join(store, 'refs', 'fifo', 'v1'))
    mkdirSync(path.join(store, 'refs', 'dir', 'v1'), {recursive: true})
    sparse(path.join(store, 'refs', 'big', 'v1'), 300 * 1000 * 1000)
    const before = await listFiles(store)
    const damaged = {
      garbage: /does not hold an id/,
      short: /does not hold an id/,
      outside: /is a symbolic link; vmi never writes one there and does not follow it/,
      fifo: /is not a regular file/,
      dir: /is not a regular file/,
      big: /300000000 bytes, not an id/,
    }
    for (const [name, re] of Object.entries(damaged)) {
      refused(await cli(['inspect', `${name}:v1`], {store}), 6, new RegExp(`ref ${name}:v1 in local store .* is damaged \\(.*${re.source}`), `inspect ${name}:v1`)
    }
    refused(await cli(['inspect', 'missing:v1'], {store}), 3, /no image e{64}/, 'inspect missing:v1')
    refused(await cli(['push', 'fifo:v1', 'http://127.0.0.1:9', '--token', TOKEN], {store}), 6, /ref fifo:v1 .* is damaged/, 'push fifo:v1')
    // gc will not guess what a damaged ref meant to keep
    refused(await cli(['gc'], {store}), 6, /ref \w+:v1 in local store .* is damaged/, 'gc over damaged refs')
    assert.equal(await listFiles(store), before, 'store unchanged')

    const ls = JSON.parse(ok(await cli(['ls', '--json'], {store}), 'ls').stdout)
    assert.equal(ls.images.map((i) => i.refs.join()), ['good:v1'])
    const f = await cli(['fsck'], {store})
    sane(f, 'fsck')
    assert.is(f.status, 1, ctx(f, 'fsck'))
    for (const name of Object.keys(damaged)) assert.match(f.stderr, new RegExp(`bad-ref: ref ${name}:v1 .* is damaged`), `fsck names ${name}:v1`)
    assert.match(f.stderr, /dangling-ref: ref missing:v1 points at image e{64}/)

    const rep = await cli(['fsck', '--repair'], {store})
    sane(rep, 'fsck --repair')
    assert.is(rep.status, 1, ctx(rep, 'fsck --repair'))
    await fsckClean(store, 'repair of refs')
    assert.equal(await listFiles(path.join(store, 'refs')), ['good/v1'])
    assert.is(readFileSync(outside, 'utf8'), g.id + '\n', 'the file outside the store is untouched')
    ok(await cli(['gc'], {store}), 'gc after repair')
    ok(await cli(['export', 'good:v1', path.join(t.dir, 'out.raw')], {store}), 'export good:v1')
    assert.ok(readFileSync(path.join(t.dir, 'out.raw')).equals(readFileSync(g.raw)), 'good:v1 intact')
  } finally {
    t.cleanup()
  }
})

// ---------------------------------------------------------------- a hostile seed

/**
 * A seed over HTTP: `routes[path]` answers first ({status, body, headers},
 * or {stream: bytes} to stream that many bytes), else the files of the
 * store `dir`, else 404.
 */
async function craftedSeed(dir, routes) {
  const sockets = new Set()
  const server = http.createServer(async (req, res) => {
    const r = routes[req.url]
    if (r?.stream) {
      res.writeHead(200, {'content-length': r.stream})
      const piece = Buffer.alloc(1 << 20, 0x20)
      let sent = 0
      const pump = () => {
        while (sent < r.stream && !res.destroyed) {
          sent += piece.length
          if (!res.write(piece)) return res.once('drain', pump)
        }
        res.end()
      }
      pump()
      return
    }
    if (r) {
      res.writeHead(r.status ?? 200, {'content-length': r.body.length, ...(r.headers ?? {})})
      res.end(r.body)
      return
    }
    if (/^\/(objects|manifests|refs|profiles)\/[A-Za-z0-9._-]+\/[A-Za-z0-9._-]+$/.test(req.url)) {
      try {
        const body = await fsp.readFile(path.join(dir, req.url))
        res.writeHead(200, {'content-length': body.length}).end(body)
        return
      } catch {}
    }
    res.writeHead(404).end()
  })
  server.on('connection', (s) => {
    sockets.add(s)
    s.on('close', () => sockets.delete(s))
  })
  await new Promise((r) => server.listen(0, '127.0.0.1', r))
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    close: () =>
      new Promise((r) => {
        for (const s of sockets) s.destroy()
        server.close(r)
      }),
  }
}

test('a seed serving tampered manifests, refs and profiles: pull and mount refuse before storing or serving', async () => {
  const t = tmpStore()
  let seed
  try {
    const g = await storeWithGood(t, 'src')
    const cases = absurdManifests(g.chunks)
    const {zeros, tail} = hugeValidManifests(g.chunks)
    const lying = 'a'.repeat(64) // served with good:v1's bytes
    const endless = 'c'.repeat(64) // declares 300 MB
    const routes = {
      '/refs/garbage/v1': {body: Buffer.from('<html>hello</html>\n')},
      '/refs/short/v1': {body: Buffer.from('abcd\n')},
      '/refs/missing/v1': {body: Buffer.from('e'.repeat(64) + '\n')},
      '/refs/huge/v1': {stream: 300 * 1000 * 1000},
      '/refs/pib/v1': {body: Buffer.from(tail.id + '\n')},
      [`/manifests/${shard(lying)}`]: {body: g.bytes},
      [`/manifests/${shard(endless)}`]: {stream: 300 * 1000 * 1000},
      [`/manifests/${shard(zeros.id)}`]: {body: zeros.bytes},
      [`/manifests/${shard(tail.id)}`]: {body: tail.bytes},
      // boot profiles: a huge one for a 3-chunk image, one naming chunks far outside its image
      [`/profiles/${shard(g.id)}`]: {stream: 60 * 1000 * 1000},
      [`/profiles/${shard(tail.id)}`]: {body: Buffer.from(JSON.stringify({version: 1, chunkSize: CS, chunks: [0, 1e12, 2 ** 52]}))},
      '/v1/refs': {
        body: Buffer.from(
          JSON.stringify({
            refs: [
              {name: 'good', tag: 'v1', id: g.id},
              {name: '../../../etc', tag: 'passwd', id: g.id},
              {name: 'a/b', tag: 'c', id: g.id},
              {name: 'x', tag: '..', id: g.id},
              {name: 'x', tag: 'y', id: 'short'},
              {name: 7, tag: 'y', id: g.id},
            ],
          }),
        ),
      },
    }
    for (const c of cases) routes[`/manifests/${shard(c.id)}`] = {body: c.bytes}
    seed = await craftedSeed(g.store, routes)
    const host = path.join(t.dir, 'host')
    const sock = path.join(t.dir, 'm.sock')
    const nothingStored = async (what) => {
      assert.equal(await listFiles(path.join(host, 'manifests')), [], `${what}: no manifest stored`)
      assert.equal(await listFiles(path.join(host, 'refs')), [], `${what}: no ref stored`)
      assert.equal(await listFiles(path.join(host, 'objects')), [], `${what}: no object stored`)
      assert.not.ok(existsSync(sock), `${what}: mount never served`)
    }

    // refs
    refused(await cli(['pull', 'garbage:v1', seed.url], {store: host}), 9, /answered ref garbage:v1 with something that is not an id/, 'pull garbage ref')
    refused(await cli(['pull', 'short:v1', seed.url], {store: host}), 9, /answered ref short:v1 with something that is not an id/, 'pull short ref')
    refused(await cli(['pull', 'missing:v1', seed.url], {store: host}), 9, /no source has image e{64}/, 'pull ref to a missing manifest')
    refused(await cli(['pull', 'huge:v1', seed.url], {store: host}), 9, /sent more than 1024 bytes for ref huge:v1/, 'pull a 300 MB ref')
    refused(await cli(['mount', 'garbage:v1', seed.url, '--socket', sock], {store: host}), 9, /not an id/, 'mount garbage ref')
    // manifests
    refused(await cli(['pull', lying, seed.url], {store: host}), 9, new RegExp(`sent wrong bytes for manifest ${lying} \\(they hash to ${g.id}\\)`), 'pull lying manifest')
    refused(await cli(['pull', endless, seed.url], {store: host}), 9, /sent more than 268435456 bytes for manifest c{64}/, 'pull 300 MB manifest')
    refused(await cli(['mount', endless, seed.url, '--socket', sock], {store: host}), 9, /sent more than 268435456 bytes/, 'mount 300 MB manifest')
    for (const c of cases) {
      refused(await cli(['pull', c.id, seed.url], {store: host}), 9, c.re, `pull (${c.name})`)
      refused(await cli(['mount', c.id, seed.url, '--socket', sock], {store: host}), 9, c.re, `mount (${c.name})`)
    }
    refused(await cli(['mount', zeros.id, seed.url, '--socket', sock], {store: host}), 5, /too large to mount/, 'mount a valid 1 PiB image')
    await nothingStored('refused pulls and mounts')

    // the ref listing: only well-formed names get through
    const listed = await new HttpStore(seed.url).listRefs()
    assert.equal(listed, [{name: 'good', tag: 'v1', id: g.id}])

    // a hostile profile is ignored (a hint), never stored; the pull itself is fine. A local
    // object file larger than any chunk is corrupt: moved aside unread, fetched again
    sparse(path.join(host, 'objects', shard(g.chunks[1])), 300 * 1000 * 1000)
    const healed = ok(await cli(['pull', 'good:v1', seed.url, '--json'], {store: host}), 'pull good:v1 with a hostile profile')
    assert.is(JSON.parse(healed.stdout).fromChunks.seed, 3)
    assert.is((await listFiles(path.join(host, 'quarantine'))).length, 1, 'the 300 MB object was moved aside')
    // a valid 1 PiB image pulls in a moment: one chunk to fetch, 2^34 - 1 zero chunks cost nothing
    const pib = JSON.parse(ok(await cli(['pull', 'pib:v1', seed.url, '--json'], {store: host}), 'pull pib:v1').stdout)
    assert.is(pib.chunks, 2 ** 34)
    assert.is(pib.distinctChunks, 1)
    assert.equal(await listFiles(path.join(host, 'refs')), ['good/v1', 'pib/v1'])
    assert.equal(await listFiles(path.join(host, 'profiles')), [], 'no profile stored')
    await fsckClean(host, 'pulls')
    ok(await cli(['export', 'good:v1', path.join(t.dir, 'out.raw')], {store: host}), 'export')
    assert.ok(readFileSync(path.join(t.dir, 'out.raw')).equals(readFileSync(g.raw)), 'good:v1 intact')
  } finally {
    await seed?.close()
    t.cleanup()
  }
})

// ---------------------------------------------------------------- tampered bundles

/** One ustar header; `size` may lie about the data that follows. */
function ustarHeader(name, size, type = '0', linkname = '') {
  const h = Buffer.alloc(512)
  h.write(name, 0, 100, 'utf8')
  h.write('0000644\0', 100)
  h.write('0000000\0', 108)
  h.write('0000000\0', 116)
  h.write(size.toString(8).padStart(11, '0') + '\0', 124)
  h.write('00000000000\0', 136)
  h.write('        ', 148)
  h.write(type, 156)
  h.write(linkname, 157, 100, 'utf8')
  h.write('ustar\0', 257)
  h.write('00', 263)
  let sum = 0
  for (const b of h) sum += b
  h.write(sum.toString(8).padStart(6, '0') + '\0 ', 148)
  return h
}

/** A tar: entries {name, data} (a file), {name, symlink}, or {name, lieSize} (a header only, and the end). */
function tarball(entries) {
  const parts = []
  for (const e of entries) {
    if (e.symlink) parts.push(ustarHeader(e.name, 0, '2', e.symlink))
    else if (e.lieSize) return Buffer.concat([...parts, ustarHeader(e.name, e.lieSize)])
    else {
      const data = Buffer.isBuffer(e.data) ? e.data : Buffer.from(e.data)
      parts.push(ustarHeader(e.name, data.length), data, Buffer.alloc((512 - (data.length % 512)) % 512))
    }
  }
  return Buffer.concat([...parts, Buffer.alloc(1024)])
}

const bundleIndex = (images) => ({name: 'vmi-bundle.json', data: JSON.stringify({format: 'vmi-bundle', version: 1, images})})

test('bundles with tampered indexes, manifests, sizes and profiles: load refuses, the store is unchanged', async () => {
  const t = tmpStore()
  try {
    const g = await storeWithGood(t, 'src')
    const objects = g.chunks.map((c) => ({name: `objects/${c}`, data: readFileSync(path.join(g.store, 'objects', shard(c)))}))
    const goodEntries = (refs = ['good:v1']) => [bundleIndex([{id: g.id, refs}]), {name: `manifests/${g.id}`, data: g.bytes}]
    const cases = [
      {name: 'a ref with path traversal', tar: [...goodEntries(['../../../tmp/evil:x']), ...objects], re: /invalid image name "\.\.\/\.\.\/\.\.\/tmp\/evil"/},
      {name: 'a tag with path traversal', tar: [...goodEntries(['good:../../x']), ...objects], re: /invalid tag/},
      {name: 'a ref with a slash', tar: [...goodEntries(['a/b:c']), ...objects], re: /invalid image name "a\/b"/},
      {name: 'a short image id', tar: [bundleIndex([{id: 'abcd', refs: []}])], re: /bad image id/},
      {name: 'refs that are not a list', tar: [bundleIndex([{id: g.id, refs: 'good:v1'}])], re: /bad refs/},
      {name: 'a manifest under another id', tar: [bundleIndex([{id: 'a'.repeat(64), refs: ['x:y']}]), {name: `manifests/${'a'.repeat(64)}`, data: g.bytes}], re: /does not match its id/},
      {name: 'an entry outside the layout', tar: [...goodEntries(), {name: 'manifests/../../../evil', data: 'x'}], re: /unexpected entry "manifests\/\.\.\/\.\.\/\.\.\/evil"/},
      {name: 'a symlink entry', tar: [...goodEntries(), {name: `objects/${g.chunks[0]}`, symlink: '/etc/passwd'}], re: /unexpected symlink entry/},
      {name: 'a manifest entry claiming 300 MB', tar: [bundleIndex([{id: g.id, refs: []}]), {name: `manifests/${g.id}`, lieSize: 300 * 1000 * 1000}], re: /is 300000000 bytes, over the 268435456-byte limit/},
      {name: 'an object entry claiming 300 MB', tar: [...goodEntries(), {name: `objects/${g.chunks[0]}`, lieSize: 300 * 1000 * 1000}], re: /is 300000000 bytes, over the 4194304-byte limit/},
      {name: 'an index claiming 300 MB', tar: [{name: 'vmi-bundle.json', lieSize: 300 * 1000 * 1000}], re: /over the 16777216-byte limit/},
      {
        name: 'a profile naming chunks outside the image',
        tar: [...goodEntries(), {name: `profiles/${g.id}`, data: JSON.stringify({version: 1, chunkSize: CS, chunks: [0, 1e12]})}, ...objects],
        re: /boot profile names a chunk outside the image/,
      },
      {
        name: 'a 10 MB profile for a 3-chunk image',
        tar: [...goodEntries(), {name: `profiles/${g.id}`, data: JSON.stringify({version: 1, chunkSize: CS, chunks: Array(5e6).fill(0)})}, ...objects],
        re: /bundle entry profiles\/[0-9a-f]{64} is \d{8} bytes, over the 100-byte limit/,
      },
    ]
    for (const c of absurdManifests(g.chunks))
      cases.push({name: c.name, tar: [bundleIndex([{id: c.id, refs: ['bad:v1']}]), {name: `manifests/${c.id}`, data: c.bytes}, ...objects], re: c.re})

    const store = path.join(t.dir, 'target')
    const other = path.join(t.dir, 'other.raw')
    await makeImage(other, [{kind: 'random', size: 2 * CS, seed: 'other'}])
    ok(await cli(['import', other, 'other:v1', '--chunk-size', '64K'], {store}), 'import other')
    const before = await listFiles(store)
    const file = path.join(t.dir, 'bad.tar')
    for (const c of cases) {
      writeFileSync(file, tarball(c.tar))
      refused(await cli(['load', file], {store}), 5, c.re, `load (${c.name})`)
      assert.equal(await listFiles(store), before, `${c.name}: store unchanged`)
    }
    await fsckClean(store, 'refused loads')

    // a valid 1 PiB sparse image loads in a moment; then the honest bundle
    const {tail} = hugeValidManifests(g.chunks)
    writeFileSync(file, tarball([bundleIndex([{id: tail.id, refs: ['pib:v1']}]), {name: `manifests/${tail.id}`, data: tail.bytes}, objects[0]]))
    ok(await cli(['load', file], {store}), 'load 1 PiB')
    writeFileSync(file, tarball([...goodEntries(), ...objects]))
    ok(await cli(['load', file], {store}), 'load the honest bundle')
    assert.equal(await listFiles(path.join(store, 'refs')), ['good/v1', 'other/v1', 'pib/v1'])
    await fsckClean(store, 'loads')
  } finally {
    t.cleanup()
  }
})

// ---------------------------------------------------------------- a tampered profile in the store

test('a tampered boot profile in the store is left behind by save and push, not sent to fail the other side', async () => {
  const t = tmpStore()
  let seed
  try {
    const g = await storeWithGood(t)
    const {store} = g
    seed = await startServe(path.join(t.dir, 'seed'), ['--push-token', TOKEN])
    const profileFile = path.join(store, 'profiles', shard(g.id))
    const bad = {
      'absurd indexes': JSON.stringify({version: 1, chunkSize: CS, chunks: [2, 1e12]}),
      'a 3 MB profile': JSON.stringify({version: 1, chunkSize: CS, chunks: Array(15e5).fill(1)}),
      'not JSON': 'garbage',
    }
    for (const [name, text] of Object.entries(bad)) {
      writeStoreFile(store, path.relative(store, profileFile), text)
      const bundle = path.join(t.dir, 'b.tar')
      ok(await cli(['save', 'good:v1', '-o', bundle, '--force'], {store}), `save with ${name}`)
      assert.not.ok(readFileSync(bundle).includes(`profiles/${g.id}`), `${name}: no profile in the bundle`)
      const other = path.join(t.dir, 'other')
      ok(await cli(['load', bundle], {store: other}), `load with ${name}`)
      await fsp.rm(other, {recursive: true})
      ok(await cli(['push', 'good:v1', seed.url], {store, env: {VMI_PUSH_TOKEN: TOKEN}}), `push with ${name}`)
      const res = await fetch(`${seed.url}/profiles/${shard(g.id)}`)
      assert.is(res.status, 404, `${name}: the seed got no profile`)
    }
    // mount ignores it too, and serves
    const m = await startMount(store, ['good:v1', '--socket', path.join(t.dir, 'm.sock'), '--read-only'])
    assert.is(m.mounted, g.id)
    const end = await m.stop()
    assert.is(end.code, 0, end.stderr)
  } finally {
    await seed?.stop()
    t.cleanup()
  }
})

test.run()
