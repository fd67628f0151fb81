// The README's recipes, run as written. Every ```sh block of README.md is
// marked: `<!-- recipe: NAME -->` (run here) or `<!-- not a recipe: why -->`.
// Each recipe is taken from README.md at test time and run with bash
// (`set -euo pipefail`, as a CI step would) in a temp dir, with `vmi` on PATH
// (bin/run.js), the store in VMI_HOME, and the variables the README's table
// documents pointing at real `vmi serve` processes on 127.0.0.1. Where a
// recipe boots a VM, a stand-in `qemu-system-x86_64` on PATH reads the whole
// disk through the NBD URI it is given, instead of booting it.
import {test} from 'uvu'
import * as assert from 'uvu/assert'
import {spawn, spawnSync} from 'node:child_process'
import {chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync} from 'node:fs'
import path from 'node:path'
import {BIN, exec, freePort, fsckCleanAsync, hasCommand, makeImage, ROOT, skip, tmpDir} from '../helpers/index.js'
import {startServe} from '../helpers/serve.js'

const K = 1024
const M = K * K
/** The recipes this file runs; a marked block that disappears (or a new one not run here) fails the first test. */
const RECIPES = ['ci-build', 'seed', 'host', 'hypervisors', 'operator']

/** The README's ```sh blocks: {marker, name, text} each. */
function readmeBlocks() {
  const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8')
  return [...readme.matchAll(/(?:<!-- (recipe|not a recipe): ([^>]*?) -->\n)?```sh\n([\s\S]*?)```/g)].map((m) => ({marker: m[1], name: m[2], text: m[3]}))
}

function recipe(name) {
  const b = readmeBlocks().find((x) => x.marker === 'recipe' && x.name === name)
  assert.ok(b, `README.md has no block marked <!-- recipe: ${name} -->`)
  return b.text
}

/** A bin directory for PATH: `vmi` (the real CLI) and, when asked, the stand-in hypervisor. */
function binDir(dir) {
  const bin = path.join(dir, 'bin')
  mkdirSync(bin, {recursive: true})
  writeFileSync(path.join(bin, 'vmi'), `#!/bin/sh\nexec ${JSON.stringify(process.execPath)} ${JSON.stringify(BIN)} "$@"\n`)
  chmodSync(path.join(bin, 'vmi'), 0o755)
  // QEMU's stand-in: reads the disk named by -drive file=URI into $DISK_OUT, as a guest reading every block would
  writeFileSync(
    path.join(bin, 'qemu-system-x86_64'),
    `#!/bin/bash
set -euo pipefail
uri=
for a in "$@"; do case $a in file=*) uri=\${a#file=}; uri=\${uri%%,*} ;; esac; done
[ -n "$uri" ] || { echo "stand-in qemu: no -drive file=" >&2; exit 1; }
qemu-img convert -f raw -O raw "$uri" "$DISK_OUT"
echo "stand-in qemu read $uri"
`,
  )
  chmodSync(path.join(bin, 'qemu-system-x86_64'), 0o755)
  return bin
}

/**
 * Run a recipe with bash in its own process group; resolves with
 * {status, stdout, stderr} when bash exits. `until(stdout)` instead resolves
 * once it returns true (the recipe keeps running: a server). stop() ends
 * the group (a recipe's background `vmi serve &` outlives bash).
 */
