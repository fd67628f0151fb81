/**
 * A remote store spoken to over the wire protocol (docs/PROTOCOL.md): a peer
 * (`vmi serve` on another host) or the seed (`vmi serve`, or any static web
 * server over a store directory). Every object and manifest received is
 * verified against its id. Only 404 means "missing".
 */
import {mapLimit} from '../util/map-limit.js'
import {RemoteAuthError, RemoteError, RemoteIntegrityError, RemoteTlsError} from '../errors.js'
import {verifyContent} from '../store/hash.js'
import {checkReceived, OBJECT_ENCODINGS} from '../store/object-encoding.js'
import {isValidId, STORE_MARKER_NAME} from '../store/layout.js'
import {isValidRefPart} from '../store/ref.js'
import {DEFAULT_RETRY, withRetry, type RetryPolicy} from './retry.js'
import {bulkGet, type BulkOptions} from './pipelined-get.js'
import {isTlsTrustError, type ClientTls} from './tls-trust.js'
import {BodyTooLargeError, HttpClient, type HttpAnswer} from './http-client.js'
import {assertChunkId, type FetchOptions, type RemoteSource, type SourceKind, type WritableRemote} from './source.js'
import {ObjectBatchUpload} from './object-batch-upload.js'
import {PackCatalog, type PackSpan} from './packs.js'
import {
  bearer,
  CONTENT_BINARY,
  CONTENT_JSON,
  FETCH_HEADER,
  FETCH_UPSTREAM,
  IMAGE_HEADER,
  byteRange,
  HEALTH_ROUTE,
  manifestPath,
  MAX_MANIFEST_BYTES,
  MAX_MISSING_BODY,
  MAX_MISSING_IDS,
  MAX_OBJECT_BYTES,
  MAX_PROFILE_BYTES,
  MAX_REF_BYTES,
  MAX_REF_LIST_BYTES,
  MAX_REF_SIGNATURE_BYTES,
  MISSING_ROUTE,
  objectPath,
  ENCODINGS_HEADER,
  profilePath,
  REF_LIST_ROUTE,
  refPath,
  refSignaturePath,
} from './wire.js'

export interface HttpStoreInit {
  kind?: SourceKind
  /** Bearer token for uploads. */
  token?: string
  /** Connection timeout, ms (default 5000). */
  connectTimeoutMs?: number
  /** Socket inactivity timeout, ms (default 15000): a stalled peer is abandoned. */
  idleTimeoutMs?: number
  retry?: Partial<RetryPolicy>
  /** Extra headers on object GETs (e.g. fetch-through). */
  objectHeaders?: Record<string, string>
  /** Accept any TLS certificate (no verification). */
  insecure?: boolean
  /** A private CA trusted besides the system's roots, and the client certificate presented (tls-trust.ts). */
  tls?: ClientTls
  /** Bearer token sent on every read (a server started with --read-token-file); the push token serves when absent. */
  readToken?: string
  /** Max parallel connections to this store (default 16). */
  maxSockets?: number
}

/** How long past its connect timeout a ping may wait for the answer's headers. */
const PING_ANSWER_MS = 2000

export class HttpStore implements RemoteSource, WritableRemote {
  readonly url: string
  readonly name: string
  readonly kind: SourceKind
  /** The general client (http-client.ts): everything but the bulk and quick GETs. */
  private readonly http: HttpClient
  private readonly token?: string
  private readonly retry: RetryPolicy
  private readonly objectHeaders: Record<string, string>
  private readonly readHeaders: Record<string, string>
  private readonly init: HttpStoreInit
  private batchUnsupported = false
  private batches?: ObjectBatchUpload
  /** Packed chunks of a static seed holding packs (a copy of a bucket; packs.ts), once a manifest's pack list was read. */
  private readonly packs = new PackCatalog()
  /** The image this peer's fetch-throughs are for (forImage). */
  private image?: string

