/**
 * Bulk object GETs with HTTP/1.1 pipelining: a few keep-alive connections,
 * each carrying a window of requests written back to back, the responses read
 * in order off one stream. A general-purpose client pays a fixed cost per
 * request (measured ~1.2 ms of CPU per chunk through got, ~0.56 ms through
 * bare node:http); here a chunk costs a header parse and one copy, so a pull
 * moves chunks at close to the socket's speed (docs/PROTOCOL.md, "Bulk
 * fetch").
 *
 * Deliberately narrow. Only GET of fixed-length bodies: a response must carry
 * Content-Length (no chunked encoding, no content coding). Anything else — a
 * redirect, a 5xx, a body of the wrong length, a connection that closes or
 * stalls — is reported per item, and the caller fetches those items again
 * through its general client (http-client.ts, with retries and redirects). A connection
 * that closes with requests unanswered (a server's keep-alive limit) is
 * reopened and the unanswered requests sent again; one that fails without
 * answering anything twice in a row ends bulk fetching from that server.
 */
import net from 'node:net'
import tls from 'node:tls'
import {signRequest, EMPTY_SHA256, type S3Credentials} from './s3/sigv4.js'
import {clientContext, type ClientTls} from './tls-trust.js'
import {byteRange, MAX_HEADER_BYTES, USER_AGENT} from './wire.js'

export interface BulkItem {
  id: string
  /** Path below the base URL, e.g. "objects/ab/cdef…". */
  path: string
  /** Exact body length expected (the manifest says it); with `upTo`, only an estimate for the window. */
  length: number
  /** Accept any body length up to this instead of exactly `length` (a ref, a manifest). */
  upTo?: number
  /** Ask for `length` bytes of `path` from this offset (a Range request, answered 206); `upTo` does not apply. */
  range?: number
}

export interface BulkHandlers {
  /** A 200 (206 for a range) with exactly the expected length. The buffer is the caller's to keep. */
  onBody(item: BulkItem, body: Buffer): void
  /** 404. */
  onMissing(item: BulkItem): void
  /** Any other answer for this item (status, wrong length). */
  onFailed(item: BulkItem, reason: string, status?: number): void
}

/** Sign every request with SigV4 (an S3 bucket): plain data, so that a writer thread can sign too. */
export interface BulkSigning {
  region: string
  credentials: S3Credentials
}

export interface BulkOptions {
  headers?: Record<string, string>
  /** The HTTP base URL requests go to, when the source's own URL is not one (an s3:// bucket's endpoint and path). */
  endpoint?: string
  /** Sign each request (SigV4): every request carries its own date and signature. */
  sigv4?: BulkSigning
  /** Parallel connections (default 2). */
  connections?: number
  /** Bytes of responses outstanding per connection (default 4 MiB; at least 2 requests). */
  windowBytes?: number
  connectTimeoutMs?: number
  /** A connection silent this long with requests outstanding is abandoned. */
  idleTimeoutMs?: number
  insecure?: boolean
  /** A private CA trusted besides the system's roots, a client certificate (plain text: options go to writer threads). */
  tls?: ClientTls
  signal?: AbortSignal
  /** Memory for a body of `length` bytes (default: fresh). */
  allocBody?: (length: number) => Buffer
  /** Connections in a row that end without answering anything before bulk fetching gives up (default 2). */
  maxFailures?: number
}

export interface BulkResult {
  /** Items never answered (bulk fetching from this server gave up): fetch them another way. */
  unanswered: BulkItem[]
  /** Why bulk fetching stopped early, when it did. */
  stopped?: string
  connectionsOpened: number
}

/** A wrong-length body up to this size is read past; a bigger one closes the connection. */
const MAX_SKIP = 8 << 20
const READ_BUFFER = 1 << 20

class ProtocolStop extends Error {}

/** The status complete() hands a body over for: 200, or 206 for a ranged item. */
const OK = 200