function runRecipe(text, {cwd, env, until}) {
  const childEnv = {...process.env, ...env, PATH: `${binDir(cwd)}:${process.env.PATH}`}
  delete childEnv.FORCE_COLOR
  delete childEnv.NODE_DISABLE_COLORS
  const child = spawn('bash', ['-c', `set -euo pipefail\n${text}`], {cwd, env: childEnv, detached: true, stdio: ['ignore', 'pipe', 'pipe']})
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (d) => (stdout += d))
  child.stderr.on('data', (d) => (stderr += d))
  // 'exit', not 'close': a recipe's background server keeps the pipes open after bash is done
  const exited = new Promise((resolve) => child.on('exit', (status, signal) => setTimeout(() => resolve({status, signal, stdout, stderr}), 100)))
  const stop = async () => {
    try {
      process.kill(-child.pid, 'SIGTERM')
    } catch {
      /* the group is gone */
    }
    return exited
  }
  const result = until
    ? new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`recipe did not get ready:\n${stdout}\n${stderr}`)), 30_000)
        child.stdout.on('data', () => until(stdout) && (clearTimeout(timer), resolve({stdout, stderr})))
        exited.then((r) => (clearTimeout(timer), reject(new Error(`recipe exited ${r.status}:\n${r.stdout}\n${r.stderr}`))))
      })
    : new Promise((resolve) => {
        // cleared when the recipe exits: a pending timer kept the test process alive up to 240 s after the last test
        const timer = setTimeout(() => resolve({status: 'timeout', stdout, stderr}), 240_000)
        exited.then((r) => (clearTimeout(timer), resolve(r)))
      })
  return {result, stop}
}

function ok(r, what) {
  assert.is(r.status, 0, `${what} failed (${r.status}):\n${r.stdout}\n${r.stderr}`)
  return r
}

const refOn = async (url, ref) => (await (await fetch(`${url}/refs/${ref.replace(':', '/')}`)).text()).trim()

/** A raw disk of 4 MiB: random data, a hole, and `variant` changing the first 256 KiB. */
async function disk(file, variant) {
  await makeImage(file, [{kind: 'random', size: 256 * K, seed: `recipe-${variant}`}, {kind: 'random', size: 2 * M, seed: 'recipe-base'}, {kind: 'zero', size: 1792 * K}])
}

test('every ```sh block of the README is marked, and the marked recipes are the ones this file runs', () => {
  const blocks = readmeBlocks()
  const unmarked = blocks.filter((b) => !b.marker)
  assert.equal(unmarked.map((b) => b.text), [], 'every sh block carries <!-- recipe: NAME --> or <!-- not a recipe: why -->')
  assert.equal(blocks.filter((b) => b.marker === 'recipe').map((b) => b.name).sort(), [...RECIPES].sort())
})

test('recipe ci-build: the first build and a second one (store kept), and a build on a fresh runner, all push to the seed and move web:latest', async () => {
  if (!hasCommand('qemu-img')) return skip('qemu-img is not installed (the recipe imports a qcow2)')
  const t = tmpDir('vmi-recipe-ci-')
  let seed
  try {
    const token = 'ci-token'
    seed = await startServe(path.join(t.dir, 'seed'), [], {env: {VMI_PUSH_TOKEN: token}})
    const work = path.join(t.dir, 'work')
    mkdirSync(path.join(work, 'build'), {recursive: true})
    const build = async (sha, variant, store) => {
      await disk(path.join(t.dir, 'disk.raw'), variant)
      assert.is(spawnSync('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', path.join(t.dir, 'disk.raw'), path.join(work, 'build', 'disk.qcow2')]).status, 0)
      const env = {GIT_SHA: sha, SEED: seed.url, VMI_PUSH_TOKEN: token, VMI_HOME: store}
      return ok(await runRecipe(recipe('ci-build'), {cwd: work, env}).result, `build ${sha}`)
    }
    const store = path.join(t.dir, 'ci-store')
    const first = await build('aaa111', 1, store)
    const id1 = await refOn(seed.url, 'web:aaa111')
    assert.match(id1, /^[0-9a-f]{64}$/, 'the seed has web:aaa111')
    assert.is(await refOn(seed.url, 'web:latest'), id1, 'the seed has web:latest')
    assert.match(first.stderr, /no image web:latest here: imported without a parent/)
    assert.ok(existsSync(path.join(work, 'web.tar')), 'the artifact is saved')

    await build('bbb222', 2, store)
    const id2 = await refOn(seed.url, 'web:bbb222')
    assert.is.not(id2, id1)
    assert.is(await refOn(seed.url, 'web:latest'), id2, 'web:latest moved on the seed')
    const info = JSON.parse(ok(exec(['inspect', 'web:bbb222', '--json'], {store}), 'inspect').stdout)
    assert.is(info.parent, id1, 'the second build records the first as its parent')
    assert.is(info.annotations.commit, 'bbb222')

    // an ephemeral runner: an empty store every time
    await build('ccc333', 3, path.join(t.dir, 'fresh-store'))
    assert.is(await refOn(seed.url, 'web:latest'), await refOn(seed.url, 'web:ccc333'))
    await fsckCleanAsync(path.join(t.dir, 'seed'))
  } finally {
    await seed?.stop()
    t.cleanup()
  }
})

