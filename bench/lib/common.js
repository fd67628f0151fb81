// @ts-check
// Shared by every benchmark: vmi's public API, the work directory and its
// trash, running vmi as a child, starting `vmi serve` and nginx as the
// benchmarks' servers, CPU accounting for long-running servers, the
// per-run preparation of the store benchmark (sync, warm page cache, wait
// for an idle machine, pre-touch memory), and what the machine and build were.
import {execFileSync, spawn, spawnSync} from 'node:child_process'
import {createHash} from 'node:crypto'
import {existsSync, mkdtempSync, promises as fsp, readdirSync, readFileSync, rmSync, statSync} from 'node:fs'
import http from 'node:http'
import os from 'node:os'
import path from 'node:path'
import {fileURLToPath} from 'node:url'
import {cpuTimes, loadAverage, machineInfo, sleep, waitQuiet} from './machine.js'
import {GiB} from './format.js'
import {cpuOf, freePageReporting, hasCommand, pretouch, runTimed, settle, warmDir, warmFile} from './measure.js'
import {metricSum, startServe as startTestServe} from '../../test/helpers/serve.js'
import {startNginx as startTestNginx} from '../../test/helpers/nginx.js'

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..')
export const BIN = path.join(ROOT, 'bin', 'run.js')
export const RESULTS = path.join(ROOT, 'bench', 'results')
export {GiB, KiB, MiB} from './format.js'

/** @typedef {typeof import('../../dist/index.js')} Vmi */

/**
 * vmi's public API (package.json `main`: dist/index.js, typed by
 * dist/index.d.ts), imported when first asked for so that `--help` works
 * before a build.
 */
export async function loadVmi() {
  if (!existsSync(path.join(ROOT, 'dist', 'index.js'))) throw new Error('dist/ is not built: run `npm run build`')
  return import('../../dist/index.js')
}

/**
 * A benchmark's command line, from one table: `spec` maps each option's key to
 * [flag, default, parse, help]: `--flag VALUE` (a value, parsed by `parse`) or
 * `--flag` alone (a switch: sets the key to `parse`). -h/--help prints the usage
 * the table makes (then `notes`) and exits 0; an unknown option, or what `check`
 * returns (a message, or false when all is well), exits 2.
 * @template {Record<string, [string, any, any, string]>} S
 * @param {string} kind @param {S} spec @param {(o: Record<keyof S, any>) => string | false} [check] @param {string} [notes]
 * @returns {Record<keyof S, any>}
 */
export function parseOptions(kind, spec, check, notes, argv = process.argv.slice(2)) {
  const table = Object.entries(spec)
  const usage = [
    `usage: node bench/${kind}.js ${table.map(([, [flag]]) => `[${flag}]`).join(' ')}`,
    '',
    ...table.map(([, [flag, def, parse, help]]) => `  ${flag.padEnd(18)}${help}${typeof parse === 'function' && def !== undefined ? ` (default ${def})` : ''}`),
    ...(notes ? ['', notes] : []),
  ].join('\n')
  /** @type {Record<keyof S, any>} */
  const opts = /** @type {any} */ (Object.fromEntries(table.map(([k, [, def]]) => [k, def])))
  /** @param {string} msg @returns {never} */
  const fail = (msg) => {
    console.error(`bench ${kind}: ${msg}\n${usage}`)
    process.exit(2)
  }
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '-h' || argv[i] === '--help') {
      console.log(usage)
      process.exit(0)
    }
    const [key, [, , v]] = table.find(([, [flag]]) => flag.split(' ')[0] === argv[i]) ?? fail(`unknown argument ${argv[i]}`)
    opts[/** @type {keyof S} */ (key)] = typeof v === 'function' ? v(argv[++i]) : v
  }
  const wrong = check?.(opts)
  if (wrong) fail(wrong)
  return opts
}