  constructor(url: string, init: HttpStoreInit = {}) {
    const u = new URL(url)
    if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new RemoteError(`unsupported remote URL ${url}: use http:// or https://`)
    this.url = u.href.endsWith('/') ? u.href : u.href + '/'
    this.kind = init.kind ?? 'seed'
    this.name = `${this.kind} ${this.url.replace(/\/$/, '')}`
    this.token = init.token
    this.retry = {...DEFAULT_RETRY, ...(init.retry ?? {})}
    // a server that requires read authorization takes the read token, or the push token, on every request
    const auth = init.readToken ?? init.token
    this.readHeaders = auth === undefined ? {} : {authorization: bearer(auth)}
    this.objectHeaders = {...(init.objectHeaders ?? {}), ...this.readHeaders, [ENCODINGS_HEADER]: OBJECT_ENCODINGS.join(',')}
    this.init = init
    this.http = new HttpClient(this.url, {...init, headers: this.readHeaders})
  }

  /** Whether uploads carry a token (without one, every write is refused). */
  get canWrite(): boolean {
    return this.token !== undefined
  }

  /**
   * One small GET (a ref, a manifest, a profile) through the narrow client of
   * pipelined-get: a 200 with a Content-Length up to `max`, or a 404.
   * undefined for anything else (a redirect, an error status, a compressed or
   * chunked body, a connection failure): the caller then asks through the
   * general client, with retries and redirects.
   */
  private async quickGet(path: string, max: number, signal?: AbortSignal): Promise<{body?: Buffer} | undefined> {
    let out: {body?: Buffer} | undefined
    await bulkGet(
      this.url,
      [{id: path, path, length: Math.min(max, 1 << 20), upTo: max}],
      {onBody: (_item, body) => (out = {body}), onMissing: () => (out = {}), onFailed: () => {}},
      {...this.bulkOptions(false), headers: this.readHeaders, connections: 1, maxFailures: 1, signal},
    )
    return out
  }

  /** `tokenSent`: the request carried the push token (only uploads do), so a 403 means that token is wrong. */
  private fail(what: string, res: HttpAnswer | undefined, err?: unknown, tokenSent = false): RemoteError {
    if (res && (res.status === 401 || res.status === 403))
      return new RemoteAuthError(`${this.name} refused ${what}: HTTP ${res.status} (${res.status === 401 ? 'no token' : tokenSent ? 'wrong token' : 'forbidden'})`, {
        data: {status: res.status, source: this.name},
      })
    if (res) {
      const body = res.body.toString('utf8', 0, 200)
      return new RemoteError(`${this.name} failed ${what}: HTTP ${res.status}${body ? ` ${body.trim()}` : ''}`, {
        data: {status: res.status, source: this.name},
      })
    }
    const e = err as {code?: string; message?: string}
    if (isTlsTrustError(err))
      return new RemoteTlsError(`${this.name} failed ${what}: its TLS certificate is not trusted (${e.code}: ${e.message})`, {
        cause: err,
        data: {source: this.name, tlsCode: e.code},
      })
    return new RemoteError(`${this.name} failed ${what}: ${e?.code ?? ''} ${e?.message ?? String(err)}`.replace(/\s+/g, ' '), {
      cause: err,
      data: {source: this.name},
    })
  }

  /** GET a capped body; undefined on 404. */
  private async getBuffer(
    path: string,
    what: string,
    max: number,
    opts: FetchOptions & {headers?: Record<string, string>; quick?: boolean; range?: number} = {},
  ): Promise<Buffer | undefined> {
    const {range} = opts
    // a range is exactly `max` bytes from `range`, answered 206
    const headers = range === undefined ? opts.headers : {...opts.headers, range: byteRange(range, max)}
    if (opts.quick && range === undefined && !opts.signal?.aborted) {
      const q = await this.quickGet(path, max, opts.signal).catch(() => undefined)
      if (q) return q.body
    }
    return withRetry(
      async () => {
        let res: HttpAnswer
        try {
          res = await this.http.request(path, {method: 'GET', signal: opts.signal, headers, maxBytes: max})
        } catch (err) {
          // an oversized answer is a wrong answer: not retried
          if (err instanceof BodyTooLargeError)
            throw new RemoteIntegrityError(`${this.name} sent more than ${max} bytes for ${what}${range === undefined ? '' : ' (a range request: does the server ignore Range?)'}`, {data: {source: this.name}})
          throw this.fail(what, undefined, err)
        }
        if (res.status === 404) return undefined
        if (range !== undefined && res.status === 200) throw new RemoteError(`${this.name} answered a range request for ${what} with the whole file`, {data: {source: this.name}})
        if (res.status !== (range === undefined ? 200 : 206)) throw this.fail(what, res)
        if (range !== undefined && res.body.length !== max)
          throw new RemoteIntegrityError(`${this.name} sent ${res.body.length} bytes for ${what}, not ${max}`, {data: {source: this.name}})
        const declared = Number(res.headers['content-length'])
        if (Number.isFinite(declared) && declared !== res.body.length && !res.decoded)
          throw new RemoteError(`${this.name} sent a truncated body for ${what}`, {cause: Object.assign(new Error('truncated'), {code: 'VMI_TRUNCATED'}), data: {source: this.name}})
        return res.body
      },
      this.retry,
      opts.signal,
    )
  }

