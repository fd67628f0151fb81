// @ts-check
// NBD helpers for bench/mount.js: nbdkit (the anchor, and its log filter as
// the record of what a booting guest reads), qemu-img bench as the load
// generator, `vmi mount` as a long-running export, boot-vm.sh's result line,
// and the arithmetic on a read log (unique bytes, chunks touched per chunk size).
import {spawn} from 'node:child_process'
import {existsSync, promises as fsp} from 'node:fs'
import net from 'node:net'
import {BIN, lastJson, ROOT, sleep, track, vmiEnv} from './common.js'
import {runTimed} from './measure.js'

function connectable(socket) {
  return new Promise((resolve) => {
    const s = net.connect(socket)
    s.once('connect', () => {
      s.destroy()
      resolve(true)
    })
    s.once('error', () => resolve(false))
  })
}

/**
 * nbdkit, foreground, on a unix socket: `nbdkit -f -r -U SOCK [--filter=F…]
 * PLUGIN… [params…]` (PLUGIN: `file file=FILE` by default; without -r when
 * `writable`). Resolves once the socket accepts.
 * @param {{file?: string, plugin?: string[], socket: string, filters?: string[], params?: string[], writable?: boolean}} init
 */
export async function startNbdkit({file, plugin = ['file', `file=${file}`], socket, filters = [], params = [], writable = false}) {
  await fsp.rm(socket, {force: true})
  const args = ['-f', ...(writable ? [] : ['-r']), '-U', socket, ...filters.map((x) => `--filter=${x}`), ...plugin, ...params]
  const child = track(spawn('nbdkit', args, {stdio: ['ignore', 'ignore', 'pipe']}))
  let stderr = ''
  child.stderr.on('data', (d) => (stderr += d))
  const deadline = Date.now() + 10_000
  while (!(existsSync(socket) && (await connectable(socket)))) {
    if (child.exitCode !== null) throw new Error(`nbdkit exited ${child.exitCode}: ${stderr}`)
    if (Date.now() > deadline) throw new Error(`nbdkit did not start: ${stderr}`)
    await sleep(20)
  }
  const exited = new Promise((r) => (child.exitCode !== null ? r() : child.once('exit', () => r())))
  return {
    uri: `nbd+unix:///?socket=${socket}`,
    pid: child.pid,
    args,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM')
      await exited
    },
  }
}

/** `vmi mount ARGS --json` running until stop(); resolves once it printed its addresses. */
export async function startMount(store, args, opts = {}) {
  // opts.bin: another build's bin/run.js (an A/B of two builds in one run)
  const child = track(spawn(process.execPath, [opts.bin ?? BIN, 'mount', ...args, '--json'], {env: vmiEnv(store, opts.env), cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe']}))
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (d) => (stdout += d))
  child.stderr.on('data', (d) => (stderr += d))
  const info = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`vmi mount did not start: ${stderr}`)), 60_000)
    const check = () => {
      // every JSON line of vmi starts with its "version" (src/cli/json.ts)
      const line = stdout.split('\n').find((l) => /^\{("version":\d+,)?"mounted"/.test(l))
      if (line) {
        clearTimeout(timer)
        child.stdout.off('data', check)
        resolve(JSON.parse(line))
      }
    }
    child.stdout.on('data', check)
    child.once('exit', (code) => {
      clearTimeout(timer)
      reject(new Error(`vmi mount exited ${code}: ${stderr}`))
    })
  })
  child.removeAllListeners('exit')
  const exited = new Promise((r) => child.once('exit', (code, signal) => r({code, signal})))
  return {
    ...info,
    uri: info.nbd,
    pid: child.pid,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM')
      const e = await exited
      return {...e, json: lastJson(stdout), stderr}
    },
  }
}

/**
 * `qemu-img bench -f raw -t none -c COUNT -d DEPTH -s SIZE [-S STEP] [-o OFFSET]
 * [-w] URI` (reads, or writes with `write`). Returns the runTimed result plus `seconds` as qemu-img reports it
 * ("Run completed in X seconds.").
 */
export async function qemuImgBench(uri, {count, depth, size, step, offset, write}, opts = {}) {
  const args = ['bench', '-f', 'raw', '-t', 'none', '-c', String(count), '-d', String(depth), '-s', String(size)]
  if (step !== undefined) args.push('-S', String(step))
  if (offset !== undefined) args.push('-o', String(offset))
  if (write) args.push('-w')
  args.push(uri)
  // opts.cpus: run qemu-img pinned to these CPUs (taskset execs it: the timing and CPU are qemu-img's)
  const r = opts.cpus !== undefined ? await runTimed('taskset', ['-c', opts.cpus, 'qemu-img', ...args], opts) : await runTimed('qemu-img', args, opts)
  const m = /Run completed in ([0-9.]+) seconds/.exec(r.stdout)
  if (!m) throw new Error(`qemu-img bench: no result: ${r.stdout} ${r.stderr}`)
  r.seconds = Number(m[1])
  r.args = args
  return r
}

