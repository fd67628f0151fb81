/**
 * `gc`: delete what no ref, running mount or operation in progress reaches,
 * plus stale staging files left by crashed processes.
 */
import {promises as fsp} from 'node:fs'
import path from 'node:path'
import {silentProgress, type ProgressReporter} from '../progress.js'
import {pidAlive, pidOfTmpName, readdirOrEmpty} from '../util/fs-util.js'
import type {LocalStore} from './local-store.js'
import {acquireGcLock} from './lock.js'
import {uniqueChunkIds} from './manifest.js'

export interface GcInit {
  dryRun?: boolean
  /** Extra image ids to keep (besides refs and live locks). */
  keep?: string[]
  /** tmp/ files of live processes older than this are removed too (default 24 h), unless the process holds a lock. */
  tmpMaxAgeMs?: number
  waitMs?: number
  progress?: ProgressReporter
}

export interface GcResult {
  dryRun: boolean
  keptImages: number
  removedManifests: string[]
  removedObjects: number
  freedBytes: number
  removedTmpFiles: number
  freedTmpBytes: number
  /** Roots that had no manifest (named by a ref or a lock). */
  missingRoots: string[]
}

export async function gc(store: LocalStore, init: GcInit = {}): Promise<GcResult> {
  const dryRun = init.dryRun ?? false
  const progress = init.progress ?? silentProgress
  const lock = await acquireGcLock(store.layout, {waitMs: init.waitMs})
  try {
    const roots = new Set<string>([...lock.roots, ...(init.keep ?? []), ...(await store.listPins())])
    // a damaged ref names an unknown image: collecting now could delete what it keeps (fsck --repair first)
    for (const r of await store.listRefs({strict: true})) roots.add(r.id)
    const live = new Set<string>()
    const missingRoots: string[] = []
    let keptImages = 0
    for (const id of roots) {
      if (!(await store.hasManifest(id))) {
        missingRoots.push(id)
        continue
      }
      keptImages++
      for (const c of uniqueChunkIds(await store.getManifest(id))) live.add(c)
    }
    const removedManifests: string[] = []
    for await (const id of store.listManifestIds()) {
      if (roots.has(id)) continue
      removedManifests.push(id)
      if (!dryRun) await store.deleteManifest(id)
    }
    let removedObjects = 0
    let freedBytes = 0
    let scanned = 0
    progress.start('collecting garbage', undefined, 'items')
    for await (const id of store.listObjectIds()) {
      progress.update(++scanned)
      if (live.has(id)) continue
      const file = store.layout.objectPath(id)
      try {
        const st = await fsp.stat(file)
        if (!dryRun) await fsp.rm(file)
        removedObjects++
        freedBytes += st.size
      } catch {
        /* vanished meanwhile */
      }
    }
    progress.stop()
    if (!dryRun)
      for (const id of [...(await store.listPins()), ...(await store.listLazy()), ...(await store.listSourced())]) if (!(await store.hasManifest(id))) {
        await store.setPinned(id, false)
        await store.setLazy(id, false)
        await store.clearSources(id)
      }
    const tmp = await cleanTmp(store, dryRun, init.tmpMaxAgeMs ?? 24 * 3600_000, lock.pids)
    // empty shard directories stay: a pull or mount running meanwhile may be storing into one
    return {dryRun, keptImages, removedManifests, removedObjects, freedBytes, ...tmp, missingRoots}
  } finally {
    await lock.release()
  }
}

/**
 * Staging files whose process is gone, or older than `maxAgeMs`; never those
 * of a process holding a live lock (a mount's socket and overlay last as long
 * as the mount).
 */
async function cleanTmp(
  store: LocalStore,
  dryRun: boolean,
  maxAgeMs: number,
  lockHolders: Set<number>,
): Promise<{removedTmpFiles: number; freedTmpBytes: number}> {
  let removedTmpFiles = 0
  let freedTmpBytes = 0
  const dirs = [store.layout.tmpDir, store.layout.locksDir]
  for (const dir of dirs) {
    for (const name of await readdirOrEmpty(dir)) {
      if (dir === store.layout.locksDir && !name.endsWith('.tmp')) continue
      const file = path.join(dir, name)
      const pid = pidOfTmpName(name)
      if (pid !== undefined && lockHolders.has(pid)) continue
      let st
      try {
        st = await fsp.stat(file)
      } catch {
        continue
      }
      const stale = pid === undefined || pid === process.pid ? Date.now() - st.mtimeMs > maxAgeMs : !pidAlive(pid) || Date.now() - st.mtimeMs > maxAgeMs
      if (!stale) continue
      // a directory (a writer thread's staging directory, a mount's) counts by the files in it
      const size = st.isDirectory() ? await du(file) : {bytes: st.size, files: 1}
      removedTmpFiles += size.files
      freedTmpBytes += size.bytes
      if (!dryRun) await fsp.rm(file, {recursive: true, force: true})
    }
  }
  return {removedTmpFiles, freedTmpBytes}
}

/** Bytes and files below `dir`. */
async function du(dir: string): Promise<{bytes: number; files: number}> {
  const total = {bytes: 0, files: 0}
  for (const e of await fsp.readdir(dir, {withFileTypes: true}).catch(() => [])) {
    const p = path.join(dir, e.name)
    if (e.isDirectory()) {
      const sub = await du(p)
      total.bytes += sub.bytes
      total.files += sub.files
    } else {
      total.bytes += (await fsp.stat(p).catch(() => ({size: 0}))).size
      total.files++
    }
  }
  return total
}