/** The options several benchmarks take (parseOptions entries). */
export const BUILD = /** @type {[string, any, any, string]} */ (['--build', false, true, "run 'npm run build' first (default: use dist/ as it is)"])
export const RENDER = /** @type {[string, any, any, string]} */ (['--render JSON', undefined, String, 'measure nothing: rewrite the markdown report from a saved latest-<kind>.json'])
/** What every benchmark's environment is, as bench/store.js --help lists it. */
export const ENV_NOTE = 'environment: as bench/store.js (VMI_CACHE_DIR, VMI_BENCH_WORKDIR, VMI_BENCH_QUIET_WAIT, VMI_BENCH_PRETOUCH_GIB)'

/** '1,2,4' → [1, 2, 4] @param {string} s */
export const numberList = (s) => String(s).split(',').map(Number)

export const makeLog = (name) => (msg) => process.stderr.write(`bench ${name}: ${msg}\n`)
export {sleep}

// ----------------------------------------------------------------- children we started

/** @type {Set<import('node:child_process').ChildProcess>} */
const children = new Set()
/** @template {import('node:child_process').ChildProcess} C @param {C} child @returns {C} */
export function track(child) {
  children.add(child)
  child.once('exit', () => children.delete(child))
  return child
}
/** SIGTERM every server this process started and that is still running (by its own ChildProcess handle). */
export function stopAllChildren() {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGTERM')
}
process.on('exit', stopAllChildren)

// ----------------------------------------------------------------- work directory

/**
 * A fresh work directory (under $VMI_BENCH_WORKDIR or $TMPDIR) with the store
 * benchmark's trash: finished stores are moved aside and deleted at the end,
 * because mass inode deletes slow the next file creations on ext4 without a
 * journal for 60 s (see bench/README.md, Method).
 */
export function workDirectory(prefix, log) {
  const workDir = process.env.VMI_BENCH_WORKDIR
    ? mkdtempSync(path.join(path.resolve(process.env.VMI_BENCH_WORKDIR), prefix))
    : mkdtempSync(path.join(os.tmpdir(), prefix))
  const trashDir = path.join(workDir, 'trash')
  const stats = {moved: 0, deletedAtOnce: 0}
  let n = 0
  const cleanup = () => {
    stopAllChildren()
    rmSync(workDir, {recursive: true, force: true})
  }
  process.on('exit', cleanup)
  for (const sig of ['SIGINT', 'SIGTERM'])
    process.on(sig, () => {
      cleanup()
      process.exit(130)
    })
  return {
    workDir,
    trashStats: stats,
    async discard(dir) {
      if (!existsSync(dir)) return
      const {bavail, bsize} = await fsp.statfs(workDir)
      if (bavail * bsize < 15 * GiB) {
        await fsp.rm(dir, {recursive: true, force: true})
        settle()
        stats.deletedAtOnce++
        log?.('  low on disk space: deleted a store at once; waiting 65 s for ext4 to reuse its inodes without penalty')
        await sleep(65_000)
        return
      }
      await fsp.mkdir(trashDir, {recursive: true})
      await fsp.rename(dir, path.join(trashDir, String(n++)))
      stats.moved++
    },
  }
}

// ----------------------------------------------------------------- vmi as a child

/** @param {string} store @param {Record<string, string | undefined>} [extra] */
export function vmiEnv(store, extra = {}) {
  /** @type {NodeJS.ProcessEnv} */
  const env = {...process.env, VMI_HOME: store, ...extra}
  delete env.VMI_CHUNK_SIZE
  delete env.VMI_PEERS
  delete env.FORCE_COLOR
  delete env.NODE_DISABLE_COLORS
  for (const [k, v] of Object.entries(extra)) if (v === undefined) delete env[k]
  return env
}

/** The last JSON document on stdout (vmi --json prints it last; other lines may precede it). */
export function lastJson(stdout) {
  const text = stdout.trimEnd()
  for (let i = text.length - 1; i >= 0; i--) {
    if (text[i] !== '{' || (i > 0 && text[i - 1] !== '\n')) continue
    try {
      return JSON.parse(text.slice(i))
    } catch {
      /* an earlier one */
    }
  }
  return undefined
}

/**
 * Run `vmi ARGS` timed (runTimed: wall, peak RSS, CPU of it and its reaped children), `json` its --json output.
 * @param {string[]} args @param {string} store
 * @param {{env?: Record<string, string | undefined>, cwd?: string, scratch?: string, allowFail?: boolean, discardStdout?: boolean}} [opts]
 */
