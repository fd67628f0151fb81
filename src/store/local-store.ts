/**
 * The local store: chunks (local-objects.ts), manifests (local-manifests.ts), refs and per-image
 * metadata in a directory (layout.ts). Writes go through tmp/ and a rename or
 * link, so a crash never leaves a partial object, manifest or ref in place.
 */
import {promises as fsp} from 'node:fs'
import path from 'node:path'
import {
  AmbiguousRefError,
  BadManifestError,
  isErrno,
  RefNotFoundError,
  StoreError,
  storeWriteError,
} from '../errors.js'
import {exists, mkdirp, readdirOrEmpty, readFileBounded, writeFileAtomic} from '../util/fs-util.js'
import {LocalManifestStore} from './local-manifests.js'
import {isValidId, STORE_MARKER} from './layout.js'
import type {Manifest} from './manifest.js'
import {formatRef, isValidRefPart, parseRef, type RefName} from './ref.js'
import {decodeProfile, encodeProfile, MAX_PROFILE_BYTES, type BootProfile} from './profile.js'
import {MAX_REF_SIGNATURE_BYTES} from './ref-signature.js'

export interface RefEntry extends RefName {
  id: string
}

export interface ResolvedImage {
  id: string
  manifest: Manifest
  /** The ref the user named, when they named one. */
  ref?: RefName
}

export interface StoreConfig {
  version: 1
  chunkSize?: number
  remotes?: Record<string, {url: string}>
  [key: string]: unknown
}

export interface LocalStoreInit {
  /** Create the directory structure when missing (default true). */
  create?: boolean
}

/** A ref holds an id and a newline; anything much larger is damage. */
const MAX_REF_BYTES = 4096
const MAX_CONFIG_BYTES = 1 << 20

const STORE_DIRS = ['objects', 'manifests', 'refs', 'tmp', 'locks'] as const

export class LocalStore extends LocalManifestStore {
  private constructor(root: string) {
    super(root)
  }

  /** Open (and by default create) the store at `root`. */
  static async open(root: string, init: LocalStoreInit = {}): Promise<LocalStore> {
    const store = new LocalStore(root)
    const {create = true} = init
    let st
    try {
      st = await fsp.stat(store.layout.root)
    } catch (err) {
      if (!isErrno(err, 'ENOENT')) throw new StoreError(`cannot open store ${store.layout.root}: ${(err as Error).message}`, {cause: err})
    }
    if (st && !st.isDirectory()) throw new StoreError(`store path ${store.layout.root} is not a directory`)
    if (!st && !create) throw new StoreError(`no store at ${store.layout.root}`)
    if (create) {
      const missing: string[] = []
      for (const d of STORE_DIRS) if (!(await exists(path.join(store.layout.root, d)))) missing.push(d)
      try {
        for (const d of missing) await mkdirp(path.join(store.layout.root, d))
      } catch (err) {
        throw storeWriteError(err, `the store directory ${store.layout.root}`)
      }
      // The marker tells a client that a static web server over this directory
      // is a vmi seed. Best effort: a read-only store (an old one) works without it.
      if (!(await exists(store.layout.markerFile))) await fsp.writeFile(store.layout.markerFile, STORE_MARKER, {flag: 'wx'}).catch(() => {})
    }
    return store
  }

  // ---------------------------------------------------------------- refs

  async readRef(ref: RefName): Promise<string | undefined> {
    const damaged = (why: string) => new StoreError(`ref ${formatRef(ref)} in ${this.name} is damaged (${why})`, {data: {ref: formatRef(ref)}})
    let data
    try {
      data = await readFileBounded(this.layout.refPath(ref.name, ref.tag), MAX_REF_BYTES, (size) => new StoreError(`${size} bytes, not an id`), {noFollow: true})
    } catch (err) {
      if (err instanceof StoreError) throw damaged(err.message)
      throw err
    }
    if (data === undefined) return undefined
    const id = data.toString('utf8').trim()
    if (!isValidId(id)) throw damaged('does not hold an id')
    return id
  }

  /** Point `ref` at manifest `id` (atomic replace). */
  async writeRef(ref: RefName, id: string): Promise<void> {
    if (!isValidId(id)) throw new TypeError(`not an id: ${id}`)
    try {
      await writeFileAtomic(this.tmpPath('ref'), this.layout.refPath(ref.name, ref.tag), id + '\n')
    } catch (err) {
      throw storeWriteError(err, `ref ${formatRef(ref)}`)
    }
  }

