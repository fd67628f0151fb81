/**
 * `vmi serve`: the wire protocol (docs/PROTOCOL.md) over node:http/https.
 *
 * Read routes are the store layout itself (objects/ab/cdef…, manifests/…,
 * refs/name/tag), plus the batch missing-check, the ref list, /healthz and
 * /metrics. Writes (PUT) need the push token. Every path is checked against
 * strict patterns before anything touches the filesystem: the raw request
 * target may contain no `%`, `\`, `?`, `#`, `//` or dot segments, ids are
 * lowercase hex split 2/62, names and tags pass isValidRefPart. Nothing
 * outside objects/, manifests/ and refs/ is ever read, and directories are
 * never listed.
 *
 * Uploads are bounded (4 MiB per object, MAX_MANIFEST_BYTES per manifest),
 * re-hashed and refused on mismatch. Each write request holds a short
 * `write` lock so gc cannot run while it writes; objects uploaded by a push
 * stay unreferenced until their manifest and ref arrive, so a gc run on this
 * store *between* the requests of a push can still remove them: the manifest
 * PUT then answers 409 and the pusher has to upload them again.
 *
 * Fetch-through: a GET of an absent object carrying `X-Vmi-Fetch: upstream`
 * is fetched once from the upstream (concurrent requests join one fetch),
 * verified by the upstream client, stored and served.
 */
import {decodeProfile} from '../store/profile.js'
import {readFileOrUndefined} from '../store/fs-util.js'
import {createHash, timingSafeEqual} from 'node:crypto'
import {constants as fsConstants, promises as fsp} from 'node:fs'
import http, {type IncomingMessage, type ServerResponse} from 'node:http'
import https from 'node:https'
import type {AddressInfo, Socket} from 'node:net'
import {pipeline} from 'node:stream/promises'
import {Counter, Gauge, Registry} from 'prom-client'
import {BadManifestError, IntegrityError, isErrno, SourceDownError, StoreBusyError} from '../errors.js'
import {isAllZero} from '../store/chunker.js'
import {contentMismatch} from '../store/hash.js'
import {isValidId} from '../store/layout.js'
import {objectFileDefect, type LocalStore} from '../store/local-store.js'
import {withLock} from '../store/lock.js'
import {decodeManifest, uniqueChunkIds} from '../store/manifest.js'
import {mapLimit} from '../store/map-limit.js'
import {onResponseDone} from './response-done.js'
import type {ChunkSource} from './source.js'
import {
  ALLOWED_METHODS,
  asksFetchThrough,
  CACHE_IMMUTABLE,
  CACHE_NONE,
  CACHE_REVALIDATE,
  CONTENT_BINARY,
  CONTENT_JSON,
  CONTENT_TEXT,
  FETCH_HEADER,
  MAX_HEADER_BYTES,
  MAX_MANIFEST_BYTES,
  MAX_MISSING_BODY,
  MAX_MISSING_IDS,
  MAX_OBJECT_BYTES,
  MAX_PROFILE_BYTES,
  MAX_REF_BYTES,
  parseBearer,
  parseTarget,
  ROUTE_LABEL,
} from './wire.js'

export interface ServeInit {
  /** Interface to bind (default 127.0.0.1). */
  host?: string
  /** Port (default 7070; 0 picks a free one). */
  port?: number
  /** Enables PUT; without it the server is read-only (PUT answers 405). */
  pushToken?: string
  /** Fetch-through source for `X-Vmi-Fetch: upstream` (usually the seed). */
  upstream?: ChunkSource
  tls?: {cert: Buffer; key: Buffer}
  /** One line per request, and error details. */
  log?: (line: string) => void
  /** Connections beyond this are dropped (default 1024). */
  maxConnections?: number
  /**
   * Longest time a client may take to send a whole request (default 120 s);
   * headers must arrive within min(this, 20 s), and a connection idle for
   * this long (e.g. a client that stopped reading) is closed.
   */
  requestTimeoutMs?: number
}