export async function vmiTimed(args, store, opts = {}) {
  const {env, cwd = ROOT, ...rest} = opts
  /** @type {Record<string, any>} */
  const r = await runTimed(process.execPath, [BIN, ...args], {env: vmiEnv(store, env), cwd, ...rest})
  if (args.includes('--json') && !opts.discardStdout) r.json = lastJson(r.stdout)
  return r
}

// ----------------------------------------------------------------- servers

/**
 * `vmi serve` as test/helpers/serve.js starts it (opts: listen, netns, env), for the benchmarks:
 * with its pid (CPU accounting), /metrics read from inside its namespace when it has one, a
 * longer start-up bound (many serves start at once on a loaded machine), and stopped when this
 * process exits. In the lab (a network of its own, no other readers) it serves without read
 * authorization: --allow-anonymous-read.
 */
export async function startServe(store, args = [], opts = {}) {
  const env = {VMI_CHUNK_SIZE: undefined, VMI_PEERS: undefined, ...opts.env} // as vmiEnv
  const anonymous = opts.netns ? ['--allow-anonymous-read'] : []
  const s = await startTestServe(store, [...anonymous, ...args], {...opts, env, startTimeoutMs: 30_000})
  track(s.child)
  const metricsUrl = `${s.url}/metrics`
  return {...s, pid: s.child.pid, metrics: () => (opts.netns ? httpTextIn(opts.netns, metricsUrl) : httpText(metricsUrl))}
}

export function httpText(url) {
  return new Promise((resolve, reject) => {
    const req = http.get(url, {agent: false}, (res) => {
      let s = ''
      res.setEncoding('utf8')
      res.on('data', (d) => (s += d))
      res.on('end', () => resolve(s))
    })
    req.on('error', reject)
    req.setTimeout(10_000, () => req.destroy(new Error(`timeout: ${url}`)))
  })
}

/**
 * GET a URL from inside a network namespace (curl there): the body. `fail` false: any HTTP
 * answer (a 404 too) resolves; only no answer rejects.
 */
export function httpTextIn(netns, url, fail = true) {
  return new Promise((resolve, reject) => {
    const c = spawn('ip', ['netns', 'exec', netns, 'curl', fail ? '-sSf' : '-sS', '--max-time', '10', url], {stdio: ['ignore', 'pipe', 'pipe']})
    let out = ''
    let err = ''
    c.stdout.on('data', (d) => (out += d))
    c.stderr.on('data', (d) => (err += d))
    c.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`GET ${url} in ${netns}: ${err.trim() || `curl exited ${code}`}`))))
  })
}

/**
 * nginx over a store directory as test/helpers/nginx.js starts it (only the store layout published;
 * sendfile), tuned as the anchor at its best (access log off, tcp_nopush, long keep-alive), in a
 * lab node's namespace when `netns` is given, plus optionally one raw file at /raw/<name> (the curl anchor).
 * @param {string} rootDir @param {{rawFile?: string, netns?: string, host?: string, port?: number}} [opts]
 */
export async function startNginx(rootDir, {rawFile, netns, host = '127.0.0.1', port} = {}) {
  const extraLocations = rawFile ? `    location = /raw/${path.basename(rawFile)} { alias ${path.resolve(rawFile)}; }\n` : ''
  const config = {host, workerConnections: 1024, accessLog: false, tcpNopush: true, keepaliveTimeout: '60s', keepaliveRequests: 1_000_000, extraLocations, generatedBy: 'bench/lib/common.js'}
  // in a namespace, any answer from curl there (a 404 for /) means it is up
  const probe = netns ? (url) => httpTextIn(netns, url + '/', false).then(() => true, () => false) : undefined
  const nginx = await startTestNginx(rootDir, {config, netns, port, probe})
  return {...nginx, version: spawnSync('nginx', ['-v'], {encoding: 'utf8'}).stderr.trim()}
}

export {metricSum}

