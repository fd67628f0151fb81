// What an unprivileged user can do (README, "Running as a non-root user"):
// the CLI as uid 65534 (nobody) imports, serves, pushes, pulls, mounts on a
// unix socket (read over NBD), exports, checks and collects; what needs root
// fails with its documented exit code and a message that says why.
import {test} from 'uvu'
import * as assert from 'uvu/assert'
import {spawn, spawnSync} from 'node:child_process'
import {chmodSync, readFileSync, statSync} from 'node:fs'
import path from 'node:path'
import {BIN, makeImage, sha256File, skip, tmpDir} from '../helpers/index.js'

const NOBODY = 65534
const asRoot = process.getuid() === 0

/** argv for the CLI as nobody (when we are root; else as ourselves, already unprivileged). */
function cli(argv, home) {
  const env = ['env', '-i', `PATH=${process.env.PATH}`, `HOME=${home}`, `VMI_HOME=${path.join(home, 'store')}`]
  const cmd = [...env, process.execPath, BIN, ...argv]
  return asRoot ? ['setpriv', [`--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', ...cmd]] : [cmd[0], cmd.slice(1)]
}

function run(argv, home, timeout = 120_000) {
  const [cmd, args] = cli(argv, home)
  const r = spawnSync(cmd, args, {encoding: 'utf8', timeout})
  return {status: r.status, stdout: r.stdout, stderr: r.stderr}
}

/** Start a long-running command; resolves with the first stdout line and the child. */
async function start(argv, home) {
  const [cmd, args] = cli([...argv, '--json'], home)
  const child = spawn(cmd, args, {stdio: ['ignore', 'pipe', 'pipe']})
  let out = ''
  let err = ''
  child.stderr.on('data', (d) => (err += d))
  const first = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${argv[0]} did not start: ${err}`)), 60_000)
    child.stdout.on('data', (d) => {
      out += d
      if (out.includes('\n')) (clearTimeout(timer), resolve(JSON.parse(out.split('\n')[0])))
    })
    child.on('exit', (code) => (clearTimeout(timer), reject(new Error(`${argv[0]} exited ${code}: ${err}`))))
  })
  child.removeAllListeners('exit')
  const exited = new Promise((r) => child.on('exit', (code) => r(code)))
  return {first, child, stop: async () => (child.kill('SIGTERM'), exited)}
}

test('as an unprivileged user: import, serve, push, pull, mount on a unix socket, export, fsck, gc', async () => {
  if (asRoot && spawnSync('setpriv', ['--version']).status !== 0) return skip('setpriv (util-linux) is not installed')
  const t = tmpDir()
  chmodSync(t.dir, 0o777)
  const seedHome = path.join(t.dir, 'seed')
  const hostHome = path.join(t.dir, 'host')
  let serve, mount
  try {
    const src = path.join(t.dir, 'a.raw')
    await makeImage(src, [{kind: 'random', size: 512 * 1024, seed: 'non-root'}])
    chmodSync(src, 0o644)
    const imp = run(['import', src, 'web:1', '--chunk-size', '64K', '-q'], hostHome)
    assert.is(imp.status, 0, imp.stderr)
    serve = await start(['serve', '--listen', '127.0.0.1:0', '--push-token', 'tok'], seedHome)
    const push = run(['push', 'web:1', serve.first.url, '--token', 'tok', '-q'], hostHome)
    assert.is(push.status, 0, push.stderr)
    const otherHome = path.join(t.dir, 'other')
    const pull = run(['pull', 'web:1', serve.first.url, '-q'], otherHome)
    assert.is(pull.status, 0, pull.stderr)
    mount = await start(['mount', 'web:1', serve.first.url, '--prefetch', 'none'], otherHome)
    assert.match(mount.first.nbd, /^nbd\+unix:/)
    const out = path.join(t.dir, 'copy.raw')
    const copy = spawnSync('nbdcopy', [mount.first.nbd, out], {encoding: 'utf8'})
    assert.is(copy.status, 0, copy.stderr)
    assert.is(await sha256File(out), await sha256File(src), 'the mount reads the image byte for byte')
    assert.is(await mount.stop(), 0)
    mount = undefined
    const exp = run(['export', 'web:1', path.join(t.dir, 'export.raw'), '-q'], otherHome)
    assert.is(exp.status, 0, exp.stderr)
    for (const argv of [['fsck', '-q'], ['gc', '-q'], ['status', '--no-probe']]) {
      const r = run(argv, otherHome)
      assert.is(r.status, 0, `${argv[0]}: ${r.stderr}`)
    }
    if (asRoot) assert.is(statSync(path.join(otherHome, 'store', 'objects')).uid, NOBODY, 'the store belongs to the user')
  } finally {
    await mount?.stop()
    await serve?.stop()
    t.cleanup()
  }
})

test('as an unprivileged user: a port below 1024 exits 2 saying it needs root; --file needs /dev/fuse', async () => {
  if (!asRoot) return skip('not root, so no unprivileged user to switch to')
  const t = tmpDir()
  chmodSync(t.dir, 0o777)
  const home = path.join(t.dir, 'home')
  try {
    const src = path.join(t.dir, 'a.raw')
    await makeImage(src, [{kind: 'random', size: 128 * 1024, seed: 'non-root-2'}])
    chmodSync(src, 0o644)
    assert.is(run(['import', src, 'web:1', '--chunk-size', '64K', '-q'], home).status, 0)
    const unprivilegedFrom = Number(readFileSync('/proc/sys/net/ipv4/ip_unprivileged_port_start', 'utf8'))
    if (unprivilegedFrom <= 80) skip(`ports from ${unprivilegedFrom} up need no root on this kernel`)
    else for (const argv of [
      ['serve', '--listen', '127.0.0.1:80'],
      ['mount', 'web:1', '--listen', '127.0.0.1:80', '--exec', 'true'],
    ]) {
      const r = run(argv, home)
      assert.is(r.status, 2, `${argv[0]}: ${r.stderr}`)
      assert.match(r.stderr, /ports below 1024 need root/)
    }
    const fuse = statSync('/dev/fuse', {throwIfNoEntry: false})
    if (!fuse || (fuse.mode & 0o006) === 0o006) return skip('/dev/fuse is missing or open to every user here; the --file refusal is not reproducible')
    const r = run(['mount', 'web:1', '--file', path.join(t.dir, 'disk.raw'), '--exec', 'true'], home)
    assert.is(r.status, 7, r.stderr)
    assert.match(r.stderr, /\/dev\/fuse: Permission denied/)
  } finally {
    t.cleanup()
  }
})

test.run()
