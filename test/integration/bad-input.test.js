// Bad input, refused cleanly: every case must exit with its specific code,
// say what is wrong on stderr, print nothing on stdout, create no ref, leave
// the store fsck-clean, and (where it applies) the same command with good
// input must then succeed.
import {test} from 'uvu'
import * as assert from 'uvu/assert'
import {spawnSync} from 'node:child_process'
import {chmodSync, mkdirSync, promises as fsp, readFileSync, symlinkSync, writeFileSync} from 'node:fs'
import path from 'node:path'
import {gzipSync} from 'node:zlib'
import {BIN, exec, fsckClean, spawnCli, hasCommand, isRoot, listFiles, makeImage, sha256File, skip, tmpStore} from '../helpers/index.js'
import {sh, tmpfs} from '../helpers/tmpfs.js'
import {LocalStore} from '../../dist/store/local-store.js'
import {encodeManifest} from '../../dist/store/manifest.js'

const ID_LINE = /^[0-9a-f]{64}\n$/

/** Assert a refused command: exit `code`, stderr matching `re`, empty stdout. */
function refused(r, code, re, what) {
  const ctx = `${what}: exit ${r.status}, stderr ${JSON.stringify(r.stderr)}, stdout ${JSON.stringify(r.stdout)}`
  assert.is(r.status, code, ctx)
  assert.is(r.stdout, '', `${what}: stdout must be empty (${ctx})`)
  assert.match(r.stderr, re, ctx)
  assert.not.match(r.stderr, /\n\s+at .*\(.*:\d+:\d+\)/, `${what}: a stack trace leaked to stderr`)
}

function ok(r, what) {
  assert.is(r.status, 0, `${what}: exit ${r.status}, stderr ${JSON.stringify(r.stderr)}`)
}

/**
 * Run the CLI with `input` on stdin, tolerating EPIPE: the CLI may (rightly)
 * stop reading stdin as soon as it has seen enough to refuse it.
 */
function execInput(argv, {store, input}) {
  return new Promise((resolve, reject) => {
    const child = spawnCli(argv, {store, stdio: ['pipe', 'pipe', 'pipe']})
    const out = []
    const err = []
    child.stdout.on('data', (d) => out.push(d))
    child.stderr.on('data', (d) => err.push(d))
    child.stdin.on('error', (e) => {
      if (e.code !== 'EPIPE') reject(e)
    })
    child.stdin.end(input)
    child.on('error', reject)
    child.on('close', (status, signal) =>
      resolve({status, signal, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString()}),
    )
  })
}

const refs = (store) => listFiles(path.join(store, 'refs'))
const objects = (store) => listFiles(path.join(store, 'objects'))

async function assertNoRefs(store, what) {
  assert.equal(await refs(store), [], `${what}: no ref may be created`)
}

/** Import good input under `ref` and check it is there. */
async function goodImport(store, file, ref, extra = []) {
  const r = exec(['import', file, ref, '--chunk-size', '64K', ...extra], {store})
  ok(r, `import ${file} ${ref}`)
  assert.match(r.stdout, ID_LINE)
  const [name, tag] = ref.split(':')
  assert.ok((await refs(store)).includes(path.join(name, tag ?? 'latest')), `ref ${ref} exists`)
  return r.stdout.trim()
}

/** A store dir plus a 1 MiB random raw image "good.raw" beside it. */
async function setup() {
  const t = tmpStore()
  const good = path.join(t.dir, 'good.raw')
  await makeImage(good, [{kind: 'random', size: 1 << 20}])
  return {...t, good}
}

// ------------------------------------------------------------------ import: files that are not images

