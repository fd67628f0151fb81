/**
 * `mount`: serve an image as an NBD export before a single chunk is local,
 * and hand it to a hypervisor: as an NBD URI, a regular file (FUSE, through
 * qemu-storage-daemon), a vhost-user-blk socket, or a kernel /dev/nbdN.
 */
import {existsSync, promises as fsp} from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {BadManifestError, StoreReadOnlyError, UsageError, VmiError} from '../errors.js'
import type {FetchChain} from '../peer/chain.js'
import {fetchManifest, resolveLocal, resolveTarget, type ResolvedTarget} from '../peer/image-lookup.js'
import type {AllowedSigner} from '../security/allowed-signers.js'
import {acquireLock, type StoreLock} from '../store/lock.js'
import {chunkCount, MAX_EXPANDED_CHUNKS, uniqueChunkIds, type Manifest} from '../store/manifest.js'
import {decodeProfile, maxProfileBytes, type BootProfile} from '../store/profile.js'
import type {LocalStore} from '../store/local-store.js'
import type {RefName} from '../store/ref.js'
import {startBridges} from './bridges.js'
import {ImageBackend} from './image-backend.js'
import {startNbdServer, type NbdServer, type NbdTls} from './nbd/server.js'
import {MAX_OVERLAY_SIZE, Overlay} from './overlay.js'
import {acquireOwner, type OwnerLock} from '../util/owner-lock.js'

export type PrefetchMode = 'none' | 'profile' | 'all'

/**
 * Chunks a mount prefetches at once (demand reads still go first). Each is a
 * round trip through an owner that may itself be fetching it from the seed,
 * so a few at a time leave the links idle while a fleet boots (measured in
 * the boot storm, docs/PERFORMANCE.md).
 */
export const PREFETCH_CONCURRENCY = 16

export interface MountInit {
  /** A NAME:TAG must carry a signature by a key these allow for it (as pull checks it), local or fetched. */
  verifySigners?: AllowedSigner[]
  /** Unix socket for the NBD export (default: <store>/tmp/<pid>-mount-<id prefix>.sock). */
  socketPath?: string
  /** Serve NBD on TCP instead. */
  listen?: {host: string; port: number}
  /** With `listen`: require NBD over TLS (STARTTLS), and with `clientCa` a client certificate. */
  tls?: NbdTls
  /** Keep the copy-on-write overlay here (default: a temporary one, removed at unmount). */
  overlayDir?: string
  readOnly?: boolean
  /** Expose as a regular file at this path (FUSE through qemu-storage-daemon). */
  file?: string
  /** Expose as a vhost-user-blk socket (qemu-storage-daemon). */
  vhostUserBlk?: string
  /** Attach to this kernel NBD device through nbd-client. */
  device?: string
  prefetch?: PrefetchMode
  /** Parallel prefetch fetches (default PREFETCH_CONCURRENCY). */
  prefetchConcurrency?: number
  recordProfile?: boolean
  /** NBD adaptive polling, longest wait in µs (default DEFAULT_POLL_US; 0 = off). */
  pollUs?: number
  log?: (line: string) => void
  signal?: AbortSignal
}

export interface MountStats {
  id: string
  chunks: number
  /** Chunks (and their bytes) this mount has read and verified, by where they came from. */
  fetched: {local: number; peer: number; seed: number}
  fetchedBytes: {local: number; peer: number; seed: number}
  localChunks: number
  firstReads: number
  prefetched: number
}

export interface Mount {
  id: string
  nbdUri: string
  socketPath?: string
  file?: string
  vhostUserBlk?: string
  device?: string
  /** The copy-on-write overlay directory (none when read-only). */
  overlayDir?: string
  backend: ImageBackend
  stats(): MountStats
  /** Flush, stop bridges, close the export, save the profile, release the store. */
  close(): Promise<void>
}

