// The fleet lab: a seed and N hosts on this machine, each in its own network
// namespace with its own address, wired by veth pairs into one Linux bridge
// that lives in a namespace of its own (the "switch"), every link shaped in
// both directions with tc tbf. Used by test/integration/fleet.test.js and by
// bench/fleet.js; docs in bench/README.md ("The fleet lab").
//
//   const why = labUnavailable()            // a reason, or undefined
//   const lab = await startLab({hosts: 4, hostRate: 100e6, seedRate: 100e6})
//   const child = lab.spawn(lab.hosts[0], process.execPath, [BIN, 'serve', ...])
//   await lab.setLink(lab.seed, false)      // pull the seed's cable
//   const {tx} = lab.counters(lab.seed)     // bytes the seed's interface sent
//   await lab.close()
//
// Invariants:
// - Every name carries the run's id, `vmilab-<pid>-<random>`; startLab
//   first deletes the labs of runs whose process is gone (the stale-lab
//   sweep), so a crashed or killed run leaves nothing for long.
// - The addresses (10.77.0.0/16 by default) exist only inside the lab's
//   namespaces; the root namespace gets no interface, route or address, so
//   no lab packet can leave the machine or meet the host's network.
// - close() — and, synchronously, process exit, SIGINT and SIGTERM — kill
//   every process inside the lab's namespaces (by pid, from `ip netns pids`)
//   and delete the namespaces, which takes the bridge and veths with them.
// - Shaping: tbf on the node end of each veth limits what the node sends
//   (its uplink), tbf on the switch end what it receives (its downlink).
//   This kernel has no netem: no latency, jitter or loss is emulated; the
//   only delay is queueing in the tbf buffers.
import {execFile, spawn, spawnSync} from 'node:child_process'
import {randomBytes} from 'node:crypto'

export const LAB_PREFIX = 'vmilab-'
const IFACE = 'eth0' // the node's end of its veth, inside the node's namespace
const BRIDGE = 'br0'

/** Why the lab cannot run here (not root, no iproute2, no veth/bridge/tbf), or undefined. */
export function labUnavailable() {
  if (process.platform !== 'linux') return 'the fleet lab needs Linux network namespaces'
  if (process.getuid?.() !== 0) return 'the fleet lab needs root (ip netns, tc)'
  for (const tool of ['ip', 'tc']) if (spawnSync('sh', ['-c', `command -v ${tool}`], {stdio: 'ignore'}).status !== 0) return `${tool} (iproute2) is not installed`
  // one throwaway namespace with a veth pair, a bridge and a tbf: the kernel has what the lab uses
  const ns = `${LAB_PREFIX}${process.pid}-probe${randomBytes(2).toString('hex')}`
  try {
    const r = ipBatch([`netns add ${ns}`]) || ipBatch([`link add name vp0 type veth peer name vp1`, `link add name ${BRIDGE} type bridge`, `link set vp1 master ${BRIDGE}`], {ns})
    if (r) return `cannot build namespaces, veths and a bridge: ${r}`
    const t = spawnSync('tc', ['-n', ns, 'qdisc', 'add', 'dev', 'vp0', 'root', 'tbf', 'rate', '100mbit', 'burst', '128kb', 'latency', '20ms'], {encoding: 'utf8'})
    if (t.status !== 0) return `tc tbf does not work: ${t.stderr.trim()}`
  } finally {
    ipBatch([`netns del ${ns}`], {force: true})
  }
  return undefined
}

/** Run `ip [-n NS] -batch` over some commands; returns the error text or '' on success. */
function ipBatch(lines, {force = false, ns} = {}) {
  if (lines.length === 0) return ''
  const r = spawnSync('ip', [...(ns ? ['-n', ns] : []), ...(force ? ['-force'] : []), '-batch', '-'], {input: lines.join('\n') + '\n', encoding: 'utf8'})
  return r.status === 0 ? '' : (r.stderr || `ip -batch exited ${r.status}`).trim()
}