const importCases = [
  {
    name: 'missing file',
    code: 3,
    re: /no such file.*nope\.raw/i,
    make: async (dir) => path.join(dir, 'nope.raw'),
  },
  {
    name: 'a directory',
    code: 5,
    re: /is a directory/i,
    make: async (dir) => {
      const d = path.join(dir, 'adir')
      mkdirSync(d)
      return d
    },
  },
  {
    name: 'an empty file',
    code: 5,
    re: /empty/i,
    make: async (dir) => {
      const f = path.join(dir, 'empty.raw')
      writeFileSync(f, '')
      return f
    },
  },
  {
    name: 'size not a multiple of 512',
    code: 5,
    re: /multiple of 512/i,
    make: async (dir) => {
      const f = path.join(dir, 'odd.raw')
      await makeImage(f, [{kind: 'random', size: 65536 + 1000, seed: 'odd'}])
      return f
    },
  },
  {
    name: 'a JSON text file (size a multiple of 512, so only its content gives it away)',
    code: 5,
    re: /not a disk image|text|json/i,
    make: async (dir) => {
      const f = path.join(dir, 'config.json')
      const items = []
      for (let i = 0; JSON.stringify({items}, null, 2).length < 8000; i++) items.push({name: `item-${i}`, value: i * 7, enabled: i % 2 === 0})
      let text = JSON.stringify({items}, null, 2)
      text += ' '.repeat(8191 - text.length) + '\n' // valid JSON of exactly 8 KiB
      assert.is(Buffer.byteLength(text), 8192)
      JSON.parse(text)
      writeFileSync(f, text)
      return f
    },
  },
  {
    name: 'a plain text file (size a multiple of 512)',
    code: 5,
    re: /not a disk image|text/i,
    make: async (dir) => {
      const f = path.join(dir, 'notes.txt')
      let text = ''
      for (let i = 0; text.length < 4096; i++) text += `line ${i}: the quick brown fox jumps over the lazy dog\n`
      writeFileSync(f, text.slice(0, 4095) + '\n')
      return f
    },
  },
  {
    name: 'a gzip file',
    code: 5,
    re: /gzip/i,
    make: async (dir) => {
      const f = path.join(dir, 'disk.raw.gz')
      let gz = gzipSync(readFileSync(path.join(dir, 'good.raw')))
      // pad to a multiple of 512 so only the magic can give it away
      gz = Buffer.concat([gz, Buffer.alloc((512 - (gz.length % 512)) % 512)])
      writeFileSync(f, gz)
      return f
    },
  },
]

for (const c of importCases) {
  test(`import of ${c.name} → exit ${c.code}`, async () => {
    const {store, dir, cleanup, good} = await setup()
    try {
      const file = await c.make(dir)
      const r = exec(['import', file, 'img:v1', '--chunk-size', '64K'], {store})
      refused(r, c.code, c.re, `import ${c.name}`)
      await assertNoRefs(store, c.name)
      assert.equal(await objects(store), [], `${c.name}: no object may be written`)
      fsckClean(store)
      // the same command with good input works
      await goodImport(store, good, 'img:v1')
      fsckClean(store)
    } finally {
      cleanup()
    }
  })
}

// ------------------------------------------------------------------ import: malformed NAME:TAG

test('import with a malformed NAME:TAG → exit 2, nothing imported', async () => {
  const {store, cleanup, good} = await setup()
  try {
    for (const bad of ['bad name:x', 'a:', ':b', 'x:y:z', '_lead:x', 'a:b/c', '../x:y', 'n:' + 't'.repeat(129)]) {
      const r = exec(['import', good, bad, '--chunk-size', '64K'], {store})
      refused(r, 2, /invalid (image name|tag)/i, `import as ${bad}`)
      assert.ok(r.stderr.includes(JSON.stringify(bad)), `the message quotes the reference: ${r.stderr}`)
      await assertNoRefs(store, bad)
      assert.equal(await objects(store), [], `${bad}: no object may be written`)
      assert.equal(await listFiles(path.join(store, 'manifests')), [], `${bad}: no manifest may be written`)
      assert.equal(await listFiles(path.join(store, 'tmp')), [], `${bad}: nothing left in tmp/`)
    }
    fsckClean(store)
    await goodImport(store, good, 'good:x')
  } finally {
    cleanup()
  }
})

// ------------------------------------------------------------------ import: unreadable file