/** Where the requests go and the fixed part of every request's text. */
interface Target {
  host: string
  port: number
  secure: boolean
  /** The base URL's path, ending in "/". */
  prefix: string
  /** Host, user agent and the caller's headers, each line ending in CRLF. */
  headerLines: string
  /** The host header's value (what SigV4 signs). */
  hostHeader: string
  sigv4?: BulkSigning
}

/** What the connections of one bulkGet share: the queue of items not yet sent, and how it ends. */
interface Run {
  /** Items not yet sent, last first (pop() takes the next in order). */
  queue: BulkItem[]
  result: BulkResult
  failuresInARow: number
  stop?: string
}

/** What the head of a response says, parsed. */
interface ResponseHead {
  status: number
  length: number
  keepAlive: boolean
}

/** GET every item from the server at `baseUrl`; answers arrive through `handlers`. */
export async function bulkGet(baseUrl: string, items: BulkItem[], handlers: BulkHandlers, opts: BulkOptions = {}): Promise<BulkResult> {
  const base = new URL(opts.endpoint ?? baseUrl)
  const secure = base.protocol === 'https:'
  const target: Target = {
    host: base.hostname.replace(/^\[|\]$/g, ''),
    port: Number(base.port || (secure ? 443 : 80)),
    secure,
    prefix: base.pathname.endsWith('/') ? base.pathname : base.pathname + '/',
    headerLines:
      `host: ${base.host}\r\n` +
      Object.entries({'user-agent': USER_AGENT, ...(opts.headers ?? {})})
        .map(([k, v]) => `${k}: ${v}\r\n`)
        .join(''),
    hostHeader: base.host,
    sigv4: opts.sigv4,
  }
  const run: Run = {queue: items.slice().reverse(), result: {unanswered: [], connectionsOpened: 0}, failuresInARow: 0}
  const worker = async () => {
    while (run.queue.length > 0 && !run.stop && !opts.signal?.aborted) await new PipelinedConnection(target, run, handlers, opts).done
  }
  await Promise.all(Array.from({length: Math.max(1, Math.min(opts.connections ?? 2, items.length))}, worker))
  run.result.unanswered = run.queue.reverse()
  if (run.stop) run.result.stopped = run.stop
  return run.result
}

/**
 * One connection's life: requests written back to back while the window
 * allows, responses parsed in order as bytes arrive. `done` resolves when
 * the queue is empty or the connection ends; whatever it sent and did not
 * get answered goes back to the queue.
 */
class PipelinedConnection {
  readonly done: Promise<void>
  private resolve!: () => void
  private readonly sock: net.Socket
  private readonly windowBytes: number
  /** Sent, not yet answered, in order. */
  private readonly pending: BulkItem[] = []
  private windowLeft: number
  private answered = 0
  /** The server said Connection: close (or spoke HTTP/1.0): no more requests on this connection. */
  private closing = false
  private finished = false
  private connected = false
  // parser state: a partial head, the body being filled, bytes to read past, the response under way
  private head?: Buffer
  private body?: Buffer
  private bodyOff = 0
  private skip = 0
  private cur?: {item: BulkItem; status: number}