/** Chunk bytes a `vmi serve` has sent (its /metrics), for seed egress. */
export async function servedObjectBytes(serve) {
  return metricSum(await serve.metrics(), 'vmi_served_bytes_total', {kind: 'objects'})
}

// ----------------------------------------------------------------- CPU of long-running servers

const CLK_TCK = 100 // USER_HZ on Linux

function procTable() {
  const rows = new Map()
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue
    try {
      const s = readFileSync(`/proc/${name}/stat`, 'utf8')
      const rest = s.slice(s.lastIndexOf(')') + 2).split(' ') // fields from 3 (state) on
      rows.set(Number(name), {ppid: Number(rest[1]), utime: Number(rest[11]), stime: Number(rest[12]), cutime: Number(rest[13]), cstime: Number(rest[14])})
    } catch {
      /* gone */
    }
  }
  return rows
}

/** CPU seconds used so far by the processes `pids` and all their live descendants (plus their reaped children). */
export function treeCpuSeconds(pids) {
  const t = procTable()
  const kids = new Map()
  for (const [pid, r] of t) {
    if (!kids.has(r.ppid)) kids.set(r.ppid, [])
    kids.get(r.ppid).push(pid)
  }
  let ticks = 0
  const seen = new Set()
  const stack = [...pids].filter((p) => p !== undefined)
  while (stack.length) {
    const p = stack.pop()
    if (seen.has(p)) continue
    seen.add(p)
    const r = t.get(p)
    if (!r) continue
    ticks += r.utime + r.stime + r.cutime + r.cstime
    for (const k of kids.get(p) ?? []) stack.push(k)
  }
  return ticks / CLK_TCK
}

/**
 * A measurement window: machine-wide busy CPU, and the CPU of our own
 * long-running servers (`pids`), from start() to end(). end(childCpu)
 * returns {wall, busyCores, serverCpu, serverCores, irqCores, othersCores}:
 * irqCores is interrupt and softirq time (loopback networking lands there,
 * charged to no process); othersCores is what the rest of the machine used
 * (busy − irq − the timed child's CPU − our servers).
 */
export function cpuWindow(pids = []) {
  const c0 = cpuTimes()
  const s0 = treeCpuSeconds(pids)
  const t0 = performance.now()
  return {
    end(childCpu = 0) {
      const wall = (performance.now() - t0) / 1000
      const c1 = cpuTimes()
      const serverCpu = treeCpuSeconds(pids) - s0
      const busy = c0 && c1 ? c1.busy - c0.busy : NaN
      const irq = c0 && c1 ? c1.irq - c0.irq : NaN
      return {
        wall,
        busyCores: busy / wall,
        serverCpu,
        serverCores: serverCpu / wall,
        irqCores: irq / wall,
        othersCores: Math.max(0, busy - irq - childCpu - serverCpu) / wall,
        stealCores: c0 && c1 ? (c1.steal - c0.steal) / wall : undefined,
      }
    },
  }
}

/**
 * Run `fn` (which returns a runTimed result) in a cpuWindow over our servers `pids`: the result gets
 * serverCpu, irqCores, othersCores and stealCores.
 * @template {Record<string, any>} R @param {(number | undefined)[]} pids @param {() => Promise<R>} fn
 */
export async function withServers(pids, fn) {
  const w = cpuWindow(pids)
  const r = await fn()
  const {serverCpu, irqCores, othersCores, stealCores} = w.end(cpuOf(r))
  return Object.assign(r, {serverCpu, irqCores, othersCores, stealCores})
}

// ----------------------------------------------------------------- per-run preparation (as bench/store.js)

export function prepSettings() {
  const quietWaitMs = Number(process.env.VMI_BENCH_QUIET_WAIT ?? 60) * 1000
  const pretouchBytes =
    process.env.VMI_BENCH_PRETOUCH_GIB !== undefined ? Number(process.env.VMI_BENCH_PRETOUCH_GIB) * GiB : freePageReporting() ? 3 * GiB : 0
  return {quietWaitMs, pretouchBytes}
}

