/**
 * Coordination between gc and everything else that writes a store.
 *
 * Each writing operation (import, load, tag, pull, mount …) creates
 * `locks/<pid>-<rand>-<op>.json` ({pid, op, kind, roots}) for its lifetime.
 * `gc` creates `locks/gc` exclusively. Each side creates its own file first
 * and then looks for the other's, so the two can never both proceed:
 * - a `write` lock and gc exclude each other (the writer's new objects are
 *   not yet reachable from any ref, so gc must not run meanwhile);
 * - a `root` lock (long-running readers such as mounts and pulls) lets gc
 *   run, and gc keeps every image it names; it is only taken while no gc
 *   runs (one already running would not know about it).
 * A lock whose process is gone (kill -9) is stale and ignored/removed.
 */
import {closeSync, openSync, promises as fsp, unlinkSync, writeSync} from 'node:fs'
import {hostname} from 'node:os'
import path from 'node:path'
import {isErrno, StoreBusyError, storeWriteError} from '../errors.js'
import {pidAlive, readdirOrEmpty, tmpName} from '../util/fs-util.js'
import type {StoreLayout} from './layout.js'

export type LockKind = 'write' | 'root'

export interface LockInfo {
  pid: number
  host: string
  op: string
  kind: LockKind
  roots: string[]
  started: string
}

export interface StoreLock {
  readonly file: string
  setRoots(roots: string[]): Promise<void>
  release(): Promise<void>
}

export interface LockInit {
  op: string
  kind?: LockKind
  roots?: string[]
  /** How long to wait for a running gc, in ms (default 120 s). */
  waitMs?: number
  signal?: AbortSignal
}

const GC_LOCK = 'gc'
const held = new Set<string>()
let exitHook = false

