/**
 * Packs on a seed (docs/FORMAT.md, "Packs"): many objects in one file, so
 * that a bucket is written and read in a few large requests instead of one
 * per chunk. A pack is the objects' stored bytes end to end; its index
 * names each object's id, offset and length; a manifest's pack list names
 * the packs that hold its chunks. Readers fetch byte ranges of a pack,
 * adjacent objects in one range, and verify every object against its id as
 * they would a loose one: a pack, its index and a pack list are as
 * untrusted as anything else a seed sends (a wrong entry yields bytes that
 * fail verification, or a chunk looked for as a loose object instead).
 *
 * Only seeds hold packs (a push to a bucket writes them); a local store and
 * vmi serve keep loose objects.
 */
import {hash} from '../store/hash.js'
import {isValidId} from '../store/layout.js'
import {mapLimit} from '../util/map-limit.js'
import {RemoteError} from '../errors.js'
import type {BulkItem} from './pipelined-get.js'
import type {FetchOptions} from './source.js'
import {MAX_OBJECT_BYTES} from './wire.js'

export const PACK_INDEX_HEADER = 'vmi-pack-index 1'
export const PACK_LIST_HEADER = 'vmi-pack-list 1'
/** Objects in one pack, at most (an index is then at most ~1 MiB of text). */
export const MAX_PACK_OBJECTS = 12_000
/** Largest pack index and pack list a reader accepts. */
export const MAX_PACK_INDEX_BYTES = 2 << 20
export const MAX_PACK_LIST_BYTES = 4 << 20
/**
 * Bytes of one ranged read, at most: adjacent objects join up to this. Large
 * enough that a request's fixed cost (far higher on an object store than on
 * nginx) is small per byte; small enough that a pull's window holds a few.
 */
export const MAX_SPAN_BYTES = 4 << 20
/** Pack lists remembered, at most (each image's is read once while remembered). */
const MAX_LISTS = 1024

export function packPath(packId: string): string {
  return `packs/${packId}.pack`
}
export function packIndexPath(packId: string): string {
  return `packs/${packId}.idx`
}
/** The list of packs that hold a manifest's chunks (absent: all loose). */
export function packListPath(manifestId: string): string {
  return `packs/by-manifest/${manifestId}`
}

export interface PackEntry {
  id: string
  offset: number
  length: number
}

export interface PackedAt {
  pack: string
  offset: number
  length: number
}

/** A pack built from objects (their stored bytes), named by the BLAKE3 of its bytes. */
export function buildPack(objects: {id: string; data: Buffer}[]): {id: string; bytes: Buffer; entries: PackEntry[]} {
  if (objects.length === 0 || objects.length > MAX_PACK_OBJECTS) throw new RangeError(`a pack holds 1 to ${MAX_PACK_OBJECTS} objects, not ${objects.length}`)
  const entries: PackEntry[] = []
  let offset = 0
  for (const o of objects) {
    entries.push({id: o.id, offset, length: o.data.length})
    offset += o.data.length
  }
  const bytes = Buffer.concat(
    objects.map((o) => o.data),
    offset,
  )
  return {id: hash(bytes), bytes, entries}
}

export function encodePackIndex(entries: PackEntry[]): string {
  return [PACK_INDEX_HEADER, ...entries.map((e) => `${e.id} ${e.offset} ${e.length}`)].join('\n') + '\n'
}

/**
 * An index's entries, checked: valid ids, each object where the previous
 * ended (the pack is tiled from offset 0), no object above the size cap.
 * Anything else is an error naming `what`.
 */
export function parsePackIndex(text: string, what: string): PackEntry[] {
  const lines = text.split('\n')
  if (lines.at(-1) === '') lines.pop()
  const bad = (why: string) => new RemoteError(`${what} is not a pack index: ${why}`)
  if (lines[0] !== PACK_INDEX_HEADER) throw bad(`its first line is not "${PACK_INDEX_HEADER}"`)
  if (lines.length - 1 > MAX_PACK_OBJECTS) throw bad(`more than ${MAX_PACK_OBJECTS} entries`)
  const out: PackEntry[] = []
  let next = 0
  for (let i = 1; i < lines.length; i++) {
    const m = /^([0-9a-f]{64}) (\d{1,15}) (\d{1,9})$/.exec(lines[i])
    if (!m) throw bad(`line ${i + 1} is not "ID OFFSET LENGTH"`)
    const offset = Number(m[2])
    const length = Number(m[3])
    if (offset !== next) throw bad(`line ${i + 1} starts at ${offset}, not where the previous object ended (${next})`)
    if (length > MAX_OBJECT_BYTES) throw bad(`line ${i + 1}: an object of ${length} bytes is over the cap`)
    out.push({id: m[1], offset, length})
    next = offset + length
  }
  return out
}