  constructor(
    private readonly target: Target,
    private readonly run: Run,
    private readonly handlers: BulkHandlers,
    private readonly opts: BulkOptions,
  ) {
    this.done = new Promise<void>((resolve) => (this.resolve = resolve))
    run.result.connectionsOpened++
    this.windowBytes = opts.windowBytes ?? 4 << 20
    this.windowLeft = this.windowBytes
    const {host, port, secure} = target
    if (secure) {
      this.sock = tls.connect({host, port, servername: net.isIP(host) ? undefined : host, rejectUnauthorized: !opts.insecure, secureContext: clientContext(opts.tls)})
      this.sock.on('data', (d: Buffer) => this.feed(d, 0, d.length))
    } else {
      const readBuf = Buffer.allocUnsafe(READ_BUFFER)
      this.sock = net.connect({host, port, onread: {buffer: readBuf, callback: (n: number) => (this.feed(readBuf, 0, n), true)}})
    }
    opts.signal?.addEventListener('abort', this.onAbort, {once: true})
    const sock = this.sock
    sock.setNoDelay(true)
    sock.setTimeout(opts.connectTimeoutMs ?? 5000)
    sock.on(secure ? 'secureConnect' : 'connect', () => {
      this.connected = true
      sock.setTimeout(opts.idleTimeoutMs ?? 15_000)
      this.send()
    })
    // a connect that times out is a failure like a refused one (a host whose link is down
    // drops the SYNs): counted, so that bulk fetching from it ends instead of retrying forever
    sock.on('timeout', () => this.end(!this.connected ? 'connect timed out' : this.pending.length > 0 ? 'the server stalled' : undefined))
    sock.on('error', (err: NodeJS.ErrnoException) => this.end(err.code ?? err.message))
    sock.on('close', () => this.end(this.pending.length > 0 || this.run.queue.length > 0 ? 'the server closed the connection' : undefined))
  }

  private readonly onAbort = () => this.end('aborted')

  private end(why?: string): void {
    if (this.finished) return
    this.finished = true
    const {run, pending} = this
    this.opts.signal?.removeEventListener('abort', this.onAbort)
    this.sock.destroy()
    // what was sent and not answered goes back to the queue, in order
    for (let i = pending.length - 1; i >= 0; i--) run.queue.push(pending[i])
    pending.length = 0
    if (this.answered > 0) run.failuresInARow = 0
    else if (why) run.failuresInARow++
    if (why && run.failuresInARow >= (this.opts.maxFailures ?? 2)) run.stop ??= why
    this.resolve()
  }

  private send(): void {
    if (this.closing || this.finished) return
    const {queue} = this.run
    let text = ''
    while (queue.length > 0 && (this.windowLeft > 0 || this.pending.length < 2)) {
      const it = queue.pop()!
      this.pending.push(it)
      this.windowLeft -= it.length
      const path = this.target.prefix + it.path
      const range = it.range === undefined ? '' : `range: ${byteRange(it.range, it.length)}\r\n`
      text += `GET ${path} HTTP/1.1\r\n${this.target.headerLines}${range}${signedLines(this.target, path)}\r\n`
    }
    if (text) this.sock.write(text)
    else if (this.pending.length === 0) {
      this.sock.end()
      this.end()
    }
  }

  private complete(): void {
    const {item, status} = this.cur!
    this.cur = undefined
    this.pending.shift()
    this.windowLeft += item.length
    this.answered++
    if (status === OK && this.body) this.handlers.onBody(item, this.body)
    else if (status === 404) this.handlers.onMissing(item)
    this.body = undefined
    if (this.closing) {
      this.end() // the rest is sent again on a new connection
      return
    }
    if (this.pending.length === 0 || this.windowLeft >= this.windowBytes / 2) this.send()
  }

  /** Parse `buf[off, n)`; ProtocolStop ends the connection. */
  private feed(buf: Buffer, off: number, n: number): void {
    try {
      while (off < n && !this.finished) {
        if (this.body) {
          const k = Math.min(this.body.length - this.bodyOff, n - off)
          buf.copy(this.body, this.bodyOff, off, off + k)
          this.bodyOff += k
          off += k
          if (this.bodyOff === this.body.length) this.complete()
          continue
        }
        if (this.skip > 0) {
          const k = Math.min(this.skip, n - off)
          this.skip -= k
          off += k
          if (this.skip === 0) this.complete()
          continue
        }
        if (this.pending.length === 0) throw new ProtocolStop('the server sent bytes nobody asked for')
        // a head: up to the blank line
        const chunk = buf.subarray(off, n)
        const joined: Buffer = this.head ? Buffer.concat([this.head, chunk]) : chunk
        const endAt = joined.indexOf('\r\n\r\n')
        if (endAt < 0) {
          if (joined.length > MAX_HEADER_BYTES) throw new ProtocolStop('response header too large')
          this.head = Buffer.from(joined)
          return
        }
        off += endAt + 4 - (this.head ? this.head.length : 0)
        this.head = undefined
        const head = parseHead(joined.toString('latin1', 0, endAt))
        if (head) this.startResponse(head)
      }
    } catch (err) {
      this.end(err instanceof ProtocolStop ? err.message : String(err))
    }
  }

