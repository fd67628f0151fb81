// The README's exit-code table, row by row, through the real CLI: every code
// the table lists has cases here that produce it (and the table lists every
// code tested here). Each case checks the code and the message on stderr;
// error exits print nothing on stdout.
import {test} from 'uvu'
import * as assert from 'uvu/assert'
import {cpSync, existsSync, mkdirSync, readdirSync, readFileSync, readlinkSync, rmSync, symlinkSync, watch, writeFileSync} from 'node:fs'
import {hostname} from 'node:os'
import net from 'node:net'
import path from 'node:path'
import {exec, execAsync, makeImage, ROOT, spawnCli, tmpDir} from '../helpers/index.js'
import {startFaultProxy} from '../helpers/fault-proxy.js'
import {startServe} from '../helpers/serve.js'
import {hash} from '../../dist/store/hash.js'
import {encodeManifest} from '../../dist/store/manifest.js'
import {LocalStore} from '../../dist/store/local-store.js'

const M = 1024 * 1024
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

/** The codes of the README's exit-code table. */
function readmeCodes() {
  const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8')
  const section = readme.slice(readme.indexOf('### Exit codes'), readme.indexOf('Errors go to stderr'))
  return [...section.matchAll(/^\| (\d+) \|/gm)].map((m) => Number(m[1]))
}

// ---- fixtures, made once: a store holding img:1 (1 MiB, 16 chunks of 64 KiB)
const T = tmpDir('vmi-exit-')
const SRC = path.join(T.dir, 'src.raw')
const STORE = path.join(T.dir, 'store')
let copies = 0

async function fixture() {
  if (copies++ > 0) return
  await makeImage(SRC, [{kind: 'random', size: M, seed: 'exit-codes'}])
  const r = exec(['import', SRC, 'img:1', '--chunk-size', '64K'], {store: STORE})
  assert.is(r.status, 0, r.stderr)
}

/** A private copy of the fixture store. */
function copyStore() {
  const dir = path.join(T.dir, `copy-${copies++}`)
  cpSync(STORE, dir, {recursive: true})
  return dir
}

function objectFiles(store) {
  const out = []
  for (const shard of readdirSync(path.join(store, 'objects'))) for (const f of readdirSync(path.join(store, 'objects', shard))) out.push(path.join(store, 'objects', shard, f))
  return out
}

/** Whether a chunk has arrived in `store` (a pull under way). */
function hasObjects(store) {
  try {
    return objectFiles(store).length > 0
  } catch {
    return false
  }
}

function flipByte(file) {
  const b = readFileSync(file)
  b[0] ^= 0xff
  writeFileSync(file, b)
}

/** A port something already listens on; close() frees it. */
async function busyPort() {
  const server = net.createServer()
  await new Promise((r) => server.listen(0, '127.0.0.1', r))
  return {port: server.address().port, close: () => new Promise((r) => server.close(r))}
}

/** A store of `n` tiny valid objects: fsck and gc take seconds over it. */
function manyObjects(n) {
  const store = copyStore()
  for (let i = 0; i < n; i++) {
    const b = Buffer.from(`object ${i}`)
    const id = hash(b)
    mkdirSync(path.join(store, 'objects', id.slice(0, 2)), {recursive: true})
    writeFileSync(path.join(store, 'objects', id.slice(0, 2), id.slice(2)), b)
  }
  return store
}

/** Whether process `pid` has a file or directory under `dir` open. */
function hasOpenUnder(pid, dir) {
  try {
    return readdirSync(`/proc/${pid}/fd`).some((fd) => {
      try {
        return readlinkSync(`/proc/${pid}/fd/${fd}`).startsWith(dir + '/')
      } catch {
        return false
      }
    })
  } catch {
    return false
  }
}

/**
 * Start the CLI, wait until `ready(child)` says it is at work, send `sig`,
 * and return how it ended.
 */
async function signalled(argv, {store, env, ready, sig, stdin}) {
  const child = spawnCli(argv, {store, env, stdio: [stdin ? 'pipe' : 'ignore', 'pipe', 'pipe']})
  child.stdin?.on('error', () => {}) // the CLI stops reading when it stops
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (d) => (stdout += d))
  child.stderr.on('data', (d) => (stderr += d))
  const closed = new Promise((r) => child.on('close', (status, signal) => r({status, signal})))
  const deadline = Date.now() + 60_000
  while (!(await ready(child)) && child.exitCode === null && Date.now() < deadline) await sleep(2)
  assert.is(child.exitCode, null, `${argv.join(' ')} ended before the signal: ${stderr}`)
  child.kill(sig)
  const killer = setTimeout(() => child.kill('SIGKILL'), 60_000)
  const {status, signal} = await closed
  clearTimeout(killer)
  child.stdin?.destroy()
  return {status, signal, stdout, stderr}
}