test('import of an unreadable file → exit 5, permission denied', async () => {
  const {store, dir, cleanup, good} = await setup()
  try {
    // root reads anything: run the CLI as nobody instead (it must be able to reach the store)
    let runAs
    if (isRoot) {
      chmodSync(dir, 0o777)
      chmodSync(good, 0o644)
      const probe = spawnSync(process.execPath, ['-e', 'process.exit(0)'], {uid: 65534, gid: 65534})
      if (probe.status !== 0) {
        skip('running as root and cannot drop to uid 65534 (nobody): root bypasses file permissions')
        return
      }
      runAs = {uid: 65534, gid: 65534}
    }
    const run = (argv) => {
      if (!runAs) return exec(argv, {store})
      const env = {...process.env, VMI_HOME: store, HOME: dir}
      const r = spawnSync(process.execPath, [BIN, ...argv], {env, cwd: dir, ...runAs, timeout: 120_000})
      if (r.error) throw r.error
      return {status: r.status, stdout: r.stdout.toString(), stderr: r.stderr.toString()}
    }
    const secret = path.join(dir, 'secret.raw')
    await makeImage(secret, [{kind: 'random', size: 65536, seed: 'secret'}])
    chmodSync(secret, 0o000)
    const r = run(['import', secret, 'img:v1', '--chunk-size', '64K'])
    refused(r, 5, /permission denied|cannot read/i, 'import unreadable')
    assert.ok(r.stderr.includes(secret), `names the file: ${r.stderr}`)
    await assertNoRefs(store, 'unreadable')
    assert.equal(await objects(store), [])
    fsckClean(store)
    const g = run(['import', good, 'img:v1', '--chunk-size', '64K'])
    ok(g, 'import good after unreadable')
    assert.match(g.stdout, ID_LINE)
    assert.equal(await refs(store), [path.join('img', 'v1')])
  } finally {
    cleanup()
  }
})

// ------------------------------------------------------------------ import: qcow2 without qemu-img, qcow2 on stdin

test('import of a qcow2 when qemu-img is not installed → exit 7 naming qemu-img', async () => {
  if (!hasCommand('qemu-img')) return skip('qemu-img is not installed: cannot make the qcow2 fixture')
  const {store, dir, cleanup, good} = await setup()
  try {
    const qcow = path.join(dir, 'disk.qcow2')
    const mk = spawnSync('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', good, qcow])
    assert.is(mk.status, 0, `qemu-img convert: ${mk.stderr}`)
    const bin = path.join(dir, 'bin')
    mkdirSync(bin)
    symlinkSync(process.execPath, path.join(bin, 'node'))
    const r = exec(['import', qcow, 'img:v1', '--chunk-size', '64K'], {store, env: {PATH: bin}})
    refused(r, 7, /qemu-img/, 'import qcow2 without qemu-img')
    assert.match(r.stderr, /qcow2/)
    await assertNoRefs(store, 'qcow2 without qemu-img')
    assert.equal(await objects(store), [])
    assert.equal(await listFiles(path.join(store, 'tmp')), [])
    fsckClean(store)
    // with qemu-img on PATH the same import works and round-trips
    await goodImport(store, qcow, 'img:v1')
    const out = path.join(dir, 'out.raw')
    ok(exec(['export', 'img:v1', out], {store}), 'export')
    assert.is(await sha256File(out), await sha256File(good))
    fsckClean(store)
  } finally {
    cleanup()
  }
})

test('import of a qcow2 from standard input → exit 5', async () => {
  if (!hasCommand('qemu-img')) return skip('qemu-img is not installed: cannot make the qcow2 fixture')
  const {store, dir, cleanup, good} = await setup()
  try {
    const qcow = path.join(dir, 'disk.qcow2')
    const mk = spawnSync('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', good, qcow])
    assert.is(mk.status, 0, `qemu-img convert: ${mk.stderr}`)
    const r = await execInput(['import', '-', 'img:v1', '--chunk-size', '64K'], {store, input: readFileSync(qcow)})
    refused(r, 5, /standard input.*qcow2|qcow2.*standard input/i, 'stdin qcow2')
    await assertNoRefs(store, 'stdin qcow2')
    assert.equal(await objects(store), [])
    fsckClean(store)
    // a raw image on stdin works
    const g = await execInput(['import', '-', 'img:v1', '--chunk-size', '64K'], {store, input: readFileSync(good)})
    ok(g, 'stdin raw')
    assert.match(g.stdout, ID_LINE)
    assert.equal(await refs(store), [path.join('img', 'v1')])
    fsckClean(store)
  } finally {
    cleanup()
  }
})