  /** Remove a ref (and its signature); returns the id it held, or undefined when absent. */
  async deleteRef(ref: RefName): Promise<string | undefined> {
    const id = await this.readRef(ref)
    if (id === undefined) return undefined
    try {
      await fsp.rm(this.layout.refPath(ref.name, ref.tag), {force: true})
      await fsp.rmdir(path.join(this.layout.refsDir, ref.name)).catch(() => {})
      await this.deleteRefSignature(ref)
    } catch (err) {
      throw storeWriteError(err, `ref ${formatRef(ref)}`)
    }
    return id
  }

  /**
   * The signature file of a ref (ref-signature.ts), unchecked; undefined
   * when the ref is not signed here. It may be stale (for another id than
   * the ref holds now): whoever trusts it verifies it against the ref.
   */
  async readRefSignature(ref: RefName): Promise<Buffer | undefined> {
    return readFileBounded(this.layout.refSignaturePath(ref.name, ref.tag), MAX_REF_SIGNATURE_BYTES, (size) => new StoreError(`signature of ref ${formatRef(ref)} in ${this.name} is ${size} bytes, not a signature`), {noFollow: true})
  }

  /** Store a ref's signature (atomic replace). The caller has checked it names the ref. */
  async writeRefSignature(ref: RefName, data: Buffer | string): Promise<void> {
    try {
      await writeFileAtomic(this.tmpPath('sig'), this.layout.refSignaturePath(ref.name, ref.tag), data)
    } catch (err) {
      throw storeWriteError(err, `signature of ref ${formatRef(ref)}`)
    }
  }

  async deleteRefSignature(ref: RefName): Promise<void> {
    try {
      await fsp.rm(this.layout.refSignaturePath(ref.name, ref.tag), {force: true})
      await fsp.rmdir(path.join(this.layout.sigsDir, ref.name)).catch(() => {})
    } catch (err) {
      throw storeWriteError(err, `signature of ref ${formatRef(ref)}`)
    }
  }

  /** Every ref. A damaged one is skipped (fsck reports it), or with `strict` is an error. */
  async listRefs(opts: {strict?: boolean} = {}): Promise<RefEntry[]> {
    const out: RefEntry[] = []
    for (const name of (await readdirOrEmpty(this.layout.refsDir)).sort()) {
      if (!isValidRefPart(name)) continue
      for (const tag of (await readdirOrEmpty(path.join(this.layout.refsDir, name))).sort()) {
        if (!isValidRefPart(tag)) continue
        // a damaged ref is skipped here (fsck reports it), not fatal for the whole list
        const id = opts.strict ? await this.readRef({name, tag}) : await this.readRef({name, tag}).catch(() => undefined)
        if (id) out.push({name, tag, id})
      }
    }
    return out
  }

  /**
   * Resolve what a user typed: `name:tag`, `name` (tag latest), a full id
   * or a unique id prefix (at least 4 hex digits), like git.
   */
  async resolve(spec: string): Promise<ResolvedImage> {
    const id = await this.resolveId(spec)
    const ref = spec.includes(':') || !/^[0-9a-f]{4,64}$/.test(spec) ? parseRef(spec) : undefined
    const manifest = await this.getManifest(id)
    return {id, manifest, ref: ref && (await this.readRef(ref)) === id ? ref : undefined}
  }

  async resolveId(spec: string): Promise<string> {
    if (spec.includes(':')) {
      const ref = parseRef(spec)
      const id = await this.readRef(ref)
      if (id === undefined) throw await this.notFound(spec)
      return id
    }
    const isHex = /^[0-9a-f]{4,64}$/.test(spec)
    if (isValidRefPart(spec)) {
      const id = await this.readRef(parseRef(spec))
      if (id !== undefined) return id
    }
    if (!isHex) {
      parseRef(spec) // throws a clear error for a malformed name
      throw await this.notFound(spec)
    }
    if (spec.length === 64 && (await this.hasManifest(spec))) return spec
    const candidates: string[] = []
    const shard = spec.slice(0, 2)
    for (const rest of await readdirOrEmpty(path.join(this.layout.manifestsDir, shard))) {
      const full = shard + rest
      if (isValidId(full) && full.startsWith(spec)) candidates.push(full)
    }
    if (candidates.length === 1) return candidates[0]
    if (candidates.length > 1)
      throw new AmbiguousRefError(`id prefix ${spec} is ambiguous; it matches:\n  ${candidates.sort().join('\n  ')}`, {
        data: {prefix: spec, candidates},
      })
    throw await this.notFound(spec)
  }

  private async notFound(spec: string): Promise<RefNotFoundError> {
    return new RefNotFoundError(`no image ${JSON.stringify(spec)} in ${this.name}`, {data: {spec}})
  }

  /** Refs pointing at each manifest id. */
  async refsById(): Promise<Map<string, RefName[]>> {
    const map = new Map<string, RefName[]>()
    for (const r of await this.listRefs()) {
      const list = map.get(r.id) ?? []
      list.push({name: r.name, tag: r.tag})
      map.set(r.id, list)
    }
    return map
  }

