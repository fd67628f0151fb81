/**
 * `push`: send an image to a remote (the seed). One batch missing-check,
 * uploads of only what the remote lacks (object batches where the remote
 * takes them: vmi serve's batch route, a bucket's packs; else parallel PUTs,
 * bounded), then the manifest, then the ref
 * (and its signature, when signing) — so the remote's ref never names an
 * image whose chunks are not all there. Re-running after an interruption
 * sends only what is still missing.
 *
 * A chunk is read from the store as it is: hashed again only with
 * `verify`, or for a remote that stores what it is given (a bucket). vmi
 * serve hashes every upload and refuses wrong bytes, so a corrupt local
 * object fails the push there instead of spreading.
 */
import {ChunkMissingError, RemoteAuthError, RemoteError, UsageError, VmiError} from '../errors.js'
import {fingerprint, type SshSigner} from '../security/ssh-keys.js'
import {signRef} from '../store/ref-signature.js'
import {silentProgress, type ProgressReporter} from '../progress.js'
import type {LocalStore} from '../store/local-store.js'
import {isThisMachineUrl} from '../util/loopback.js'
import {mapLimit} from '../util/map-limit.js'
import {chunkCount, uniqueChunkIds} from '../store/manifest.js'
import {BATCH_FRAME_HEAD} from './wire.js'
import {canCompress} from '../store/zstd.js'
import {ObjectWriter} from '../store/object-writer.js'
import {PEER_WRITER_THREAD} from './chain-bulk.js'
import {encodeForUpload, encodeOnThread, type Encoded, type EncodeTask, type UploadEncoding} from './push-encode.js'
import {MAX_STORED_OBJECT} from '../store/object-encoding.js'
import {encodeProfile} from '../store/profile.js'
import {formatRef, parseRef} from '../store/ref.js'
import type {WritableRemote} from './source.js'

export interface PushInit {
  /** Name:tag on the remote (default: the name pushed, when a ref was named). */
  as?: string
  concurrency?: number
  /** Hash every chunk before it is sent, even to a remote that checks uploads itself. */
  verify?: boolean
  /** Sign the remote ref with this key (store/ref-signature.ts); the push needs a ref name then. */
  signer?: SshSigner
  /**
   * Compress chunks (zstd) for a remote that stores them so: true always,
   * false never (frames are decoded), undefined `auto` (uploadEncoding).
   * Compressing needs the native zstd module.
   */
  compress?: boolean
  progress?: ProgressReporter
  signal?: AbortSignal
}