function run(cmd, args) {
  const r = spawnSync(cmd, args, {encoding: 'utf8'})
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${(r.stderr || r.error?.message || `exit ${r.status}`).trim()}`)
  return r.stdout
}

function pidsIn(ns) {
  const r = spawnSync('ip', ['netns', 'pids', ns], {encoding: 'utf8'})
  return r.status === 0 ? r.stdout.split('\n').filter(Boolean).map(Number) : []
}

function alive(pid) {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return err.code === 'EPERM'
  }
}

/** Kill (SIGKILL, by pid) whatever runs inside the namespaces, then delete them. */
function destroyNamespaces(names) {
  for (const ns of names)
    for (const pid of pidsIn(ns))
      try {
        process.kill(pid, 'SIGKILL')
      } catch {
        /* gone already */
      }
  ipBatch(
    names.map((ns) => `netns del ${ns}`),
    {force: true},
  )
}

/**
 * Delete the labs of runs that are gone: namespaces named
 * `vmilab-<pid>-…` whose pid no longer runs. Returns their names.
 */
export function sweepStaleLabs() {
  const r = spawnSync('ip', ['netns', 'list'], {encoding: 'utf8'})
  if (r.status !== 0) return []
  const stale = r.stdout
    .split('\n')
    .map((l) => l.split(' ')[0])
    .filter((name) => {
      const m = new RegExp(`^${LAB_PREFIX}(\\d+)-`).exec(name)
      return m && !alive(Number(m[1]))
    })
  destroyNamespaces(stale)
  return stale
}

/** 200e6, '200mbit', '1.5gbit', '800kbit' → bits per second. */
export function parseRate(rate) {
  if (typeof rate === 'number') return rate
  const m = /^(\d+(?:\.\d+)?)\s*(k|m|g)?bit$/i.exec(String(rate).trim())
  if (!m) throw new Error(`bad link rate ${JSON.stringify(rate)} (bits per second, or like 200mbit)`)
  return Number(m[1]) * {undefined: 1, k: 1e3, m: 1e6, g: 1e9}[m[2]?.toLowerCase()]
}

/**
 * tbf for one direction of a link at `bits` per second. The bucket holds at
 * least 128 KiB so that a 64 KiB GSO packet passes whole (tbf segments
 * packets larger than its bucket); the queue holds 20 ms at the link's rate
 * and at least 256 KiB, so a burst of many flows is queued, not dropped.
 */
function tbfArgs(bits) {
  const bytesPerMs = bits / 8 / 1000
  const burst = Math.max(128 * 1024, Math.ceil(bytesPerMs * 2))
  const limit = Math.max(256 * 1024, Math.ceil(bytesPerMs * 20)) + burst
  return ['tbf', 'rate', `${Math.round(bits)}bit`, 'burst', String(burst), 'limit', String(limit)]
}

const labs = new Set()
let hooked = false
function hookExit() {
  if (hooked) return
  hooked = true
  // a test that crashes, a Ctrl-C, a SIGTERM: the lab goes with the process
  process.on('exit', () => {
    for (const lab of labs) lab.destroySync()
  })
  for (const sig of ['SIGINT', 'SIGTERM'])
    process.on(sig, () => {
      for (const lab of labs) lab.destroySync()
      process.exit(sig === 'SIGINT' ? 130 : 143)
    })
}

/**
 * Build a lab: a switch namespace with a bridge, the seed and `hosts` hosts,
 * each in its own namespace with one address on a veth into the bridge.
 *
 * - `seedRate`, `hostRate`: bits per second (or '200mbit') of the seed's and
 *   every host's link, both directions; `rates` overrides single nodes by name
 *   ({h3: 20e6}).
 * - `subnet`: the first two octets of the lab's /16 (default '10.77').
 *
 * Nodes: {name, ns, ip, rate}; the seed is 10.77.0.1, host i is 10.77.1.(i+1)
 * (then 10.77.2.x past 250 hosts).
 * @param {{hosts?: number, seedRate?: number | string, hostRate?: number | string, rates?: Record<string, number | string>, subnet?: string}} [init]
 */
export async function startLab({hosts = 4, seedRate = 200e6, hostRate = 200e6, rates = {}, subnet = '10.77'} = {}) {
  const why = labUnavailable()
  if (why) throw new Error(`fleet lab unavailable: ${why}`)
  const swept = sweepStaleLabs()
  const id = `${LAB_PREFIX}${process.pid}-${randomBytes(3).toString('hex')}`
  const sw = `${id}-sw`
  const nodes = []
  const mk = (name, ip, rate) => ({name, ns: `${id}-${name}`, ip, rate: parseRate(rates[name] ?? rate), switchPort: name})
  const seed = mk('seed', `${subnet}.0.1`, seedRate)
  nodes.push(seed)
  for (let i = 0; i < hosts; i++) nodes.push(mk(`h${i}`, `${subnet}.${1 + Math.floor(i / 250)}.${1 + (i % 250)}`, hostRate))

  const lab = new Lab(id, sw, seed, nodes.slice(1), swept)
  labs.add(lab)
  hookExit()
  try {
    const fail = (err) => {
      if (err) throw new Error(`building the lab: ${err}`)
    }
    fail(ipBatch([sw, ...nodes.map((n) => n.ns)].map((ns) => `netns add ${ns}`)))
    fail(ipBatch([`link add name ${BRIDGE} type bridge`, `link set ${BRIDGE} up`, `link set lo up`], {ns: sw}))
    for (const n of nodes)
      fail(
        ipBatch(
          [
            `link set lo up`,
            // the node's end is eth0 in its namespace; the switch's end is named after the node
            `link add name ${IFACE} type veth peer name ${n.switchPort} netns ${sw}`,
            `addr add ${n.ip}/16 dev ${IFACE}`,
            `link set ${IFACE} up`,
          ],
          {ns: n.ns},
        ),
      )
    fail(ipBatch(nodes.flatMap((n) => [`link set ${n.switchPort} master ${BRIDGE}`, `link set ${n.switchPort} up`]), {ns: sw}))
    for (const n of nodes) lab.shape(n, n.rate)
    // every host reaches the seed: a TCP connect to a closed port is refused only by a reachable
    // host. A bridge port forwards once the kernel has seen its carrier (linkwatch, up to a second
    // or more on a busy machine), so the first tries may go nowhere: up to 15 s in all.
    const deadline = Date.now() + 15_000
    for (const n of lab.hosts) {
      for (;;) {
        // stdin not a socket: bash sources ~/.bashrc when its stdin is one (Debian's SSH_SOURCE_BASHRC)
        const r = spawnSync('ip', ['netns', 'exec', n.ns, 'timeout', '2', 'bash', '-c', `exec 3<>/dev/tcp/${seed.ip}/1`], {encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe']})
        if (/refused/i.test(r.stderr)) break
        if (Date.now() > deadline) {
          // what the kernel says, for whoever reads the error
          const state = [['-n', sw, '-br', 'link'], ['-n', n.ns, 'neigh'], ['-n', n.ns, '-br', 'addr'], ['-n', seed.ns, '-br', 'addr'], ['-n', seed.ns, 'neigh'], ['-n', n.ns, 'route'], ['-n', n.ns, '-s', 'link', 'show', IFACE], ['-n', sw, '-s', 'link', 'show', n.switchPort]]
            .map((c) => `ip ${c.join(' ')}:\n${spawnSync('ip', c, {encoding: 'utf8'}).stdout.trim()}`)
            .concat(`tc -s qdisc (${n.name}):\n${spawnSync('tc', ['-n', n.ns, '-s', 'qdisc'], {encoding: 'utf8'}).stdout.trim()}`)
            .join('\n')
          throw new Error(`lab: ${n.name} cannot reach the seed at ${seed.ip}: ${r.stderr.trim() || `exit ${r.status}`}\n${state}`)
        }
        spawnSync('sleep', ['0.2'])
      }
    }
  } catch (err) {
    await lab.close()
    throw err
  }
  return lab
}

class Lab {
  constructor(id, sw, seed, hosts, swept) {
    this.id = id
    this.switchNs = sw
    this.seed = seed
    this.hosts = hosts
    this.nodes = [seed, ...hosts]
    this.swept = swept
    this.children = new Set()
    this.closed = false
  }

  /** http://IP:PORT of a node. */
  url(node, port) {
    return `http://${node.ip}:${port}`
  }

  /** (Re)shape a node's link, both directions, to `rate` bits per second. */
  shape(node, rate) {
    const bits = parseRate(rate)
    const a = tbfArgs(bits)
    run('tc', ['-n', node.ns, 'qdisc', 'replace', 'dev', IFACE, 'root', ...a])
    run('tc', ['-n', this.switchNs, 'qdisc', 'replace', 'dev', node.switchPort, 'root', ...a])
    node.rate = bits
  }

  /** Bring a node's link down or up at the switch (a pulled cable: the node sees no carrier). */
  setLink(node, up) {
    run('ip', ['-n', this.switchNs, 'link', 'set', node.switchPort, up ? 'up' : 'down'])
  }

  /** Bytes and packets the node's interface sent (tx) and received (rx) so far. */
  counters(node) {
    const j = JSON.parse(run('ip', ['-n', node.ns, '-s', '-j', 'link', 'show', IFACE]))[0].stats64
    return {tx: j.tx.bytes, rx: j.rx.bytes, txPackets: j.tx.packets, rxPackets: j.rx.packets}
  }

  /**
   * Bytes every node's link carried so far, read at the switch in one call
   * (no process blocked): {name: {sent, received}}, the node's upload and
   * download. For sampling during a run.
   */
  linkBytes() {
    return new Promise((resolve, reject) =>
      execFile('ip', ['-n', this.switchNs, '-s', '-j', 'link', 'show'], (err, out) => {
        if (err) return reject(err)
        const by = {}
        // the switch's port named after a node transmits what the node receives
        for (const l of JSON.parse(out)) if (l.stats64 && this.nodes.some((n) => n.switchPort === l.ifname)) by[l.ifname] = {sent: l.stats64.rx.bytes, received: l.stats64.tx.bytes}
        resolve(by)
      }),
    )
  }

  /** Start `cmd args` inside a node's namespace (spawn options as node's); killed by close(). */
  spawn(node, cmd, args = [], opts = {}) {
    if (this.closed) throw new Error('lab is closed')
    const child = spawn('ip', ['netns', 'exec', node.ns, cmd, ...args], {stdio: ['ignore', 'pipe', 'pipe'], ...opts})
    this.children.add(child)
    child.once('exit', () => this.children.delete(child))
    return child
  }

  /**
   * Run `cmd args` in a node's namespace to its end: {status, signal, stdout,
   * stderr}; killed (SIGKILL) after `timeoutMs` (default 60 s).
   */
  exec(node, cmd, args = [], {timeoutMs = 60_000, ...opts} = {}) {
    const child = this.spawn(node, cmd, args, opts)
    let stdout = ''
    let stderr = ''
    child.stdout?.on('data', (d) => (stdout += d))
    child.stderr?.on('data', (d) => (stderr += d))
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
    return new Promise((resolve) =>
      child.on('close', (status, signal) => {
        clearTimeout(timer)
        resolve({status, signal, stdout, stderr})
      }),
    )
  }

  /** GET a URL from inside a node's namespace (curl): the body, or throws. */
  async httpGet(node, url, {timeoutMs = 10_000} = {}) {
    const r = await this.exec(node, 'curl', ['-sSf', '--max-time', String(timeoutMs / 1000), url], {timeoutMs: timeoutMs + 5000})
    if (r.status !== 0) throw new Error(`GET ${url} from ${node.name}: ${r.stderr.trim() || `curl exited ${r.status ?? r.signal}`}`)
    return r.stdout
  }

  /**
   * Tear the lab down: SIGTERM the processes it started, wait up to `graceMs`,
   * then SIGKILL whatever still runs in its namespaces and delete them.
   */
  async close({graceMs = 3000} = {}) {
    if (this.closed) return
    const running = [...this.children].filter((c) => c.exitCode === null && c.signalCode === null)
    for (const c of running) c.kill('SIGTERM')
    const deadline = Date.now() + graceMs
    while (Date.now() < deadline && [...this.children].some((c) => c.exitCode === null && c.signalCode === null)) await new Promise((r) => setTimeout(r, 50))
    this.destroySync()
  }

  /** Synchronous teardown (process exit, signals): SIGKILL by pid, delete the namespaces. */
  destroySync() {
    if (this.closed) return
    this.closed = true
    labs.delete(this)
    destroyNamespaces([...this.nodes.map((n) => n.ns), this.switchNs])
  }
}
