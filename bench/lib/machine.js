// @ts-check
// What machine the numbers come from, and how busy it was.
import {execFileSync} from 'node:child_process'
import {readFileSync} from 'node:fs'
import os from 'node:os'

function sh(cmd, args) {
  try {
    return execFileSync(cmd, args, {encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore']}).trim()
  } catch {
    return undefined
  }
}

/** CPU model, cores, RAM, kernel, node, tool versions, filesystem of `workDir`. */
export function machineInfo(workDir) {
  const cpus = os.cpus()
  let flags = ''
  try {
    const m = /^flags\s*:\s*(.*)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))
    if (m) flags = m[1]
  } catch {}
  const simd = ['avx512f', 'avx2', 'sse4_1'].filter((f) => flags.split(/\s+/).includes(f))
  return {
    cpuModel: cpus[0]?.model ?? 'unknown',
    cores: os.availableParallelism(),
    simd,
    ramBytes: os.totalmem(),
    kernel: `${os.type()} ${os.release()}`,
    node: process.version,
    cp: sh('cp', ['--version'])?.split('\n')[0],
    b3sum: sh('b3sum', ['--version']),
    filesystem: workDir ? sh('findmnt', ['-n', '-o', 'FSTYPE', '--target', workDir]) ?? sh('stat', ['-f', '-c', '%T', workDir]) : undefined,
    mountOptions: workDir ? mountOptionsOf(workDir) : undefined,
    dirtyRatio: readNum('/proc/sys/vm/dirty_ratio'),
    dirtyBackgroundRatio: readNum('/proc/sys/vm/dirty_background_ratio'),
    // how an idle core wakes up (bench/mount.js, "By CPU placement")
    cpuidle: readText('/sys/devices/system/cpu/cpuidle/current_driver'),
    haltPollNs: readNum('/sys/module/haltpoll/parameters/guest_halt_poll_ns'),
  }
}

function readText(file) {
  try {
    return readFileSync(file, 'utf8').trim()
  } catch {
    return undefined
  }
}

function readNum(file) {
  const t = readText(file)
  return t === undefined || t === '' ? undefined : Number(t)
}

function mountOptionsOf(dir) {
  const target = sh('findmnt', ['-n', '-o', 'TARGET,FSTYPE,OPTIONS', '--target', dir])
  return target?.replace(/\s+/g, ' ')
}

/** Whole-machine CPU time so far, in seconds: busy (all but idle and iowait), total, irq (irq + softirq), steal. */
export function cpuTimes() {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n')[0] // cpu user nice system idle iowait irq softirq steal
    const v = line.trim().split(/\s+/).slice(1).map(Number)
    const hz = 100 // USER_HZ on Linux
    const idle = (v[3] ?? 0) + (v[4] ?? 0)
    const total = v.slice(0, 8).reduce((a, b) => a + b, 0)
    return {busy: (total - idle) / hz, total: total / hz, irq: ((v[5] ?? 0) + (v[6] ?? 0)) / hz, steal: (v[7] ?? 0) / hz}
  } catch {
    return undefined
  }
}

export function loadAverage() {
  return os.loadavg().map((x) => Math.round(x * 100) / 100)
}

/** @param {number} ms */
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

/**
 * Wait (up to `maxWaitMs`) until the rest of the machine is quiet: two
 * consecutive 250 ms windows in which all CPUs together were busy less than
 * `maxBusyCores`. Returns {waitedMs, quiet, busyCores} (the last window).
 */
export async function waitQuiet({maxWaitMs = 60_000, maxBusyCores = 0.3} = {}) {
  const start = Date.now()
  let calm = 0
  let busyCores = 0
  for (;;) {
    const a = cpuTimes()
    const t = Date.now()
    await sleep(250)
    const b = cpuTimes()
    if (!a || !b) return {waitedMs: 0, quiet: true, busyCores: undefined}
    busyCores = (b.busy - a.busy) / ((Date.now() - t) / 1000)
    calm = busyCores < maxBusyCores ? calm + 1 : 0
    if (calm >= 2) return {waitedMs: Date.now() - start, quiet: true, busyCores}
    if (Date.now() - start > maxWaitMs) return {waitedMs: Date.now() - start, quiet: false, busyCores}
  }
}