  /**
   * Verified chunk bytes, undefined on 404. `fetchThrough` asks a peer to
   * fetch the chunk from its upstream when it lacks it (owner role).
   */
  async get(id: string, opts: FetchOptions & {fetchThrough?: boolean} = {}): Promise<Buffer | undefined> {
    assertChunkId(id)
    const headers = this.objectRequestHeaders(opts.fetchThrough === true)
    const data = await this.packs.readChunk(
      id,
      (path, what, at) => this.getBuffer(path, what, at.length, {...opts, headers: this.readHeaders, range: at.offset}),
      () => this.getBuffer(objectPath(id), `chunk ${id}`, MAX_OBJECT_BYTES, {...opts, headers}),
    )
    if (data === undefined) return undefined
    // decoded when a frame, then hashed (object-encoding.ts)
    return checkReceived(
      id,
      data,
      (actual) => new RemoteIntegrityError(`${this.name} sent wrong bytes for chunk ${id} (they hash to ${actual})`, {data: {id, actual, source: this.name}}),
    )
  }

  private objectRequestHeaders(fetchThrough: boolean): Record<string, string> {
    if (!fetchThrough) return this.objectHeaders
    return {...this.objectHeaders, [FETCH_HEADER]: FETCH_UPSTREAM, ...(this.image ? {[IMAGE_HEADER]: this.image} : {})}
  }

  /** The image fetch-throughs are for from now on: a peer whose seed keeps packs finds its chunks by it. */
  forImage(manifestId: string): void {
    this.image = manifestId
  }

  /**
   * Connection settings for bulk object GETs (pipelined-get.ts) from this
   * store, the same headers and timeouts as `get`.
   */
  bulkOptions(fetchThrough: boolean): BulkOptions {
    return {
      headers: this.objectRequestHeaders(fetchThrough),
      connectTimeoutMs: this.init.connectTimeoutMs ?? 5000,
      idleTimeoutMs: this.init.idleTimeoutMs ?? 15_000,
      insecure: this.init.insecure,
      tls: this.init.tls,
    }
  }

  /**
   * One HEAD of the store's base URL, not retried: resolves on any HTTP
   * answer (a static server may well say 403 or 404 there), throws when the
   * source cannot be reached or does not answer in time. The circuit
   * breaker's probe.
   */
  async ping(opts: FetchOptions = {}): Promise<void> {
    try {
      await this.http.request('', {method: 'HEAD', signal: opts.signal, timeoutMs: (this.init.connectTimeoutMs ?? 5000) + PING_ANSWER_MS})
    } catch (err) {
      throw this.fail('a ping', undefined, err)
    }
  }

  /** A static seed may hold packs (a copy of a bucket a push wrote): read where this manifest's chunks are. */
  usePacks(manifestId: string, opts: FetchOptions = {}): Promise<number> {
    return this.packs.loadManifest(manifestId, (path, what, max, o) => this.getBuffer(path, what, max, {...o, headers: this.readHeaders}), opts)
  }

  packPlan(items: readonly {id: string}[]): {spans: PackSpan[]; loose: number[]} | undefined {
    return this.packs.bulkPlan(items)
  }

  /** Whether a pack list is being read (a chunk missing loose may be packed). */
  get packsPending(): boolean {
    return this.packs.pending
  }

  async has(id: string, opts: FetchOptions = {}): Promise<boolean> {
    assertChunkId(id) // before any request: an id is part of the path
    if (this.packs.lookup(id)) return true
    return withRetry(
      async () => {
        let res: HttpAnswer
        try {
          res = await this.http.request(objectPath(id), {method: 'HEAD', signal: opts.signal})
        } catch (err) {
          throw this.fail(`HEAD chunk ${id}`, undefined, err)
        }
        if (res.status === 404) return false
        if (res.status === 200) return true
        throw this.fail(`HEAD chunk ${id}`, res)
      },
      this.retry,
      opts.signal,
    )
  }

