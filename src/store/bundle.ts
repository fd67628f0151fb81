/**
 * `save` / `load`: images as a tar bundle.
 *
 *   vmi-bundle.json         {"format":"vmi-bundle","version":1,"images":[{"id","refs","signatures"?}]}
 *   manifests/<id>          manifest bytes
 *   profiles/<id>           boot profile of an image, when it has one (after its manifest)
 *   objects/<id>            chunk bytes, each distinct chunk once
 *
 * `load` verifies every manifest and object against its id, stages objects in
 * tmp/, checks that every listed image is complete, and only then moves
 * objects, manifests and finally refs (and their signatures) into the store. A truncated or tampered
 * bundle is refused and leaves the store unchanged.
 */
import {promises as fsp} from 'node:fs'
import path from 'node:path'
import {once} from 'node:events'
import {pipeline} from 'node:stream/promises'
import {Readable, type Writable} from 'node:stream'
import tar from 'tar-stream'
import {BadBundleError, ChunkMissingError, FileNotFoundError, InterruptedError, VmiError, storeWriteError} from '../errors.js'
import {silentProgress, type ProgressReporter} from '../progress.js'
import {outputError, outputTarget, publishFile, stagingFile} from '../util/output-file.js'
import {verifyContent} from './hash.js'
import {isValidId} from './layout.js'
import type {LocalStore} from './local-store.js'
import {acquireLock} from './lock.js'
import {chunkCount, decodeManifest, MAX_CHUNK_SIZE, MAX_MANIFEST_BYTES, uniqueChunkIds, type Manifest} from './manifest.js'
import {formatRef, parseRef} from './ref.js'
import {parseRefSignature} from './ref-signature.js'
import {decodeProfile, encodeProfile, maxProfileBytes, type BootProfile} from './profile.js'

export const BUNDLE_INDEX = 'vmi-bundle.json'
export const BUNDLE_VERSION = 1
const MAX_INDEX_BYTES = 16 * 1024 * 1024

interface BundleIndex {
  format: 'vmi-bundle'
  version: number
  /** `signatures`: a ref's signature file (ref-signature.ts) by `name:tag`, for the refs that have one signing this image. */
  images: {id: string; refs: string[]; signatures?: Record<string, string>}[]
}

export interface SaveInit {
  progress?: ProgressReporter
  signal?: AbortSignal
  /** Replace an existing file at `dest` (only once the bundle is complete); without it an existing file is an error before any work. */
  overwrite?: boolean
}

export interface SaveResult {
  images: {id: string; refs: string[]}[]
  objects: number
  bytes: number
}