export interface RunningServer {
  /** Base URL, e.g. http://127.0.0.1:7070 (no trailing slash). */
  url: string
  port: number
  /** Prometheus text exposition of this server's counters. */
  metrics: () => Promise<string>
  /** Stop accepting, let requests in flight finish (up to graceMs, default 10 s), then drop the rest. */
  close(opts?: {graceMs?: number}): Promise<void>
}

/** After refusing a request, read and discard at most this much of its body before closing the connection. */
const MAX_DISCARD_BYTES = 8 * 1024 * 1024
const DISCARD_MS = 5000
const LOCK_WAIT_MS = 30_000

/** Chunk bytes held in memory for replies being sent, at most; then chunks stream from their files. */
const MAX_HELD_BYTES = 64 * 1024 * 1024

const METHODS = new Set(['GET', 'HEAD', 'PUT', 'POST', 'DELETE', 'OPTIONS', 'PATCH'])

class HttpFailure extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly headers: Record<string, string> = {},
    readonly json?: unknown,
  ) {
    super(message)
  }
}

class BodyTooLarge extends HttpFailure {
  constructor(max: number) {
    super(413, `body larger than ${max} bytes`)
  }
}

/** Per-request state for the access log and metrics. */
interface Ctx {
  route: string
  bytes: number
}

function makeMetrics() {
  const registry = new Registry()
  const registers = [registry]
  return {
    registry,
    requests: new Counter({name: 'vmi_http_requests_total', help: 'HTTP requests answered', labelNames: ['route', 'method', 'status'] as const, registers}),
    servedBytes: new Counter({name: 'vmi_served_bytes_total', help: 'Body bytes served, by kind', labelNames: ['kind'] as const, registers}),
    objectRequests: new Counter({
      name: 'vmi_object_requests_total',
      help: 'Object GET/HEAD requests: hit (present locally) or miss (absent locally, whether or not fetched through)',
      labelNames: ['result'] as const,
      registers,
    }),
    fetchedBytes: new Counter({
      name: 'vmi_fetched_bytes_total',
      help: 'Chunk bytes fetched through from the upstream, by source kind',
      labelNames: ['source'] as const,
      registers,
    }),
    verificationFailures: new Counter({
      name: 'vmi_verification_failures_total',
      help: 'Bytes that did not hash to their id: uploads (source="upload") or the upstream (its kind)',
      labelNames: ['source'] as const,
      registers,
    }),
    upstreamErrors: new Counter({name: 'vmi_upstream_errors_total', help: 'Fetch-through failures other than "missing"', registers}),
    uploads: new Counter({
      name: 'vmi_uploads_total',
      help: 'PUT requests by result: stored, exists, invalid, too_large, conflict, denied, error',
      labelNames: ['result'] as const,
      registers,
    }),
    inFlight: new Gauge({name: 'vmi_http_requests_in_flight', help: 'Requests being answered', registers}),
  }
}

/** Zero-valued series for the documented labels, so they show before the first event. */
function initSeries(m: ReturnType<typeof makeMetrics>, upstreamKind: string | undefined): void {
  for (const kind of ['objects', 'manifests']) m.servedBytes.inc({kind}, 0)
  for (const result of ['hit', 'miss']) m.objectRequests.inc({result}, 0)
  for (const result of ['stored', 'exists', 'invalid', 'too_large', 'conflict', 'denied']) m.uploads.inc({result}, 0)
  m.verificationFailures.inc({source: 'upload'}, 0)
  if (upstreamKind) {
    m.fetchedBytes.inc({source: upstreamKind}, 0)
    m.verificationFailures.inc({source: upstreamKind}, 0)
  }
}

function digest(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest()
}

/** Printable, bounded form of a request target for the log. */
function logSafe(s: string): string {
  const t = s.length > 200 ? s.slice(0, 200) + '…' : s
  return t.replace(/[^\x21-\x7e]/g, (c) => '\\x' + c.charCodeAt(0).toString(16).padStart(2, '0'))
}

