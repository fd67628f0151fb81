/**
 * An S3 bucket (AWS, or an S3-compatible store: Ceph RGW, MinIO, R2) as a
 * seed: read by pull, mount and `vmi serve --seed`, written by push. The
 * keys below `s3://BUCKET/PREFIX` are the store layout itself
 * (objects/, manifests/, profiles/, refs/, vmi-store.json; wire.ts), so a
 * bucket synced from a store directory is a valid seed and a public bucket
 * is also a plain HTTP seed (docs/FORMAT.md, "A store in a bucket").
 *
 * Every request is signed (SigV4, sigv4.ts) unless no credentials were
 * given (a public-read bucket). Every chunk and manifest read is verified
 * against its id; only a 404 for a key (NoSuchKey) means "missing" — a
 * bucket that does not exist is an error. Requests go through the general
 * HTTP client (http-client.ts: keep-alive, one pool per store), except
 * chunks in bulk: those go over pipelined connections (pipelined-get.ts),
 * each request signed on its own, received on the writer threads like a
 * pull from any other seed.
 */
import type {ClientTls} from '../tls-trust.js'
import type {BulkOptions} from '../pipelined-get.js'
import {BodyTooLargeError, HttpClient, type HttpAnswer} from '../http-client.js'
import {RemoteAuthError, RemoteError, RemoteIntegrityError, RemoteTlsError} from '../../errors.js'
import {verifyContent} from '../../store/hash.js'
import {checkReceived} from '../../store/object-encoding.js'
import {isValidId, STORE_MARKER, STORE_MARKER_NAME} from '../../store/layout.js'
import {mapLimit} from '../../util/map-limit.js'
import {DEFAULT_RETRY, withRetry, type RetryPolicy} from '../retry.js'
import {assertChunkId, type FetchOptions, type RemoteSource, type SourceKind, type WritableRemote} from '../source.js'
import {isTlsTrustError, trustContext} from '../tls-trust.js'
import {
  byteRange,
  CACHE_IMMUTABLE,
  CACHE_REVALIDATE,
  CONTENT_BINARY,
  CONTENT_TEXT,
  manifestPath,
  MAX_MANIFEST_BYTES,
  MAX_OBJECT_BYTES,
  MAX_PROFILE_BYTES,
  MAX_REF_BYTES,
  MAX_REF_SIGNATURE_BYTES,
  objectPath,
  profilePath,
  refPath,
  refSignaturePath,
  USER_AGENT,
} from '../wire.js'
import {decodeManifest, uniqueChunkIds} from '../../store/manifest.js'
import {buildPack, encodePackIndex, encodePackList, MAX_PACK_INDEX_BYTES, MAX_PACK_OBJECTS, PackCatalog, packIndexPath, packListPath, packPath, type PackSpan} from '../packs.js'
import {s3Error, type S3ErrorContext} from './s3-errors.js'
import {needsPathStyle, parseS3Url} from './s3-url.js'
import {EMPTY_SHA256, sha256Hex, signRequest, uriEncode, canonicalQuery, type S3Credentials} from './sigv4.js'

/** Where and how to reach the bucket; resolved by the CLI (src/cli/s3-settings.ts) from the environment and ~/.aws. */
export interface S3Access {
  region: string
  /** Endpoint URL of an S3-compatible store (default: AWS, https://s3.REGION.amazonaws.com). */
  endpoint?: string
  /** Path-style addressing (ENDPOINT/BUCKET/KEY); default: for IP addresses and localhost only. */
  pathStyle?: boolean
  /** Without credentials requests are anonymous (a public-read bucket). */
  credentials?: S3Credentials
}

export interface S3StoreInit extends S3Access {
  kind?: SourceKind
  connectTimeoutMs?: number
  /** Inactivity timeout for an answer's headers and body, ms (default 15000). */
  idleTimeoutMs?: number
  retry?: Partial<RetryPolicy>
  /** Connections to the endpoint (default 16). */
  connections?: number
  insecure?: boolean
  /** A private CA for the endpoint's certificate, and a client certificate (tls-trust.ts). */
  tls?: ClientTls
  /** Push chunks in packs (default true; false: one object per chunk, readable by a vmi without packs). */
  pack?: boolean
}

type Answer = HttpAnswer