test('import of gzip data from standard input → exit 5', async () => {
  const {store, cleanup, good} = await setup()
  try {
    const r = await execInput(['import', '-', 'img:v1'], {store, input: gzipSync(readFileSync(good))})
    refused(r, 5, /gzip/i, 'stdin gzip')
    await assertNoRefs(store, 'stdin gzip')
    assert.equal(await objects(store), [])
    fsckClean(store)
  } finally {
    cleanup()
  }
})

// ------------------------------------------------------------------ unknown refs

test('unknown image for export/inspect/tag/rm/log/diff → exit 3', async () => {
  const {store, dir, cleanup, good} = await setup()
  try {
    const id = await goodImport(store, good, 'base:v1')
    const before = await listFiles(store)
    const dest = path.join(dir, 'out.raw')
    const cases = [
      ['export', 'nope:v1', dest],
      ['export', 'nope', dest],
      ['inspect', 'nope:v1'],
      ['inspect', 'dead'], // a hex prefix no id has (could be an id prefix; is not)
      ['tag', 'nope:v1', 'other:v1'],
      ['rm', 'nope:v1'],
      ['rm', 'base:v1', 'nope:v1'], // one unknown name: nothing is removed
      ['log', 'nope:v1'],
      ['diff', 'nope:v1', 'base:v1'],
      ['diff', 'base:v1', 'nope:v2'],
    ]
    for (const argv of cases) {
      if (argv[1] === 'dead' && id.startsWith('dead')) continue
      const r = exec(argv, {store})
      const missing = argv.find((a) => a.startsWith('nope') || a === 'dead')
      refused(r, 3, new RegExp(`no image.*${missing}`), argv.join(' '))
    }
    assert.equal(await listFiles(store), before, 'the store is unchanged (no ref created or removed)')
    await fsp.access(dest).then(
      () => assert.unreachable('export of an unknown image left a file'),
      () => {},
    )
    assert.equal(await listFiles(dir).then((l) => l.filter((f) => !f.startsWith('store/') && f !== 'good.raw')), [], 'no stray export file')
    fsckClean(store)
    // the same commands with a known image work
    ok(exec(['inspect', 'base:v1'], {store}), 'inspect')
    ok(exec(['tag', 'base:v1', 'other:v1'], {store}), 'tag')
    ok(exec(['log', 'base:v1'], {store}), 'log')
    ok(exec(['diff', 'base:v1', 'other:v1'], {store}), 'diff')
    ok(exec(['export', 'base:v1', dest], {store}), 'export')
    assert.is(await sha256File(dest), await sha256File(good))
    ok(exec(['rm', 'other:v1'], {store}), 'rm')
  } finally {
    cleanup()
  }
})

// ------------------------------------------------------------------ ambiguous id prefix

test('ambiguous id prefix → exit 4 listing both candidates', async () => {
  const {store, dir, cleanup} = await setup()
  try {
    // Manifests of all-zero 64 KiB images differ only in `created`; hash
    // them until two ids share their first 4 hex digits (~300 tries), then
    // store just those two.
    const seen = new Map()
    let pair
    for (let i = 0; i < 200_000 && !pair; i++) {
      const m = {version: 1, virtualSize: 65536, chunkSize: 65536, chunks: [1], sourceFormat: 'raw', created: new Date(Date.UTC(2020, 0, 1) + i * 1000).toISOString()}
      const {id} = encodeManifest(m)
      const p = id.slice(0, 4)
      if (seen.has(p)) pair = [seen.get(p), {m, id}]
      else seen.set(p, {m, id})
    }
    assert.ok(pair, 'found two ids sharing a 4-digit prefix')
    const s = await LocalStore.open(store)
    for (const {m, id} of pair) assert.is(await s.putManifest(m), id)
    const [a, b] = pair.map((p) => p.id)
    const prefix = a.slice(0, 4)
    const before = await listFiles(store)
    const dest = path.join(dir, 'out.raw')
    for (const argv of [['inspect', prefix], ['export', prefix, dest], ['tag', prefix, 'x:y'], ['log', prefix], ['rm', prefix]]) {
      const r = exec(argv, {store})
      refused(r, 4, /ambiguous/i, argv.join(' '))
      assert.ok(r.stderr.includes(a) && r.stderr.includes(b), `${argv.join(' ')}: lists both candidates: ${r.stderr}`)
    }
    assert.equal(await listFiles(store), before, 'store unchanged')
    fsckClean(store)
    // a longer, unique prefix resolves
    let n = 4
    while (a[n - 1] === b[n - 1]) n++
    const r = exec(['inspect', a.slice(0, n), '--json'], {store})
    ok(r, 'inspect unique prefix')
    assert.is(JSON.parse(r.stdout).id, a)
  } finally {
    cleanup()
  }
})

