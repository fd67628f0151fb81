/**
 * The HTTP wire protocol (docs/PROTOCOL.md) in one place, imported by both
 * ends: the client (http-store.ts, pipelined-get.ts, batched-source.ts,
 * chain.ts) builds its requests from it, the server (server/) parses them
 * with parseTarget. Routes, the path of an id or a ref, the headers vmi
 * defines, and the limits either end enforces live here and nowhere else.
 *
 * Object, manifest and profile paths are the store layout itself
 * (store/layout.ts), so that a static web server over a store directory is
 * a seed without rewrite rules. Paths here are relative to a store's base
 * URL: no leading slash.
 */
import {MAX_MANIFEST_BYTES} from '../store/manifest.js'
import {MAX_STORED_OBJECT} from '../store/object-encoding.js'
import {MAX_PROFILE_BYTES} from '../store/profile.js'
import {isValidRefPart} from '../store/ref.js'
import {MAX_REF_SIGNATURE_BYTES} from '../store/ref-signature.js'

// ------------------------------------------------------------ routes

/** POST body `{"ids":[…]}`, answer `{"missing":[…]}`: the batch has-check (vmi serve only). */
export const MISSING_ROUTE = 'v1/objects/missing'
/** POST of many objects in one body (object-batch framing below), answer `{"stored","present","refused"}` (vmi serve only, push token). */
export const OBJECT_BATCH_ROUTE = 'v1/objects/batch'
/** GET, answer `{"refs":[{"name","tag","id"}]}` (vmi serve only). */
export const REF_LIST_ROUTE = 'v1/refs'
export const HEALTH_ROUTE = 'healthz'
export const METRICS_ROUTE = 'metrics'

type ShardedDir = 'objects' | 'manifests' | 'profiles'

/** `<dir>/<first 2 hex>/<other 62>`. */
function shardedPath(dir: ShardedDir, id: string): string {
  return `${dir}/${id.slice(0, 2)}/${id.slice(2)}`
}

export function objectPath(id: string): string {
  return shardedPath('objects', id)
}

export function manifestPath(id: string): string {
  return shardedPath('manifests', id)
}

export function profilePath(id: string): string {
  return shardedPath('profiles', id)
}

export function refPath(name: string, tag: string): string {
  return `refs/${encodeURIComponent(name)}/${encodeURIComponent(tag)}`
}

/** A ref's signature (store/ref-signature.ts): the store's own `sigs/<name>/<tag>`. */
export function refSignaturePath(name: string, tag: string): string {
  return `sigs/${encodeURIComponent(name)}/${encodeURIComponent(tag)}`
}

// ------------------------------------------------------------ headers

/**
 * On an object GET: the object encodings the client reads besides raw
 * bytes ("zstd"). vmi serve then sends an object as it is stored; without
 * it, decoded (PROTOCOL.md "Compressed objects").
 */
export const ENCODINGS_HEADER = 'x-vmi-encodings'
/** Request header asking a server to fetch an object it lacks from its upstream. */
export const FETCH_HEADER = 'x-vmi-fetch'
/** The one value of FETCH_HEADER. */
export const FETCH_UPSTREAM = 'upstream'
/**
 * On a fetch-through: the image (manifest id) the chunk is for, so that a
 * server whose upstream keeps packs knows where to find it (packs.ts).
 */
export const IMAGE_HEADER = 'x-vmi-image'
export const USER_AGENT = 'vmi/1'

/** Whether a request's ENCODINGS_HEADER value names an encoding this vmi stores (zstd). */
export function readsEncodings(value: string | string[] | undefined): boolean {
  return String(value ?? '')
    .split(',')
    .some((e) => e.trim().toLowerCase() === 'zstd')
}

/** The Range value asking for `length` bytes from `offset` (a part of a pack, answered 206). */
export function byteRange(offset: number, length: number): string {
  return `bytes=${offset}-${offset + length - 1}`
}

/** Whether a request's FETCH_HEADER value asks for fetch-through. */
export function asksFetchThrough(value: string | string[] | undefined): boolean {
  return String(value ?? '').trim().toLowerCase() === FETCH_UPSTREAM
}

/** The Authorization value carrying a push token. */
export function bearer(token: string): string {
  return `Bearer ${token}`
}

/** WWW-Authenticate of a 401: uploads need a bearer token. */
export const BEARER_CHALLENGE = 'Bearer realm="vmi"'

/** The push token in an Authorization value, or undefined when it carries none. */
export function parseBearer(value: string | undefined): string | undefined {
  const m = typeof value === 'string' ? /^Bearer +(\S+) *$/i.exec(value) : null
  return m ? m[1] : undefined
}