  // ---------------------------------------------------------------- boot profiles

  /**
   * The boot profile of an image, if recorded (a sidecar: the image id does
   * not change); with `chunkCount`, checked against the image's size.
   */
  async getProfile(id: string, chunkCount?: number): Promise<BootProfile | undefined> {
    const data = await readFileBounded(this.layout.profilePath(id), MAX_PROFILE_BYTES, () => new BadManifestError(`boot profile of ${id} is too large`))
    return data === undefined ? undefined : decodeProfile(data, chunkCount)
  }

  async putProfile(id: string, profile: BootProfile): Promise<void> {
    const file = this.layout.profilePath(id)
    try {
      this.ensureShard(file)
      await writeFileAtomic(this.tmpPath('profile'), file, encodeProfile(profile))
    } catch (err) {
      throw storeWriteError(err, `boot profile of ${id}`)
    }
  }

  // ---------------------------------------------------------------- pins and lazy marks

  private async setMark(file: string, on: boolean, what: string): Promise<void> {
    try {
      if (on) {
        await mkdirp(path.dirname(file))
        await fsp.writeFile(file, '')
      } else await fsp.rm(file, {force: true})
    } catch (err) {
      throw storeWriteError(err, what)
    }
  }

  /** Pinned images keep all their chunks through cache eviction. */
  async setPinned(id: string, on: boolean): Promise<void> {
    await this.setMark(this.layout.pinPath(id), on, `pin of ${id}`)
  }

  async listPins(): Promise<string[]> {
    return (await readdirOrEmpty(this.layout.pinsDir)).filter(isValidId).sort()
  }

  /** A lazy image may lack chunks by design (cache eviction, lazy mount); fsck accepts that. */
  async setLazy(id: string, on: boolean): Promise<void> {
    await this.setMark(this.layout.lazyPath(id), on, `lazy mark of ${id}`)
  }

  async isLazy(id: string): Promise<boolean> {
    return fsp.access(this.layout.lazyPath(id)).then(
      () => true,
      () => false,
    )
  }

  async listLazy(): Promise<string[]> {
    return (await readdirOrEmpty(this.layout.lazyDir)).filter(isValidId).sort()
  }

  /**
   * The remotes (URLs) this image was pulled or mounted from, or pushed to:
   * where its chunks can be fetched again. Only an image with a source is
   * cache; cache eviction never removes the only copy of a chunk.
   */
  async getSources(id: string): Promise<string[]> {
    const text = await fsp.readFile(this.layout.sourcesPath(id), 'utf8').catch(() => '')
    return text.split('\n').filter((l) => /^(https?|s3):\/\//.test(l))
  }

  /** Add remotes to an image's sources (kept once each, newest last). */
  async addSources(id: string, urls: string[]): Promise<void> {
    const before = await this.getSources(id)
    const after = [...new Set([...before, ...urls.map((u) => u.replace(/\/+$/, ''))])]
    if (after.length === before.length) return
    try {
      await mkdirp(this.layout.sourcesDir)
      await writeFileAtomic(this.tmpPath('sources'), this.layout.sourcesPath(id), after.join('\n') + '\n')
    } catch (err) {
      throw storeWriteError(err, `sources of ${id}`)
    }
  }

  async clearSources(id: string): Promise<void> {
    await this.setMark(this.layout.sourcesPath(id), false, `sources of ${id}`)
  }

  /** Images with at least one source file. */
  async listSourced(): Promise<string[]> {
    return (await readdirOrEmpty(this.layout.sourcesDir)).filter(isValidId).sort()
  }

  /** Record a use of an object (cache eviction is least-recently-used). Best effort. */
  async touchObject(id: string): Promise<void> {
    const now = new Date()
    await fsp.utimes(this.layout.objectPath(id), now, now).catch(() => {})
  }

  // ---------------------------------------------------------------- config

  async readConfig(): Promise<StoreConfig> {
    const data = await readFileBounded(this.layout.configFile, MAX_CONFIG_BYTES, (size) => new StoreError(`store config ${this.layout.configFile} is ${size} bytes, too large`))
    if (data === undefined) return {version: 1}
    try {
      const parsed = JSON.parse(data.toString('utf8')) as StoreConfig
      if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new Error('not an object')
      return parsed
    } catch (err) {
      throw new StoreError(`store config ${this.layout.configFile} is not valid JSON: ${(err as Error).message}`, {cause: err})
    }
  }

  async writeConfig(config: StoreConfig): Promise<void> {
    try {
      await writeFileAtomic(this.tmpPath('config'), this.layout.configFile, JSON.stringify(config, null, 2) + '\n')
    } catch (err) {
      throw storeWriteError(err, 'the store config')
    }
  }
}
