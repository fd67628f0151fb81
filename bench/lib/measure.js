// @ts-check
// Timing a child process: wall time, peak RSS, CPU time, and how much CPU
// everything else on the machine used meanwhile.
import {spawn, spawnSync} from 'node:child_process'
import {existsSync, promises as fsp, readFileSync} from 'node:fs'
import path from 'node:path'
import {cpuTimes} from './machine.js'

export const GNU_TIME = ['/usr/bin/time', '/bin/time'].find((p) => existsSync(p) && isGnuTime(p))

function isGnuTime(p) {
  const r = spawnSync(p, ['-f', '%M', '-o', '/dev/null', 'true'], {stdio: 'ignore'})
  return r.status === 0
}

export {hasCommand} from '../../test/helpers/index.js'

/** How peak RSS is measured here. */
export const RSS_METHOD = GNU_TIME ? `${GNU_TIME} -f %M (ru_maxrss of the child)` : 'polling /proc/<pid>/status VmHWM every 10 ms'

/**
 * The CPU-seconds (user + sys) of a runTimed result, or NaN when they were
 * not measured (no GNU time, or it left no figures): a sum over runs is then
 * unknown too, never a count that leaves a run out.
 * @param {{user?: number, sys?: number}} r
 */
export function cpuOf(r) {
  return r.user === undefined || r.sys === undefined ? NaN : r.user + r.sys
}

/**
 * Run `cmd args` and measure it. Resolves {wall, rssBytes, user, sys,
 * cpuLost (why user and sys are missing, when they are), bgCores, status,
 * stdout, stderr}; rejects when it exits non-zero unless
 * `allowFail`. `discardStdout` sends its stdout to /dev/null; `onSpawn` gets the
 * child at once (to kill it). `wall` is spawn-to-exit as seen from here (seconds).
 */
export async function runTimed(cmd, args, opts = {}) {
  const tmpOut = path.join(opts.scratch ?? '/tmp', `.time-${process.pid}-${Date.now()}-${Math.random().toString(36).slice(2)}`)
  const argv = GNU_TIME ? [GNU_TIME, ['-f', '%M %U %S %e', '-o', tmpOut, '--', cmd, ...args]] : [cmd, args]
  const cpu0 = cpuTimes()
  const t0 = process.hrtime.bigint()
  const child = spawn(argv[0], argv[1], {env: opts.env ?? process.env, cwd: opts.cwd, stdio: ['ignore', opts.discardStdout ? 'ignore' : 'pipe', 'pipe']})
  opts.onSpawn?.(child)
  const out = []
  const err = []
  child.stdout?.on('data', (d) => out.push(d))
  child.stderr.on('data', (d) => err.push(d))
  let hwm = 0
  let poll
  if (!GNU_TIME) {
    poll = setInterval(() => {
      try {
        const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))
        if (m) hwm = Math.max(hwm, Number(m[1]) * 1024)
      } catch {}
    }, 10)
  }
  const status = await new Promise((resolve, reject) => {
    child.on('error', reject)
    child.on('close', (code, signal) => resolve(code ?? `signal ${signal}`))
  })
  const wall = Number(process.hrtime.bigint() - t0) / 1e9
  const cpu1 = cpuTimes()
  if (poll) clearInterval(poll)
  const stdout = Buffer.concat(out).toString()
  const stderr = Buffer.concat(err).toString()
  let rssBytes = hwm
  let user
  let sys
  /** Why user and sys are missing, when they are. @type {string | undefined} */
  let cpuLost
  if (GNU_TIME) {
    const text = await fsp.readFile(tmpOut, 'utf8').catch((e) => ((cpuLost = `GNU time's file: ${e.code ?? e.message}`), ''))
    await fsp.rm(tmpOut, {force: true})
    const last = text.trim().split('\n').pop() ?? ''
    const f = last.split(/\s+/).map(Number)
    if (f.length >= 3 && f.every((x) => Number.isFinite(x))) {
      rssBytes = f[0] * 1024
      user = f[1]
      sys = f[2]
    } else cpuLost ??= `GNU time wrote ${JSON.stringify(last)}`
  } else cpuLost = 'no GNU time'
  // CPU used by everything else meanwhile, in cores (0..N); needs the child's own CPU time
  let bgCores
  if (cpu0 && cpu1 && user !== undefined) bgCores = Math.max(0, cpu1.busy - cpu0.busy - user - sys) / wall
  // CPU time the hypervisor gave to others while this VM wanted it, in cores
  const stealCores = cpu0 && cpu1 ? (cpu1.steal - cpu0.steal) / wall : undefined
  const r = {wall, rssBytes, user, sys, cpuLost, bgCores, stealCores, status, stdout, stderr}
  if (status !== 0 && !opts.allowFail) {
    throw Object.assign(new Error(`${cmd} ${args.join(' ')} failed (${status}): ${stderr.trim().split('\n').slice(-3).join(' | ')}`), {result: r})
  }
  return r
}