  /** The ids this store lacks: one POST per MAX_MISSING_IDS ids, or HEADs against a static server. */
  async missing(ids: string[], opts: FetchOptions & {concurrency?: number} = {}): Promise<string[]> {
    const out: string[] = []
    for (let i = 0; i < ids.length; i += MAX_MISSING_IDS) {
      const batch = ids.slice(i, i + MAX_MISSING_IDS)
      if (!this.batchUnsupported) {
        const res = await withRetry(
          async () => {
            try {
              return await this.http.request(MISSING_ROUTE, {
                method: 'POST',
                body: JSON.stringify({ids: batch}),
                headers: {'content-type': CONTENT_JSON},
                maxBytes: MAX_MISSING_BODY,
                signal: opts.signal,
              })
            } catch (err) {
              throw this.fail('the batch missing-check', undefined, err)
            }
          },
          this.retry,
          opts.signal,
        )
        if (res.status === 200) {
          let list: unknown
          try {
            list = JSON.parse(res.body.toString('utf8')).missing
          } catch {
            list = undefined
          }
          if (!Array.isArray(list) || !list.every(isValidId)) throw new RemoteError(`${this.name} answered the missing-check with malformed JSON`)
          const asked = new Set(batch)
          out.push(...(list as string[]).filter((x) => asked.has(x)))
          continue
        }
        if (![404, 405, 501].includes(res.status)) throw this.fail('the batch missing-check', res)
        this.batchUnsupported = true // a static server: fall back to HEAD
      }
      const flags = await mapLimit(batch, opts.concurrency ?? 16, (id) => this.has(id, opts))
      batch.forEach((id, k) => flags[k] || out.push(id))
    }
    return out
  }

  async getManifestBytes(id: string, opts: FetchOptions = {}): Promise<Buffer | undefined> {
    const data = await this.getBuffer(manifestPath(id), `manifest ${id}`, MAX_MANIFEST_BYTES, {...opts, quick: true})
    if (data === undefined) return undefined
    verifyContent(id, data, (actual) => new RemoteIntegrityError(`${this.name} sent wrong bytes for manifest ${id} (they hash to ${actual})`, {data: {id, actual}}))
    return data
  }

  /** A boot profile (sidecar), or undefined when the remote has none. Not verified: only a hint. */
  async getProfileBytes(id: string, opts: FetchOptions & {maxBytes?: number} = {}): Promise<Buffer | undefined> {
    return this.getBuffer(profilePath(id), `boot profile of ${id}`, Math.min(opts.maxBytes ?? MAX_PROFILE_BYTES, MAX_PROFILE_BYTES), {...opts, quick: true})
  }

  async putProfile(id: string, bytes: Buffer, opts: FetchOptions = {}): Promise<void> {
    await this.put(profilePath(id), bytes, `boot profile of ${id}`, opts)
  }

  /**
   * Whether the server is a vmi store at all: a static server over a store
   * has its marker (/vmi-store.json), `vmi serve` answers /healthz. Asked
   * after a 404 that may mean "not a vmi store" rather than "absent" (a
   * store written before the marker existed has neither, when served
   * statically). Throws when the server cannot be reached.
   */
  async looksLikeStore(opts: FetchOptions = {}): Promise<boolean> {
    // any answer but 200 (404, 403 from a static server) means no marker
    const marker = await this.getBuffer(STORE_MARKER_NAME, 'the store marker', 4096, {...opts, quick: true}).catch(() => undefined)
    if (marker && marker.toString('utf8').includes('"vmi-store"')) return true
    const health = await this.getBuffer(HEALTH_ROUTE, 'the health check', 64, {...opts, quick: true}).catch(() => undefined)
    return health?.toString('utf8').trim() === 'ok'
  }

  async getRef(name: string, tag: string, opts: FetchOptions = {}): Promise<string | undefined> {
    const data = await this.getBuffer(refPath(name, tag), `ref ${name}:${tag}`, MAX_REF_BYTES, {...opts, quick: true})
    if (data === undefined) return undefined
    const id = data.toString('utf8').trim()
    if (!isValidId(id)) throw new RemoteError(`${this.name} answered ref ${name}:${tag} with something that is not an id`)
    return id
  }