export async function mountImage(chain: FetchChain, spec: string, init: MountInit = {}): Promise<Mount> {
  const store = chain.local
  const log = init.log ?? (() => {})
  if ([init.file, init.vhostUserBlk, init.device].filter(Boolean).length > 1) throw new UsageError('choose one of --file, --vhost-user-blk, --device')
  const {id, ...named} = await resolveMountTarget(chain, spec, init.signal, init.verifySigners)
  const locks: StoreLock[] = []
  const owners: OwnerLock[] = []
  const cleanups: (() => Promise<void>)[] = []
  // every step runs; the first of vmi's own errors (a failed last flush, a profile not saved) is the unmount's, the others are logged
  const cleanup = async () => {
    let reported: VmiError | undefined
    for (const c of cleanups.reverse())
      await c().catch((err) => {
        log(`cleanup: ${(err as Error).message}`)
        if (err instanceof VmiError) reported ??= err
      })
    for (const l of locks) await l.release().catch(() => {})
    for (const o of owners) await o.release().catch(() => {})
    if (reported) throw reported
  }
  // an overlay, a socket, a --file path each have one owner: two guests on one overlay corrupt each other
  const own = async (kind: string, p: string) => owners.push(await acquireOwner(kind, p, `vmi mount of ${id.slice(0, 12)}`))
  // A store this process cannot write (a read-only filesystem, another
  // user's store) is mounted as it is: the image must be whole in it (nothing
  // fetched can be stored), and no lock is written — nothing can collect a
  // store nobody can write. Sockets and overlays go to the system's tmp.
  const storeWritable = await store.isWritable()
  const scratch = storeWritable ? store.layout.tmpDir : os.tmpdir()
  try {
    if (storeWritable) {
      // a root lock: gc and cache eviction keep this image while it is mounted
      locks.push(await acquireLock(store.layout, {op: 'mount', kind: 'root', roots: [id], signal: init.signal}))
    } else await checkWholeLocally(store, id, init.recordProfile === true)
    const {manifest, profile} = await prepareImage(chain, id, named, storeWritable, init)
    chain.setImage(id, uniqueChunkIds(manifest)) // owners balanced over this image's chunks, as a pull of it does; the seed's packs of it
    if (init.overlayDir) await own('overlay', init.overlayDir)
    const socketPath = init.listen ? undefined : (init.socketPath ?? path.join(scratch, `${process.pid}-mount-${id.slice(0, 8)}.sock`))
    if (socketPath) await own('socket', socketPath)
    if (init.file) await own('file', init.file)
    if (init.vhostUserBlk) await own('socket', init.vhostUserBlk)

    const {overlay, overlayDir} = await openOverlay(store, id, manifest.virtualSize, storeWritable ? undefined : scratch, init, cleanups)
    const {backend, server, stats, order} = await serveImage(chain, id, manifest, overlay, socketPath, init, cleanups)
    const mount: Mount = {
      id,
      nbdUri: server.address,
      socketPath,
      overlayDir,
      backend,
      stats: () => ({
        id,
        chunks: backend.chunkCount,
        ...stats,
        localChunks: backend.localChunks,
        firstReads: order.length,
      }),
      close: cleanup,
    }

    Object.assign(mount, await startBridges({...init, socketPath, virtualSize: manifest.virtualSize}, cleanups))

    const mode = init.prefetch ?? 'profile'
    if (mode !== 'none') startPrefetch(backend, mode, profile?.chunks ?? [], init.prefetchConcurrency ?? PREFETCH_CONCURRENCY, stats, log, cleanups)
    return mount
  } catch (err) {
    // the start's own error is the one to report
    await cleanup().catch(() => {})
    throw err
  }
}

/** The image as an NBD export: its block backend (counting where chunks came from) behind an NBD server. */
async function serveImage(
  chain: FetchChain,
  id: string,
  manifest: Manifest,
  overlay: Overlay | undefined,
  socketPath: string | undefined,
  init: MountInit,
  cleanups: (() => Promise<void>)[],
): Promise<{backend: ImageBackend; server: NbdServer; stats: Omit<MountStats, 'id' | 'chunks' | 'localChunks' | 'firstReads'>; order: number[]}> {
  const store = chain.local
  const log = init.log ?? (() => {})
  const order: number[] = []
  const stats = {fetched: {local: 0, peer: 0, seed: 0}, fetchedBytes: {local: 0, peer: 0, seed: 0}, prefetched: 0}
  const backend = new ImageBackend(store, chain, id, manifest, {
    overlay,
    readOnly: init.readOnly,
    onFirstRead: (i) => order.push(i),
    onFetch: (i, source) => {
      if (source === 'local' || source === 'peer' || source === 'seed') {
        stats.fetched[source]++
        stats.fetchedBytes[source] += Math.min(manifest.chunkSize, manifest.virtualSize - i * manifest.chunkSize)
      }
    },
  })
  if (init.recordProfile)
    cleanups.push(async () => {
      await store.putProfile(id, {version: 1, chunkSize: manifest.chunkSize, chunks: order})
      log(`boot profile of ${order.length} chunks saved`)
    })

  // a stale socket at socketPath is removed by startNbdServer; a file, or another program's live socket, is refused
  const server = await startNbdServer(backend, {
    socketPath,
    host: init.listen?.host,
    port: init.listen?.port,
    tls: init.tls,
    exportName: '',
    description: `vmi image ${id}`,
    pollUs: init.pollUs,
    log,
  })
  cleanups.push(async () => {
    await server.close()
    await backend.close()
    if (socketPath) await fsp.rm(socketPath, {force: true})
  })
  return {backend, server, stats, order}
}