/** The median of the finite numbers of `xs` (undefined when there are none). @param {(number | undefined)[]} xs */
export function median(xs) {
  return stats(xs).median
}

/** Median, min, max and count of the finite numbers of `xs` (undefined but n when there are none). @param {(number | undefined)[]} xs */
export function stats(xs) {
  const v = /** @type {number[]} */ (xs.filter(Number.isFinite)).sort((a, b) => a - b)
  const m = v.length >> 1
  return {median: v.length ? (v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2) : undefined, min: v[0], max: v.at(-1), n: v.length}
}

/**
 * A measurement repeated (runTimed results): median wall with its min and
 * max, the worst peak RSS (targets are ceilings), median CPU and median of
 * each of `keys`, how many runs started on a busy machine, the median time
 * vmi reported (--json seconds), the first run's JSON, every run without its
 * output.
 * @param {Record<string, any>[]} runs @param {string[]} keys
 */
export function summarizeRuns(runs, keys) {
  const pick = (/** @type {string} */ k) => runs.map((r) => r[k])
  const wall = stats(pick('wall'))
  const busyStarts = runs.filter((r) => r.startedQuiet === false).length
  return {
    wall: wall.median,
    wallMin: wall.min,
    wallMax: wall.max,
    rssBytes: stats(pick('rssBytes')).max,
    cpu: median(runs.map(cpuOf)),
    ...Object.fromEntries(keys.map((k) => [k, median(pick(k))])),
    startedQuiet: busyStarts === 0,
    busyStarts,
    reported: median(runs.map((r) => r.json?.seconds)),
    json: runs[0].json,
    runs: runs.map(({stdout, stderr, json, ...rest}) => rest),
  }
}

/**
 * `fn(item, index)` over `items` in order, at most `concurrency` at a time.
 * @template T @param {T[]} items @param {number} concurrency @param {(item: T, index: number) => Promise<unknown>} fn
 */
export async function pool(items, concurrency, fn) {
  let i = 0
  const worker = async () => {
    while (i < items.length) {
      const k = i++
      await fn(items[k], k)
    }
  }
  await Promise.all(Array.from({length: concurrency}, worker))
}

/** Flush dirty pages (so one measurement's writeback does not land in the next). */
export function settle() {
  spawnSync('sync', [], {stdio: 'ignore'})
}

/** Read a file end to end so it sits in the page cache. */
export async function warmFile(file) {
  const fh = await fsp.open(file, 'r')
  const buf = Buffer.allocUnsafe(8 << 20)
  try {
    let pos = 0
    for (;;) {
      const {bytesRead} = await fh.read(buf, 0, buf.length, pos)
      if (bytesRead === 0) break
      pos += bytesRead
    }
    return pos
  } finally {
    await fh.close()
  }
}

/** Every file under `dir` (none when it is missing), depth first. @returns {AsyncGenerator<string>} */
async function* filesUnder(dir) {
  const entries = await fsp.readdir(dir, {withFileTypes: true}).catch(() => [])
  for (const e of entries) {
    if (e.isDirectory()) yield* filesUnder(path.join(dir, e.name))
    else yield path.join(dir, e.name)
  }
}

/** Read every file under `dir` (the store's objects) into the page cache. */
export async function warmDir(dir) {
  let bytes = 0
  let files = 0
  for await (const f of filesUnder(dir)) {
    bytes += (await fsp.readFile(f)).length
    files++
  }
  return {bytes, files}
}

/** Number of files under `dir`. */
export async function countFiles(dir) {
  let n = 0
  for await (const _ of filesUnder(dir)) n++
  return n
}

/**
 * Allocate, touch and free `bytes` of memory in a short-lived child. On a VM
 * with free page reporting (virtio-balloon), memory the guest freed a few
 * seconds ago has been handed back to the host, and the next process to
 * fill new page-cache pages pays a host fault per page: the same `cp` took
 * 0.5 s or 3.5 s depending on it. Touching memory just before every run puts
 * all contenders on host-backed pages, as on bare metal. Returns seconds.
 */
export function pretouch(bytes) {
  const t0 = performance.now()
  const piece = 256 * 1024 * 1024
  const code = `const keep=[];for(let n=${Math.ceil(bytes / piece)};n>0;n--)keep.push(Buffer.allocUnsafe(${piece}).fill(1))`
  spawnSync(process.execPath, ['-e', code], {stdio: 'ignore'})
  return (performance.now() - t0) / 1000
}

/** True when this machine reports free pages to a hypervisor (the reason for pretouch()). */
export function freePageReporting() {
  return existsSync('/sys/module/page_reporting')
}