/** Write a bundle of `specs` to `dest` (a path: written beside it, then put in place; or a stream). */
export async function saveBundle(store: LocalStore, specs: string[], dest: string | Writable, init: SaveInit = {}): Promise<SaveResult> {
  if (specs.length === 0) throw new VmiError('nothing to save: name at least one image')
  const out = typeof dest === 'string' ? await outputTarget(dest, init.overwrite ?? false) : undefined
  const progress = init.progress ?? silentProgress
  const images = new Map<string, {manifest: Manifest; bytes: Buffer; refs: Set<string>}>()
  for (const spec of specs) {
    const r = await store.resolve(spec)
    const entry = images.get(r.id) ?? {manifest: r.manifest, bytes: (await store.getManifestBytes(r.id))!, refs: new Set<string>()}
    if (r.ref) entry.refs.add(formatRef(r.ref))
    images.set(r.id, entry)
  }
  const chunks = new Set<string>()
  for (const {manifest} of images.values()) for (const c of uniqueChunkIds(manifest)) chunks.add(c)
  // every chunk must be here before anything is written
  for (const c of chunks) if (!(await store.hasObject(c))) throw new ChunkMissingError(`cannot save: chunk ${c} is not in ${store.name}`, {data: {id: c}})

  const index: BundleIndex = {format: 'vmi-bundle', version: BUNDLE_VERSION, images: []}
  for (const [id, e] of images) {
    const refs = [...e.refs].sort()
    const signatures: Record<string, string> = {}
    for (const r of refs) {
      const text = (await store.readRefSignature(parseRef(r)).catch(() => undefined))?.toString('utf8')
      // only a signature of this ref and this image travels (one left from an earlier id of the ref is stale)
      if (text !== undefined && signsRef(text, r, id)) signatures[r] = text
    }
    index.images.push({id, refs, ...(Object.keys(signatures).length ? {signatures} : {})})
  }
  // the destination is opened before the first entry: a path that cannot be written fails here, before any work.
  // A FIFO or a device is written in place; a file is staged beside its name and put in place when complete
  const inPlace = out?.st !== undefined && !out.st.isFile()
  const staging = out && (inPlace ? out.target : stagingFile(out.target, 'vmi-save'))
  const file = staging === undefined ? undefined : await fsp.open(staging, inPlace ? 'w' : 'wx', 0o644).catch((err) => Promise.reject(outputError(err, dest, 'the bundle')))
  const pack = tar.pack()
  let bytes = 0
  const producer = (async () => {
    // the entry's own stream fails too when the pack is destroyed (the destination failed): both settle this promise
    const add = (name: string, data: Buffer) =>
      new Promise<void>((resolve, reject) => pack.entry({name, size: data.length, mode: 0o644, mtime: new Date(0)}, data, (err) => (err ? reject(err) : resolve())).on('error', reject))
    await add(BUNDLE_INDEX, Buffer.from(JSON.stringify(index, null, 1) + '\n'))
    for (const [id, e] of images) await add(`manifests/${id}`, e.bytes)
    for (const [id, {manifest}] of images) {
      // a hint: a bad one is left out rather than make the bundle unloadable
      const profile = await store.getProfile(id, chunkCount(manifest.virtualSize, manifest.chunkSize)).catch(() => undefined)
      if (profile) await add(`profiles/${id}`, encodeProfile(profile))
    }
    progress.start('saving', chunks.size, 'items')
    let n = 0
    for (const c of chunks) {
      init.signal?.throwIfAborted()
      const data = await store.getObject(c, {verify: true})
      await add(`objects/${c}`, data)
      bytes += data.length
      progress.update(++n)
    }
    pack.finalize()
  })()
  producer.catch((err) => pack.destroy(err))

  try {
    if (file) {
      try {
        await pipeline(pack, file.createWriteStream())
        await producer
        if (!inPlace) {
          const fh = await fsp.open(staging!, 'r+')
          await fh.sync().finally(() => fh.close())
          await publishFile(staging!, out!.target, init.overwrite ?? false, dest as string)
        }
      } catch (err) {
        await file.close().catch(() => {})
        if (!inPlace) await fsp.rm(staging!, {force: true})
        throw err
      }
    } else {
      const stream = dest as Writable
      for await (const piece of pack) if (!stream.write(piece)) await once(stream, 'drain')
      await producer
    }
  } catch (err) {
    if (init.signal?.aborted) throw new InterruptedError('save interrupted', {cause: err})
    await store.setAsideIfCorrupt(err)
    throw outputError(err, dest, 'the bundle')
  } finally {
    progress.stop()
  }
  return {images: index.images.map(({id, refs}) => ({id, refs})), objects: chunks.size, bytes}
}

/** Whether `text` is a well-formed signature file of ref `name` → `id` (its key is checked by whoever trusts it: `vmi verify`). */
function signsRef(text: string, name: string, id: string): boolean {
  try {
    const s = parseRefSignature(text)
    return formatRef(s.ref) === name && s.id === id
  } catch {
    return false
  }
}

export interface LoadInit {
  progress?: ProgressReporter
  signal?: AbortSignal
}

export interface LoadResult {
  images: {id: string; refs: string[]}[]
  objects: number
  newObjects: number
  bytes: number
}

/** Read a bundle from a path or stream into the store; all or nothing. */
export async function loadBundle(store: LocalStore, source: string | AsyncIterable<Uint8Array>, init: LoadInit = {}): Promise<LoadResult> {
  const progress = init.progress ?? silentProgress
  const what = typeof source === 'string' ? source : 'standard input'
  const {input, total} = await openBundle(source)
  const lock = await acquireLock(store.layout, {op: 'load', signal: init.signal})
  const staging = store.tmpPath('load')
  const extract = tar.extract()
  let feeding: Promise<void> | undefined
  progress.start(`loading ${what}`, total, 'bytes')
  try {
    await fsp.mkdir(staging, {recursive: true}).catch((err) => {
      throw storeWriteError(err, 'the load staging directory')
    })
    // the entry iterator must exist before data flows, or the first entry is lost
    const entries = extract[Symbol.asyncIterator]()
    feeding = pipeline(Readable.from(input), extract).catch((err) => {
      extract.destroy(err)
      throw err
    })
    feeding.catch(() => {})
    const r = await stageEntries(store, entries, staging, what, progress, init.signal)
    await feeding
    const index = r.index
    if (!index) throw new BadBundleError(`${what}: empty bundle`)
    await checkComplete(store, index, r, what)
    const newObjects = await commitLoaded(store, index, r, staging)
    return {images: index.images.map(({id, refs}) => ({id, refs})), objects: r.objects, newObjects, bytes: r.bytes}
  } catch (err) {
    extract.destroy()
    if (init.signal?.aborted) throw new InterruptedError(`load of ${what} interrupted; the store is unchanged`, {cause: err})
    if (err instanceof VmiError) throw err
    throw new BadBundleError(`${what} is not a readable bundle (truncated or damaged: ${(err as Error).message}); the store is unchanged`, {cause: err})
  } finally {
    progress.stop()
    await fsp.rm(staging, {recursive: true, force: true}).catch(() => {})
    await lock.release().catch(() => {})
  }
}