// ------------------------------------------------------------------ load: bad bundles

/** Entry boundaries of a tar file: [{name, header, data, end}]. */
function tarEntries(buf) {
  const out = []
  let off = 0
  while (off + 512 <= buf.length) {
    const h = buf.subarray(off, off + 512)
    if (h.every((x) => x === 0)) break
    const name = h.toString('latin1', 0, 100).replace(/\0.*$/s, '')
    const size = parseInt(h.toString('latin1', 124, 136).replace(/\0.*$/s, '').trim(), 8)
    const end = off + 512 + Math.ceil(size / 512) * 512
    out.push({name, header: off, data: off + 512, size, end})
    off = end
  }
  return out
}

async function bundleSetup() {
  const t = await setup()
  // source store with one image, saved as a bundle
  const src = path.join(t.dir, 'src-store')
  await goodImport(src, t.good, 'bundled:v1')
  const bundle = path.join(t.dir, 'b.tar')
  ok(exec(['save', 'bundled:v1', '-o', bundle], {store: src}), 'save')
  // target store already holding one other image
  const other = path.join(t.dir, 'other.raw')
  await makeImage(other, [{kind: 'random', size: 256 << 10, seed: 'other'}])
  await goodImport(t.store, other, 'other:v1')
  return {...t, bundle}
}

test('load of files that are not bundles → exit 5, store unchanged', async () => {
  const {store, dir, cleanup, good, bundle} = await bundleSetup()
  try {
    const before = await listFiles(store)
    const json = path.join(dir, 'x.json')
    writeFileSync(json, JSON.stringify({format: 'vmi-bundle', version: 1}))
    const gz = path.join(dir, 'b.tar.gz')
    writeFileSync(gz, gzipSync(readFileSync(bundle)))
    for (const f of [good, json, gz]) {
      const r = exec(['load', f], {store})
      refused(r, 5, /bundle/i, `load ${path.basename(f)}`)
      assert.ok(r.stderr.includes(f), `names the file: ${r.stderr}`)
      assert.equal(await listFiles(store), before, `load ${path.basename(f)}: store unchanged`)
    }
    fsckClean(store)
    const r = exec(['load', bundle], {store})
    ok(r, 'load good bundle')
    assert.equal(await refs(store), [path.join('bundled', 'v1'), path.join('other', 'v1')])
    fsckClean(store)
  } finally {
    cleanup()
  }
})

test('load of a truncated bundle (cut at many offsets) → exit 5, store unchanged', async () => {
  const {store, cleanup, dir, bundle} = await bundleSetup()
  try {
    const buf = readFileSync(bundle)
    const entries = tarEntries(buf)
    assert.ok(entries.length >= 10, `bundle has index, manifest and objects (${entries.length} entries)`)
    const last = entries.at(-1)
    const mid = entries[Math.floor(entries.length / 2)]
    const offsets = [
      0, // empty file
      100, // inside the first header
      512 + 10, // inside the index
      entries[0].end, // right after the index
      entries[1].end, // right after the manifest
      entries[4].end, // after a few objects, on an entry boundary
      entries[4].end + 300, // inside a header
      mid.data + 1000, // inside an object payload
      last.data + 512, // inside the last object
      last.data + last.size - 1, // one byte short of the last object
    ]
    const before = await listFiles(store)
    const cut = path.join(dir, 'cut.tar')
    for (const off of offsets) {
      writeFileSync(cut, buf.subarray(0, off))
      const r = exec(['load', cut], {store})
      refused(r, 5, /bundle/i, `load cut at ${off}/${buf.length}`)
      assert.match(r.stderr, /truncated|damaged|empty|missing|end of/i, `cut at ${off}: says why`)
      assert.equal(await listFiles(store), before, `cut at ${off}: store unchanged`)
    }
    fsckClean(store)
    ok(exec(['load', bundle], {store}), 'load whole bundle')
    assert.equal(await refs(store), [path.join('bundled', 'v1'), path.join('other', 'v1')])
    fsckClean(store)
  } finally {
    cleanup()
  }
})