interface SendOptions extends FetchOptions {
  query?: Record<string, string>
  body?: Buffer | string
  headers?: Record<string, string>
  /** Largest body read; a bigger one is a wrong answer. */
  max?: number
  /** Total time for the answer, ms (ping). */
  timeoutMs?: number
}

export class S3Store implements RemoteSource, WritableRemote {
  readonly url: string
  readonly name: string
  readonly kind: SourceKind
  readonly bucket: string
  readonly prefix: string
  readonly endpoint: string
  private readonly region: string
  private readonly pathStyle: boolean
  private readonly credentials?: S3Credentials
  private readonly host: string
  /** Scheme and host requests go to (the bucket's own host name unless path-style). */
  private readonly origin: string
  private readonly client: HttpClient
  private readonly retry: RetryPolicy
  private readonly connectTimeoutMs: number
  private readonly idleTimeoutMs: number
  private readonly insecure?: boolean
  private readonly tls?: ClientTls
  private marker?: Promise<void>
  private readonly pack: boolean
  /** Where packed chunks are (packs.ts): the packs of the manifests used, or every pack when a push listed them. */
  private readonly packs = new PackCatalog()
  /** Every pack index in the bucket has been read (a push's missing-check). */
  private allPacksListed = false

  constructor(url: string, init: S3StoreInit) {
    const loc = parseS3Url(url)
    this.bucket = loc.bucket
    this.prefix = loc.prefix
    this.url = `s3://${loc.bucket}${loc.prefix ? '/' + loc.prefix : ''}`
    this.kind = init.kind ?? 'seed'
    this.name = `${this.kind} ${this.url}`
    this.region = init.region
    this.credentials = init.credentials
    const ep = new URL(init.endpoint ?? `https://s3.${init.region}.amazonaws.com`)
    if (ep.protocol !== 'http:' && ep.protocol !== 'https:') throw new RemoteError(`S3 endpoint ${init.endpoint}: use http:// or https://`)
    this.endpoint = ep.origin
    this.pathStyle = init.pathStyle ?? needsPathStyle(ep.hostname)
    this.host = this.pathStyle ? ep.host : `${loc.bucket}.${ep.host}`
    this.retry = {...DEFAULT_RETRY, ...(init.retry ?? {})}
    this.connectTimeoutMs = init.connectTimeoutMs ?? 5000
    this.idleTimeoutMs = init.idleTimeoutMs ?? 15_000
    this.insecure = init.insecure
    this.tls = init.tls
    this.pack = init.pack !== false
    this.origin = `${ep.protocol}//${this.host}`
    this.client = new HttpClient(this.origin, {
      connectTimeoutMs: this.connectTimeoutMs,
      idleTimeoutMs: this.idleTimeoutMs,
      maxSockets: init.connections ?? 16,
      insecure: init.insecure,
      tls: init.tls,
    })
  }

  get canWrite(): boolean {
    return this.credentials !== undefined
  }

  /** A bucket stores what it is given: the pusher verifies each chunk before it goes. */
  get verifiesUploads(): boolean {
    return false
  }

  /**
   * A bucket stores any bytes: a seed, so its chunks rest compressed (read
   * as they are by every vmi of format 2, also over plain HTTP; a vmi before
   * it cannot read them: `vmi push --no-compress` for such a fleet).
   */
  async storesEncoded(): Promise<boolean> {
    return true
  }

  /** Release the connections (a CLI command exits anyway; tests and long-lived callers close). */
  async close(): Promise<void> {
    this.client.close()
  }

  private key(rel: string): string {
    const k = decodeURIComponent(rel)
    return this.prefix ? `${this.prefix}/${k}` : k
  }

  /** The request path for a key (undefined: the bucket itself). */
  private requestPath(key: string | undefined): string {
    const k = key === undefined ? '' : uriEncode(key, true)
    return this.pathStyle ? `/${this.bucket}${key === undefined ? '' : '/' + k}` : `/${k}`
  }

  private ctx(what: string): S3ErrorContext {
    return {source: this.name, bucket: this.bucket, endpoint: this.endpoint, region: this.region, accessKeyId: this.credentials?.accessKeyId, what}
  }