/** A bundle's bytes: from a file (with its size, for progress), or the stream given. */
async function openBundle(source: string | AsyncIterable<Uint8Array>): Promise<{input: AsyncIterable<Uint8Array>; total?: number}> {
  if (typeof source !== 'string') return {input: source}
  let st
  try {
    st = await fsp.stat(source)
  } catch {
    throw new FileNotFoundError(`no such bundle file: ${source}`)
  }
  if (!st.isFile()) throw new BadBundleError(`${source} is not a file`)
  return {input: (await fsp.open(source, 'r')).createReadStream(), total: st.size}
}

/** What a bundle's entries left: its index, manifests and profiles in memory, new objects verified and staged. */
interface Staged {
  index?: BundleIndex
  manifests: Map<string, {bytes: Buffer; manifest: Manifest}>
  profiles: Map<string, BootProfile>
  /** Objects written to the staging directory. */
  staged: Set<string>
  /** Objects the store had already. */
  have: Set<string>
  objects: number
  bytes: number
}

/** Read every entry: the index first, then manifests, profiles (each after its manifest) and objects, each checked as it comes. */
async function stageEntries(
  store: LocalStore,
  entries: ReturnType<ReturnType<typeof tar.extract>[typeof Symbol.asyncIterator]>,
  staging: string,
  what: string,
  progress: ProgressReporter,
  signal?: AbortSignal,
): Promise<Staged> {
  const r: Staged = {manifests: new Map(), profiles: new Map(), staged: new Set(), have: new Set(), objects: 0, bytes: 0}
  let first = true
  for await (const entry of {[Symbol.asyncIterator]: () => entries}) {
    signal?.throwIfAborted()
    const {name, size, type} = entry.header
    const fail = (msg: string): never => {
      entry.resume()
      throw new BadBundleError(`${what}: ${msg}`)
    }
    if (type !== 'file') fail(`unexpected ${type} entry ${JSON.stringify(name)}`)
    if (first) {
      first = false
      if (name !== BUNDLE_INDEX) fail(`not a vmi bundle (first entry is ${JSON.stringify(name)}, expected ${BUNDLE_INDEX})`)
      r.index = parseIndex(await readEntry(entry, size ?? 0, MAX_INDEX_BYTES, name), what)
      continue
    }
    const m = /^(manifests|objects|profiles)\/([0-9a-f]{64})$/.exec(name)
    if (!m) fail(`unexpected entry ${JSON.stringify(name)}`)
    const id = m![2]
    if (m![1] === 'profiles') {
      const manifest = r.manifests.get(id)?.manifest
      if (!manifest) fail(`profile ${id} comes before, or without, its manifest`)
      const chunks = chunkCount(manifest!.virtualSize, manifest!.chunkSize)
      // sized by the image: a small image's huge profile is refused before it is read
      const data = await readEntry(entry, size ?? 0, maxProfileBytes(chunks), name)
      try {
        r.profiles.set(id, decodeProfile(data, chunks))
      } catch (err) {
        throw new BadBundleError(`${what}: ${(err as Error).message}`, {cause: err})
      }
    } else if (m![1] === 'manifests') {
      if (!r.index!.images.some((i) => i.id === id)) fail(`manifest ${id} is not listed in ${BUNDLE_INDEX}`)
      const data = await readEntry(entry, size ?? 0, MAX_MANIFEST_BYTES, name)
      try {
        r.manifests.set(id, {bytes: data, manifest: decodeManifest(data, id)})
      } catch (err) {
        throw new BadBundleError(`${what}: ${(err as Error).message}`, {cause: err})
      }
    } else {
      const data = await readEntry(entry, size ?? 0, MAX_CHUNK_SIZE, name)
      verifyContent(id, data, (actual) => new BadBundleError(`${what}: object ${id} is corrupt (its content hashes to ${actual})`, {data: {id, actual}}))
      r.objects++
      r.bytes += data.length
      if (await store.hasObject(id)) r.have.add(id)
      else if (!r.staged.has(id)) {
        await fsp.writeFile(path.join(staging, id), data, {flag: 'wx'}).catch((err) => {
          throw storeWriteError(err, `staged object ${id}`)
        })
        r.staged.add(id)
      }
    }
    progress.update(r.bytes)
  }
  return r
}

