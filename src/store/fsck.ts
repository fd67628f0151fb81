/**
 * `fsck`: re-hash every object, check every manifest and ref, and report each
 * problem. `repair` moves corrupt objects (and what is not a file where an
 * object should be), bad manifests, and refs that hold no id or bear a name
 * no command can give, to quarantine/ (so a later pull or import stores a
 * good copy again), and removes refs to absent manifests. A manifest of a
 * newer format is reported and left alone.
 */
import {promises as fsp} from 'node:fs'
import path from 'node:path'
import {InterruptedError, NewerManifestError, VmiError} from '../errors.js'
import {silentProgress, type ProgressReporter} from '../progress.js'
import {readdirOrEmpty, readFileBounded} from '../util/fs-util.js'
import {isFrame, MAX_STORED_OBJECT, openObject} from './object-encoding.js'
import {isValidId} from './layout.js'
import type {LocalStore} from './local-store.js'
import {withLock} from './lock.js'
import {decodeManifest, MAX_CHUNK_SIZE, MAX_MANIFEST_BYTES, uniqueChunkIds} from './manifest.js'
import {isValidRefPart} from './ref.js'

export type ProblemKind = 'corrupt-object' | 'stray-file' | 'bad-manifest' | 'newer-manifest' | 'missing-chunk' | 'dangling-ref' | 'bad-ref' | 'unreadable'

export interface Problem {
  kind: ProblemKind
  path: string
  message: string
  /** What --repair did about it. */
  repaired?: string
}

export interface FsckInit {
  repair?: boolean
  progress?: ProgressReporter
  /** Parallel object reads (default 4). */
  concurrency?: number
  /** Stops the check between objects and manifests (InterruptedError); repairs made so far stay. */
  signal?: AbortSignal
}

export interface FsckResult {
  ok: boolean
  objects: number
  objectBytes: number
  /** Objects stored as zstd frames (FORMAT.md "Compressed objects"), and the bytes of the chunks they hold. */
  compressedObjects: number
  compressedChunkBytes: number
  manifests: number
  refs: number
  /** Images marked lazy (cache eviction, lazy mounts) and the chunks they lack. */
  lazyImages: number
  lazyMissingChunks: number
  problems: Problem[]
}

export async function fsck(store: LocalStore, init: FsckInit = {}): Promise<FsckResult> {
  const run = () => check(store, init)
  // repair edits the store: exclude gc meanwhile
  return init.repair ? withLock(store.layout, {op: 'fsck-repair'}, run) : run()
}

/** What the three checks share. */
interface Check {
  store: LocalStore
  init: FsckInit
  problems: Problem[]
  /** A path as shown: relative to the store. */
  rel: (p: string) => string
}

async function check(store: LocalStore, init: FsckInit): Promise<FsckResult> {
  const c: Check = {store, init, problems: [], rel: (p) => path.relative(store.layout.root, p)}
  const {present, objects, checked, objectBytes, compressedObjects, compressedChunkBytes} = await checkObjects(c)
  // an interruption from here on still reports how far the objects got
  const {manifests, manifestOk, newer, lazyImages, lazyMissingChunks} = await checkManifests(c, present, () => `${checked} of ${objects} objects`)
  const refs = await checkRefs(c, manifestOk, newer)
  const {problems} = c
  return {ok: problems.length === 0, objects, objectBytes, compressedObjects, compressedChunkBytes, manifests, refs, lazyImages, lazyMissingChunks, problems}
}

function stopIfAborted(c: Check, what: () => string): void {
  if (c.init.signal?.aborted) throw new InterruptedError(`fsck interrupted after ${what()}`, {cause: c.init.signal.reason})
}