export function encodePackList(packs: string[]): string {
  return [PACK_LIST_HEADER, ...packs].join('\n') + '\n'
}

export function parsePackList(text: string, what: string): string[] {
  const lines = text.split('\n')
  if (lines.at(-1) === '') lines.pop()
  if (lines[0] !== PACK_LIST_HEADER) throw new RemoteError(`${what} is not a pack list: its first line is not "${PACK_LIST_HEADER}"`)
  const packs = lines.slice(1)
  for (const p of packs) if (!isValidId(p)) throw new RemoteError(`${what} is not a pack list: ${JSON.stringify(String(p).slice(0, 80))} is not a pack id`)
  return packs
}

/** One ranged read: adjacent objects of one pack. `members` index the caller's list, `sizes` their stored lengths in order. */
export interface PackSpan {
  path: string
  offset: number
  length: number
  members: number[]
  sizes: number[]
}

/** A bulk item that is a span (pipelined-get sends it as a ranged GET). */
export type SpanItem = BulkItem & {span: PackSpan}

export function spanItem(span: PackSpan): SpanItem {
  return {id: `${span.path}@${span.offset}`, path: span.path, range: span.offset, length: span.length, span}
}

/** Each member of a span's body, in order: `each(member, bytes)`. */
export function splitSpan(span: PackSpan, body: Buffer, each: (member: number, bytes: Buffer) => void): void {
  let at = 0
  for (let k = 0; k < span.members.length; k++) {
    each(span.members[k], body.subarray(at, at + span.sizes[k]))
    at += span.sizes[k]
  }
}

/** Reads a key of the seed as text: undefined when it does not exist. */
export type KeyReader = (path: string, what: string, max: number, opts: FetchOptions) => Promise<Buffer | undefined>

/**
 * Where a seed's packed objects are: the indexes of the packs a pull or a
 * mount was told about (a manifest's pack list), or that a push listed.
 */
export class PackCatalog {
  private readonly byId = new Map<string, PackedAt>()
  private readonly indexes = new Map<string, Promise<void>>()
  private readonly lists = new Map<string, Promise<number>>()
  /** Pack lists being read now. */
  private readonly loading = new Set<Promise<number>>()

  get size(): number {
    return this.byId.size
  }

  lookup(id: string): PackedAt | undefined {
    return this.byId.get(id)
  }

  /** The packs holding any of `ids`, sorted. */
  packsOf(ids: Iterable<string>): string[] {
    const out = new Set<string>()
    for (const id of ids) {
      const at = this.byId.get(id)
      if (at) out.add(at.pack)
    }
    return [...out].sort()
  }

  /** A pack's entries, known (this push wrote it, or its index was read). */
  add(pack: string, entries: PackEntry[]): void {
    this.indexes.set(pack, Promise.resolve())
    for (const e of entries) if (!this.byId.has(e.id)) this.byId.set(e.id, {pack, offset: e.offset, length: e.length})
  }

  /** Read a pack's index once (concurrent callers share the read); a pack whose index is absent holds nothing usable. */
  loadIndex(pack: string, read: KeyReader, opts: FetchOptions = {}): Promise<void> {
    let p = this.indexes.get(pack)
    if (!p) {
      const what = `pack index ${pack}`
      p = read(packIndexPath(pack), what, MAX_PACK_INDEX_BYTES, opts).then((b) => {
        if (b) this.add(pack, parsePackIndex(b.toString('utf8'), what))
      })
      p.catch(() => this.indexes.delete(pack))
      this.indexes.set(pack, p)
    }
    return p
  }

