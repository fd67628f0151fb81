/**
 * `push`: send an image to a remote (the seed). One batch missing-check,
 * parallel uploads of only what the remote lacks (bounded), then the
 * manifest, then the ref — so the remote's ref never names an image whose
 * chunks are not all there. Re-running after an interruption sends only
 * what is still missing.
 */
import {RemoteAuthError, RemoteError, VmiError} from '../errors.js'
import {silentProgress, type ProgressReporter} from '../progress.js'
import type {LocalStore} from '../store/local-store.js'
import {mapLimit} from '../util/map-limit.js'
import {chunkCount, uniqueChunkIds} from '../store/manifest.js'
import {encodeProfile} from '../store/profile.js'
import {formatRef, parseRef} from '../store/ref.js'
import type {WritableRemote} from './source.js'

export interface PushInit {
  /** Name:tag on the remote (default: the name pushed, when a ref was named). */
  as?: string
  concurrency?: number
  progress?: ProgressReporter
  signal?: AbortSignal
}

export interface PushResult {
  id: string
  ref?: string
  remote: string
  distinctChunks: number
  uploadedChunks: number
  uploadedBytes: number
  alreadyThere: number
  seconds: number
}

export async function pushImage(store: LocalStore, spec: string, remote: WritableRemote, init: PushInit = {}): Promise<PushResult> {
  const t0 = performance.now()
  const progress = init.progress ?? silentProgress
  const as = init.as !== undefined ? parseRef(init.as) : undefined
  const {id, manifest, ref} = await store.resolve(spec)
  // every write needs credentials (the manifest and the ref even when the remote has every chunk): without one, ask nothing
  if (!remote.canWrite) throw new RemoteAuthError(`pushing to ${remote.name} needs ${/^s3:/i.test(remote.url) ? 'S3 credentials' : 'a push token'}`, {data: {source: remote.name}})
  const target = as ?? ref
  const ids = [...uniqueChunkIds(manifest)]
  for (const c of ids) if (!(await store.hasObject(c))) throw new VmiError(`cannot push ${spec}: chunk ${c} is not in ${store.name} (pull or re-import it first)`)
  let uploadedBytes = 0
  let uploadedChunks = 0
  let alreadyThere = 0
  const bytes = (await store.getManifestBytes(id))!
  // a gc on the remote between our uploads and the manifest can drop chunks
  // (the manifest is then refused with 409): check again and resend, bounded
  for (let round = 0; ; round++) {
    const missing = await remote.missing(ids, {signal: init.signal})
    if (round === 0) alreadyThere = ids.length - missing.length
    progress.start(`pushing ${id.slice(0, 12)} to ${remote.url}`, missing.length, 'items')
    progress.update(0, {bytes: uploadedBytes})
    let done = 0
    try {
      await mapLimit(missing, init.concurrency ?? 8, async (c) => {
        init.signal?.throwIfAborted()
        const data = await store.getObject(c, {verify: true})
        await remote.putObject(c, data, {signal: init.signal})
        uploadedChunks++
        uploadedBytes += data.length
        progress.update(++done, {bytes: uploadedBytes})
      })
    } finally {
      progress.stop()
    }
    try {
      await remote.putManifest(id, bytes, {signal: init.signal})
      break
    } catch (err) {
      if (!(err instanceof RemoteError && err.status === 409) || round >= 2) throw err
    }
  }
  // a hint: a bad one is not sent (the remote would refuse it after the whole push)
  const profile = await store.getProfile(id, chunkCount(manifest.virtualSize, manifest.chunkSize)).catch(() => undefined)
  if (profile) await remote.putProfile(id, encodeProfile(profile), {signal: init.signal})
  if (target) await remote.putRef(target.name, target.tag, id, {signal: init.signal})
  // the remote holds it whole now: here it is cache (evict.ts). Best effort: a
  // store this host cannot write (a read-only mount) only keeps it uncached
  await store.addSources(id, [remote.url]).catch(() => {})
  return {
    id,
    ref: target ? formatRef(target) : undefined,
    remote: remote.url,
    distinctChunks: ids.length,
    uploadedChunks,
    uploadedBytes,
    alreadyThere,
    seconds: (performance.now() - t0) / 1000,
  }
}