  private connectionError(what: string, err: unknown): RemoteError {
    const e = err as {code?: string; message?: string}
    if (isTlsTrustError(err))
      return new RemoteTlsError(`${this.name} failed ${what}: the TLS certificate of ${this.endpoint} is not trusted (${e.code}: ${e.message})`, {cause: err, data: {source: this.name, tlsCode: e.code}})
    return new RemoteError(`${this.name} failed ${what}: ${e?.code ?? ''} ${e?.message ?? String(err)} (endpoint ${this.endpoint})`.replace(/\s+/g, ' '), {
      cause: err,
      data: {source: this.name},
    })
  }

  /** One signed request; the answer's body read up to `max` bytes. Not retried. */
  private async send(method: 'GET' | 'HEAD' | 'PUT', key: string | undefined, what: string, opts: SendOptions = {}): Promise<Answer> {
    const body = opts.body === undefined ? undefined : Buffer.isBuffer(opts.body) ? opts.body : Buffer.from(opts.body)
    const path = this.requestPath(key)
    // the client adds user-agent, accept-encoding and content-length (not signed: SigV4 signs only what it lists)
    const headers = this.credentials
      ? signRequest({method, host: this.host, path, query: opts.query, headers: opts.headers, payloadHash: body ? sha256Hex(body) : EMPTY_SHA256, region: this.region, credentials: this.credentials})
      : (opts.headers ?? {})
    const q = canonicalQuery(opts.query)
    try {
      // a body past the cap is a wrong answer (an error document is a few hundred bytes); a HEAD's
      // Content-Length is the object's size, with no body to cap
      const maxBytes = method === 'HEAD' ? undefined : (opts.max ?? 64 * 1024)
      return await this.client.request(q ? `${path}?${q}` : path, {method, headers, body, signal: opts.signal, maxBytes, timeoutMs: opts.timeoutMs})
    } catch (err) {
      if (opts.signal?.aborted) throw opts.signal.reason
      if (err instanceof BodyTooLargeError) throw new RemoteIntegrityError(`${this.name} sent more than ${err.maxBytes} bytes for ${what}`, {data: {source: this.name}})
      throw this.connectionError(what, err)
    }
  }

  private fail(a: Answer, what: string): RemoteError {
    const region = a.headers['x-amz-bucket-region']
    return s3Error({status: a.status, body: a.body.toString('utf8'), bucketRegion: typeof region === 'string' ? region : undefined}, this.ctx(what))
  }

  /**
   * GET a key's bytes (retried on 5xx and connection failures); undefined
   * when the key does not exist. With `range`, exactly `max` bytes from that
   * offset (a 206 of any other length is a wrong answer).
   */
  private async getKey(rel: string, what: string, max: number, opts: FetchOptions & {range?: number} = {}): Promise<Buffer | undefined> {
    const headers = opts.range === undefined ? undefined : {range: byteRange(opts.range, max)}
    return withRetry(
      async () => {
        const a = await this.send('GET', this.key(rel), what, {signal: opts.signal, max, headers})
        if (opts.range !== undefined && a.status === 206) {
          if (a.body.length !== max) throw new RemoteIntegrityError(`${this.name} sent ${a.body.length} bytes for ${what}, not ${max}`, {data: {source: this.name}})
          return a.body
        }
        if (opts.range !== undefined && a.status === 200) throw new RemoteError(`${this.name} answered a range request for ${what} with the whole object`, {data: {source: this.name}})
        if (a.status === 200) return a.body
        // a missing key is NoSuchKey; NoSuchBucket (also a 404) is an error
        if (a.status === 404 && !a.body.includes('NoSuchBucket')) return undefined
        throw this.fail(a, what)
      },
      this.retry,
      opts.signal,
    )
  }

  async get(id: string, opts: FetchOptions & {fetchThrough?: boolean} = {}): Promise<Buffer | undefined> {
    assertChunkId(id)
    const data = await this.packs.readChunk(
      id,
      (path, what, at) => this.getKey(path, what, at.length, {...opts, range: at.offset}),
      () => this.getKey(objectPath(id), `chunk ${id}`, MAX_OBJECT_BYTES, opts),
    )
    if (data === undefined) return undefined
    return checkReceived(id, data, (actual) => new RemoteIntegrityError(`${this.name} sent wrong bytes for chunk ${id} (they hash to ${actual})`, {data: {id, actual, source: this.name}}))
  }

