/** Operator views and ref edits: ls, inspect, log, diff, tag, rm. */
import {mapLimit} from '../util/map-limit.js'
import {RefNotFoundError, VmiError} from '../errors.js'
import type {LocalStore} from './local-store.js'
import {scanLocks, withLock} from './lock.js'
import {chunkCount, chunkLength, type Manifest} from './manifest.js'
import {formatRef, parseRef, type RefName} from './ref.js'

export interface ImageSummary {
  id: string
  refs: string[]
  virtualSize: number
  chunkSize: number
  sourceFormat: string
  created: string
  parent?: string
  /** Bytes of this image's distinct non-zero chunks present in the store. */
  storedBytes: number
  /** Of those, bytes no other image in the store shares (tagged or not: `ls`, `ls --all` and `inspect` agree). */
  uniqueBytes: number
  /** Distinct non-zero chunks missing from the store. */
  missingChunks: number
  /** Allowed to lack chunks: lazily mounted, or thinned by cache eviction (chunks come again from its sources). */
  lazy: boolean
}

/**
 * The chunk list as runs `[first index, count, id or null for zeros]`.
 * Walking runs, never one entry per chunk, keeps a zero run of 2^32 chunks
 * (a valid 1 PiB sparse image) as cheap as one entry.
 */
function* chunkRuns(m: Pick<Manifest, 'chunks'>): Generator<[number, number, string | null]> {
  let i = 0
  for (const e of m.chunks) {
    if (typeof e === 'number') {
      yield [i, e, null]
      i += e
    } else yield [i++, 1, e]
  }
}

/** Bytes of chunks [from, to) of an image (only the last chunk may be short). */
function spanBytes(m: Pick<Manifest, 'virtualSize' | 'chunkSize'>, from: number, to: number): number {
  return Math.min(to * m.chunkSize, m.virtualSize) - from * m.chunkSize
}

/** Distinct non-zero chunks with their byte length. */
function chunkSizes(m: Manifest): Map<string, number> {
  const out = new Map<string, number>()
  for (const [i, , id] of chunkRuns(m)) if (id !== null && !out.has(id)) out.set(id, chunkLength(m, i))
  return out
}


/**
 * Tagged images and lazy ones (a lazy mount by id has no ref); with `all`,
 * every manifest. Unique bytes are counted against every manifest in the
 * store whatever is listed, so every view gives an image the same figure. A
 * damaged manifest is left out (fsck reports it) and passed to `onDamaged`:
 * one bad file does not hide every other image.
 */
export async function listImages(store: LocalStore, opts: {all?: boolean; onDamaged?: (id: string, err: VmiError) => void} = {}): Promise<ImageSummary[]> {
  const byId = await store.refsById()
  const lazy = new Set(await store.listLazy())
  const ids = new Set(byId.keys())
  for await (const id of store.listManifestIds()) ids.add(id)
  const listed = (id: string) => opts.all || byId.has(id) || lazy.has(id)
  const manifests = new Map<string, Manifest>()
  for (const id of ids) {
    try {
      manifests.set(id, await store.getManifest(id))
    } catch (err) {
      if (err instanceof RefNotFoundError) continue
      if (!(err instanceof VmiError)) throw err
      if (listed(id)) opts.onDamaged?.(id, err)
    }
  }
  const users = new Map<string, number>()
  const sizes = new Map<string, Map<string, number>>()
  for (const [id, m] of manifests) {
    const s = chunkSizes(m)
    sizes.set(id, s)
    for (const c of s.keys()) users.set(c, (users.get(c) ?? 0) + 1)
  }
  const present = new Map<string, number | undefined>()
  const allChunks = [...users.keys()]
  const stat = await mapLimit(allChunks, 32, (c) => store.objectSize(c))
  allChunks.forEach((c, i) => present.set(c, stat[i]))
  const out: ImageSummary[] = []
  for (const [id, m] of manifests) {
    if (!listed(id)) continue
    let storedBytes = 0
    let uniqueBytes = 0
    let missingChunks = 0
    for (const c of sizes.get(id)!.keys()) {
      const sz = present.get(c)
      if (sz === undefined) {
        missingChunks++
        continue
      }
      storedBytes += sz
      if (users.get(c) === 1) uniqueBytes += sz
    }
    out.push({
      id,
      refs: (byId.get(id) ?? []).map(formatRef),
      virtualSize: m.virtualSize,
      chunkSize: m.chunkSize,
      sourceFormat: m.sourceFormat,
      created: m.created,
      ...(m.parent ? {parent: m.parent} : {}),
      storedBytes,
      uniqueBytes,
      missingChunks,
      lazy: lazy.has(id),
    })
  }
  out.sort((a, b) => (a.refs[0] ?? '~' + a.id).localeCompare(b.refs[0] ?? '~' + b.id))
  return out
}