// A seed (vmi serve over the fixture store) behind a proxy that trickles
// responses (a pull from it runs for many seconds), or, with 'stall', holds
// every response (and takes pushes).
async function slowSeed(mode) {
  const seed = await startServe(STORE, mode === 'stall' ? ['--push-token', 'tok'] : [])
  const proxy = await startFaultProxy(seed.url, mode === 'stall' ? {mode: 'stall', after: 0} : {mode: 'trickle', rate: 512})
  return {
    url: proxy.url,
    busy: () => proxy.connections() > 0,
    close: async () => {
      await proxy.close()
      await seed.stop()
    },
  }
}

const NOT_BLAMING_REMOTE = (r) => assert.not.match(r.stderr, /ERR_ABORTED|seed http|failed/, `a signal is not a remote's failure: ${r.stderr}`)

/** A pull from a trickling seed, stopped by `sig` once chunks arrive. */
const pullStopped = (sig, what) => ({
  what,
  run: async () => {
    const seed = await slowSeed('trickle')
    try {
      const store = path.join(T.dir, `pull-${sig}`)
      return await signalled(['pull', 'img:1', seed.url], {store, ready: () => hasObjects(store), sig})
    } finally {
      await seed.close()
    }
  },
  stderr: new RegExp(`interrupted by ${sig}`),
  check: NOT_BLAMING_REMOTE,
})

/** A push to a seed that answers nothing, stopped by `sig`. */
const pushStopped = (sig, what) => ({
  what,
  run: async () => {
    const seed = await slowSeed('stall')
    try {
      return await signalled(['push', 'img:1', seed.url], {store: STORE, env: {VMI_PUSH_TOKEN: 'tok'}, ready: seed.busy, sig})
    } finally {
      await seed.close()
    }
  },
  stderr: new RegExp(`interrupted by ${sig}`),
  check: NOT_BLAMING_REMOTE,
})

