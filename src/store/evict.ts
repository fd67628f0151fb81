/**
 * Cache budget: remove least-recently-used chunks until the objects fit in
 * `maxBytes`, never a chunk of a pinned image, of an image a running
 * operation holds (mounts, pulls), or of an image with no source (no remote
 * it was pulled or mounted from or pushed to: imported, committed, loaded
 * here) — such a chunk may be the only copy anywhere, so it is not cache.
 * Images that lose chunks are marked lazy: they stay listed, and their
 * chunks are fetched again when needed.
 */
import {promises as fsp} from 'node:fs'
import type {LocalStore} from './local-store.js'
import {acquireGcLock} from './lock.js'
import {uniqueChunkIds} from './manifest.js'

export interface EvictInit {
  maxBytes: number
  /** Extra image ids to protect (besides pins and live locks). */
  keep?: string[]
  dryRun?: boolean
  waitMs?: number
}

export interface EvictResult {
  totalBytes: number
  maxBytes: number
  removedObjects: number
  freedBytes: number
  /** Images that now lack chunks (marked lazy). */
  thinnedImages: string[]
  /** Bytes over the budget that could not be freed (all protected). */
  overBudget: number
  /** Images kept whole because no remote is known to hold them (they have no source). */
  onlyCopyImages: string[]
}

export async function evict(store: LocalStore, init: EvictInit): Promise<EvictResult> {
  const lock = await acquireGcLock(store.layout, {waitMs: init.waitMs})
  try {
    const objects: {id: string; size: number; used: number}[] = []
    let total = 0
    for await (const id of store.listObjectIds()) {
      try {
        const st = await fsp.stat(store.layout.objectPath(id))
        objects.push({id, size: st.size, used: st.mtimeMs})
        total += st.size
      } catch {
        /* vanished */
      }
    }
    const result: EvictResult = {totalBytes: total, maxBytes: init.maxBytes, removedObjects: 0, freedBytes: 0, thinnedImages: [], overBudget: 0, onlyCopyImages: []}
    if (total <= init.maxBytes) return result
    const protectedIds = new Set<string>([...lock.roots, ...(init.keep ?? []), ...(await store.listPins())])
    const sourced = new Set(await store.listSourced())
    for await (const id of store.listManifestIds())
      if (!sourced.has(id)) {
        protectedIds.add(id)
        result.onlyCopyImages.push(id)
      }
    const protectedChunks = new Set<string>()
    for (const id of protectedIds) {
      if (!(await store.hasManifest(id))) continue
      for (const c of uniqueChunkIds(await store.getManifest(id))) protectedChunks.add(c)
    }
    objects.sort((a, b) => a.used - b.used)
    const removed = new Set<string>()
    for (const o of objects) {
      if (total - result.freedBytes <= init.maxBytes) break
      if (protectedChunks.has(o.id)) continue
      if (!init.dryRun) await fsp.rm(store.layout.objectPath(o.id), {force: true})
      removed.add(o.id)
      result.removedObjects++
      result.freedBytes += o.size
    }
    result.overBudget = Math.max(0, total - result.freedBytes - init.maxBytes)
    if (removed.size > 0) {
      for await (const id of store.listManifestIds()) {
        const m = await store.getManifest(id).catch(() => undefined)
        if (!m) continue
        for (const c of uniqueChunkIds(m))
          if (removed.has(c)) {
            result.thinnedImages.push(id)
            if (!init.dryRun) await store.setLazy(id, true)
            break
          }
      }
    }
    return result
  } finally {
    await lock.release()
  }
}