export interface ImageDetails extends ImageSummary {
  chunks: number
  zeroChunks: number
  distinctChunks: number
  annotations: Record<string, string>
  manifestBytes: number
}

export async function inspectImage(store: LocalStore, spec: string): Promise<ImageDetails> {
  const {id, manifest} = await store.resolve(spec)
  const all = await listImages(store, {all: true})
  const summary = all.find((s) => s.id === id)!
  let zeroChunks = 0
  for (const e of manifest.chunks) if (typeof e === 'number') zeroChunks += e
  return {
    ...summary,
    chunks: chunkCount(manifest.virtualSize, manifest.chunkSize),
    zeroChunks,
    distinctChunks: chunkSizes(manifest).size,
    annotations: manifest.annotations ?? {},
    manifestBytes: (await store.getManifestBytes(id))!.length,
  }
}

export interface LogEntry {
  id: string
  refs: string[]
  created: string
  virtualSize: number
  /** Set on the last entry when its parent is not in this store. */
  missingParent?: string
}

/** The parent lineage of an image, newest first. */
export async function imageLog(store: LocalStore, spec: string, opts: {max?: number} = {}): Promise<LogEntry[]> {
  const max = opts.max ?? 10_000
  const byId = await store.refsById()
  let id: string | undefined = await store.resolveId(spec)
  const seen = new Set<string>()
  const out: LogEntry[] = []
  while (id !== undefined && out.length < max) {
    if (seen.has(id)) throw new VmiError(`image ${id} appears twice in its own lineage (a tampered manifest)`)
    seen.add(id)
    if (!(await store.hasManifest(id))) {
      if (out.length === 0) throw new RefNotFoundError(`no image ${id}`)
      out[out.length - 1].missingParent = id
      break
    }
    const m = await store.getManifest(id)
    out.push({id, refs: (byId.get(id) ?? []).map(formatRef), created: m.created, virtualSize: m.virtualSize})
    id = m.parent
  }
  return out
}

export interface DiffSide {
  chunks: number
  bytes: number
}

export interface ImageDiff {
  a: string
  b: string
  /** Position by position (only when both have the same chunk size). */
  positional?: {same: DiffSide; changed: DiffSide; onlyA: DiffSide; onlyB: DiffSide; zeroBoth: DiffSide}
  /** Distinct non-zero content, regardless of position. */
  content: {shared: DiffSide; onlyA: DiffSide; onlyB: DiffSide}
}