// ---- the table: code → cases. Each case returns {status, stdout, stderr} and names the stderr it expects.
const ROWS = {
  0: [
    {what: 'ls', run: () => exec(['ls'], {store: STORE}), stderr: /^$/},
    {
      what: 'serve stopped by SIGINT',
      run: async () => {
        const s = await startServe(STORE)
        const {code} = await s.stop('SIGINT')
        return {status: code, stdout: '', stderr: s.stderr()}
      },
      stderr: /serving/,
    },
  ],
  1: [
    {
      what: 'fsck finding a corrupt object',
      run: () => {
        const store = copyStore()
        flipByte(objectFiles(store)[0])
        return exec(['fsck'], {store})
      },
      stderr: /corrupt/,
      stdout: /problem/,
    },
  ],
  2: [
    ...['http://', 'http://[::1', 'http://127.0.0.1:99999', 'ftp://host'].flatMap((url) =>
      [['pull', 'img:1', url], ['push', 'img:1', url, '--token', 't'], ['mount', 'img:1', url, '--read-only']].map((argv) => ({
        what: `${argv[0]} from a malformed or unsupported URL ${url}`,
        run: () => exec(argv, {store: STORE}),
        stderr: /is not a URL|only http:\/\/, https:\/\/ and s3:\/\/ remotes are supported/,
      })),
    ),
    {what: 'tag to a malformed name', run: () => exec(['tag', 'img:1', 'bad name!'], {store: STORE}), stderr: /invalid image name/},
    {
      what: 'a bad line in a peers file',
      run: () => {
        const file = path.join(T.dir, 'peers-bad')
        writeFileSync(file, 'http://127.0.0.1:9\n# a comment\nftp://10.0.0.1:7070\n')
        return exec(['pull', 'img:1', '--peers-file', file, '--no-seed'], {store: copyStore()})
      },
      stderr: /peers-bad:3: "ftp:\/\/10\.0\.0\.1:7070" is not an http\(s\) URL/,
    },
    ...['mount', 'serve'].map((cmd) => ({
      what: `${cmd} --listen on a busy port`,
      run: async () => {
        const busy = await busyPort()
        try {
          const argv = cmd === 'mount' ? ['mount', 'img:1', '--read-only', '--listen', `127.0.0.1:${busy.port}`] : ['serve', '--listen', `127.0.0.1:${busy.port}`]
          return await execAsync(argv, {store: STORE})
        } finally {
          await busy.close()
        }
      },
      stderr: /^vmi: error: cannot listen on 127\.0\.0\.1:\d+: the address is in use \(EADDRINUSE\)\n$/,
    })),
  ],
  3: [
    {what: 'inspect of an unknown image', run: () => exec(['inspect', 'nope:1'], {store: STORE}), stderr: /nope/},
    {what: 'import of a missing file', run: () => exec(['import', path.join(T.dir, 'absent.raw')], {store: copyStore()}), stderr: /absent\.raw/},
    {what: 'a missing --peers-file', run: () => exec(['pull', 'img:1', '--peers-file', path.join(T.dir, 'no-peers')], {store: copyStore()}), stderr: /peers file .*no-peers does not exist/},
    {what: 'remote rm of an unknown remote', run: () => exec(['remote', 'rm', 'nope'], {store: copyStore()}), stderr: /no remote named "nope"/},
    {what: 'push to an unknown remote name', run: () => exec(['push', 'img:1', 'nope'], {store: STORE}), stderr: /no remote named "nope"/},
  ],
  4: [
    {
      what: 'an ambiguous id prefix',
      run: async () => {
        // manifests of all-zero images differ only in `created`: hash them until two ids share 4 hex digits
        const seen = new Map()
        let pair
        for (let i = 0; !pair; i++) {
          const m = {version: 1, virtualSize: 65536, chunkSize: 65536, chunks: [1], sourceFormat: 'raw', created: new Date(Date.UTC(2020, 0, 1) + i * 1000).toISOString()}
          const {id} = encodeManifest(m)
          if (seen.has(id.slice(0, 4))) pair = [seen.get(id.slice(0, 4)), m]
          else seen.set(id.slice(0, 4), m)
        }
        const store = copyStore()
        const s = await LocalStore.open(store)
        const ids = []
        for (const m of pair) ids.push(await s.putManifest(m))
        return exec(['inspect', ids[0].slice(0, 4)], {store})
      },
      stderr: /ambiguous/,
    },
  ],
  5: [
    {
      what: 'import of an empty file',
      run: () => {
        writeFileSync(path.join(T.dir, 'empty.raw'), '')
        return exec(['import', path.join(T.dir, 'empty.raw'), 'e:1'], {store: copyStore()})
      },
      stderr: /empty/,
    },
  ],
  6: [
    {what: 'a store path that is a file', run: () => exec(['ls'], {store: SRC}), stderr: /not a directory/},
    // procfs refuses a new directory with ENOENT, on which a recursive mkdir retried forever
    {what: 'a store path on procfs', run: () => exec(['ls'], {store: '/proc/vmi-no-store', timeout: 20_000, killSignal: 'SIGKILL'}), stderr: /could not write the store directory \/proc\/vmi-no-store/},
  ],
  7: [
    {
      what: 'export as qcow2 without qemu-img on PATH',
      run: () => {
        const bin = path.join(T.dir, 'bin-node-only')
        mkdirSync(bin, {recursive: true})
        try {
          symlinkSync(process.execPath, path.join(bin, 'node'))
        } catch {
          /* made by an earlier case */
        }
        return exec(['export', 'img:1', path.join(T.dir, 'out.qcow2'), '--format', 'qcow2'], {store: STORE, env: {PATH: bin}})
      },
      stderr: /needs qemu-img/,
    },
  ],
  8: [
    {
      what: 'export of an image with a corrupt chunk',
      run: () => {
        const store = copyStore()
        for (const f of objectFiles(store)) flipByte(f)
        return exec(['export', 'img:1', path.join(T.dir, 'out-corrupt.raw')], {store})
      },
      stderr: /does not match|corrupt|integrity/i,
    },
    ...['push', 'save'].map((cmd) => ({
      what: `${cmd} of an image with a chunk missing here`,
      run: () => {
        const store = copyStore()
        rmSync(objectFiles(store)[0])
        return exec(cmd === 'push' ? ['push', 'img:1', 'http://127.0.0.1:9', '--token', 't'] : ['save', 'img:1', '-o', path.join(T.dir, 'out-missing.tar')], {store})
      },
      stderr: /chunk [0-9a-f]{64} is not in/,
    })),
  ],
  9: [{what: 'pull from a seed that refuses connections', run: () => exec(['pull', 'img:1', 'http://127.0.0.1:1'], {store: copyStore()}), stderr: /127\.0\.0\.1:1.*ECONNREFUSED/}],
  10: [
    {
      what: 'push with a token the seed refuses',
      run: async () => {
        const seed = await startServe(copyStore(), ['--push-token', 'right'])
        try {
          return await execAsync(['push', 'img:1', seed.url], {store: STORE, env: {VMI_PUSH_TOKEN: 'wrong'}})
        } finally {
          await seed.stop()
        }
      },
      stderr: /token|401|403/i,
    },
  ],
  129: [pushStopped('SIGHUP', 'push stopped by SIGHUP')],
  130: [
    pullStopped('SIGINT', 'pull interrupted mid-transfer (Ctrl-C)'),
    pushStopped('SIGINT', 'push interrupted while the seed is silent'),
    {
      what: 'fsck stops on the first Ctrl-C',
      run: () => {
        const store = manyObjects(10_000)
        return signalled(['fsck'], {store, ready: (c) => hasOpenUnder(c.pid, path.join(store, 'objects')), sig: 'SIGINT'})
      },
      stderr: /fsck interrupted after \d+ of 10016 objects/,
    },
    {
      what: 'tag waiting for a gc (a short command: ends at once)',
      run: async () => {
        // a live gc lock (this process): tag waits for it, retrying every 200 ms
        const store = copyStore()
        mkdirSync(path.join(store, 'locks'), {recursive: true})
        writeFileSync(path.join(store, 'locks', 'gc'), JSON.stringify({pid: process.pid, host: hostname(), op: 'gc', kind: 'write', roots: [], started: new Date().toISOString()}))
        let waiting = false
        const watcher = watch(path.join(store, 'locks'), (_, name) => (waiting ||= /^\d+-[0-9a-f]+-tag/.test(String(name))))
        try {
          return await signalled(['tag', 'img:1', 'other:1'], {store, ready: () => waiting, sig: 'SIGINT'})
        } finally {
          watcher.close()
        }
      },
      stderr: /tag interrupted by SIGINT/,
    },
    {
      what: 'import from a stdin that never ends',
      run: () => {
        // ready once the CLI has read most of 2 MiB (a pipe holds 64 KiB): it is importing
        let read = false
        let written = false
        const ready = (c) => {
          if (!written) c.stdin.write(Buffer.alloc(2 * M, 1), () => (read = true))
          written = true
          return read
        }
        return signalled(['import', '-', 'x:1'], {store: copyStore(), stdin: true, ready, sig: 'SIGINT'})
      },
      stderr: /interrupted/,
    },
    {
      what: 'mount --exec',
      run: () => {
        const marker = path.join(T.dir, 'exec-started')
        return signalled(['mount', 'img:1', '--read-only', '--exec', `touch ${marker}; sleep 300`], {store: STORE, ready: () => existsSync(marker), sig: 'SIGINT'})
      },
      stderr: /stopped/,
      stdout: /^nbd: /,
    },
  ],
  143: [pullStopped('SIGTERM', 'pull stopped by SIGTERM')],
}

test('the README table and this file list the same codes', () => {
  assert.equal(
    readmeCodes(),
    Object.keys(ROWS)
      .map(Number)
      .sort((a, b) => a - b),
  )
})

for (const [code, cases] of Object.entries(ROWS)) {
  test(`exit ${code}: ${cases.map((c) => c.what).join('; ')}`, async () => {
    await fixture()
    for (const c of cases) {
      const r = await c.run()
      const ctx = `${c.what}: exit ${r.status}${r.signal ? ` (${r.signal})` : ''}, stderr ${JSON.stringify(r.stderr)}`
      assert.is(r.status, Number(code), ctx)
      assert.match(r.stderr, c.stderr, ctx)
      if (c.stdout) assert.match(r.stdout, c.stdout, ctx)
      else if (Number(code) !== 0) assert.is(r.stdout, '', `${ctx}: stdout must be empty`)
      assert.not.match(r.stderr, /\n\s+at .*:\d+:\d+\)?\n/, `${ctx}: no stack trace`)
      c.check?.(r)
    }
  })
}

test('cleanup', () => T.cleanup())

test.run()