  async has(id: string, opts: FetchOptions = {}): Promise<boolean> {
    assertChunkId(id)
    if (this.packs.lookup(id)) return true
    const what = `HEAD chunk ${id}`
    return withRetry(
      async () => {
        const a = await this.send('HEAD', this.key(objectPath(id)), what, {signal: opts.signal})
        if (a.status === 200) return true
        if (a.status === 404) return false
        // an error answer to a HEAD has no body: ask again with a GET for the error's code
        const g = await this.send('GET', this.key(objectPath(id)), what, {signal: opts.signal, max: MAX_OBJECT_BYTES})
        if (g.status === 200) return true
        if (g.status === 404 && !g.body.includes('NoSuchBucket')) return false
        throw this.fail(g, what)
      },
      this.retry,
      opts.signal,
    )
  }

  /**
   * Pipelined bulk GETs of objects (pipelined-get.ts), each request signed
   * with its own date; anything but a 200 (a 403 from a skewed clock, a 404
   * that may be NoSuchBucket, a 503 SlowDown) goes back to `get`, which
   * retries or names the error.
   */
  bulkOptions(): BulkOptions {
    const base = this.requestPath(this.prefix ? this.prefix + '/' : undefined)
    return {
      endpoint: `${this.origin}${base.endsWith('/') ? base : base + '/'}`,
      sigv4: this.credentials ? {region: this.region, credentials: {...this.credentials}} : undefined,
      connectTimeoutMs: this.connectTimeoutMs,
      idleTimeoutMs: this.idleTimeoutMs,
      insecure: this.insecure,
      tls: this.tls,
    }
  }

  usePacks(manifestId: string, opts: FetchOptions = {}): Promise<number> {
    return this.packs.loadManifest(manifestId, (rel, what, max, o) => this.getKey(rel, what, max, o), opts)
  }

  packPlan(items: readonly {id: string}[]): {spans: PackSpan[]; loose: number[]} | undefined {
    return this.packs.bulkPlan(items)
  }

  /** Whether a pack list is being read (a chunk missing loose may be packed). */
  get packsPending(): boolean {
    return this.packs.pending
  }

  async getManifestBytes(id: string, opts: FetchOptions = {}): Promise<Buffer | undefined> {
    if (!isValidId(id)) throw new TypeError(`bad manifest id ${JSON.stringify(id)}`)
    const data = await this.getKey(manifestPath(id), `manifest ${id}`, MAX_MANIFEST_BYTES, opts)
    if (data === undefined) return undefined
    verifyContent(id, data, (actual) => new RemoteIntegrityError(`${this.name} sent wrong bytes for manifest ${id} (they hash to ${actual})`, {data: {id, actual, source: this.name}}))
    return data
  }

  /** A boot profile (a hint, not verified), or undefined. */
  async getProfileBytes(id: string, opts: FetchOptions & {maxBytes?: number} = {}): Promise<Buffer | undefined> {
    return this.getKey(profilePath(id), `boot profile of ${id}`, Math.min(opts.maxBytes ?? MAX_PROFILE_BYTES, MAX_PROFILE_BYTES), opts)
  }

  async getRef(name: string, tag: string, opts: FetchOptions = {}): Promise<string | undefined> {
    const data = await this.getKey(refPath(name, tag), `ref ${name}:${tag}`, MAX_REF_BYTES, opts)
    if (data === undefined) return undefined
    const id = data.toString('utf8').trim()
    if (!isValidId(id)) throw new RemoteError(`${this.name} answered ref ${name}:${tag} with something that is not an id`, {data: {source: this.name}})
    return id
  }

  /** The ref's signature (sigs/NAME/TAG), undefined when it has none. Checked by the caller against its allowed signers. */
  async getRefSignature(name: string, tag: string, opts: FetchOptions = {}): Promise<Buffer | undefined> {
    return this.getKey(refSignaturePath(name, tag), `signature of ref ${name}:${tag}`, MAX_REF_SIGNATURE_BYTES, opts)
  }

  /**
   * Whether the prefix holds a store: its marker, or any manifest. Asked
   * after a 404 (a ref not found): a wrong prefix is then named as such.
   */
  async looksLikeStore(opts: FetchOptions = {}): Promise<boolean> {
    const marker = await this.getKey(STORE_MARKER_NAME, 'the store marker', 4096, opts)
    if (marker?.toString('utf8').includes('"vmi-store"')) return true
    const page = await this.listPage(this.key('manifests/'), undefined, opts, 1)
    return page.keys.length > 0
  }