/** The image `spec` names: in the local store, or else as the chain's sources resolve it (with the ref or remote it was named by). */
async function resolveMountTarget(chain: FetchChain, spec: string, signal?: AbortSignal, signers?: AllowedSigner[]): Promise<ResolvedTarget> {
  let local: ResolvedTarget
  try {
    local = await resolveLocal(chain.local, spec)
  } catch (err) {
    if (!chain.seed && chain.peerList.length === 0) throw err
    return resolveTarget(chain, spec, signal, signers)
  }
  // a local name is trusted as far as its signature here is (pull stored it when it verified it)
  return signers && local.ref ? resolveLocal(chain.local, spec, signers) : local
}

/**
 * The image's manifest, checked to fit in memory and recorded in the store
 * (lazy, with where it came from), and its boot profile when there is one.
 */
async function prepareImage(
  chain: FetchChain,
  id: string,
  named: Omit<ResolvedTarget, 'id'>,
  storeWritable: boolean,
  init: MountInit,
): Promise<{manifest: Manifest; chunks: number; profile?: BootProfile}> {
  const store = chain.local
  const log = init.log ?? (() => {})
  const {manifest, bytes, from, remote} = await fetchManifest(chain, id, init.signal)
  // per-chunk and per-block state is kept in memory: refuse what cannot fit before storing or serving anything
  const chunks = chunkCount(manifest.virtualSize, manifest.chunkSize)
  if (chunks > MAX_EXPANDED_CHUNKS || (!init.readOnly && manifest.virtualSize > MAX_OVERLAY_SIZE))
    throw new BadManifestError(
      `image ${id} is too large to mount: ${manifest.virtualSize} bytes in ${chunks} chunks (vmi mounts at most ${MAX_EXPANDED_CHUNKS} chunks, and ${MAX_OVERLAY_SIZE} bytes with a writable overlay)`,
      {data: {id, virtualSize: manifest.virtualSize, chunks}},
    )
  if (!(await store.hasManifest(id))) {
    await store.putManifestBytes(id, bytes)
    await store.setLazy(id, true) // its chunks arrive on demand
    log(`manifest of ${id} from ${from}`)
  }
  // what came from a remote is listed (a NAME:TAG gets its ref, as a pull
  // gives it) and is cache: its chunks can be fetched again (evict.ts)
  const sources = [named.remote, remote].filter((u): u is string => u !== undefined)
  if (sources.length > 0) await store.addSources(id, sources)
  if (named.ref && !(await store.readRef(named.ref))) {
    await store.writeRef(named.ref, id)
    if (named.signature) await store.writeRefSignature(named.ref, named.signature.data)
  }
  let profile = await store.getProfile(id, chunks).catch(() => undefined)
  if (!profile && storeWritable && (init.prefetch ?? 'profile') !== 'none') profile = await fetchProfile(chain, id, chunks)
  return {manifest, chunks, profile}
}

/** A profile for the image from the chain's sources (peers, then the seed), stored here; undefined when none has a valid one. */
async function fetchProfile(chain: FetchChain, id: string, chunks: number): Promise<BootProfile | undefined> {
  for (const src of [...chain.peerList, ...(chain.seed ? [chain.seed] : [])]) {
    const p = await src.getProfileBytes(id, {maxBytes: maxProfileBytes(chunks)}).catch(() => undefined)
    if (p) {
      try {
        const profile = decodeProfile(p, chunks)
        await chain.local.putProfile(id, profile)
        return profile
      } catch {
        /* a bad profile is only a missed optimisation */
      }
    }
  }
  return undefined
}

