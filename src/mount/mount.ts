/**
 * `mount`: serve an image as an NBD export before a single chunk is local,
 * and hand it to a hypervisor: as an NBD URI, a regular file (FUSE, through
 * qemu-storage-daemon), a vhost-user-blk socket, or a kernel /dev/nbdN.
 */
import {execa, type ResultPromise} from 'execa'
import {existsSync, promises as fsp} from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {BadManifestError, DependencyError, StoreReadOnlyError, UsageError, VmiError} from '../errors.js'
import type {FetchChain} from '../peer/chain.js'
import {fetchManifest, resolveTarget} from '../peer/pull.js'
import {acquireLock, type StoreLock} from '../store/lock.js'
import {chunkCount, MAX_EXPANDED_CHUNKS, uniqueChunkIds} from '../store/manifest.js'
import {decodeProfile, maxProfileBytes} from '../store/profile.js'
import type {LocalStore} from '../store/local-store.js'
import type {RefName} from '../store/ref.js'
import {ImageBackend} from './image-backend.js'
import {startNbdServer} from './nbd/server.js'
import {MAX_OVERLAY_SIZE, Overlay} from './overlay.js'
import {acquireOwner, type OwnerLock} from '../util/owner-lock.js'

export type PrefetchMode = 'none' | 'profile' | 'all'

export interface MountInit {
  /** Unix socket for the NBD export (default: <store>/tmp/<pid>-mount-<id prefix>.sock). */
  socketPath?: string
  /** Serve NBD on TCP instead. */
  listen?: {host: string; port: number}
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
  /** Parallel prefetch fetches (default 4). */
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

async function waitFor(check: () => Promise<boolean>, what: string, timeoutMs = 15_000, child?: ResultPromise): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (await check()) return
    if (child && child.exitCode !== null) break
    await new Promise((r) => setTimeout(r, 50))
  }
  let detail = ''
  if (child) {
    child.kill('SIGTERM')
    const r = await child.catch((e) => e)
    detail = `: ${String(r.stderr ?? '').trim().split('\n').slice(-3).join(' ')}`
  }
  throw new DependencyError(`${what} did not come up${detail}`)
}

function qsd(args: string[]): ResultPromise {
  const child = execa('qemu-storage-daemon', args, {reject: false, stdin: 'ignore', stdout: 'ignore', stderr: 'pipe', buffer: {stderr: true}})
  child.catch(() => {})
  return child
}

