/**
 * `commit`: a new image from a mount's overlay: the base image with the
 * guest's writes applied. Only chunks the guest changed are new; the new
 * manifest names the base as its parent.
 */
import {promises as fsp} from 'node:fs'
import path from 'node:path'
import {UsageError} from '../errors.js'
import type {FetchChain} from '../peer/chain.js'
import {isAllZero} from '../store/chunker.js'
import {hash} from '../store/hash.js'
import {withLock} from '../store/lock.js'
import {ChunkListBuilder, chunkLength, expandChunks, MANIFEST_VERSION, uniqueChunkIds, type Manifest} from '../store/manifest.js'
import {formatRef, parseRef} from '../store/ref.js'
import {OVERLAY_BLOCK, Overlay} from './overlay.js'
import {acquireOwner} from '../util/owner-lock.js'

export interface CommitResult {
  id: string
  ref: string
  parent: string
  changedChunks: number
  newChunks: number
  newBytes: number
}

export async function commitOverlay(chain: FetchChain, overlayDir: string, target: string, signal?: AbortSignal): Promise<CommitResult> {
  const ref = parseRef(target)
  const store = chain.local
  let meta
  try {
    meta = JSON.parse(await fsp.readFile(path.join(overlayDir, 'meta.json'), 'utf8'))
  } catch {
    throw new UsageError(`${overlayDir} is not a vmi overlay (no meta.json); mount with --overlay DIR to keep one`)
  }
  const base: Manifest = await store.getManifest(meta.base)
  // a running mount may be changing the overlay: commit only one that no mount owns
  const owner = await acquireOwner('overlay', overlayDir, 'vmi commit')
  let overlay: Overlay
  try {
    overlay = await Overlay.open(overlayDir, {base: meta.base, virtualSize: base.virtualSize, readOnly: true})
  } catch (err) {
    await owner.release()
    throw err
  }
  try {
    return await withLock(store.layout, {op: 'commit'}, async () => {
      const ids = expandChunks(base)
      // a ref never names an image whose chunks are not all here: what a lazy mount left unread is fetched now (or the commit fails)
      const here = store.presentObjectsSync(uniqueChunkIds(base))
      const absent = new Map<string, number>()
      for (let i = 0; i < ids.length; i++) if (ids[i] !== null && !here.has(ids[i]!)) absent.set(ids[i]!, chunkLength(base, i))
      if (absent.size > 0) await chain.fetchMany([...absent].map(([id, length]) => ({id, length})), {signal})
      const builder = new ChunkListBuilder()
      let changed = 0
      let newChunks = 0
      let newBytes = 0
      for (let i = 0; i < ids.length; i++) {
        const start = i * base.chunkSize
        const len = chunkLength(base, i)
        const firstBlock = start / OVERLAY_BLOCK
        const endBlock = Math.ceil((start + len) / OVERLAY_BLOCK)
        if (!overlay.touched(firstBlock, endBlock)) {
          builder.push(ids[i])
          continue
        }
        changed++
        const data = ids[i] === null ? Buffer.alloc(len) : Buffer.from((await chain.fetch(ids[i]!)).data)
        for (let b = firstBlock; b < endBlock; b++) {
          const off = b * OVERLAY_BLOCK - start
          const n = Math.min(OVERLAY_BLOCK, len - off)
          const st = overlay.state(b)
          if (st === 'zeroed') data.fill(0, off, off + n)
          else if (st === 'written') (await overlay.readBlocks(b * OVERLAY_BLOCK, n)).copy(data, off)
        }
        if (isAllZero(data)) {
          builder.push(null)
          continue
        }
        const id = hash(data)
        builder.push(id)
        if (await store.putObject(id, data)) {
          newChunks++
          newBytes += len
        }
      }
      const manifest: Manifest = {
        version: MANIFEST_VERSION,
        virtualSize: base.virtualSize,
        chunkSize: base.chunkSize,
        chunks: builder.entries,
        sourceFormat: base.sourceFormat,
        created: new Date().toISOString(),
        parent: meta.base,
      }
      const id = await store.putManifest(manifest)
      await store.writeRef(ref, id)
      return {id, ref: formatRef(ref), parent: meta.base, changedChunks: changed, newChunks, newBytes}
    })
  } finally {
    await overlay.close()
    await owner.release()
  }
}