/** Every listed image must be complete: its manifest, and each chunk staged or in the store. */
async function checkComplete(store: LocalStore, index: BundleIndex, r: Staged, what: string): Promise<void> {
  for (const img of index.images) {
    const e = r.manifests.get(img.id)
    if (!e) throw new BadBundleError(`${what}: image ${img.id} is listed but its manifest is missing (truncated bundle?)`)
    for (const c of uniqueChunkIds(e.manifest))
      if (!r.staged.has(c) && !r.have.has(c) && !(await store.hasObject(c)))
        throw new BadBundleError(`${what}: image ${img.id} needs chunk ${c}, which the bundle does not carry (truncated bundle?)`)
  }
}

/** Commit: objects, then manifests, then refs. The objects newly stored. */
async function commitLoaded(store: LocalStore, index: BundleIndex, r: Staged, staging: string): Promise<number> {
  let newObjects = 0
  for (const id of r.staged) {
    const dest = store.layout.objectPath(id)
    await fsp.mkdir(path.dirname(dest), {recursive: true})
    try {
      await fsp.link(path.join(staging, id), dest)
      newObjects++
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw storeWriteError(err, `object ${id}`)
    }
  }
  for (const [id, e] of r.manifests) await store.putManifestBytes(id, e.bytes)
  for (const [id, p] of r.profiles) await store.putProfile(id, p)
  for (const img of index.images) for (const ref of img.refs) await store.writeRef(parseRef(ref), img.id)
  for (const img of index.images) for (const [ref, text] of Object.entries(img.signatures ?? {})) await store.writeRefSignature(parseRef(ref), text)
  return newObjects
}

function parseIndex(data: Buffer, what: string): BundleIndex {
  let idx: BundleIndex
  try {
    idx = JSON.parse(data.toString('utf8'))
  } catch {
    throw new BadBundleError(`${what}: ${BUNDLE_INDEX} is not valid JSON`)
  }
  if (idx?.format !== 'vmi-bundle') throw new BadBundleError(`${what}: not a vmi bundle`)
  if (idx.version !== BUNDLE_VERSION) throw new BadBundleError(`${what}: bundle version ${JSON.stringify(idx.version)} is not supported (this vmi reads ${BUNDLE_VERSION})`)
  if (!Array.isArray(idx.images) || idx.images.length === 0 || idx.images.length > 100_000) throw new BadBundleError(`${what}: bad image list`)
  for (const i of idx.images) {
    if (!isValidId(i?.id)) throw new BadBundleError(`${what}: bad image id in ${BUNDLE_INDEX}`)
    if (!Array.isArray(i.refs)) throw new BadBundleError(`${what}: bad refs for image ${i.id}`)
    for (const r of i.refs) {
      try {
        parseRef(r)
      } catch (err) {
        throw new BadBundleError(`${what}: ${(err as Error).message}`)
      }
    }
    if (i.signatures === undefined) continue
    if (i.signatures === null || typeof i.signatures !== 'object' || Array.isArray(i.signatures)) throw new BadBundleError(`${what}: bad signatures for image ${i.id}`)
    for (const [r, text] of Object.entries(i.signatures))
      if (!i.refs.includes(r) || typeof text !== 'string' || !signsRef(text, r, i.id))
        throw new BadBundleError(`${what}: the signature given for ${JSON.stringify(r)} is not a signature of that ref of image ${i.id}`)
  }
  return idx
}

async function readEntry(entry: AsyncIterable<unknown> & {resume(): void}, size: number, max: number, name: string): Promise<Buffer> {
  if (size > max) {
    entry.resume()
    throw new BadBundleError(`bundle entry ${name} is ${size} bytes, over the ${max}-byte limit`)
  }
  const parts: Buffer[] = []
  let n = 0
  for await (const p of entry) {
    const b = p as Buffer
    n += b.length
    if (n > max) throw new BadBundleError(`bundle entry ${name} is larger than its header says`)
    parts.push(b)
  }
  if (n !== size) throw new BadBundleError(`bundle entry ${name} is truncated`)
  return Buffer.concat(parts)
}

