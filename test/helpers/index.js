// Shared test helpers: temp stores, the real CLI as a child process, test images.
import {spawn, spawnSync} from 'node:child_process'
import {createHash, randomBytes} from 'node:crypto'
import {mkdtempSync, rmSync, promises as fsp} from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import {fileURLToPath} from 'node:url'

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..')
export const BIN = path.join(ROOT, 'bin', 'run.js')

/** A loopback port nothing listens on right now (bound, then closed): for a server that must be told its port, or a peer that refuses. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer()
    srv.once('error', reject)
    srv.listen({host: '127.0.0.1', port: 0}, () => {
      const {port} = srv.address()
      srv.close(() => resolve(port))
    })
  })
}

/** A fresh temporary directory; removed by the returned cleanup. */
export function tmpDir(prefix = 'vmi-test-') {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix))
  return {dir, cleanup: () => rmSync(dir, {recursive: true, force: true})}
}

/** A temp store directory (not yet created: the CLI creates it). */
export function tmpStore() {
  const t = tmpDir('vmi-store-')
  return {store: path.join(t.dir, 'store'), dir: t.dir, cleanup: t.cleanup}
}

/**
 * Run the real CLI: exec(['import', file], {store}) → {status, stdout, stderr}.
 * `input` (Buffer|string) is piped to stdin; `bin` runs another build's bin/run.js
 * (test/helpers/old-vmi.js).
 */
export function exec(argv, opts = {}) {
  const env = childEnv(opts)
  const r = spawnSync(process.execPath, [opts.bin ?? BIN, ...argv], {
    env,
    input: opts.input,
    cwd: opts.cwd ?? ROOT,
    maxBuffer: 1024 * 1024 * 1024,
    timeout: opts.timeout ?? 300_000,
    // a CLI spinning in a system call never runs its SIGTERM handler
    killSignal: opts.killSignal ?? 'SIGTERM',
  })
  if (r.error) throw r.error
  return {status: r.status, signal: r.signal, stdout: r.stdout.toString(), stderr: r.stderr.toString(), stdoutBuf: r.stdout}
}

function childEnv(opts) {
  const env = {...process.env, ...(opts.env ?? {})}
  delete env.VMI_HOME
  // the test runner's colour settings only make Node warn in the children
  delete env.FORCE_COLOR
  delete env.NODE_DISABLE_COLORS
  if (opts.store) env.VMI_HOME = opts.store
  return env
}

/**
 * Start the CLI without waiting: returns the ChildProcess. `netns` runs it
 * inside that network namespace (`ip netns exec`, the fleet lab's hosts);
 * `bin` runs another build's bin/run.js.
 */
export function spawnCli(argv, opts = {}) {
  const env = childEnv(opts)
  const bin = opts.bin ?? BIN
  const [cmd, args] = opts.netns ? ['ip', ['netns', 'exec', opts.netns, process.execPath, bin, ...argv]] : [process.execPath, [bin, ...argv]]
  return spawn(cmd, args, {env, cwd: ROOT, stdio: opts.stdio ?? ['ignore', 'pipe', 'pipe']})
}

/** Deterministic pseudo-random bytes (seeded), fast enough for GiB sizes. */
export function seededBytes(seed, length) {
  const out = Buffer.allocUnsafe(length)
  let off = 0
  let counter = 0
  while (off < length) {
    const block = createHash('sha512').update(`${seed}:${counter++}`).digest()
    off += block.copy(out, off)
  }
  return out
}

/** Text-like bytes (compress to about a third), distinct per seed and per chunk. */
export function textBytes(seed, length) {
  const words = seededBytes(seed, 4096).toString('hex').match(/.{1,7}/g)
  const parts = []
  let n = 0
  for (let i = 0; n < length; i++) {
    // a line number every 13 words: no two chunks alike (the word cycle alone would repeat)
    const w = words[(i * 7919) % words.length] + (i % 13 === 0 ? ` ${i}\n` : ' ')
    parts.push(w)
    n += w.length
  }
  return Buffer.from(parts.join('')).subarray(0, length)
}