test('recipe seed: vmi serve with a token file and TLS takes a push and serves it back', async () => {
  if (!hasCommand('openssl')) return skip('openssl is not installed (the recipe needs a certificate)')
  const t = tmpDir('vmi-recipe-seed-')
  let run
  try {
    const work = path.join(t.dir, 'work')
    mkdirSync(work)
    const cert = spawnSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'k.pem', '-out', 'c.pem', '-days', '1', '-subj', '/CN=127.0.0.1'], {cwd: work})
    assert.is(cert.status, 0, String(cert.stderr))
    const tokenFile = path.join(t.dir, 'token')
    writeFileSync(tokenFile, 'seed-token\n')
    const listen = `127.0.0.1:${await freePort()}`
    run = runRecipe(recipe('seed'), {cwd: work, env: {LISTEN: listen, TOKEN_FILE: tokenFile, VMI_HOME: path.join(t.dir, 'seed')}, until: (out) => /listening on https:\/\//.test(out)})
    await run.result
    const url = `https://${listen}`
    const host = path.join(t.dir, 'host')
    await disk(path.join(t.dir, 'disk.raw'), 1)
    ok(exec(['import', path.join(t.dir, 'disk.raw'), 'web:1'], {store: host}), 'import')
    const denied = exec(['push', 'web:1', url, '--insecure'], {store: host, env: {VMI_PUSH_TOKEN: 'wrong'}})
    assert.is(denied.status, 10, `a wrong token is refused: ${denied.stderr}`)
    ok(exec(['push', 'web:1', url, '--insecure'], {store: host, env: {VMI_PUSH_TOKEN: 'seed-token'}}), 'push')
    ok(exec(['pull', 'web:1', url, '--insecure'], {store: path.join(t.dir, 'other')}), 'pull from the seed')
    const end = await run.stop()
    assert.match(end.stderr, /shutting down/, `the seed stops cleanly on SIGTERM: ${end.stderr}`)
  } finally {
    await run?.stop()
    t.cleanup()
  }
})

/** A seed holding web:v2 (and web:v1), for the host and hypervisor recipes; the raw bytes of web:v2. */
async function seedWithImages(t) {
  const seedStore = path.join(t.dir, 'seed')
  for (const v of [1, 2]) {
    await disk(path.join(t.dir, `v${v}.raw`), v)
    ok(exec(['import', path.join(t.dir, `v${v}.raw`), `web:v${v}`], {store: seedStore}), 'import')
  }
  return {seed: await startServe(seedStore), v2: readFileSync(path.join(t.dir, 'v2.raw'))}
}

test('recipe host: remote add, a lending serve with fetch-through, pull and a mount with a (stand-in) hypervisor', async () => {
  if (!hasCommand('qemu-img')) return skip('qemu-img is not installed (the stand-in hypervisor reads the disk with it)')
  const t = tmpDir('vmi-recipe-host-')
  let seed
  let run
  try {
    const s = await seedWithImages(t)
    seed = s.seed
    const listen = `127.0.0.1:${await freePort()}`
    const peersFile = path.join(t.dir, 'peers')
    writeFileSync(peersFile, `http://${listen}\n`)
    const work = path.join(t.dir, 'work')
    mkdirSync(work)
    const store = path.join(t.dir, 'host')
    const out = path.join(t.dir, 'guest-read.raw')
    run = runRecipe(recipe('host'), {cwd: work, env: {SEED: seed.url, LISTEN: listen, PEERS_FILE: peersFile, VMI_HOME: store, DISK_OUT: out}})
    const r = ok(await run.result, 'the host recipe')
    assert.match(r.stdout, /stand-in qemu read nbd\+unix:/)
    assert.ok(readFileSync(out).equals(s.v2), 'the hypervisor read web:v2 byte for byte')
    const remotes = ok(exec(['remote', 'ls', '--json'], {store}), 'remote ls').stdout
    assert.match(remotes, new RegExp(seed.url.replace(/[.:/]/g, '\\$&')))
    const ls = JSON.parse(ok(exec(['ls', '--json'], {store}), 'ls').stdout)
    assert.ok(JSON.stringify(ls).includes('"web:v2"'), `web:v2 is in the host's store: ${JSON.stringify(ls)}`)
    const health = await fetch(`http://${listen}/healthz`)
    assert.is(health.status, 200, 'the recipe left the lending vmi serve running')
    await run.stop()
    await fsckCleanAsync(store)
  } finally {
    await run?.stop()
    await seed?.stop()
    t.cleanup()
  }
})