function installExitHook(): void {
  if (exitHook) return
  exitHook = true
  process.on('exit', () => {
    for (const f of held) {
      try {
        unlinkSync(f)
      } catch {
        /* already gone */
      }
    }
  })
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

async function readLock(file: string): Promise<LockInfo | undefined> {
  try {
    const info = JSON.parse(await fsp.readFile(file, 'utf8')) as LockInfo
    return typeof info?.pid === 'number' ? info : undefined
  } catch {
    return undefined
  }
}

function live(info: LockInfo | undefined): info is LockInfo {
  return info !== undefined && (info.host !== hostname() || pidAlive(info.pid))
}

async function gcHolder(layout: StoreLayout): Promise<LockInfo | undefined> {
  const file = path.join(layout.locksDir, GC_LOCK)
  const info = await readLock(file)
  if (live(info)) return info
  // a gc lock can be seen empty for an instant while it is being written
  try {
    const st = await fsp.stat(file)
    if (Date.now() - st.mtimeMs < 2000 && info === undefined) return {pid: 0, host: '', op: 'gc', kind: 'write', roots: [], started: ''}
  } catch {
    return undefined
  }
  return undefined
}

/** Take an operation lock; waits while a gc runs (for either kind). */
export async function acquireLock(layout: StoreLayout, init: LockInit): Promise<StoreLock> {
  const {op, kind = 'write', waitMs = 120_000, signal} = init
  let roots = init.roots ?? []
  const file = path.join(layout.locksDir, tmpName(op) + '.json')
  const body = (): string =>
    JSON.stringify({pid: process.pid, host: hostname(), op, kind, roots, started: new Date().toISOString()} satisfies LockInfo)
  const deadline = Date.now() + waitMs
  installExitHook()
  for (;;) {
    try {
      await fsp.mkdir(layout.locksDir, {recursive: true})
      // written whole, then renamed: a reader never sees a partial lock
      await fsp.writeFile(file + '.tmp', body(), {flag: 'wx'})
      await fsp.rename(file + '.tmp', file)
    } catch (err) {
      throw storeWriteError(err, `lock file ${file}`)
    }
    held.add(file)
    // root locks wait too: a gc that started before this lock existed does not know what it protects
    const gc = await gcHolder(layout)
    if (!gc) break
    held.delete(file)
    await fsp.rm(file, {force: true})
    if (Date.now() > deadline) throw new StoreBusyError(`store ${layout.root} is busy: gc (pid ${gc.pid}) is running`, {data: {pid: gc.pid}})
    if (signal?.aborted) throw signal.reason
    await sleep(200)
  }
  return {
    file,
    async setRoots(r: string[]) {
      roots = r
      await fsp.writeFile(file + '.tmp', body())
      await fsp.rename(file + '.tmp', file)
    },
    async release() {
      held.delete(file)
      await fsp.rm(file, {force: true})
    },
  }
}

export interface GcLock {
  /** Roots named by live `root` locks (mounts, pulls in progress). */
  roots: Set<string>
  /** Processes on this host holding a live lock (their tmp/ files are in use, however old). */
  pids: Set<number>
  release(): Promise<void>
}

/** Take the exclusive gc lock; waits (bounded) for writers to finish. */
export async function acquireGcLock(layout: StoreLayout, init: {waitMs?: number} = {}): Promise<GcLock> {
  const {waitMs = 120_000} = init
  const file = path.join(layout.locksDir, GC_LOCK)
  const deadline = Date.now() + waitMs
  installExitHook()
  for (;;) {
    await fsp.mkdir(layout.locksDir, {recursive: true}).catch((err) => {
      throw storeWriteError(err, 'the locks directory')
    })
    let fd: number
    try {
      fd = openSync(file, 'wx')
    } catch (err) {
      if (!isErrno(err, 'EEXIST')) throw storeWriteError(err, `lock file ${file}`)
      const other = await gcHolder(layout)
      if (other) throw new StoreBusyError(`store ${layout.root} is busy: another gc (pid ${other.pid}) is running`)
      await fsp.rm(file, {force: true}) // stale
      continue
    }
    writeSync(fd, JSON.stringify({pid: process.pid, host: hostname(), op: 'gc', kind: 'write', roots: [], started: new Date().toISOString()}))
    closeSync(fd)
    held.add(file)
    const {writers, roots, all} = await scanLocks(layout)
    if (writers.length === 0) {
      return {
        roots,
        pids: new Set(all.filter((l) => l.host === hostname()).map((l) => l.pid)),
        async release() {
          held.delete(file)
          await fsp.rm(file, {force: true})
        },
      }
    }
    held.delete(file)
    await fsp.rm(file, {force: true})
    if (Date.now() > deadline)
      throw new StoreBusyError(
        `store ${layout.root} is busy: ${writers.map((w) => `${w.op} (pid ${w.pid})`).join(', ')} in progress`,
        {data: {writers}},
      )
    await sleep(250)
  }
}

/** Live operation locks; removes stale ones. */
export async function scanLocks(layout: StoreLayout): Promise<{writers: LockInfo[]; roots: Set<string>; all: LockInfo[]}> {
  const writers: LockInfo[] = []
  const all: LockInfo[] = []
  const roots = new Set<string>()
  for (const name of await readdirOrEmpty(layout.locksDir)) {
    if (name === GC_LOCK || !name.endsWith('.json')) continue
    const file = path.join(layout.locksDir, name)
    const info = await readLock(file)
    if (!live(info)) {
      if (info !== undefined) await fsp.rm(file, {force: true}).catch(() => {})
      continue
    }
    all.push(info)
    if (info.kind === 'write') writers.push(info)
    for (const r of info.roots ?? []) roots.add(r)
  }
  return {writers, roots, all}
}

/** Run `fn` holding an operation lock. */
export async function withLock<T>(layout: StoreLayout, init: LockInit, fn: (lock: StoreLock) => Promise<T>): Promise<T> {
  const lock = await acquireLock(layout, init)
  try {
    return await fn(lock)
  } finally {
    await lock.release().catch(() => {})
  }
}