/**
 * Before every measured run: `sync`, read the given files and directories
 * into the page cache, wait (bounded) for the rest of the machine to be idle,
 * and pre-touch memory (see bench/README.md, Method). Returns how the machine
 * looked: {waitedMs, startedQuiet, busyCoresBefore}.
 */
/** @param {{files?: string[], dirs?: string[]}} [warm] @param {{quietWaitMs: number, pretouchBytes: number}} [settings] */
export async function prepare({files = [], dirs = []} = {}, settings = prepSettings()) {
  settle()
  for (const f of files) await warmFile(f)
  for (const d of dirs) await warmDir(d)
  const q = settings.quietWaitMs > 0 ? await waitQuiet({maxWaitMs: settings.quietWaitMs}) : undefined
  if (settings.pretouchBytes > 0) pretouch(settings.pretouchBytes)
  return q ? {waitedMs: q.waitedMs, startedQuiet: q.quiet, busyCoresBefore: q.busyCores} : {}
}


// ----------------------------------------------------------------- what was measured

export function distFingerprint() {
  const h = createHash('sha256')
  const walk = (d) => {
    for (const e of readdirSync(d, {withFileTypes: true}).sort((a, b) => (a.name < b.name ? -1 : 1))) {
      const p = path.join(d, e.name)
      if (e.isDirectory()) walk(p)
      else if (e.name.endsWith('.js')) h.update(path.relative(ROOT, p)).update(readFileSync(p))
    }
  }
  walk(path.join(ROOT, 'dist'))
  return h.digest('hex').slice(0, 16)
}

export function gitInfo() {
  const g = (args) => spawnSync('git', args, {cwd: ROOT, encoding: 'utf8'}).stdout?.trim()
  const dirty = (g(['status', '--porcelain', '--', 'src']) || '').split('\n').filter(Boolean).length
  let distOlder = false
  try {
    const distTime = statSync(path.join(ROOT, 'dist', 'index.js')).mtimeMs
    const newest = (g(['ls-files', 'src']) || '')
      .split('\n')
      .filter(Boolean)
      .map((p) => statSync(path.join(ROOT, p), {throwIfNoEntry: false})?.mtimeMs ?? 0)
    distOlder = Math.max(0, ...newest) > distTime
  } catch {}
  return {head: g(['rev-parse', '--short', 'HEAD']), dirtySrcFiles: dirty, distOlderThanSrc: distOlder}
}

/** The first line a tool prints about its version (nginx -v prints it on stderr). */
function version(cmd, args = ['--version']) {
  const r = spawnSync(cmd, args, {encoding: 'utf8'})
  return (r.stdout || r.stderr || '').trim().split('\n')[0] || undefined
}

/** machineInfo() of the store bench plus the tools these benches use. */
export function machineRecord(workDir, hashBackend) {
  return {
    ...machineInfo(workDir),
    hashBackend,
    curl: version('curl'),
    nginx: version('nginx', ['-v']),
    nbdkit: version('nbdkit'),
    qemuImg: version('qemu-img'),
    qemuSystem: version('qemu-system-x86_64'),
    zstd: version('zstd'),
    kvmUsable: existsSync('/dev/kvm') && /\b(vmx|svm)\b/.test(readFileSync('/proc/cpuinfo', 'utf8')) && !existsSync('/sys/module/kvm_pvm'),
  }
}

/** The Debian boot image (scripts/boot-image-path.sh), or {reason} when it is not built. */
export function findBootImage() {
  let dir
  try {
    dir = execFileSync('bash', [path.join(ROOT, 'scripts', 'boot-image-path.sh')], {encoding: 'utf8'}).trim()
  } catch (err) {
    return {reason: `scripts/boot-image-path.sh failed: ${err.message.split('\n')[0]}`}
  }
  const file = path.join(dir, 'disk.raw')
  if (!existsSync(path.join(dir, '.complete')) || !existsSync(file)) return {dir, reason: `not built: no ${existsSync(file) ? '.complete stamp' : 'disk.raw'} in ${dir}`}
  let info
  try {
    info = Object.fromEntries(
      readFileSync(path.join(dir, 'info'), 'utf8')
        .split('\n')
        .filter((l) => l.includes('='))
        .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
    )
  } catch {}
  return {dir, file, info}
}