  /** A response's head has been read: set up reading (or skipping) its body. */
  private startResponse({status, length, keepAlive}: ResponseHead): void {
    if (!keepAlive) this.closing = true
    const item = this.pending[0]
    // a ranged item is answered 206; its status is kept as OK so that complete() hands the body over
    const ok = status === (item.range === undefined ? 200 : 206)
    this.cur = {item, status: ok ? OK : status}
    const fits = item.upTo !== undefined && item.range === undefined ? length <= item.upTo : length === item.length
    if (ok && fits) {
      this.body = this.opts.allocBody ? this.opts.allocBody(length) : Buffer.allocUnsafeSlow(length)
      this.bodyOff = 0
      if (length === 0) this.complete()
      return
    }
    if (ok) this.handlers.onFailed(item, `sent ${length} bytes, expected ${item.upTo !== undefined && item.range === undefined ? `at most ${item.upTo}` : item.length}`, status)
    else if (status === 200) this.handlers.onFailed(item, `answered a range request with the whole file (${length} bytes)`, status)
    else if (status !== 404) this.handlers.onFailed(item, `HTTP ${status}`, status)
    if (length > MAX_SKIP) {
      // answered (reported above), but too long to read past: drop the connection
      this.pending.shift()
      this.windowLeft += item.length
      this.answered++
      this.cur = undefined
      throw new ProtocolStop(`a ${length}-byte error body`)
    }
    this.cur.status = ok || status === 200 ? -1 : status // reported already: complete() must not report again
    this.skip = length
    if (this.skip === 0) this.complete()
  }
}

/** A request's SigV4 header lines (date, payload hash, token, signature), or '' when requests are not signed. */
function signedLines({sigv4, hostHeader}: Target, path: string): string {
  if (!sigv4) return ''
  const h = signRequest({method: 'GET', host: hostHeader, path, payloadHash: EMPTY_SHA256, region: sigv4.region, credentials: sigv4.credentials})
  let out = ''
  for (const k in h) if (k !== 'host') out += `${k}: ${h[k]}\r\n`
  return out
}

/** A response head (status line and header fields); undefined for an interim 1xx (the real answer follows). */
function parseHead(text: string): ResponseHead | undefined {
  const lines = text.split('\r\n')
  const m = /^HTTP\/1\.([01]) (\d{3})/.exec(lines[0])
  if (!m) throw new ProtocolStop(`not an HTTP/1.x response: ${JSON.stringify(lines[0].slice(0, 40))}`)
  const status = Number(m[2])
  if (status >= 100 && status < 200) return undefined
  let length: number | undefined
  let keepAlive = m[1] === '1'
  for (let i = 1; i < lines.length; i++) {
    const c = lines[i].indexOf(':')
    if (c < 0) continue
    const name = lines[i].slice(0, c).trim().toLowerCase()
    const value = lines[i].slice(c + 1).trim()
    if (name === 'content-length') {
      if (!/^\d{1,15}$/.test(value) || (length !== undefined && length !== Number(value))) throw new ProtocolStop('bad Content-Length')
      length = Number(value)
    } else if (name === 'transfer-encoding') throw new ProtocolStop('chunked responses are not bulk-fetched')
    else if (name === 'content-encoding' && value.toLowerCase() !== 'identity') throw new ProtocolStop(`content coding ${value} is not bulk-fetched`)
    else if (name === 'connection') keepAlive = /keep-alive/i.test(value) && !/close/i.test(value) ? true : !/close/i.test(value) && keepAlive
  }
  if (length === undefined) throw new ProtocolStop('a response without Content-Length')
  return {status, length, keepAlive}
}