test('load of a tampered bundle (one byte flipped in an object) → exit 5, store unchanged', async () => {
  const {store, cleanup, dir, bundle, good} = await bundleSetup()
  try {
    const buf = readFileSync(bundle)
    const entries = tarEntries(buf).filter((e) => e.name.startsWith('objects/'))
    assert.ok(entries.length >= 4)
    const before = await listFiles(store)
    const bad = path.join(dir, 'tampered.tar')
    // first, a middle and the last object
    for (const e of [entries[0], entries[Math.floor(entries.length / 2)], entries.at(-1)]) {
      const t = Buffer.from(buf)
      t[e.data + Math.floor(e.size / 3)] ^= 0x01
      writeFileSync(bad, t)
      const r = exec(['load', bad], {store})
      refused(r, 5, /corrupt|hash/i, `load tampered ${e.name}`)
      assert.ok(r.stderr.includes(e.name.slice('objects/'.length)), `names the object: ${r.stderr}`)
      assert.equal(await listFiles(store), before, `tampered ${e.name}: store unchanged`)
    }
    fsckClean(store)
    ok(exec(['load', bundle], {store}), 'load good bundle')
    const out = path.join(dir, 'out.raw')
    ok(exec(['export', 'bundled:v1', out], {store}), 'export')
    assert.is(await sha256File(out), await sha256File(good))
  } finally {
    cleanup()
  }
})

// ------------------------------------------------------------------ export to a missing directory

test('export to a path whose directory does not exist → non-zero, clear message', async () => {
  const {store, dir, cleanup, good} = await setup()
  try {
    await goodImport(store, good, 'img:v1')
    const dest = path.join(dir, 'no', 'such', 'dir', 'out.raw')
    const r = exec(['export', 'img:v1', dest], {store})
    assert.ok(r.status === 2 || r.status === 3, `exit 2 or 3, got ${r.status}: ${r.stderr}`)
    assert.is(r.stdout, '')
    assert.match(r.stderr, /does not exist|no such/i)
    assert.ok(r.stderr.includes(dest), `names the destination: ${r.stderr}`)
    assert.equal(await listFiles(path.join(store, 'tmp')), [])
    fsckClean(store)
    const dest2 = path.join(dir, 'out.raw')
    ok(exec(['export', 'img:v1', dest2], {store}), 'export to a good path')
    assert.is(await sha256File(dest2), await sha256File(good))
  } finally {
    cleanup()
  }
})

// ------------------------------------------------------------------ read-only and full stores (root: tmpfs)

test('import into a read-only store → exit 6 saying not writable', async () => {
  const {dir, cleanup, good} = await setup()
  const m = tmpfs(dir, '32m')
  if (m.reason) {
    cleanup()
    return skip(m.reason)
  }
  try {
    const store = path.join(m.mnt, 'store')
    const id = await goodImport(store, good, 'base:v1')
    const err = sh('mount', ['-o', 'remount,ro', m.mnt])
    if (err) return skip(`cannot remount read-only (${err})`)
    const before = await listFiles(store)
    const small = path.join(dir, 'small.raw')
    await makeImage(small, [{kind: 'random', size: 128 << 10, seed: 'small'}])
    const r = exec(['import', small, 'new:v1', '--chunk-size', '64K'], {store})
    refused(r, 6, /not writable|read-only/i, 'import into read-only store')
    for (const argv of [['tag', 'base:v1', 'x:y'], ['rm', 'base:v1'], ['gc'], ['load', good]]) {
      const t = exec(argv, {store})
      refused(t, 6, /not writable|read-only/i, `${argv[0]} on a read-only store`)
    }
    assert.equal(await listFiles(store), before, 'store unchanged')
    fsckClean(store)
    // reading still works
    const out = path.join(dir, 'out.raw')
    ok(exec(['export', 'base:v1', out], {store}), 'export from read-only store')
    assert.is(await sha256File(out), await sha256File(good))
    const ls = exec(['ls', '--json'], {store})
    ok(ls, 'ls')
    assert.is(JSON.parse(ls.stdout).images[0].id, id)
    // writable again: the import works
    assert.is(sh('mount', ['-o', 'remount,rw', m.mnt]), undefined)
    await goodImport(store, small, 'new:v1')
    assert.equal(await refs(store), [path.join('base', 'v1'), path.join('new', 'v1')])
    fsckClean(store)
  } finally {
    m.umount()
    cleanup()
  }
})