/** Build the boot image when missing and we are root (scripts/build-boot-image.sh, ~90 s). */
export function ensureBootImage(log) {
  let img = findBootImage()
  if (img.file) return img
  if (process.getuid?.() !== 0) return {reason: `${img.reason}; not root, so not building it (scripts/build-boot-image.sh needs root)`}
  log(`${img.reason}: building it with scripts/build-boot-image.sh (~90 s, cached afterwards)`)
  const r = spawnSync('bash', [path.join(ROOT, 'scripts', 'build-boot-image.sh')], {stdio: ['ignore', 'ignore', 'inherit']})
  img = findBootImage()
  if (img.file) return {...img, builtNow: true}
  return {reason: `${img.reason}; scripts/build-boot-image.sh exited ${r.status}`}
}

/** The boot image (ensureBootImage), or exit 1 with the reason: `kind` cannot run without it. */
export function requireBootImage(kind, log) {
  const boot = ensureBootImage(log)
  if (boot.file) return boot
  console.error(`bench ${kind}: the Debian boot image is needed: ${boot.reason}`)
  process.exit(1)
}

/**
 * `--render JSON`: rewrite bench/results/<date>-<kind>.md from a saved
 * latest-<kind>.json with `render(R)`, print it, and exit.
 */
export async function rerenderAndExit(kind, jsonFile, render) {
  const R = JSON.parse(readFileSync(jsonFile, 'utf8'))
  const md = render(R)
  const files = await writeResults(kind, new Date(R.startedAt), md, R)
  console.log(md)
  process.stderr.write(`bench ${kind}: rewrote ${files.mdFile} from ${jsonFile}\n`)
  process.exit(0)
}

/**
 * Before measuring: `npm run build` when `build`, then dist/ must be built and
 * every tool of `tools` installed; otherwise exit 1 with the reason.
 */
export function ensureReady(kind, {build = false, tools = []} = {}) {
  if (build) {
    process.stderr.write(`bench ${kind}: building (npm run build)\n`)
    execFileSync('npm', ['run', 'build'], {cwd: ROOT, stdio: 'inherit'})
  }
  if (!existsSync(path.join(ROOT, 'dist', 'index.js'))) {
    console.error(`bench ${kind}: dist/ is not built; run \`npm run build\``)
    process.exit(1)
  }
  const missing = tools.filter((t) => !hasCommand(t))
  if (missing.length) {
    console.error(`bench ${kind}: ${missing.join(', ')} not installed (scripts/install-deps.sh installs ${missing.length > 1 ? 'them' : 'it'}); the benchmark needs ${missing.length > 1 ? 'them' : 'it'}`)
    process.exit(1)
  }
}

/**
 * The start of a benchmark run (after its options): log, clock, the build
 * and tools checked (ensureReady), a work directory, vmi's API, and what the
 * machine and build were. `finish(fields, render)` puts runFields before
 * `fields`, writes render(R) and R (writeResults), prints the markdown and
 * returns R.
 * @param {string} kind @param {{build?: boolean, tools?: string[]}} [ready]
 */
export async function startRun(kind, ready = {}) {
  const log = makeLog(kind)
  const t0 = performance.now()
  const startedAt = new Date()
  ensureReady(kind, ready)
  const {workDir, discard, trashStats} = workDirectory(`vmi-bench-${kind}-`, log)
  const dist = await loadVmi()
  /** @type {Record<string, any>} */
  const machine = machineRecord(workDir, dist.activeHashBackend())
  const git = gitInfo()
  const distAtStart = distFingerprint()
  log(`work dir ${workDir} (${machine.filesystem}); ${machine.cpuModel}, ${machine.cores} cores; hash backend ${machine.hashBackend}; load average ${loadAverage().join(' ')}`)
  return {
    log,
    startedAt,
    workDir,
    discard,
    trashStats,
    dist,
    machine,
    /** @param {Record<string, any>} fields @param {(R: Record<string, any>) => string} render */
    async finish(fields, render) {
      const R = {...runFields({startedAt, t0, machine, git, distAtStart}), ...fields}
      const md = render(R)
      const files = await writeResults(kind, startedAt, md, R)
      console.log(md)
      log(`wrote ${files.mdFile} and ${files.jsonFile}; total ${R.totalSeconds.toFixed(0)} s`)
      return R
    },
  }
}