/** Every object hashed against its name (`concurrency` at once); corrupt ones quarantined on repair. The ids found whole. */
async function checkObjects(
  c: Check,
): Promise<{present: Set<string>; objects: number; checked: number; objectBytes: number; compressedObjects: number; compressedChunkBytes: number}> {
  const {store, init, problems, rel} = c
  const L = store.layout
  const progress = init.progress ?? silentProgress
  const present = new Set<string>()
  let objectBytes = 0
  let compressedObjects = 0
  let compressedChunkBytes = 0
  const files: {id: string; file: string}[] = []
  for (const shard of (await readdirOrEmpty(L.objectsDir)).sort()) {
    const dir = path.join(L.objectsDir, shard)
    for (const rest of (await readdirOrEmpty(dir)).sort()) {
      const id = shard + rest
      const file = path.join(dir, rest)
      if (!isValidId(id)) problems.push({kind: 'stray-file', path: rel(file), message: `${rel(file)} is not named by an object id`})
      else files.push({id, file})
    }
  }
  progress.start('checking objects', files.length, 'items')
  let done = 0
  let next = 0
  const worker = async () => {
    while (next < files.length) {
      stopIfAborted(c, () => `${done} of ${files.length} objects`)
      const {id, file} = files[next++]
      let data: Buffer | undefined
      let oversize: string | undefined
      try {
        // a file larger than any chunk is corrupt: said so without reading it
        data = await readFileBounded(file, MAX_STORED_OBJECT, (size) => new Error((oversize = `object ${id} is corrupt: ${size} bytes, more than any chunk`)))
      } catch (err) {
        if (oversize !== undefined) {
          const p: Problem = {kind: 'corrupt-object', path: rel(file), message: oversize}
          if (init.repair) p.repaired = await quarantine(store, file, id)
          problems.push(p)
        } else {
          const p: Problem = {kind: 'unreadable', path: rel(file), message: `object ${id} cannot be read: ${(err as Error).message}`}
          // not a file at all (a directory, a FIFO) holds no chunk, and would pass for one with a writer that only looks for the name;
          // a regular file this user cannot read may be whole: left for its owner
          if (init.repair && (await notRegularFile(file))) p.repaired = await quarantine(store, file, id)
          problems.push(p)
        }
        continue
      }
      if (data === undefined) continue // removed meanwhile
      objectBytes += data.length
      // a compressed object is decoded first; one that does not decode is hashed as it is (openObject)
      const o = openObject(id, data)
      if (o.encoded) {
        compressedObjects++
        compressedChunkBytes += o.data.length
      }
      if (o.actual !== undefined) {
        const what = isFrame(data) ? 'compressed object' : 'object'
        const p: Problem = {kind: 'corrupt-object', path: rel(file), message: `${what} ${id} is corrupt: its content hashes to ${o.actual}`}
        if (init.repair) p.repaired = await quarantine(store, file, id)
        problems.push(p)
      } else present.add(id)
      progress.update(++done)
    }
  }
  try {
    await Promise.all(Array.from({length: init.concurrency ?? 4}, worker))
  } finally {
    progress.stop()
  }
  return {present, objects: files.length, checked: done, objectBytes, compressedObjects, compressedChunkBytes}
}