  /** One HEAD of the bucket, not retried: any HTTP answer means the endpoint is up (the circuit breaker's probe). */
  async ping(opts: FetchOptions = {}): Promise<void> {
    await this.send('HEAD', undefined, 'a ping', {signal: opts.signal, timeoutMs: this.connectTimeoutMs + 2000})
  }

  /** One page of ListObjectsV2 below `prefix`. */
  private async listPage(prefix: string, token: string | undefined, opts: FetchOptions, maxKeys = 1000, delimiter?: string): Promise<{keys: string[]; next?: string}> {
    const what = `the listing of ${prefix}`
    const query: Record<string, string> = {'list-type': '2', prefix, 'max-keys': String(maxKeys)}
    if (delimiter) query.delimiter = delimiter
    if (token) query['continuation-token'] = token
    return withRetry(
      async () => {
        const a = await this.send('GET', undefined, what, {signal: opts.signal, query, max: 16 << 20})
        if (a.status !== 200) throw this.fail(a, what)
        const xml = a.body.toString('utf8')
        const keys = [...xml.matchAll(/<Key>([^<]*)<\/Key>/g)].map((m) => m[1])
        const truncated = /<IsTruncated>true<\/IsTruncated>/.test(xml)
        const next = /<NextContinuationToken>([^<]*)<\/NextContinuationToken>/.exec(xml)?.[1]
        if (truncated && !next) throw new RemoteError(`${this.name} answered ${what} truncated without a continuation token`, {data: {source: this.name}})
        return {keys, next: truncated ? next!.replace(/&amp;/g, '&').replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&quot;/g, '"').replace(/&apos;/g, "'") : undefined}
      },
      this.retry,
      opts.signal,
    )
  }

  /**
   * The ids the bucket lacks. A few ids: one HEAD each. More: a listing of
   * each shard (objects/xx/) the ids fall in, in parallel — 16,384 chunks of
   * a 2 GiB image are 256 listings, not 16,384 HEADs.
   */
  async missing(ids: string[], opts: FetchOptions = {}): Promise<string[]> {
    for (const id of ids) assertChunkId(id)
    await this.listPacks(opts)
    ids = ids.filter((id) => !this.packs.lookup(id))
    if (ids.length <= 32) {
      const flags = await mapLimit(ids, 16, (id) => this.has(id, opts))
      return ids.filter((_, k) => !flags[k])
    }
    const shards = [...new Set(ids.map((id) => id.slice(0, 2)))]
    const present = new Set<string>()
    await mapLimit(shards, 16, async (shard) => {
      const prefix = this.key(`objects/${shard}/`)
      let token: string | undefined
      do {
        const page = await this.listPage(prefix, token, opts)
        for (const k of page.keys) if (k.startsWith(prefix)) present.add(shard + k.slice(prefix.length))
        token = page.next
      } while (token)
    })
    return ids.filter((id) => !present.has(id))
  }

  /**
   * Read every pack index in the bucket (once): what a push need not send
   * again, and which packs a manifest's pack list names. A pack without its
   * index (a push killed between the two) is not used.
   */
  private async listPacks(opts: FetchOptions): Promise<void> {
    if (this.allPacksListed) return
    const prefix = this.key('packs/')
    const packs: string[] = []
    let token: string | undefined
    do {
      const page = await this.listPage(prefix, token, opts, 1000, '/')
      for (const k of page.keys) {
        const m = /^([0-9a-f]{64})\.idx$/.exec(k.slice(prefix.length))
        if (m) packs.push(m[1])
      }
      token = page.next
    } while (token)
    await mapLimit(packs, 16, (p) => this.packs.loadIndex(p, (rel, what, max, o) => this.getKey(rel, what, max, o), opts))
    this.allPacksListed = true
  }

  /**
   * Many chunks as one pack (packs.ts): the pack, then its index, which
   * makes the pack's chunks count as present. Without packing (`pack:
   * false`), undefined: push then puts them one by one.
   */
  async putObjects(objects: {id: string; data: Buffer}[], opts: FetchOptions & {onSent?: (index: number) => void} = {}): Promise<{stored: number; present: number} | undefined> {
    if (!this.pack) return undefined
    for (const o of objects) assertChunkId(o.id)
    await this.ensureMarker(opts)
    for (let i = 0; i < objects.length; i += MAX_PACK_OBJECTS) {
      const part = objects.slice(i, i + MAX_PACK_OBJECTS)
      const p = buildPack(part)
      await this.put(packPath(p.id), p.bytes, `pack ${p.id}`, {'content-type': CONTENT_BINARY, 'cache-control': CACHE_IMMUTABLE}, opts)
      const index = encodePackIndex(p.entries)
      if (index.length > MAX_PACK_INDEX_BYTES) throw new RangeError(`the index of pack ${p.id} is over ${MAX_PACK_INDEX_BYTES} bytes`)
      await this.put(packIndexPath(p.id), index, `the index of pack ${p.id}`, {'content-type': CONTENT_TEXT, 'cache-control': CACHE_IMMUTABLE}, opts)
      this.packs.add(p.id, p.entries)
      for (let k = 0; k < part.length; k++) opts.onSent?.(i + k)
    }
    return {stored: objects.length, present: 0}
  }

  private async put(rel: string, body: Buffer | string, what: string, headers: Record<string, string>, opts: FetchOptions): Promise<void> {
    if (!this.credentials) throw new RemoteAuthError(`uploading ${what} to ${this.name} needs S3 credentials`, {data: {source: this.name}})
    await withRetry(
      async () => {
        const a = await this.send('PUT', this.key(rel), `upload of ${what}`, {signal: opts.signal, body, headers})
        if (a.status !== 200 && a.status !== 201 && a.status !== 204) throw this.fail(a, `upload of ${what}`)
      },
      this.retry,
      opts.signal,
    )
  }

  /**
   * The store marker, before this push's first write: a prefix a push has
   * begun reads as a store (one whose image is not there yet), over plain
   * HTTP too. Written once per push; a failed attempt is tried again.
   */
  private ensureMarker(opts: FetchOptions): Promise<void> {
    this.marker ??= this.put(STORE_MARKER_NAME, STORE_MARKER, 'the store marker', {'content-type': 'application/json', 'cache-control': CACHE_REVALIDATE}, opts).catch((err) => {
      this.marker = undefined
      throw err
    })
    return this.marker
  }

  /** Upload a chunk (the caller verified it: verifiesUploads). Always reported as new: a bucket does not say. */
  async putObject(id: string, data: Buffer, opts: FetchOptions = {}): Promise<boolean> {
    assertChunkId(id)
    await this.ensureMarker(opts)
    await this.put(objectPath(id), data, `chunk ${id}`, {'content-type': CONTENT_BINARY, 'cache-control': CACHE_IMMUTABLE}, opts)
    return true
  }

  /** The manifest, after its pack list when any of its chunks are packed (a reader finds the list before it can find the manifest). */
  async putManifest(id: string, bytes: Buffer, opts: FetchOptions = {}): Promise<void> {
    await this.ensureMarker(opts)
    await this.listPacks(opts)
    const packs = this.packs.packsOf(uniqueChunkIds(decodeManifest(bytes)))
    if (packs.length > 0) await this.put(packListPath(id), encodePackList(packs), `the pack list of ${id}`, {'content-type': CONTENT_TEXT, 'cache-control': CACHE_IMMUTABLE}, opts)
    await this.put(manifestPath(id), bytes, `manifest ${id}`, {'content-type': CONTENT_BINARY, 'cache-control': CACHE_IMMUTABLE}, opts)
  }

  async putProfile(id: string, bytes: Buffer, opts: FetchOptions = {}): Promise<void> {
    await this.put(profilePath(id), bytes, `boot profile of ${id}`, {'content-type': CONTENT_BINARY, 'cache-control': CACHE_REVALIDATE}, opts)
  }

  async putRef(name: string, tag: string, id: string, opts: FetchOptions = {}): Promise<void> {
    await this.put(refPath(name, tag), id + '\n', `ref ${name}:${tag}`, {'content-type': CONTENT_TEXT, 'cache-control': CACHE_REVALIDATE}, opts)
  }

  /** After the ref (push's order): a bucket cannot check it as vmi serve does; the reader does. */
  async putRefSignature(name: string, tag: string, data: Buffer, opts: FetchOptions = {}): Promise<void> {
    await this.put(refSignaturePath(name, tag), data, `signature of ref ${name}:${tag}`, {'content-type': CONTENT_TEXT, 'cache-control': CACHE_REVALIDATE}, opts)
  }
}