test('import into a full store → exit 6 mentioning space; no ref, no tmp leftovers; gc then import works', async () => {
  const {dir, cleanup} = await setup()
  const m = tmpfs(dir, '12m')
  if (m.reason) {
    cleanup()
    return skip(m.reason)
  }
  try {
    const store = path.join(m.mnt, 'store')
    const big = path.join(dir, 'big.raw')
    await makeImage(big, [{kind: 'random', size: 32 << 20}])
    const r = exec(['import', big, 'big:v1', '--chunk-size', '64K'], {store})
    refused(r, 6, /space/i, 'import into a full store')
    await assertNoRefs(store, 'full store')
    assert.equal(await listFiles(path.join(store, 'manifests')), [])
    assert.equal(await listFiles(path.join(store, 'tmp')), [], 'no staging files left in tmp/')
    assert.equal(await listFiles(path.join(store, 'locks')), [], 'no lock left behind')
    fsckClean(store)
    const g = exec(['gc', '--json'], {store})
    ok(g, 'gc')
    assert.ok(JSON.parse(g.stdout).removedObjects > 0, 'gc freed the orphaned chunks')
    assert.equal(await objects(store), [])
    const small = path.join(dir, 'small.raw')
    await makeImage(small, [{kind: 'random', size: 1 << 20, seed: 'small'}])
    await goodImport(store, small, 'small:v1')
    const out = path.join(dir, 'out.raw')
    ok(exec(['export', 'small:v1', out], {store}), 'export')
    assert.is(await sha256File(out), await sha256File(small))
    fsckClean(store)
  } finally {
    m.umount()
    cleanup()
  }
})

test('export onto a full disk (file and stdout) or into a closed pipe: a clear error, no stack trace, no partial file', async () => {
  const {dir, cleanup} = await setup()
  const m = tmpfs(dir, '4m')
  if (m.reason) {
    cleanup()
    return skip(m.reason)
  }
  try {
    const store = path.join(dir, 'store')
    const img = path.join(dir, 'img.raw')
    await makeImage(img, [{kind: 'random', size: 16 << 20, seed: 'full-export'}])
    await goodImport(store, img, 'img:v1')
    const noTrace = (r, what) => assert.not.match(r.stderr, /\n\s+at |node:internal|Node\.js v/, `${what}: no stack trace: ${r.stderr}`)
    const toFile = exec(['export', 'img:v1', path.join(m.mnt, 'out.raw')], {store})
    refused(toFile, 1, /no space left/i, 'export to a file on a full disk')
    noTrace(toFile, 'file')
    assert.equal(await listFiles(m.mnt), [], 'no partial or staging file left on the full disk')
    const toStdout = spawnSync('bash', ['-c', `node "${BIN}" export img:v1 - > "${path.join(m.mnt, 'out2.raw')}"`], {encoding: 'utf8', env: {...process.env, VMI_HOME: store}})
    assert.is(toStdout.status, 1, toStdout.stderr)
    assert.match(toStdout.stderr, /no space left/i)
    noTrace(toStdout, 'stdout')
    const toPipe = spawnSync('bash', ['-o', 'pipefail', '-c', `node "${BIN}" export img:v1 - | head -c 1000 > /dev/null`], {encoding: 'utf8', env: {...process.env, VMI_HOME: store}})
    assert.is(toPipe.status, 1, toPipe.stderr)
    assert.match(toPipe.stderr, /broken pipe/i)
    noTrace(toPipe, 'pipe')
    fsckClean(store)
  } finally {
    m.umount()
    cleanup()
  }
})

test.run()