export async function diffImages(store: LocalStore, specA: string, specB: string): Promise<ImageDiff> {
  const A = await store.resolve(specA)
  const B = await store.resolve(specB)
  const side = (): DiffSide => ({chunks: 0, bytes: 0})
  const add = (s: DiffSide, bytes: number, chunks = 1) => {
    s.chunks += chunks
    s.bytes += bytes
  }
  let positional: ImageDiff['positional']
  if (A.manifest.chunkSize === B.manifest.chunkSize) {
    const p = (positional = {same: side(), changed: side(), onlyA: side(), onlyB: side(), zeroBoth: side()})
    const ma = A.manifest
    const mb = B.manifest
    const na = chunkCount(ma.virtualSize, ma.chunkSize)
    const nb = chunkCount(mb.virtualSize, mb.chunkSize)
    const common = Math.min(na, nb)
    // run by run, never chunk by chunk; below `odd` (the shorter image's
    // last chunk) both sides' chunks are whole, so a span is classified at once
    const odd = common - 1
    const span = (from: number, to: number, ia: string | null, ib: string | null) => {
      if (from >= to) return
      add(ia === null && ib === null ? p.zeroBoth : ia === ib ? p.same : p.changed, spanBytes(ma, from, to), to - from)
    }
    const one = (i: number, ia: string | null, ib: string | null) => {
      const la = chunkLength(ma, i)
      const lb = chunkLength(mb, i)
      if (ia === null && ib === null && la === lb) add(p.zeroBoth, la)
      else if (ia === ib && la === lb) add(p.same, la)
      else add(p.changed, Math.max(la, lb))
    }
    const ra = chunkRuns(ma)
    const rb = chunkRuns(mb)
    let [, leftA, ia] = ra.next().value ?? [0, 0, null]
    let [, leftB, ib] = rb.next().value ?? [0, 0, null]
    for (let i = 0; i < common; ) {
      const k = Math.min(leftA, leftB, common - i)
      if (!(k > 0)) break // cannot happen with a validated manifest; never spin
      if (odd >= i && odd < i + k) {
        span(i, odd, ia, ib)
        one(odd, ia, ib)
        span(odd + 1, i + k, ia, ib)
      } else span(i, i + k, ia, ib)
      i += k
      leftA -= k
      leftB -= k
      if (leftA === 0) [, leftA, ia] = ra.next().value ?? [0, 0, null]
      if (leftB === 0) [, leftB, ib] = rb.next().value ?? [0, 0, null]
    }
    if (na > common) add(p.onlyA, spanBytes(ma, common, na), na - common)
    if (nb > common) add(p.onlyB, spanBytes(mb, common, nb), nb - common)
  }
  const ca = chunkSizes(A.manifest)
  const cb = chunkSizes(B.manifest)
  const content = {shared: side(), onlyA: side(), onlyB: side()}
  for (const [c, len] of ca) add(cb.has(c) ? content.shared : content.onlyA, len)
  for (const [c, len] of cb) if (!ca.has(c)) add(content.onlyB, len)
  return {a: A.id, b: B.id, positional, content}
}

export async function tagImage(store: LocalStore, src: string, target: string): Promise<{id: string; ref: string; previous?: string}> {
  const ref = parseRef(target)
  return withLock(store.layout, {op: 'tag'}, async () => {
    const id = await store.resolveId(src)
    const previous = await store.readRef(ref)
    await store.writeRef(ref, id)
    return {id, ref: formatRef(ref), ...(previous && previous !== id ? {previous} : {})}
  })
}

export interface RemoveResult {
  spec: string
  id: string
  untagged: string[]
  /**
   * Why the image's manifest stays although no ref names it any more: it is
   * pinned, or a running mount or pull holds it. gc keeps it (and its
   * chunks) while that lasts and removes it after; absent when removed.
   */
  kept?: 'pinned' | 'in-use'
}

/**
 * Remove refs (an id removes every ref to it). An image no ref names any
 * more loses its manifest here, unless a pin or a running operation keeps
 * it: gc keeps the chunks of exactly those images (pins, live locks' roots),
 * and it can keep them only while their manifest says which they are.
 * Objects go at the next gc.
 */
export async function removeImages(store: LocalStore, specs: string[]): Promise<RemoveResult[]> {
  return withLock(store.layout, {op: 'rm'}, async () => {
    // resolve all first: one bad name removes nothing
    const plans: {spec: string; id: string; refs: RefName[]}[] = []
    const byId = await store.refsById()
    for (const spec of specs) {
      const id = await store.resolveId(spec)
      const named = spec.includes(':') || !/^[0-9a-f]{4,64}$/.test(spec) || (await store.readRef(parseRefLoose(spec))) === id
      const refs = named ? [parseRef(spec)] : (byId.get(id) ?? [])
      plans.push({spec, id, refs})
    }
    // what gc would keep (it cannot run while this write lock is held)
    const pinned = new Set(await store.listPins())
    const {roots: inUse} = await scanLocks(store.layout)
    const out: RemoveResult[] = []
    for (const p of plans) {
      const untagged: string[] = []
      for (const r of p.refs) if ((await store.deleteRef(r)) !== undefined) untagged.push(formatRef(r))
      let kept: RemoveResult['kept']
      if (p.refs.length === 0 || !(await stillReferenced(store, p.id))) {
        kept = pinned.has(p.id) ? 'pinned' : inUse.has(p.id) ? 'in-use' : undefined
        if (!kept) await store.deleteManifest(p.id)
      }
      out.push({spec: p.spec, id: p.id, untagged, ...(kept ? {kept} : {})})
    }
    return out
  })
}

function parseRefLoose(spec: string): RefName {
  try {
    return parseRef(spec)
  } catch {
    return {name: '-', tag: '-'}
  }
}

async function stillReferenced(store: LocalStore, id: string): Promise<boolean> {
  return (await store.listRefs()).some((r) => r.id === id)
}