export const CONTENT_BINARY = 'application/octet-stream'
export const CONTENT_JSON = 'application/json'
export const CONTENT_TEXT = 'text/plain; charset=utf-8'
/** The body of an object batch. */
export const CONTENT_OBJECT_BATCH = 'application/vnd.vmi.object-batch'
/** Objects and manifests: their content never changes. */
export const CACHE_IMMUTABLE = 'public, max-age=31536000, immutable'
/** Refs, the ref list and profiles: may change, revalidate. */
export const CACHE_REVALIDATE = 'no-cache'
/** Answers about this moment (missing-check, health, metrics). */
export const CACHE_NONE = 'no-store'

// ------------------------------------------------------------ limits

/** Largest object body, in either encoding (object-encoding.ts): a chunk's maximum, and room for a frame's overhead. */
export const MAX_OBJECT_BYTES = MAX_STORED_OBJECT
export {MAX_MANIFEST_BYTES, MAX_PROFILE_BYTES, MAX_REF_SIGNATURE_BYTES}
/** Most ids in one missing-check: the server refuses more (413), the client splits its list. */
export const MAX_MISSING_IDS = 10_000
/** Largest missing-check body: MAX_MISSING_IDS quoted ids with separators, and slack for whitespace. */
export const MAX_MISSING_BODY = MAX_MISSING_IDS * 70 + 4096
/** Largest object-batch body: the server refuses more (413), the client sends less. */
export const MAX_OBJECT_BATCH_BYTES = 64 << 20
/** Largest answer to an object batch a client reads. */
export const MAX_BATCH_ANSWER_BYTES = 1 << 20
/** Largest ref body (an id and a newline), either way. */
export const MAX_REF_BYTES = 1024
/** Largest ref list a client reads. */
export const MAX_REF_LIST_BYTES = 64 << 20
/** Longest request target the server accepts (414 beyond). */
export const MAX_URL_LENGTH = 1024
/** Largest header block: the server answers 431 beyond it, the pipelined client stops reading a connection. */
export const MAX_HEADER_BYTES = 16 * 1024

// ------------------------------------------------------------ the server's route parser

export type Route =
  | {kind: 'object'; id: string}
  | {kind: 'manifest'; id: string}
  | {kind: 'profile'; id: string}
  | {kind: 'ref'; name: string; tag: string}
  | {kind: 'signature'; name: string; tag: string}
  | {kind: 'missing'}
  | {kind: 'batch'}
  | {kind: 'refs'}
  | {kind: 'healthz'}
  | {kind: 'metrics'}

export type Parsed = {route: Route} | {status: 400 | 404 | 414; reason: string}

const SHARD_RE = /^[0-9a-f]{2}$/
const REST_RE = /^[0-9a-f]{62}$/
const SHARDED: Record<ShardedDir, 'object' | 'manifest' | 'profile'> = {objects: 'object', manifests: 'manifest', profiles: 'profile'}
const FIXED: Record<string, Route> = {
  [MISSING_ROUTE]: {kind: 'missing'},
  [OBJECT_BATCH_ROUTE]: {kind: 'batch'},
  [REF_LIST_ROUTE]: {kind: 'refs'},
  [HEALTH_ROUTE]: {kind: 'healthz'},
  [METRICS_ROUTE]: {kind: 'metrics'},
}

/**
 * Map a raw request target to a route, or to the 4xx that refuses it. Pure:
 * no filesystem access. The raw target may contain no `%`, `\`, `?`, `#`,
 * `//` or dot segments; ids are lowercase hex split 2/62, names and tags pass
 * isValidRefPart.
 */
