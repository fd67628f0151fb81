/**
 * The hypervisor hand-off of a mount: a shell command line with the mount's
 * addresses substituted, run for the life of the mount.
 *
 * The command runs in a process group of its own (a new session), so that
 * stopping it reaches everything it started — `sh`, the hypervisor, whatever
 * they forked — and not only the shell: signalling `sh -c` alone left the
 * hypervisor running without its disk. Stopping sends SIGTERM to the group,
 * then SIGKILL after a grace period, and waits until no member is left.
 * The group is stopped too when its leader exits on its own (leftover
 * background processes would use a disk about to go away), and with SIGKILL
 * if this process exits while the group runs.
 */
import {spawn} from 'node:child_process'
import {readdirSync, readFileSync} from 'node:fs'
import os from 'node:os'

export const EXEC_PLACEHOLDERS = ['nbd', 'file', 'socket', 'device', 'vhost'] as const
export type ExecPlaceholder = (typeof EXEC_PLACEHOLDERS)[number]
export type MountAddresses = Partial<Record<ExecPlaceholder, string>>

const PLACEHOLDER = /\{(nbd|file|socket|device|vhost)\}/g

/** The placeholders a command line uses, each once, in order of appearance. */
export function execPlaceholders(template: string): ExecPlaceholder[] {
  return [...new Set([...template.matchAll(PLACEHOLDER)].map((m) => m[1] as ExecPlaceholder))]
}

/** The command line with each placeholder replaced; every placeholder used must have an address. */
export function execCommandLine(template: string, addr: MountAddresses): string {
  return template.replace(PLACEHOLDER, (whole, k: ExecPlaceholder) => {
    const v = addr[k]
    if (v === undefined) throw new Error(`no address for ${whole}`)
    return v
  })
}

export interface HypervisorInit {
  /** Aborting stops the whole process group. */
  signal?: AbortSignal
  /** How long the group has between SIGTERM and SIGKILL, ms (default 10 000). */
  graceMs?: number
}

export interface HypervisorExit {
  /** The leader's exit code, or 128 + the number of the signal that ended it. */
  exitCode: number
  /** True when `signal` stopped it (not when it ended on its own). */
  stopped: boolean
}

/** Run `sh -c commandLine` in a process group of its own until it ends or `signal` aborts. */
export async function runHypervisor(commandLine: string, init: HypervisorInit = {}): Promise<HypervisorExit> {
  const graceMs = init.graceMs ?? 10_000
  // detached: setsid(), so the shell leads a new process group whose id is its pid
  const child = spawn('/bin/sh', ['-c', commandLine], {stdio: 'inherit', detached: true})
  const spawned = new Promise<void>((resolve, reject) => {
    child.once('spawn', resolve)
    child.once('error', reject)
  })
  const exited = new Promise<{code: number | null; sig: NodeJS.Signals | null}>((resolve) => child.once('exit', (code, sig) => resolve({code, sig})))
  await spawned
  const pgid = child.pid!
  // a last resort: this process ending (an uncaught error, a second Ctrl-C) takes the group along
  const onExit = () => signalGroup(pgid, 'SIGKILL')
  process.on('exit', onExit)
  let stopped = false
  let stopping: Promise<void> | undefined
  const stop = () => (stopping ??= stopGroup(pgid, graceMs))
  const onAbort = () => {
    stopped = true
    void stop()
  }
  try {
    if (init.signal?.aborted) onAbort()
    else init.signal?.addEventListener('abort', onAbort, {once: true})
    const {code, sig} = await exited
    await stop()
    return {exitCode: code ?? 128 + (sig ? (os.constants.signals[sig] ?? 15) : 15), stopped}
  } finally {
    init.signal?.removeEventListener('abort', onAbort)
    process.off('exit', onExit)
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

function signalGroup(pgid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(-pgid, sig)
  } catch {
    /* the group is gone */
  }
}

/**
 * SIGTERM to the group, SIGKILL after `graceMs`, then wait (bounded) until no
 * member is left.
 */
async function stopGroup(pgid: number, graceMs: number): Promise<void> {
  if (!groupAlive(pgid)) return
  signalGroup(pgid, 'SIGTERM')
  const deadline = Date.now() + graceMs
  while (groupAlive(pgid) && Date.now() < deadline) await sleep(20)
  if (!groupAlive(pgid)) return
  signalGroup(pgid, 'SIGKILL')
  // SIGKILL cannot be caught; the bound only covers a process stuck in the kernel
  const killDeadline = Date.now() + 5000
  while (groupAlive(pgid) && Date.now() < killDeadline) await sleep(20)
}

/**
 * Whether any process of the group still runs. A zombie (dead, not yet
 * reaped by its new parent) does not count: it holds no resources and
 * cannot be signalled away.
 */
export function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0)
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
  let entries: string[]
  try {
    entries = readdirSync('/proc').filter((e) => /^\d+$/.test(e))
  } catch {
    return true // no /proc: trust kill()
  }
  for (const pid of entries) {
    let stat: string
    try {
      stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    } catch {
      continue // ended meanwhile
    }
    // pid (comm) state ppid pgrp …; comm may hold spaces and parentheses
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    if (Number(fields[2]) === pgid && fields[0] !== 'Z') return true
  }
  return false
}