/** Every manifest decoded and its chunks looked for (lazy images may lack chunks by design); bad ones quarantined on repair. */
async function checkManifests(
  c: Check,
  present: ReadonlySet<string>,
  progressSoFar: () => string,
): Promise<{manifests: number; manifestOk: Set<string>; newer: Set<string>; lazyImages: number; lazyMissingChunks: number}> {
  const {store, init, problems, rel} = c
  const L = store.layout
  const lazy = new Set(await store.listLazy())
  let lazyMissing = 0
  let manifests = 0
  const manifestOk = new Set<string>()
  // whole (they hash to their id) but of a newer format: this vmi cannot check their chunks, and leaves them and their refs alone
  const newer = new Set<string>()
  for (const shard of (await readdirOrEmpty(L.manifestsDir)).sort()) {
    for (const rest of (await readdirOrEmpty(path.join(L.manifestsDir, shard))).sort()) {
      stopIfAborted(c, progressSoFar)
      const id = shard + rest
      const file = path.join(L.manifestsDir, shard, rest)
      if (!isValidId(id)) {
        problems.push({kind: 'stray-file', path: rel(file), message: `${rel(file)} is not named by a manifest id`})
        continue
      }
      manifests++
      let m
      try {
        const bytes = await readFileBounded(file, MAX_MANIFEST_BYTES, (size) => new Error(`manifest ${id} is ${size} bytes, larger than the ${MAX_MANIFEST_BYTES} limit`))
        if (bytes === undefined) continue // removed meanwhile
        m = decodeManifest(bytes, id)
      } catch (err) {
        if (err instanceof NewerManifestError) {
          problems.push({kind: 'newer-manifest', path: rel(file), message: `${rel(file)}: ${err.message} to check it (it is left as it is)`})
          newer.add(id)
          continue
        }
        const p: Problem = {kind: 'bad-manifest', path: rel(file), message: `${rel(file)}: ${(err as Error).message}`}
        if (init.repair) p.repaired = await quarantine(store, file, id)
        problems.push(p)
        continue
      }
      manifestOk.add(id)
      const missing = [...uniqueChunkIds(m)].filter((c) => !present.has(c))
      if (missing.length > 0 && lazy.has(id)) lazyMissing += missing.length
      else if (missing.length > 0)
        problems.push({
          kind: 'missing-chunk',
          path: rel(file),
          message: `image ${id} lacks ${missing.length} chunk(s): ${missing.slice(0, 5).join(', ')}${missing.length > 5 ? ', …' : ''}; re-import, load or pull it`,
        })
    }
  }
  return {manifests, manifestOk, newer, lazyImages: lazy.size, lazyMissingChunks: lazyMissing}
}

/** Every ref read and followed; unreadable refs quarantined, and refs to an absent image removed, on repair. Their count. */
async function checkRefs(c: Check, manifestOk: ReadonlySet<string>, newer: ReadonlySet<string>): Promise<number> {
  const {store, init, problems, rel} = c
  const L = store.layout
  let refs = 0
  for (const name of (await readdirOrEmpty(L.refsDir)).sort()) {
    for (const tag of (await readdirOrEmpty(path.join(L.refsDir, name))).sort()) {
      const file = path.join(L.refsDir, name, tag)
      refs++
      const ref = `${name}:${tag}`
      if (!isValidRefPart(name) || !isValidRefPart(tag)) {
        // no command can name it (nor remove it)
        const p: Problem = {kind: 'bad-ref', path: rel(file), message: `${rel(file)} is not a valid ref name`}
        if (init.repair) p.repaired = await quarantine(store, file, 'ref')
        problems.push(p)
        continue
      }
      let id: string | undefined
      try {
        id = await store.readRef({name, tag})
      } catch (err) {
        // a ref that holds no id names no image: nothing to keep
        const p: Problem = {kind: 'bad-ref', path: rel(file), message: (err as Error).message}
        if (init.repair) p.repaired = await quarantine(store, file, 'ref')
        problems.push(p)
        continue
      }
      if (id && !manifestOk.has(id) && !newer.has(id)) {
        const p: Problem = {kind: 'dangling-ref', path: rel(file), message: `ref ${ref} points at image ${id}, which is missing or damaged`}
        if (init.repair && !(await store.hasManifest(id))) {
          await store.deleteRef({name, tag})
          p.repaired = 'ref removed'
        }
        problems.push(p)
      }
    }
  }
  return refs
}

async function notRegularFile(file: string): Promise<boolean> {
  const st = await fsp.lstat(file).catch(() => undefined)
  return st !== undefined && !st.isFile()
}

/** Move `file` to quarantine/ as `<label>.<unique>`. */
async function quarantine(store: LocalStore, file: string, label: string): Promise<string> {
  try {
    return `moved to ${path.relative(store.layout.root, await store.moveAside(file, label))}`
  } catch (err) {
    throw new VmiError(`could not move ${file} aside: ${(err as Error).message}`, {cause: err})
  }
}