export async function mountImage(chain: FetchChain, spec: string, init: MountInit = {}): Promise<Mount> {
  const store = chain.local
  const log = init.log ?? (() => {})
  if ([init.file, init.vhostUserBlk, init.device].filter(Boolean).length > 1) throw new UsageError('choose one of --file, --vhost-user-blk, --device')
  let id: string
  let named: {ref?: RefName; remote?: string} = {}
  try {
    id = await store.resolveId(spec)
  } catch (err) {
    if (!chain.seed && chain.peerList.length === 0) throw err
    ;({id, ...named} = await resolveTarget(chain, spec, init.signal))
  }
  const locks: StoreLock[] = []
  const owners: OwnerLock[] = []
  const cleanups: (() => Promise<void>)[] = []
  const cleanup = async () => {
    for (const c of cleanups.reverse()) await c().catch((err) => log(`cleanup: ${(err as Error).message}`))
    for (const l of locks) await l.release().catch(() => {})
    for (const o of owners) await o.release().catch(() => {})
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
    if (named.ref && !(await store.readRef(named.ref))) await store.writeRef(named.ref, id)
    let profile = await store.getProfile(id, chunks).catch(() => undefined)
    if (!profile && storeWritable && (init.prefetch ?? 'profile') !== 'none') {
      for (const src of [...chain.peerList, ...(chain.seed ? [chain.seed] : [])]) {
        const p = await src.getProfileBytes(id, {maxBytes: maxProfileBytes(chunks)}).catch(() => undefined)
        if (p) {
          try {
            profile = decodeProfile(p, chunks)
            await store.putProfile(id, profile)
            break
          } catch {
            /* a bad profile is only a missed optimisation */
          }
        }
      }
    }

    if (init.overlayDir) await own('overlay', init.overlayDir)
    const socketPath = init.listen ? undefined : (init.socketPath ?? path.join(scratch, `${process.pid}-mount-${id.slice(0, 8)}.sock`))
    if (socketPath) await own('socket', socketPath)
    if (init.file) await own('file', init.file)
    if (init.vhostUserBlk) await own('socket', init.vhostUserBlk)

    let overlay: Overlay | undefined
    let overlayDir: string | undefined
    if (!init.readOnly) {
      const dir = (overlayDir = path.resolve(init.overlayDir ?? (storeWritable ? store.tmpPath('overlay') : path.join(scratch, `vmi-overlay-${process.pid}-${id.slice(0, 8)}`))))
      overlay = await Overlay.open(dir, {base: id, virtualSize: manifest.virtualSize})
      cleanups.push(async () => {
        await overlay!.flush().catch(() => {})
        await overlay!.close()
        if (!init.overlayDir) await fsp.rm(dir, {recursive: true, force: true})
      })
    }
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

    if (socketPath) await fsp.rm(socketPath, {force: true})
    const server = await startNbdServer(backend, {
      socketPath,
      host: init.listen?.host,
      port: init.listen?.port,
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

    // ---- bridges
    const writable = init.readOnly ? 'off' : 'on'
    const nbdNode =
      (socketPath
        ? `driver=nbd,server.type=unix,server.path=${socketPath},node-name=vmi0`
        : `driver=nbd,server.type=inet,server.host=${init.listen!.host},server.port=${init.listen!.port},node-name=vmi0`) + (init.readOnly ? ',read-only=on' : '')
    if (init.file) {
      const file = path.resolve(init.file)
      const created = !existsSync(file)
      if (created) await fsp.writeFile(file, '')
      const child = qsd(['--blockdev', nbdNode, '--export', `type=fuse,id=vmi-fuse,node-name=vmi0,mountpoint=${file},writable=${writable}`])
      cleanups.push(async () => {
        child.kill('SIGTERM')
        await child
        if (created) await fsp.rm(file, {force: true})
      })
      await waitFor(async () => (await fsp.stat(file)).size === manifest.virtualSize, `the FUSE file ${file} (qemu-storage-daemon)`, 15_000, child)
      mount.file = file
    }
    if (init.vhostUserBlk) {
      const sock = path.resolve(init.vhostUserBlk)
      await fsp.rm(sock, {force: true})
      const child = qsd(['--blockdev', nbdNode, '--export', `type=vhost-user-blk,id=vmi-vub,node-name=vmi0,addr.type=unix,addr.path=${sock},writable=${writable}`])
      cleanups.push(async () => {
        child.kill('SIGTERM')
        await child
        await fsp.rm(sock, {force: true})
      })
      await waitFor(async () => existsSync(sock), `the vhost-user-blk socket ${sock} (qemu-storage-daemon)`, 15_000, child)
      mount.vhostUserBlk = sock
    }
    if (init.device) {
      if (!existsSync(init.device) || !existsSync('/sys/module/nbd'))
        throw new DependencyError(`${init.device} is not available: this kernel has no NBD driver loaded (modprobe nbd), use --file instead`)
      const args = socketPath ? ['-unix', socketPath, init.device] : [init.listen!.host, String(init.listen!.port), init.device]
      const r = await execa('nbd-client', args, {reject: false})
      if (r.exitCode !== 0) throw new DependencyError(`nbd-client could not attach ${init.device}: ${String(r.stderr).trim()}`)
      cleanups.push(async () => {
        await execa('nbd-client', ['-d', init.device!], {reject: false})
      })
      mount.device = init.device
    }

    // ---- background prefetch: profile chunks first, then (with 'all') the rest; demand reads first
    const mode = init.prefetch ?? 'profile'
    if (mode !== 'none') {
      let stopped = false
      cleanups.unshift(async () => {
        stopped = true
      })
      const queue: number[] = []
      const seen = new Set<number>()
      for (const i of profile?.chunks ?? []) if (!seen.has(i) && i < backend.chunkCount) (seen.add(i), queue.push(i))
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
      if (queue.length > 0) void Promise.all(Array.from({length: init.prefetchConcurrency ?? 4}, worker))
    }
    return mount
  } catch (err) {
    await cleanup()
    if (err instanceof VmiError) throw err
    throw err
  }
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
