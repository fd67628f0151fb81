/**
 * Running mounts make themselves discoverable: each writes
 * `run/mounts/<pid>.json` in its store (what it serves and its counters),
 * rewrites it every few seconds, and removes it when it ends. A file whose
 * process is gone (kill -9), or whose pid now belongs to another process,
 * is stale: listing ignores and removes it. The file is a report, never a
 * lock: gc's protection of a mounted image is its root lock (store/lock.ts).
 */
import {readFileSync, unlinkSync, promises as fsp} from 'node:fs'
import {hostname} from 'node:os'
import path from 'node:path'
import {pidAlive, readdirOrEmpty, tmpName} from '../util/fs-util.js'
import type {StoreLayout} from '../store/layout.js'
import type {MountStats} from './mount.js'

export interface MountRecord {
  pid: number
  host: string
  /** The process's start time in clock ticks since boot (/proc/PID/stat), to tell a reused pid; undefined off Linux. */
  procStart?: number
  started: string
  updated: string
  /** Image id, and the name it was mounted by. */
  image: string
  spec: string
  nbd: string
  socket?: string
  file?: string
  vhostUserBlk?: string
  device?: string
  overlay?: string
  readOnly: boolean
  stats: MountStats
}

/** Field 22 of /proc/PID/stat: when the process started (ticks since boot). */
export function processStart(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    // the command name (field 2) is in parentheses and may hold spaces
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    const v = Number(fields[19])
    return Number.isFinite(v) ? v : undefined
  } catch {
    return undefined
  }
}

function isLive(r: MountRecord): boolean {
  if (r.host !== hostname()) return true // another host's mount (a shared store): not ours to judge
  if (!pidAlive(r.pid)) return false
  const start = processStart(r.pid)
  return r.procStart === undefined || start === undefined || start === r.procStart
}

export interface MountRegistration {
  /** Rewrite the record now (also done every `intervalMs`). */
  update(): Promise<void>
  /** Stop updating and remove the record. */
  remove(): Promise<void>
}

/**
 * Publish a running mount. `record` is called for each write (counters change);
 * the file is written whole and renamed, so a reader never sees half of it.
 * Best effort: a store that cannot be written to (read-only) only means the
 * mount is not listed.
 */
export async function registerMount(
  layout: StoreLayout,
  record: () => Omit<MountRecord, 'pid' | 'host' | 'procStart' | 'started' | 'updated'>,
  init: {intervalMs?: number} = {},
): Promise<MountRegistration> {
  const file = path.join(layout.mountsDir, `${process.pid}.json`)
  const base = {pid: process.pid, host: hostname(), procStart: processStart(process.pid), started: new Date().toISOString()}
  let removed = false
  const onExit = () => {
    try {
      unlinkSync(file)
    } catch {
      /* already gone */
    }
  }
  // one write at a time, so that remove() can wait for the one in flight
  let pending = Promise.resolve()
  const write = () => (pending = pending.then(writeOnce))
  const writeOnce = async () => {
    if (removed) return
    const tmp = path.join(layout.tmpDir, tmpName('mount-state'))
    try {
      await fsp.mkdir(layout.mountsDir, {recursive: true})
      await fsp.writeFile(tmp, JSON.stringify({...base, updated: new Date().toISOString(), ...record()} satisfies MountRecord) + '\n')
      await fsp.rename(tmp, file)
    } catch {
      await fsp.rm(tmp, {force: true}).catch(() => {})
    }
  }
  process.on('exit', onExit)
  await write()
  const timer = setInterval(() => void write(), init.intervalMs ?? 2000)
  timer.unref()
  return {
    update: write,
    async remove() {
      removed = true
      clearInterval(timer)
      process.off('exit', onExit)
      await pending
      await fsp.rm(file, {force: true}).catch(() => {})
    },
  }
}

/** Whether `r` has what a reader of the record uses. */
function wellFormed(r: unknown): r is MountRecord {
  const m = r as MountRecord | null | undefined
  if (typeof m !== 'object' || m === null || typeof m.stats !== 'object' || m.stats === null) return false
  return Number.isSafeInteger(m.pid) && typeof m.host === 'string' && typeof m.image === 'string' && typeof m.nbd === 'string' && typeof m.stats.fetchedBytes === 'object' && m.stats.fetchedBytes !== null
}

/** The running mounts of this store, by pid; removes the records of mounts that are gone. */
export async function listMounts(layout: StoreLayout): Promise<MountRecord[]> {
  const out: MountRecord[] = []
  for (const name of (await readdirOrEmpty(layout.mountsDir)).sort()) {
    if (!/^\d+\.json$/.test(name)) continue
    const file = path.join(layout.mountsDir, name)
    let r: MountRecord | undefined
    let text: string
    try {
      text = await fsp.readFile(file, 'utf8')
    } catch {
      continue // vanished
    }
    try {
      r = JSON.parse(text) as MountRecord
    } catch {
      r = undefined
    }
    if (!wellFormed(r)) {
      // written whole and renamed, a mount's own record is never torn: this one was not written by a mount of this vmi.
      // It is a report, not a lock: removed once the process its name gives is gone, else left out
      if (!pidAlive(Number(name.slice(0, -'.json'.length)))) await fsp.rm(file, {force: true}).catch(() => {})
      continue
    }
    if (!isLive(r)) {
      await fsp.rm(file, {force: true}).catch(() => {})
      continue
    }
    out.push(r)
  }
  return out.sort((a, b) => a.pid - b.pid)
}