/**
 * The copy-on-write overlay: `init.overlayDir`, kept (read-only: only read,
 * and none without one);
 * or a temporary one in the store's tmp/ (in `scratch` when the store cannot
 * be written), removed at unmount.
 */
async function openOverlay(
  store: LocalStore,
  id: string,
  virtualSize: number,
  scratch: string | undefined,
  init: MountInit,
  cleanups: (() => Promise<void>)[],
): Promise<{overlay?: Overlay; overlayDir?: string}> {
  if (init.readOnly) {
    if (!init.overlayDir) return {}
    // a read-only view of the guest's disk as an earlier mount left it: base and writes, nothing changed
    const dir = path.resolve(init.overlayDir)
    if (!existsSync(path.join(dir, 'meta.json'))) throw new UsageError(`${init.overlayDir} holds no overlay to show read-only (no meta.json)`)
    const overlay = await Overlay.open(dir, {base: id, virtualSize, readOnly: true})
    cleanups.push(() => overlay.close())
    return {overlay, overlayDir: dir}
  }
  const dir = path.resolve(init.overlayDir ?? (scratch === undefined ? store.tmpPath('overlay') : path.join(scratch, `vmi-overlay-${process.pid}-${id.slice(0, 8)}`)))
  const overlay = await Overlay.open(dir, {base: id, virtualSize})
  cleanups.push(async () => {
    if (!init.overlayDir) {
      await overlay.close()
      await fsp.rm(dir, {recursive: true, force: true})
      return
    }
    // a kept overlay: what the guest wrote since its last flush is made durable now, or the unmount says it could not be
    let failed: unknown
    await overlay.flush().catch((err) => (failed = err))
    await overlay.close()
    if (failed !== undefined)
      throw new VmiError(`the overlay's last flush at unmount failed (${(failed as Error).message}): writes the guest did not flush itself may be lost`, {cause: failed, data: {overlay: dir}})
  })
  return {overlay, overlayDir: dir}
}

/**
 * Background prefetch: profile chunks first, then (with 'all') the rest;
 * demand reads go first, prefetch waits while any is in flight. Its stop
 * goes to the front of `cleanups`.
 */
function startPrefetch(
  backend: ImageBackend,
  mode: 'profile' | 'all',
  profiled: readonly number[],
  concurrency: number,
  stats: {prefetched: number},
  log: (line: string) => void,
  cleanups: (() => Promise<void>)[],
): void {
  let stopped = false
  cleanups.unshift(async () => {
    stopped = true
  })
  const queue: number[] = []
  const seen = new Set<number>()
  for (const i of profiled) if (!seen.has(i) && i < backend.chunkCount) (seen.add(i), queue.push(i))
  if (mode === 'all') for (let i = 0; i < backend.chunkCount; i++) if (!seen.has(i)) queue.push(i)
  const worker = async () => {
    while (!stopped && queue.length > 0) {
      while (backend.demandInFlight > 0 && !stopped) await new Promise((r) => setTimeout(r, 2))
      const i = queue.shift()!
      if (backend.isLocal(i)) continue
      try {
        await backend.prefetch(i)
        stats.prefetched++
      } catch (err) {
        log(`prefetch of chunk ${i} failed: ${(err as Error).message}`)
      }
    }
  }
  if (queue.length > 0) void Promise.all(Array.from({length: concurrency}, worker))
}

/** Before mounting from a store that cannot be written: every chunk must be there already, and nothing may need storing. */
async function checkWholeLocally(store: LocalStore, id: string, recordProfile: boolean): Promise<void> {
  if (recordProfile) throw new StoreReadOnlyError(`store ${store.root} is not writable: a boot profile cannot be recorded in it`)
  if (!(await store.hasManifest(id))) throw new StoreReadOnlyError(`store ${store.root} is not writable and lacks image ${id}: nothing fetched could be stored`, {data: {id}})
  let missing = 0
  for (const c of uniqueChunkIds(await store.getManifest(id))) if (!(await store.hasObject(c))) missing++
  if (missing > 0)
    throw new StoreReadOnlyError(`store ${store.root} is not writable and lacks ${missing} chunks of image ${id}: nothing fetched could be stored`, {data: {id, missing}})
}