export interface PushResult {
  id: string
  ref?: string
  remote: string
  distinctChunks: number
  uploadedChunks: number
  /** Bytes sent: compressed objects count as sent. */
  uploadedBytes: number
  /** Bytes of the chunks sent (what uploadedBytes would be uncompressed). */
  uploadedChunkBytes: number
  /** Whether this push compressed the chunks it sent (encoding `compress`). */
  compressed: boolean
  /** How the chunks went (push-encode.ts): compressed here, as they rest in the local store, or raw; absent when none was sent. */
  encoding?: UploadEncoding
  alreadyThere: number
  /** The signature written beside the remote ref, when signing. */
  signature?: {time: string; keyType: string; key: string}
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
  // signed first: a signer that fails (an agent without the key) stops the push before it sends anything
  let signature: {text: string; time: string} | undefined
  if (init.signer) {
    if (!target) throw new UsageError(`cannot sign ${spec}: a signature is for a ref name, and this push writes no ref on ${remote.name}`)
    const time = new Date()
    signature = {text: await signRef(target, id, init.signer, time), time: time.toISOString()}
  }
  const ids = [...uniqueChunkIds(manifest)]
  for (const c of ids) if (!(await store.hasObject(c))) throw new ChunkMissingError(`cannot push ${spec}: chunk ${c} is not in ${store.name} (pull or re-import it first)`, {data: {id: c}})
  let uploadedBytes = 0
  let uploadedChunkBytes = 0
  let uploadedChunks = 0
  let alreadyThere = 0
  const bytes = (await store.getManifestBytes(id))!
  let encoding: UploadEncoding | undefined
  // a gc on the remote between our uploads and the manifest can drop chunks
  // (the manifest is then refused with 409): check again and resend, bounded
  for (let round = 0; ; round++) {
    const missing = await remote.missing(ids, {signal: init.signal})
    if (round === 0) alreadyThere = ids.length - missing.length
    progress.start(`pushing ${id.slice(0, 12)} to ${remote.url}`, missing.length, 'items')
    progress.update(0, {bytes: uploadedBytes})
    let done = 0
    try {
      // asked once, inside the progress (to vmi serve this is the empty batch that also says whether it takes batches)
      if (missing.length > 0) encoding ??= await uploadEncoding(remote, init)
      await uploadChunks(store, remote, missing, manifest.chunkSize, {...init, encoding: encoding ?? 'raw'}, (n, bytes, chunkBytes) => {
        uploadedChunks += n
        uploadedBytes += bytes
        uploadedChunkBytes += chunkBytes
        progress.update((done += n), {bytes: uploadedBytes})
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
  if (target && signature) {
    await remote.putRefSignature(target.name, target.tag, Buffer.from(signature.text), {signal: init.signal})
    // the same ref here gets it too ('vmi verify', and save carries it); best effort, as below
    if (ref && formatRef(ref) === formatRef(target)) await store.writeRefSignature(ref, signature.text).catch(() => {})
  }
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
    uploadedChunkBytes,
    compressed: encoding === 'compress',
    ...(encoding ? {encoding} : {}),
    alreadyThere,
    ...(signature && init.signer ? {signature: {time: signature.time, keyType: init.signer.publicKey.type, key: fingerprint(init.signer.publicKey)}} : {}),
    seconds: (performance.now() - t0) / 1000,
  }
}

/**
 * How a push sends its chunks (push-encode.ts). Raw to a remote that does
 * not store frames, with --no-compress, or without the native zstd module.
 * Else compressed, with --compress, or by default when the remote is across
 * a link: a bucket, a vmi serve on another machine. To a vmi serve on this
 * machine (its URL's host a loopback address, or one that resolves to this
 * machine's) they go as they rest: there the bytes cost nothing and
 * compressing costs the push most of its time, and that server compresses
 * the raw ones on send to every client across a link (PROTOCOL.md
 * "Compressing on send"), so its readers get frames still.
 */
async function uploadEncoding(remote: WritableRemote, init: PushInit): Promise<UploadEncoding> {
  if (init.compress === false || !canCompress() || !(await remote.storesEncoded({signal: init.signal}))) return 'raw'
  if (init.compress === true) return 'compress'
  return (await isThisMachineUrl(remote.url)) ? 'stored' : 'compress'
}

/** Bytes of chunks in one object batch: large enough that a request costs little per chunk, small enough to hold two in memory. */
const BATCH_BYTES = 16 << 20
/** Object batches in flight (each on its own connection; the server verifies and writes on its writer threads meanwhile). */
const BATCHES_IN_FLIGHT = 2

/**
 * Send `ids` (chunks the remote lacks): in object batches while the remote
 * takes them, else (or once it says it cannot) one PUT per chunk,
 * `init.concurrency` at a time. `sent(n, bytes, chunkBytes)` as chunks go
 * out (bytes on the wire, and of the chunks they hold). A batch that needs
 * work per chunk (compression, hashing) is read and encoded on a writer
 * thread, one per batch in flight, while the main thread sends the other.
 */
async function uploadChunks(
  store: LocalStore,
  remote: WritableRemote,
  ids: string[],
  chunkSize: number,
  init: PushInit & {encoding: UploadEncoding},
  sent: (n: number, bytes: number, chunkBytes: number) => void,
): Promise<void> {
  const verify = init.verify === true || !remote.verifiesUploads
  const one = async (c: string) => {
    init.signal?.throwIfAborted()
    const o = await ready(store, c, encodeForUpload(store, c, verify, init.encoding))
    await remote.putObject(c, o.data, {signal: init.signal}).catch((err) => blameLocal(store, [c], err))
    sent(1, o.data.length, o.chunkBytes)
  }
  if (!remote.putObjects) return void (await mapLimit(ids, init.concurrency ?? 8, one))
  const per = Math.max(1, Math.floor(BATCH_BYTES / (chunkSize + BATCH_FRAME_HEAD)))
  const batches: string[][] = []
  for (let i = 0; i < ids.length; i += per) batches.push(ids.slice(i, i + per))
  // (a writer thread stages its files in the store: a store this process cannot write encodes here)
  const threads = (init.encoding === 'compress' || verify) && batches.length > 1 && (await store.isWritable())
  const writers = threads ? Array.from({length: BATCHES_IN_FLIGHT}, () => new ObjectWriter(store.root, {entry: PEER_WRITER_THREAD})) : []
  let turn = 0
  // Read here, a batch's objects go into one slab, reused by later batches (putObjects keeps no
  // reference once settled): a fresh buffer per chunk of 128 KiB or more is a fresh mapping from the
  // allocator, faulted in page by page and unmapped again, and it counts toward V8's external memory,
  // whose growth starts full garbage collections.
  const slabs: Buffer[] = []
  try {
    await mapLimit(batches, BATCHES_IN_FLIGHT, async (batch) => {
      init.signal?.throwIfAborted()
      const task = {ids: batch, verify, encoding: init.encoding}
      const slab = writers.length > 0 ? undefined : (slabs.pop() ?? Buffer.allocUnsafeSlow(BATCH_BYTES + MAX_STORED_OBJECT))
      try {
        const encoded = slab ? encodeInto(store, task, slab) : await encodeOnThread(writers[turn++ % writers.length], task, init.signal)
        const objects = await Promise.all(batch.map(async (id, i) => ({id, ...(await ready(store, id, encoded[i]))})))
        const onSent = (i: number) => sent(1, objects[i].data.length, objects[i].chunkBytes)
        const done = await remote.putObjects!(objects, {signal: init.signal, onSent}).catch((err) => blameLocal(store, batch, err))
        if (done === undefined) await mapLimit(batch, init.concurrency ?? 8, one)
      } finally {
        if (slab) slabs.push(slab)
      }
    })
  } finally {
    await Promise.all(writers.map((w) => w.close().catch(() => {})))
  }
}

/** `task`'s objects read and encoded here, each read into `slab` while an object of any size still fits in what is left of it. */
function encodeInto(store: LocalStore, task: EncodeTask, slab: Buffer): Encoded[] {
  let used = 0
  return task.ids.map((id) => {
    const e = encodeForUpload(store, id, task.verify, task.encoding, slab.length - used >= MAX_STORED_OBJECT ? slab.subarray(used) : undefined)
    // what is sent as read lies in the slab; a chunk decoded or compressed from it does not, and frees its room
    if (e.data?.buffer === slab.buffer) used = e.data.byteOffset - slab.byteOffset + e.data.length
    return e
  })
}

/** An encoded chunk, or the store's own error for one that is corrupt or gone (an IntegrityError naming the file, a ChunkMissingError). */
async function ready(store: LocalStore, id: string, e: Encoded): Promise<{data: Buffer; chunkBytes: number}> {
  if (e.data) return {data: e.data, chunkBytes: e.chunkBytes}
  await store.getObject(id, {verify: true}) // throws
  throw new VmiError(`chunk ${id} could not be read from ${store.name}`)
}

/**
 * A remote refused an upload (400: bytes that do not hash to their id, or
 * the batch's `refused`): when one of the chunks sent is corrupt in the
 * local store, that is the error (an IntegrityError naming the file, as
 * fsck would); else the remote's own.
 */
async function blameLocal(store: LocalStore, ids: string[], err: unknown): Promise<never> {
  const refused = err instanceof RemoteError && (err.status === 400 || typeof (err.data as {refused?: unknown})?.refused === 'number')
  if (refused) for (const id of ids) await store.getObject(id, {verify: true})
  throw err
}