/**
 * Write a raw test image: `layout` is a list of regions
 * {kind: 'random'|'zero'|'repeat', size, seed?} written in order.
 * 'repeat' repeats the previous random region's first `size` bytes.
 * Zero regions are left as holes.
 */
export async function makeImage(file, layout) {
  const fh = await fsp.open(file, 'w')
  let pos = 0
  let lastRandom
  try {
    for (const r of layout) {
      if (r.kind === 'zero') {
        pos += r.size
        continue
      }
      let data
      if (r.kind === 'random') data = lastRandom = r.seed === undefined ? randomBytes(r.size) : seededBytes(r.seed, r.size)
      else if (r.kind === 'repeat') data = lastRandom.subarray(0, r.size)
      else if (r.kind === 'fill') data = Buffer.alloc(r.size, r.byte ?? 0x5a)
      else throw new Error(`unknown region ${r.kind}`)
      for (let o = 0; o < data.length; o += 16 << 20) await fh.write(data, o, Math.min(16 << 20, data.length - o), pos + o)
      pos += r.size
    }
    await fh.truncate(pos)
  } finally {
    await fh.close()
  }
  return pos
}

export async function sha256File(file) {
  const h = createHash('sha256')
  for await (const piece of (await fsp.open(file)).createReadStream()) h.update(piece)
  return h.digest('hex')
}

export function hasCommand(cmd) {
  return spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0
}

export const isRoot = process.getuid?.() === 0

/**
 * Mark the running test as skipped, with the reason (visible in CI logs).
 * uvu has no run-time skip: the test passes, and scripts/test.sh counts a
 * passing test that printed "SKIP:" (once or more) as skipped. The leading
 * newline keeps the reason off the line of uvu's progress dots. Call it
 * inside a test: a skip printed while the files load belongs to no test and
 * is not counted.
 */
export function skip(reason) {
  console.log(`\n  SKIP: ${reason}`)
}

/** All files under dir (relative paths). */
export async function listFiles(dir) {
  const out = []
  async function walk(d) {
    let entries
    try {
      entries = await fsp.readdir(d, {withFileTypes: true})
    } catch {
      return
    }
    for (const e of entries) {
      const p = path.join(d, e.name)
      if (e.isDirectory()) await walk(p)
      else out.push(path.relative(dir, p))
    }
  }
  await walk(dir)
  return out.sort()
}

/** Assert the store passes `vmi fsck`. Returns the fsck JSON. */
export function fsckClean(store) {
  const r = exec(['fsck', '--json'], {store})
  if (r.status !== 0) throw new Error(`fsck not clean (exit ${r.status}): ${r.stderr}\n${r.stdout}`)
  return JSON.parse(r.stdout)
}

/** fsckClean() without blocking this process's event loop. */
export async function fsckCleanAsync(store) {
  const r = await execAsync(['fsck', '--json'], {store})
  if (r.status !== 0) throw new Error(`fsck not clean (exit ${r.status}): ${r.stderr}\n${r.stdout}`)
  return JSON.parse(r.stdout)
}

/** Like exec(), without blocking this process's event loop (needed when the test itself serves HTTP). */
export function execAsync(argv, opts = {}) {
  const child = spawnCli(argv, {store: opts.store, env: opts.env, netns: opts.netns, bin: opts.bin})
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (d) => (stdout += d))
  child.stderr.on('data', (d) => (stderr += d))
  const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeout ?? 300_000)
  return new Promise((resolve) =>
    child.on('close', (status, signal) => {
      clearTimeout(timer)
      resolve({status, signal, stdout, stderr})
    }),
  )
}

/** Run any program without blocking this process: {status, out} (stdout + stderr). */
export function runAsync(cmd, args, timeoutMs = 120_000) {
  return new Promise((resolve) => {
    const c = spawn(cmd, args)
    let out = ''
    c.stdout.on('data', (d) => (out += d))
    c.stderr.on('data', (d) => (out += d))
    const timer = setTimeout(() => c.kill('SIGKILL'), timeoutMs)
    c.on('close', (status) => {
      clearTimeout(timer)
      resolve({status, out})
    })
  })
}