/** The BOOT-RESULT line of scripts/boot-vm.sh as numbers. */
export function parseBootResult(stdout) {
  const line = stdout.split('\n').find((l) => l.startsWith('BOOT-RESULT '))
  if (!line) return undefined
  const kv = Object.fromEntries(
    line
      .slice('BOOT-RESULT '.length)
      .trim()
      .split(/\s+/)
      .map((p) => [p.slice(0, p.indexOf('=')), p.slice(p.indexOf('=') + 1)]),
  )
  const num = (x) => (x !== undefined && /^[0-9.]+$/.test(x) ? Number(x) : undefined)
  return {ok: kv.ok === '1', accel: kv.accel, markerS: num(kv.marker_s), exitS: num(kv.exit_s), guestUptimeS: num(kv.guest_uptime_s), kernel: kv.kernel, line}
}

/**
 * Read requests in an nbdkit log-filter file (what a booting guest read; a replayable
 * trace), in the order they started: [{offset, count, think, at}], think = seconds from the
 * previous read's completion to this read's start (0 when they overlapped;
 * for the first read, from the connection), at = seconds from the
 * connection to this read's start.
 */
export function parseNbdkitTrace(text) {
  const at = (stamp) => {
    const [date, time] = stamp.split(' ')
    return Date.parse(`${date}T${time.slice(0, 8)}Z`) / 1000 + Number(`0${time.slice(8)}`)
  }
  let connect
  const open = new Map()
  const reads = []
  for (const line of text.split('\n')) {
    const m = /^(\S+ \S+) connection=(\d+) (\.\.\.)?(Read|Connect)(?: id=(\d+))?(?: offset=(0x[0-9a-f]+) count=(0x[0-9a-f]+))?/.exec(line)
    if (!m) continue
    const t = at(m[1])
    const key = `${m[2]}:${m[5]}`
    if (m[4] === 'Connect') connect ??= t
    else if (!m[3]) open.set(key, reads.push({offset: Number(m[6]), count: Number(m[7]), start: t, end: t}) - 1)
    else if (open.has(key)) reads[open.get(key)].end = t
  }
  reads.sort((a, b) => a.start - b.start)
  const t0 = connect ?? reads[0]?.start
  const us = (x) => Math.round(x * 1e6) / 1e6
  return reads.map((r, i) => ({offset: r.offset, count: r.count, think: us(Math.max(0, r.start - (i === 0 ? t0 : reads[i - 1].end))), at: us(r.start - t0)}))
}

/** Which `block`-byte blocks of `file` are all zero: Uint8Array, 1 = zero. */
export async function zeroBlocks(file, block = 4096) {
  const st = await fsp.stat(file)
  const n = Math.ceil(st.size / block)
  const zero = new Uint8Array(n)
  const fh = await fsp.open(file, 'r')
  const piece = 8 << 20
  const buf = Buffer.alloc(piece)
  const z = Buffer.alloc(block)
  try {
    for (let pos = 0; pos < st.size; pos += piece) {
      const {bytesRead} = await fh.read(buf, 0, piece, pos)
      for (let o = 0; o < bytesRead; o += block) {
        const len = Math.min(block, bytesRead - o)
        if (buf.compare(z, 0, len, o, o + len) === 0) zero[(pos + o) / block] = 1
      }
    }
  } finally {
    await fh.close()
  }
  return {zero, block, size: st.size}
}

/**
 * What a read log touched: total and unique bytes, unique bytes inside
 * non-zero blocks, and per chunk size the chunks touched, the non-zero ones
 * among them and their bytes (= what a lazy mount with that chunk size and no
 * prefetch must fetch for these reads).
 */
export function readFootprint(reads, zb, chunkSizes) {
  const sorted = [...reads].sort((a, b) => a.offset - b.offset)
  const merged = []
  for (const r of sorted) {
    const end = r.offset + r.count
    const last = merged.at(-1)
    if (last && r.offset <= last.end) last.end = Math.max(last.end, end)
    else merged.push({start: r.offset, end})
  }
  let unique = 0
  let uniqueNonZero = 0
  const {zero, block, size} = zb
  for (const m of merged) {
    unique += m.end - m.start
    for (let b = Math.floor(m.start / block); b * block < m.end; b++) {
      if (zero[b]) continue
      const s = Math.max(m.start, b * block)
      const e = Math.min(m.end, (b + 1) * block)
      uniqueNonZero += e - s
    }
  }
  const perChunkSize = {}
  for (const cs of chunkSizes) {
    const touched = new Set()
    for (const m of merged) for (let c = Math.floor(m.start / cs); c * cs < m.end; c++) touched.add(c)
    let nonZero = 0
    let bytes = 0
    const per = cs / block
    for (const c of touched) {
      let allZero = true
      for (let b = c * per; b < Math.min((c + 1) * per, zero.length); b++)
        if (!zero[b]) {
          allZero = false
          break
        }
      if (!allZero) {
        nonZero++
        bytes += Math.min(cs, size - c * cs)
      }
    }
    perChunkSize[cs] = {touched: touched.size, nonZero, bytes}
  }
  return {
    requests: reads.length,
    totalBytes: reads.reduce((a, r) => a + r.count, 0),
    uniqueBytes: unique,
    uniqueNonZeroBytes: uniqueNonZero,
    extents: merged.length,
    perChunkSize,
  }
}