/** How prepare() readied every run, in words for the report. @param {{quietWaitMs: number, pretouchBytes: number}} settings */
export function prepMethod(settings) {
  return {
    sync: '`sync` before every run, so writeback from one run does not land in the next',
    quiet: settings.quietWaitMs > 0 ? `before every run the bench waits (up to ${settings.quietWaitMs / 1000} s) until the rest of the machine uses < 0.3 cores` : 'no waiting for an idle machine',
    pretouch:
      settings.pretouchBytes > 0
        ? `just before every run a child process touches and frees ${(settings.pretouchBytes / GiB).toFixed(1)} GiB of memory (this VM reports free pages to the hypervisor; see bench/README.md)`
        : 'no memory pre-touch',
  }
}

/** What every result file starts with: when and how long, the machine, the build at the start and the end, the load at the end. */
export function runFields({startedAt, t0, machine, git, distAtStart}) {
  return {
    startedAt: startedAt.toISOString(),
    finishedAt: new Date().toISOString(),
    totalSeconds: (performance.now() - t0) / 1000,
    machine,
    git: {...git, distAtStart, distAtEnd: distFingerprint()},
    loadAverageAtEnd: loadAverage(),
  }
}

/** Write bench/results/<date>-<kind>.md and latest-<kind>.json. */
export async function writeResults(kind, startedAt, md, json) {
  await fsp.mkdir(RESULTS, {recursive: true})
  const mdFile = path.join(RESULTS, `${startedAt.toISOString().slice(0, 10)}-${kind}.md`)
  await fsp.writeFile(mdFile, md)
  await fsp.writeFile(path.join(RESULTS, `latest-${kind}.json`), JSON.stringify(json, null, 2) + '\n')
  return {mdFile: path.relative(ROOT, mdFile), jsonFile: `bench/results/latest-${kind}.json`}
}

/** Distinct object ids (and sizes) under a store's objects/ directory. */
export async function listObjects(store) {
  const dir = path.join(store, 'objects')
  const out = []
  for (const ab of (await fsp.readdir(dir)).sort()) {
    if (!/^[0-9a-f]{2}$/.test(ab)) continue
    for (const rest of (await fsp.readdir(path.join(dir, ab))).sort()) {
      if (!/^[0-9a-f]{62}$/.test(rest)) continue
      const st = await fsp.stat(path.join(dir, ab, rest))
      out.push({id: ab + rest, path: `/objects/${ab}/${rest}`, file: path.join(dir, ab, rest), size: st.size})
    }
  }
  return out
}

// ----------------------------------------------------------------- deterministic randomness (bench/sim.js, the load test's order)

/** sfc32 seeded from sha256(seed): a float in [0, 1). */
export function rng(seed) {
  const h = createHash('sha256').update(String(seed)).digest()
  let a = h.readUInt32LE(0)
  let b = h.readUInt32LE(4)
  let c = h.readUInt32LE(8)
  let d = h.readUInt32LE(12)
  const next = () => {
    a >>>= 0
    b >>>= 0
    c >>>= 0
    d >>>= 0
    let t = (a + b) | 0
    a = b ^ (b >>> 9)
    b = (c + (c << 3)) | 0
    c = (c << 21) | (c >>> 11)
    d = (d + 1) | 0
    t = (t + d) | 0
    c = (c + t) | 0
    return (t >>> 0) / 4294967296
  }
  for (let i = 0; i < 12; i++) next()
  return next
}

/** Fisher–Yates over the first `n` items of `a`, in place, with `rnd` (rng). */
export function shuffleInPlace(a, rnd, n = a.length) {
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rnd() * (i + 1))
    const t = a[i]
    a[i] = a[j]
    a[j] = t
  }
  return a
}

/** A seeded shuffle of `list` (a copy). */
export const shuffled = (list, seed) => shuffleInPlace([...list], rng(seed))