export function parseTarget(target: string): Parsed {
  if (target.length > MAX_URL_LENGTH) return {status: 414, reason: 'request target too long'}
  if (!target.startsWith('/')) return {status: 400, reason: 'request target must be a path'}
  if (/[%\\?#]/.test(target)) return {status: 400, reason: 'encoded characters, backslashes and query strings are not accepted'}
  if (target.includes('//')) return {status: 400, reason: 'empty path segment'}
  const seg = target.slice(1).split('/')
  if (seg.some((s) => s === '.' || s === '..')) return {status: 400, reason: 'dot segments are not accepted'}
  const [top] = seg
  if (Object.hasOwn(SHARDED, top)) {
    const kind = SHARDED[top as ShardedDir]
    if (seg.length !== 3 || !SHARD_RE.test(seg[1]) || !REST_RE.test(seg[2])) return {status: 400, reason: `malformed ${kind} path: expected /${top}/<2 hex>/<62 hex>`}
    return {route: {kind, id: seg[1] + seg[2]}}
  }
  if (top === 'refs' || top === 'sigs') {
    if (seg.length !== 3 || !isValidRefPart(seg[1]) || !isValidRefPart(seg[2])) return {status: 400, reason: `malformed ${top === 'refs' ? 'ref' : 'signature'} path: expected /${top}/<name>/<tag>`}
    return {route: {kind: top === 'refs' ? 'ref' : 'signature', name: seg[1], tag: seg[2]}}
  }
  const joined = seg.join('/')
  return Object.hasOwn(FIXED, joined) ? {route: FIXED[joined]} : {status: 404, reason: 'not found'}
}

/** Methods a route answers, on a read-only server and on one with a push token. */
export const ALLOWED_METHODS: Record<Route['kind'], {read: string; write: string}> = {
  object: {read: 'GET, HEAD', write: 'GET, HEAD, PUT'},
  manifest: {read: 'GET, HEAD', write: 'GET, HEAD, PUT'},
  profile: {read: 'GET, HEAD', write: 'GET, HEAD, PUT'},
  ref: {read: 'GET, HEAD', write: 'GET, HEAD, PUT'},
  signature: {read: 'GET, HEAD', write: 'GET, HEAD, PUT'},
  missing: {read: 'POST', write: 'POST'},
  batch: {read: '', write: 'POST'},
  refs: {read: 'GET, HEAD', write: 'GET, HEAD'},
  healthz: {read: 'GET, HEAD', write: 'GET, HEAD'},
  metrics: {read: 'GET, HEAD', write: 'GET, HEAD'},
}

/** A route's `route` label in the server's metrics (docs/PROTOCOL.md, "Metrics"). */
export const ROUTE_LABEL: Record<Route['kind'], string> = {
  object: 'objects',
  manifest: 'manifests',
  profile: 'profiles',
  ref: 'refs',
  signature: 'sigs',
  missing: MISSING_ROUTE,
  batch: OBJECT_BATCH_ROUTE,
  refs: REF_LIST_ROUTE,
  healthz: HEALTH_ROUTE,
  metrics: METRICS_ROUTE,
}

// ------------------------------------------------------------ object batches

/**
 * An object batch is a sequence of frames, nothing between them: the
 * object's id as 32 raw bytes, its length as a big-endian uint32, then that
 * many bytes. A frame's length is 1..MAX_OBJECT_BYTES.
 */
export const BATCH_FRAME_HEAD = 36

/** A frame's head for `id` (64 hex) and `length` bytes. */
export function batchFrameHead(id: string, length: number): Buffer {
  const head = Buffer.allocUnsafe(BATCH_FRAME_HEAD)
  head.write(id, 0, 32, 'hex')
  head.writeUInt32BE(length, 32)
  return head
}

/** What the server answers to an object batch. */
export interface BatchAnswer {
  stored: number
  present: number
  /** Objects not stored, and why (their bytes do not hash to their id, an all-zero chunk). */
  refused: {id: string; reason: string}[]
  /** Object encodings the server stores as sent (PROTOCOL.md "Compressed objects"); absent from a server before them, which takes raw chunks only. */
  encodings?: string[]
}

/**
 * Cuts a batch body into frames as its bytes arrive: `push` each piece of
 * the body; `onFrame` gets each whole object in memory from `alloc`.
 * Throws BatchFormatError on a frame that breaks the format; `end` throws
 * when the body stops inside a frame.
 */
export class BatchParser {
  private head = Buffer.alloc(BATCH_FRAME_HEAD)
  private headFill = 0
  private body?: Buffer
  private bodyFill = 0
  private id = ''

  constructor(
    private readonly onFrame: (id: string, data: Buffer) => void,
    private readonly alloc: (length: number) => Buffer = (n) => Buffer.allocUnsafe(n),
  ) {}

  push(buf: Buffer): void {
    let off = 0
    while (off < buf.length) {
      if (!this.body) {
        const k = Math.min(BATCH_FRAME_HEAD - this.headFill, buf.length - off)
        buf.copy(this.head, this.headFill, off, off + k)
        this.headFill += k
        off += k
        if (this.headFill < BATCH_FRAME_HEAD) return
        const length = this.head.readUInt32BE(32)
        if (length === 0 || length > MAX_OBJECT_BYTES) throw new BatchFormatError(`a frame of ${length} bytes (1 to ${MAX_OBJECT_BYTES} allowed)`)
        this.id = this.head.toString('hex', 0, 32)
        this.body = this.alloc(length)
        this.bodyFill = 0
        this.headFill = 0
      }
      const k = Math.min(this.body.length - this.bodyFill, buf.length - off)
      buf.copy(this.body, this.bodyFill, off, off + k)
      this.bodyFill += k
      off += k
      if (this.bodyFill === this.body.length) {
        const body = this.body
        this.body = undefined
        this.onFrame(this.id, body)
      }
    }
  }

  end(): void {
    if (this.body || this.headFill > 0) throw new BatchFormatError('the body ends inside a frame')
  }
}

export class BatchFormatError extends Error {}