export async function startServer(store: LocalStore, init: ServeInit = {}): Promise<RunningServer> {
  const {host = '127.0.0.1', port = 7070, pushToken, upstream, tls, maxConnections = 1024, requestTimeoutMs = 120_000} = init
  const log = init.log ?? (() => {})
  if (pushToken !== undefined && pushToken.length === 0) throw new TypeError('the push token is empty')
  const tokenDigest = pushToken === undefined ? undefined : digest(pushToken)
  const m = makeMetrics()
  initSeries(m, upstream?.kind)
  const inflightFetches = new Map<string, Promise<Buffer | undefined>>()
  /** Bytes of chunks read into memory for replies still being sent (see getObject). */
  let heldBytes = 0
  let closing = false
  let activeRequests = 0
  let drained: (() => void) | undefined

  // ------------------------------------------------------------ responses

  function send(req: IncomingMessage, res: ServerResponse, ctx: Ctx, status: number, body: Buffer | string, headers: Record<string, string | number> = {}): void {
    const buf = typeof body === 'string' ? Buffer.from(body, 'utf8') : body
    res.statusCode = status
    for (const [k, v] of Object.entries(headers)) res.setHeader(k, v)
    if (!res.hasHeader('content-type')) res.setHeader('Content-Type', CONTENT_TEXT)
    res.setHeader('Content-Length', buf.length)
    if (req.method === 'HEAD') res.end()
    else {
      ctx.bytes += buf.length
      res.end(buf)
    }
  }

  function fail(req: IncomingMessage, res: ServerResponse, ctx: Ctx, f: HttpFailure): void {
    if (f.json !== undefined) send(req, res, ctx, f.status, JSON.stringify(f.json) + '\n', {...f.headers, 'Content-Type': CONTENT_JSON})
    else send(req, res, ctx, f.status, f.message + '\n', f.headers)
  }

  /**
   * Before refusing a request whose body is not (fully) read: read and
   * discard the rest, within bounds, then answer. Answering first would let
   * the connection close with unread data, which makes the kernel send RST:
   * the client sees EPIPE/ECONNRESET (which it retries) instead of our 4xx.
   * Resolves false when the body is beyond the bounds: answer with
   * `Connection: close` then.
   */
  function drainBody(req: IncomingMessage): Promise<boolean> {
    if (req.readableEnded) return Promise.resolve(true)
    if (req.complete) {
      // all of it has arrived already (a GET, or a body read in full): just let it go
      req.resume()
      return Promise.resolve(true)
    }
    if (req.socket.destroyed) return Promise.resolve(false)
    if (Number(req.headers['content-length'] ?? 0) > MAX_DISCARD_BYTES) {
      req.resume()
      return Promise.resolve(false)
    }
    return new Promise((resolve) => {
      let seen = 0
      const done = (drained: boolean) => {
        clearTimeout(timer)
        req.off('data', onData)
        req.off('end', onEnd)
        req.off('close', onClose)
        resolve(drained)
      }
      const onData = (b: Buffer) => {
        seen += b.length
        if (seen > MAX_DISCARD_BYTES) done(false)
      }
      const onEnd = () => done(true)
      const onClose = () => done(false)
      const timer = setTimeout(() => done(false), DISCARD_MS)
      req.on('data', onData)
      req.on('end', onEnd)
      req.on('close', onClose)
      req.resume()
    })
  }

  /** The request body, at most `max` bytes (413 beyond, without reading further). */
  function readBody(req: IncomingMessage, max: number): Promise<Buffer> {
    const declared = req.headers['content-length']
    if (declared !== undefined && Number(declared) > max) return Promise.reject(new BodyTooLarge(max))
    return new Promise((resolve, reject) => {
      const parts: Buffer[] = []
      let size = 0
      const cleanup = () => {
        req.off('data', onData)
        req.off('end', onEnd)
        req.off('error', onError)
        req.off('aborted', onAborted)
      }
      const onData = (b: Buffer) => {
        size += b.length
        if (size > max) {
          cleanup()
          req.pause()
          reject(new BodyTooLarge(max))
          return
        }
        parts.push(b)
      }
      const onEnd = () => {
        cleanup()
        resolve(Buffer.concat(parts, size))
      }
      const onError = (err: Error) => {
        cleanup()
        reject(err)
      }
      const onAborted = () => onError(Object.assign(new Error('client aborted the request'), {code: 'ECONNRESET'}))
      req.on('data', onData)
      req.on('end', onEnd)
      req.on('error', onError)
      req.on('aborted', onAborted)
    })
  }

  // ------------------------------------------------------------ reads

  /**
   * A stored file streamed with backpressure: manifests (they can be large),
   * and chunks while many are held for slow clients (see getObject).
   * Returns false when absent.
   */
  async function serveFile(
    req: IncomingMessage,
    res: ServerResponse,
    ctx: Ctx,
    file: string,
    kind: 'objects' | 'manifests',
    headers: Record<string, string | number>,
    onFound?: () => void,
  ): Promise<boolean> {
    let fh: fsp.FileHandle
    try {
      // non-blocking: opening a FIFO planted in the store must not wait for a writer
      fh = await fsp.open(file, fsConstants.O_RDONLY | fsConstants.O_NONBLOCK)
    } catch (err) {
      if (isErrno(err, 'ENOENT', 'ENOTDIR')) return false
      throw err
    }
    try {
      const st = await fh.stat()
      // as the store's own reads: an object file that cannot hold a chunk is corrupt, not served
      const defect = kind === 'objects' ? objectFileDefect(file, st) : st.isFile() ? undefined : `${file} is not a regular file`
      if (defect) {
        log(`not serving ${kind === 'objects' ? 'chunk' : 'manifest'} file ${file}: ${defect}`)
        return false
      }
      onFound?.()
      res.statusCode = 200
      for (const [k, v] of Object.entries(headers)) res.setHeader(k, v)
      res.setHeader('Content-Length', st.size)
      if (req.method === 'HEAD' || st.size === 0) {
        res.end()
        return true
      }
      const stream = fh.createReadStream({start: 0, end: st.size - 1, highWaterMark: 256 * 1024, autoClose: false})
      // a reply whose connection went away ends the pipeline, so the file is closed below
      onResponseDone(req, res, () => {
        if (!res.writableFinished) stream.destroy()
      })
      // counted as it goes, so /metrics is current as soon as a client has the bytes
      stream.on('data', (b: Buffer | string) => {
        ctx.bytes += b.length
        m.servedBytes.inc({kind}, b.length)
      })
      try {
        await pipeline(stream, res)
      } catch (err) {
        // the client went away mid-body: nothing to answer
        if (!res.destroyed) res.destroy(err as Error)
      }
      return true
    } finally {
      await fh.close().catch(() => {})
    }
  }

  function notModified(req: IncomingMessage, id: string): boolean {
    const inm = req.headers['if-none-match']
    return typeof inm === 'string' && inm.split(',').some((t) => t.trim().replace(/^W\//, '') === `"${id}"`)
  }

  function immutableHeaders(id: string, type: string): Record<string, string> {
    return {'Content-Type': type, ETag: `"${id}"`, 'Cache-Control': CACHE_IMMUTABLE}
  }

  /** Fetch-through from the upstream, once per id however many ask at once. */
  function fetchThrough(id: string): Promise<Buffer | undefined> {
    let p = inflightFetches.get(id)
    if (p) return p
    p = (async () => {
      try {
        // a fetch that finished between this request's miss and now has stored it: no second upstream fetch
        let here: Buffer | undefined
        try {
          here = store.readObject(id)
        } catch (err) {
          if (!(err instanceof IntegrityError)) throw err // a corrupt copy here: fetch a good one
        }
        if (here !== undefined && contentMismatch(id, here) === undefined) return here
        // verified by the source (ChunkSource.get's contract: HttpStore and
        // BatchedSource hash every body; wrong bytes are a RemoteIntegrityError)
        const data = await upstream!.get(id)
        if (data === undefined) return undefined
        m.fetchedBytes.inc({source: upstream!.kind}, data.length)
        // a failure to keep a copy (disk full …) does not stop us serving it
        await store.putObject(id, data).catch((err: unknown) => log(`could not store fetched-through chunk ${id}: ${(err as Error)?.message ?? err}`))
        return data
      } finally {
        inflightFetches.delete(id)
      }
    })()
    inflightFetches.set(id, p)
    return p
  }

  async function getObject(req: IncomingMessage, res: ServerResponse, ctx: Ctx, id: string): Promise<void> {
    const headers = immutableHeaders(id, CONTENT_BINARY)
    if (notModified(req, id) && (await store.hasObject(id))) {
      m.objectRequests.inc({result: 'hit'})
      res.writeHead(304, headers).end()
      return
    }
    if (heldBytes < MAX_HELD_BYTES) {
      // A chunk is at most MAX_CHUNK_SIZE: read in synchronous calls and
      // sent in one piece (a file stream costs five thread-pool round trips
      // and stream machinery per chunk, ~0.5 ms of CPU). Bytes held this way
      // for clients that do not read are bounded: the HTTP server runs the
      // handler of every request a client pipelines, read or not (measured
      // in serve.test.js: 32 such clients held 1 GiB), so past
      // MAX_HELD_BYTES chunks stream from their files again, with
      // backpressure. Not a regular file, or larger than any chunk: corrupt,
      // not served.
      let here: Buffer | undefined
      try {
        here = store.readObject(id)
      } catch (err) {
        if (!(err instanceof IntegrityError)) throw err
        log(`not serving chunk ${id}: ${err.message}`)
      }
      if (here) {
        const held = here.length
        heldBytes += held
        onResponseDone(req, res, () => (heldBytes -= held))
        m.objectRequests.inc({result: 'hit'})
        if (req.method !== 'HEAD') countWhenSent(res, held)
        send(req, res, ctx, 200, here, headers)
        return
      }
    } else if (await serveFile(req, res, ctx, store.layout.objectPath(id), 'objects', headers, () => m.objectRequests.inc({result: 'hit'}))) return
    m.objectRequests.inc({result: 'miss'})
    const wantsUpstream = req.method === 'GET' && asksFetchThrough(req.headers[FETCH_HEADER])
    if (!wantsUpstream || !upstream) throw new HttpFailure(404, 'not found')
    let data: Buffer | undefined
    try {
      data = await fetchThrough(id)
    } catch (err) {
      const e = err as {code?: string; message?: string}
      if (e?.code === 'VMI_REMOTE_INTEGRITY') m.verificationFailures.inc({source: upstream.kind})
      m.upstreamErrors.inc()
      // an upstream marked down was reported once when it went down, not again for every request
      if (!(err instanceof SourceDownError)) log(`fetch-through of ${id} from ${upstream.name} failed: ${e?.message ?? String(err)}`)
      throw new HttpFailure(502, 'upstream error')
    }
    if (data === undefined) throw new HttpFailure(404, 'not found')
    countWhenSent(res, data.length)
    send(req, res, ctx, 200, data, headers)
  }

  /**
   * Count a chunk held in memory as served once the response has gone to the
   * kernel ('finish'), not when it is queued: the server runs the handler of
   * every request a client pipelines, and a client that gives up (a timeout,
   * a reset) leaves responses that are never sent (a fleet under CPU
   * starvation had the seed count 1.19x the unique bytes while its link
   * carried 1.02x, headers included).
   */
  function countWhenSent(res: ServerResponse, bytes: number): void {
    res.once('finish', () => m.servedBytes.inc({kind: 'objects'}, bytes))
  }

  async function getManifest(req: IncomingMessage, res: ServerResponse, ctx: Ctx, id: string): Promise<void> {
    const headers = immutableHeaders(id, CONTENT_JSON)
    if (notModified(req, id) && (await store.hasManifest(id))) {
      res.writeHead(304, headers).end()
      return
    }
    if (!(await serveFile(req, res, ctx, store.layout.manifestPath(id), 'manifests', headers))) throw new HttpFailure(404, 'not found')
  }

  async function getProfile(req: IncomingMessage, res: ServerResponse, ctx: Ctx, id: string): Promise<void> {
    const data = await readFileOrUndefined(store.layout.profilePath(id))
    if (data === undefined) throw new HttpFailure(404, 'not found')
    send(req, res, ctx, 200, data, {'Content-Type': CONTENT_JSON, 'Cache-Control': CACHE_REVALIDATE})
  }

  async function putProfile(req: IncomingMessage, res: ServerResponse, ctx: Ctx, id: string): Promise<void> {
    const bytes = await readBody(req, MAX_PROFILE_BYTES)
    await writeLock(async () => {
      const manifest = await store.getManifest(id).catch(() => undefined)
      if (!manifest) throw new HttpFailure(409, `manifest ${id} is not on this server`)
      let profile
      try {
        profile = decodeProfile(bytes, Math.ceil(manifest.virtualSize / manifest.chunkSize))
      } catch (err) {
        throw new HttpFailure(400, (err as Error).message)
      }
      await store.putProfile(id, profile)
    })
    m.uploads.inc({result: 'stored'})
    send(req, res, ctx, 200, 'ok\n')
  }

  async function getRef(req: IncomingMessage, res: ServerResponse, ctx: Ctx, name: string, tag: string): Promise<void> {
    const id = await store.readRef({name, tag})
    if (id === undefined) throw new HttpFailure(404, 'not found')
    send(req, res, ctx, 200, id + '\n', {'Content-Type': CONTENT_TEXT, 'Cache-Control': CACHE_REVALIDATE})
  }

  async function postMissing(req: IncomingMessage, res: ServerResponse, ctx: Ctx): Promise<void> {
    const body = await readBody(req, MAX_MISSING_BODY)
    let ids: unknown
    try {
      ids = (JSON.parse(body.toString('utf8')) as {ids?: unknown})?.ids
    } catch {
      throw new HttpFailure(400, 'body is not JSON')
    }
    if (!Array.isArray(ids)) throw new HttpFailure(400, 'body must be {"ids":[...]}')
    if (ids.length > MAX_MISSING_IDS) throw new HttpFailure(413, `at most ${MAX_MISSING_IDS} ids per request`)
    if (!ids.every(isValidId)) throw new HttpFailure(400, 'ids must be 64 lowercase hex')
    const flags = await mapLimit(ids as string[], 32, (id) => store.hasObject(id))
    const missing = (ids as string[]).filter((_, i) => !flags[i])
    send(req, res, ctx, 200, JSON.stringify({missing}) + '\n', {'Content-Type': CONTENT_JSON, 'Cache-Control': CACHE_NONE})
  }

  // ------------------------------------------------------------ writes

  function checkToken(req: IncomingMessage): void {
    const token = parseBearer(req.headers.authorization)
    if (token === undefined) throw new HttpFailure(401, 'push token required', {'WWW-Authenticate': 'Bearer realm="vmi"'})
    // equal-length digests: the comparison time does not depend on the token
    if (!timingSafeEqual(digest(token), tokenDigest!)) throw new HttpFailure(403, 'wrong push token')
  }

  function writeLock<T>(fn: () => Promise<T>): Promise<T> {
    return withLock(store.layout, {op: 'serve-upload', kind: 'write', waitMs: LOCK_WAIT_MS}, fn)
  }

  async function putObject(req: IncomingMessage, res: ServerResponse, ctx: Ctx, id: string): Promise<void> {
    const data = await readBody(req, MAX_OBJECT_BYTES)
    if (contentMismatch(id, data) !== undefined) {
      m.verificationFailures.inc({source: 'upload'})
      throw new HttpFailure(400, 'body does not hash to the id')
    }
    if (data.length === 0 || isAllZero(data)) throw new HttpFailure(400, 'all-zero chunks are never stored (a manifest marks them as zero runs)')
    const created = await writeLock(() => store.putObject(id, data))
    m.uploads.inc({result: created ? 'stored' : 'exists'})
    send(req, res, ctx, created ? 201 : 200, created ? 'stored\n' : 'exists\n')
  }

  async function putManifest(req: IncomingMessage, res: ServerResponse, ctx: Ctx, id: string): Promise<void> {
    const bytes = await readBody(req, MAX_MANIFEST_BYTES)
    let manifest
    try {
      manifest = decodeManifest(bytes, id)
    } catch (err) {
      if (err instanceof BadManifestError) throw new HttpFailure(400, err.message)
      throw err
    }
    const chunks = [...uniqueChunkIds(manifest)]
    const created = await writeLock(async () => {
      // under the lock: gc cannot remove a chunk between this check and the write
      const present = await mapLimit(chunks, 32, (c) => store.hasObject(c))
      const missing = present.filter((p) => !p).length
      if (missing > 0) throw new HttpFailure(409, `${missing} chunks missing`, {}, {missing})
      if (await store.hasManifest(id)) return false
      await store.putManifestBytes(id, bytes)
      return true
    })
    m.uploads.inc({result: created ? 'stored' : 'exists'})
    send(req, res, ctx, created ? 201 : 200, created ? 'stored\n' : 'exists\n')
  }

  async function putRef(req: IncomingMessage, res: ServerResponse, ctx: Ctx, name: string, tag: string): Promise<void> {
    const id = (await readBody(req, MAX_REF_BYTES)).toString('utf8').trim()
    if (!isValidId(id)) throw new HttpFailure(400, 'body must be a 64-hex manifest id')
    await writeLock(async () => {
      if (!(await store.hasManifest(id))) throw new HttpFailure(409, `manifest ${id} is not on this server`)
      await store.writeRef({name, tag}, id)
    })
    m.uploads.inc({result: 'stored'})
    send(req, res, ctx, 200, 'ok\n')
  }

  // ------------------------------------------------------------ dispatch

  async function dispatch(req: IncomingMessage, res: ServerResponse, ctx: Ctx): Promise<void> {
    const method = req.method ?? ''
    const parsed = parseTarget(req.url ?? '')
    if ('status' in parsed) throw new HttpFailure(parsed.status, parsed.reason)
    const {route} = parsed
    ctx.route = ROUTE_LABEL[route.kind]
    const allow = ALLOWED_METHODS[route.kind][tokenDigest ? 'write' : 'read']
    if (method === 'PUT' && ALLOWED_METHODS[route.kind].write.includes('PUT')) {
      if (!tokenDigest) throw new HttpFailure(405, 'this server is read-only (started without a push token)', {Allow: allow})
      try {
        checkToken(req)
      } catch (err) {
        m.uploads.inc({result: 'denied'})
        throw err
      }
      try {
        if (route.kind === 'object') return await putObject(req, res, ctx, route.id)
        if (route.kind === 'manifest') return await putManifest(req, res, ctx, route.id)
        if (route.kind === 'profile') return await putProfile(req, res, ctx, route.id)
        if (route.kind === 'ref') return await putRef(req, res, ctx, route.name, route.tag)
      } catch (err) {
        const status = err instanceof HttpFailure ? err.status : 0
        m.uploads.inc({result: status === 413 ? 'too_large' : status === 409 ? 'conflict' : status === 400 ? 'invalid' : 'error'})
        throw err
      }
    }
    if (!allow.split(', ').includes(method)) throw new HttpFailure(405, 'method not allowed', {Allow: allow})
    switch (route.kind) {
      case 'object':
        return getObject(req, res, ctx, route.id)
      case 'manifest':
        return getManifest(req, res, ctx, route.id)
      case 'profile':
        return getProfile(req, res, ctx, route.id)
      case 'ref':
        return getRef(req, res, ctx, route.name, route.tag)
      case 'missing':
        return postMissing(req, res, ctx)
      case 'refs': {
        const refs = await store.listRefs()
        return send(req, res, ctx, 200, JSON.stringify({refs: refs.map((r) => ({name: r.name, tag: r.tag, id: r.id}))}) + '\n', {
          'Content-Type': CONTENT_JSON,
          'Cache-Control': CACHE_REVALIDATE,
        })
      }
      case 'healthz':
        return send(req, res, ctx, 200, 'ok\n', {'Cache-Control': CACHE_NONE})
      case 'metrics':
        return send(req, res, ctx, 200, await m.registry.metrics(), {'Content-Type': m.registry.contentType, 'Cache-Control': CACHE_NONE})
    }
  }

  function onRequest(req: IncomingMessage, res: ServerResponse): void {
    const start = process.hrtime.bigint()
    const ctx: Ctx = {route: 'other', bytes: 0}
    activeRequests++
    m.inFlight.inc()
    if (closing) res.setHeader('Connection', 'close')
    let done = false
    const finish = () => {
      if (done) return
      done = true
      activeRequests--
      m.inFlight.dec()
      const method = METHODS.has(req.method ?? '') ? req.method! : 'other'
      const status = res.headersSent ? res.statusCode : 0
      m.requests.inc({route: ctx.route, method, status: String(status)})
      const ms = Number(process.hrtime.bigint() - start) / 1e6
      log(`${logSafe(req.method ?? '-')} ${logSafe(req.url ?? '-')} ${status || 'aborted'} ${ctx.bytes} ${ms.toFixed(1)}ms`)
      if (closing) {
        server.closeIdleConnections()
        if (activeRequests === 0) drained?.()
      }
    }
    res.once('finish', finish)
    onResponseDone(req, res, finish)
    dispatch(req, res, ctx)
      .catch(async (err: unknown) => {
        if (res.headersSent || res.destroyed) {
          if (!res.destroyed) log(`error after the answer to ${logSafe(req.method ?? '')} ${logSafe(req.url ?? '')} started: ${(err as Error)?.message ?? err}`)
          res.destroy()
          return
        }
        // (req.destroyed is also true once a body was read to its end)
        if (isErrno(err, 'ECONNRESET') || req.socket.destroyed) return void res.destroy()
        let failure: HttpFailure
        if (err instanceof HttpFailure) failure = err
        else if (err instanceof StoreBusyError) failure = new HttpFailure(503, 'store busy (gc running), retry later', {'Retry-After': '5'})
        else {
          log(`internal error on ${logSafe(req.method ?? '')} ${logSafe(req.url ?? '')}: ${(err as Error)?.stack ?? String(err)}`)
          failure = new HttpFailure(500, 'internal error')
        }
        if (!(await drainBody(req))) res.setHeader('Connection', 'close')
        if (!res.destroyed) fail(req, res, ctx, failure)
      })
      .catch((err: unknown) => {
        log(`internal error answering ${logSafe(req.method ?? '')} ${logSafe(req.url ?? '')}: ${(err as Error)?.stack ?? String(err)}`)
        res.destroy()
      })
  }

  const headersTimeout = Math.min(requestTimeoutMs, 20_000)
  const serverOptions: http.ServerOptions = {
    requestTimeout: requestTimeoutMs,
    headersTimeout,
    keepAliveTimeout: 5000,
    // how often node checks the two timeouts above
    connectionsCheckingInterval: Math.max(50, Math.min(30_000, Math.floor(headersTimeout / 4))),
    maxHeaderSize: MAX_HEADER_BYTES,
  }
  const server: http.Server = tls ? https.createServer({...serverOptions, cert: tls.cert, key: tls.key}, onRequest) : http.createServer(serverOptions, onRequest)
  server.maxConnections = maxConnections
  // a connection idle this long (a client that stopped reading) is closed
  server.timeout = requestTimeoutMs
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
    if (!socket.writable || err.code === 'ECONNRESET') return void socket.destroy()
    const status = err.code === 'HPE_HEADER_OVERFLOW' ? 431 : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400
    socket.end(`HTTP/1.1 ${status} ${http.STATUS_CODES[status]}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`)
    socket.destroySoon()
  })

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen({host, port}, () => {
      server.off('error', reject)
      resolve()
    })
  })
  server.on('error', (err) => log(`server error: ${err.message}`))
  const addr = server.address() as AddressInfo
  const urlHost = addr.family === 'IPv6' || host.includes(':') ? `[${addr.address}]` : host
  const url = `${tls ? 'https' : 'http'}://${urlHost}:${addr.port}`

  let closed: Promise<void> | undefined
  return {
    url,
    port: addr.port,
    metrics: () => m.registry.metrics(),
    close(opts = {}) {
      closed ??= (async () => {
        const {graceMs = 10_000} = opts
        closing = true
        const serverClosed = new Promise<void>((resolve) => server.close(() => resolve()))
        server.closeIdleConnections()
        if (activeRequests > 0) {
          await new Promise<void>((resolve) => {
            drained = resolve
            setTimeout(resolve, graceMs).unref()
          })
        }
        server.closeAllConnections()
        await serverClosed
      })()
      return closed
    },
  }
}