test('recipe hypervisors: the QEMU line runs (stand-in hypervisor); the others need what this machine lacks', async () => {
  const lines = recipe('hypervisors')
    .split('\n')
    .filter((l) => l.trim() && !l.startsWith('#'))
  assert.is(lines.length, 5, 'one line per hypervisor and bridge')
  if (!hasCommand('qemu-img')) return skip('qemu-img is not installed (the stand-in hypervisor reads the disk with it)')
  const t = tmpDir('vmi-recipe-hv-')
  let seed
  try {
    const s = await seedWithImages(t)
    seed = s.seed
    const store = path.join(t.dir, 'host')
    ok(exec(['remote', 'add', 'origin', seed.url], {store}), 'remote add')
    const work = path.join(t.dir, 'work')
    mkdirSync(work)
    const out = path.join(t.dir, 'guest-read.raw')
    const qemu = lines.find((l) => l.includes("--exec 'qemu-system-x86_64"))
    assert.ok(qemu, 'the QEMU line')
    const r = ok(await runRecipe(qemu, {cwd: work, env: {VMI_HOME: store, DISK_OUT: out}}).result, 'the QEMU line')
    assert.match(r.stdout, /stand-in qemu read nbd\+unix:/)
    assert.ok(readFileSync(out).equals(s.v2), 'the hypervisor read web:v2 byte for byte, fetched lazily from the seed')
    skip('the cloud-hypervisor, Firecracker and libvirt lines are not run: those hypervisors are not packaged for Debian 12 (the --file and vhost-user-blk bridges are tested in mount tests)')
  } finally {
    await seed?.stop()
    t.cleanup()
  }
})

test("recipe operator: ls, diff, rm + gc, fsck and the serve's metrics", async () => {
  if (!hasCommand('curl')) return skip('curl is not installed (the recipe reads /metrics with it)')
  const t = tmpDir('vmi-recipe-op-')
  let serve
  let run
  try {
    const store = path.join(t.dir, 'store')
    for (const v of [1, 2]) {
      await disk(path.join(t.dir, `v${v}.raw`), v)
      ok(exec(['import', path.join(t.dir, `v${v}.raw`), `web:v${v}`], {store}), 'import')
    }
    serve = await startServe(store)
    const listen = new URL(serve.url).host
    const work = path.join(t.dir, 'work')
    mkdirSync(work)
    run = runRecipe(recipe('operator'), {cwd: work, env: {VMI_HOME: store, LISTEN: listen}})
    const r = ok(await run.result, 'the operator recipe')
    assert.match(r.stdout, /^web:v1 /m, 'ls lists web:v1')
    assert.match(r.stdout, /vmi_http_requests_total/, 'the metrics came through')
    const after = ok(exec(['ls', '--json'], {store}), 'ls').stdout
    assert.not.ok(after.includes('"web:v1"'), `web:v1 is gone: ${after}`)
    assert.ok(after.includes('"web:v2"'), `web:v2 stays: ${after}`)
    await fsckCleanAsync(store)
  } finally {
    await run?.stop()
    await serve?.stop()
    t.cleanup()
  }
})

test.run()