  /**
   * Read a manifest's pack list and the indexes it names (once per manifest);
   * resolves to the number of packs. A manifest without a list has its
   * chunks loose: 0.
   */
  loadManifest(manifestId: string, read: KeyReader, opts: FetchOptions = {}): Promise<number> {
    if (!isValidId(manifestId)) return Promise.reject(new TypeError(`bad manifest id ${JSON.stringify(manifestId)}`))
    let p = this.lists.get(manifestId)
    if (!p) {
      const what = `the pack list of ${manifestId}`
      p = read(packListPath(manifestId), what, MAX_PACK_LIST_BYTES, opts).then(async (b) => {
        if (!b) return 0
        const packs = parsePackList(b.toString('utf8'), what)
        await mapLimit(packs, 8, (pack) => this.loadIndex(pack, read, opts))
        return packs.length
      })
      p.catch(() => this.lists.delete(manifestId))
      this.lists.set(manifestId, p)
      this.loading.add(p)
      const done = () => void this.loading.delete(p!)
      p.then(done, done)
      // images named by fetch-throughs come from clients: the oldest is forgotten (read again if named again)
      if (this.lists.size > MAX_LISTS) this.lists.delete(this.lists.keys().next().value!)
    }
    return p
  }

  /**
   * A chunk's stored bytes (unverified: the caller checks them) from a seed
   * that may keep packs: its range of its pack, `readRange(path, what, at)`,
   * else the loose object, `readLoose()` (also for a pack gone since); not
   * found loose while a pack list is being read, its pack is looked up again
   * once the list is in. undefined: neither has it.
   */
  async readChunk(
    id: string,
    readRange: (path: string, what: string, at: PackedAt) => Promise<Buffer | undefined>,
    readLoose: () => Promise<Buffer | undefined>,
  ): Promise<Buffer | undefined> {
    const packed = async () => {
      const at = this.byId.get(id)
      return at && (await readRange(packPath(at.pack), `chunk ${id} in pack ${at.pack}`, at))
    }
    const data = (await packed()) || (await readLoose())
    if (data !== undefined || !this.pending) return data
    await this.settled()
    return packed()
  }

  /** Whether a pack list is being read: a chunk not found yet may be in it. */
  get pending(): boolean {
    return this.loading.size > 0
  }

  /** When the pack lists being read now are in (or failed). */
  async settled(): Promise<void> {
    await Promise.allSettled([...this.loading])
  }

  /** RemoteSource.packPlan: the plan when any of `items` is in a known pack, else undefined. */
  bulkPlan(items: readonly {id: string}[]): {spans: PackSpan[]; loose: number[]} | undefined {
    if (this.byId.size === 0) return undefined
    const plan = this.plan(items)
    return plan.spans.length > 0 ? plan : undefined
  }

  /**
   * Ranged reads for `items` (their indexes in the caller's list): the
   * packed ones grouped by pack, adjacent objects joined up to `maxBytes`;
   * `loose` the indexes of those in no known pack.
   */
  plan(items: readonly {id: string}[], maxBytes = MAX_SPAN_BYTES): {spans: PackSpan[]; loose: number[]} {
    const loose: number[] = []
    const located: {i: number; at: PackedAt}[] = []
    items.forEach((it, i) => {
      const at = this.byId.get(it.id)
      if (at) located.push({i, at})
      else loose.push(i)
    })
    located.sort((a, b) => (a.at.pack < b.at.pack ? -1 : a.at.pack > b.at.pack ? 1 : a.at.offset - b.at.offset))
    const spans: PackSpan[] = []
    let cur: PackSpan | undefined
    let curPack = ''
    for (const {i, at} of located) {
      if (cur && curPack === at.pack && cur.offset + cur.length === at.offset && cur.length + at.length <= maxBytes) {
        cur.length += at.length
        cur.members.push(i)
        cur.sizes.push(at.length)
        continue
      }
      // the same chunk asked twice lands at the same offset: its own span
      cur = {path: packPath(at.pack), offset: at.offset, length: at.length, members: [i], sizes: [at.length]}
      curPack = at.pack
      spans.push(cur)
    }
    return {spans, loose}
  }
}