  /** A ref's signature file, unchecked (the caller verifies it); undefined on 404. */
  async getRefSignature(name: string, tag: string, opts: FetchOptions = {}): Promise<Buffer | undefined> {
    return this.getBuffer(refSignaturePath(name, tag), `signature of ref ${name}:${tag}`, MAX_REF_SIGNATURE_BYTES, {...opts, quick: true})
  }

  async listRefs(opts: FetchOptions = {}): Promise<{name: string; tag: string; id: string}[] | undefined> {
    const data = await this.getBuffer(REF_LIST_ROUTE, 'the ref list', MAX_REF_LIST_BYTES, opts)
    if (data === undefined) return undefined
    try {
      const refs = JSON.parse(data.toString('utf8')).refs
      if (!Array.isArray(refs)) throw new Error('no refs list')
      // names come from an untrusted server: only well-formed ones (no path traversal) get through
      return refs.filter((r: {name?: unknown; tag?: unknown; id?: unknown}) => isValidId(r?.id) && typeof r.name === 'string' && isValidRefPart(r.name) && typeof r.tag === 'string' && isValidRefPart(r.tag))
    } catch (err) {
      throw new RemoteError(`${this.name} answered the ref list with malformed JSON`, {cause: err})
    }
  }

  private async put(path: string, body: Buffer | string, what: string, opts: FetchOptions = {}): Promise<number> {
    if (!this.token) throw new RemoteAuthError(`uploading ${what} to ${this.name} needs a push token`)
    return withRetry(
      async () => {
        let res: HttpAnswer
        try {
          res = await this.http.request(path, {method: 'PUT', body, headers: {authorization: bearer(this.token!), 'content-type': CONTENT_BINARY}, signal: opts.signal})
        } catch (err) {
          throw this.fail(`upload of ${what}`, undefined, err)
        }
        if (res.status === 200 || res.status === 201 || res.status === 204) return res.status
        throw this.fail(`upload of ${what}`, res, undefined, true)
      },
      this.retry,
      opts.signal,
    )
  }

  /** vmi serve hashes every upload and refuses wrong bytes. */
  get verifiesUploads(): boolean {
    return true
  }

  /**
   * Upload chunks in one object batch (object-batch-upload.ts); undefined
   * when the server has no batch route (the caller puts them one by one).
   */
  async putObjects(objects: {id: string; data: Buffer}[], opts: FetchOptions & {onSent?: (index: number) => void} = {}): Promise<{stored: number; present: number} | undefined> {
    return this.batchUpload().put(objects, opts)
  }

  /** Whether the server stores compressed objects as sent: it says so in its answer to an empty object batch (a vmi serve before format 2 does not). */
  async storesEncoded(opts: FetchOptions = {}): Promise<boolean> {
    return (await this.batchUpload().encodings(opts)).includes('zstd')
  }

  private batchUpload(): ObjectBatchUpload {
    if (!this.token) throw new RemoteAuthError(`uploading chunks to ${this.name} needs a push token`)
    this.batches ??= new ObjectBatchUpload(this.http, this.name, bearer(this.token), this.retry, (what, res, err) => this.fail(what, res, err, true))
    return this.batches
  }

  /** Upload a chunk; true when the server did not have it. */
  async putObject(id: string, data: Buffer, opts: FetchOptions = {}): Promise<boolean> {
    return (await this.put(objectPath(id), data, `chunk ${id}`, opts)) === 201
  }

  async putManifest(id: string, bytes: Buffer, opts: FetchOptions = {}): Promise<void> {
    await this.put(manifestPath(id), bytes, `manifest ${id}`, opts)
  }

  async putRef(name: string, tag: string, id: string, opts: FetchOptions = {}): Promise<void> {
    await this.put(refPath(name, tag), id + '\n', `ref ${name}:${tag}`, opts)
  }

  async putRefSignature(name: string, tag: string, data: Buffer, opts: FetchOptions = {}): Promise<void> {
    await this.put(refSignaturePath(name, tag), data, `signature of ref ${name}:${tag}`, opts)
  }
}

