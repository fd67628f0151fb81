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
import {clientContext, type ClientTls} from './tls-trust.js'
import {MAX_HEADER_BYTES, USER_AGENT} from './wire.js'

export interface BulkItem {
  id: string
  /** Path below the base URL, e.g. "objects/ab/cdef…". */
  path: string
  /** Exact body length expected (the manifest says it); with `upTo`, only an estimate for the window. */
  length: number
  /** Accept any body length up to this instead of exactly `length` (a ref, a manifest). */
  upTo?: number
}

export interface BulkHandlers {
  /** A 200 with exactly the expected length. The buffer is the caller's to keep. */
  onBody(item: BulkItem, body: Buffer): void
  /** 404. */
  onMissing(item: BulkItem): void
  /** Any other answer for this item (status, wrong length). */
  onFailed(item: BulkItem, reason: string, status?: number): void
}

export interface BulkOptions {
  headers?: Record<string, string>
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

/** GET every item from the server at `baseUrl`; answers arrive through `handlers`. */
export async function bulkGet(baseUrl: string, items: BulkItem[], handlers: BulkHandlers, opts: BulkOptions = {}): Promise<BulkResult> {
  const base = new URL(baseUrl)
  const secure = base.protocol === 'https:'
  const port = Number(base.port || (secure ? 443 : 80))
  const host = base.hostname.replace(/^\[|\]$/g, '')
  const prefix = base.pathname.endsWith('/') ? base.pathname : base.pathname + '/'
  const extra = Object.entries({'user-agent': USER_AGENT, ...(opts.headers ?? {})})
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join('')
  const hostHeader = `host: ${base.host}\r\n`
  const queue = items.slice().reverse() // pop() from the end: original order
  const result: BulkResult = {unanswered: [], connectionsOpened: 0}
  let failuresInARow = 0
  let stop: string | undefined

  const requestText = (it: BulkItem) => `GET ${prefix}${it.path} HTTP/1.1\r\n${hostHeader}${extra}\r\n`

  /** One connection's life: returns when the queue is empty or the connection ends. */
  const runConnection = (): Promise<void> =>
    new Promise<void>((resolve) => {
      result.connectionsOpened++
      const pending: BulkItem[] = [] // sent, not yet answered, in order
      let windowLeft = opts.windowBytes ?? 4 << 20
      let answered = 0
      let closing = false // the server said Connection: close
      let finished = false
      // parser state
      let head: Buffer | undefined // partial header bytes
      let body: Buffer | undefined
      let bodyOff = 0
      let skip = 0 // body bytes to read past
      let cur: {item: BulkItem; status: number} | undefined

      const readBuf = Buffer.allocUnsafe(secure ? 0 : READ_BUFFER)
      const sock: net.Socket = secure
        ? tls.connect({host, port, servername: net.isIP(host) ? undefined : host, rejectUnauthorized: !opts.insecure, secureContext: clientContext(opts.tls)})
        : net.connect({host, port, onread: {buffer: readBuf, callback: (n: number) => (feed(readBuf, 0, n), true)}})
      if (secure) sock.on('data', (d: Buffer) => feed(d, 0, d.length))

      const end = (why?: string) => {
        if (finished) return
        finished = true
        opts.signal?.removeEventListener('abort', onAbort)
        sock.destroy()
        // what was sent and not answered goes back to the queue, in order
        for (let i = pending.length - 1; i >= 0; i--) queue.push(pending[i])
        pending.length = 0
        if (answered > 0) failuresInARow = 0
        else if (why) failuresInARow++
        if (why && failuresInARow >= (opts.maxFailures ?? 2)) stop ??= why
        resolve()
      }
      const onAbort = () => end('aborted')
      opts.signal?.addEventListener('abort', onAbort, {once: true})

      const send = () => {
        if (closing || finished) return
        let text = ''
        while (queue.length > 0 && (windowLeft > 0 || pending.length < 2)) {
          const it = queue.pop()!
          pending.push(it)
          windowLeft -= it.length
          text += requestText(it)
        }
        if (text) sock.write(text)
        else if (pending.length === 0) {
          sock.end()
          end()
        }
      }

      const complete = () => {
        const {item, status} = cur!
        cur = undefined
        pending.shift()
        windowLeft += item.length
        answered++
        if (status === 200 && body) handlers.onBody(item, body)
        else if (status === 404) handlers.onMissing(item)
        body = undefined
        if (closing) {
          end() // re-sent on a new connection
          return
        }
        if (pending.length === 0 || windowLeft >= (opts.windowBytes ?? 4 << 20) / 2) send()
      }

      /** Parse `buf[off, n)`; ProtocolStop ends the connection. */
      const feed = (buf: Buffer, off: number, n: number): void => {
        try {
          while (off < n && !finished) {
            if (body) {
              const k = Math.min(body.length - bodyOff, n - off)
              buf.copy(body, bodyOff, off, off + k)
              bodyOff += k
              off += k
              if (bodyOff === body.length) complete()
              continue
            }
            if (skip > 0) {
              const k = Math.min(skip, n - off)
              skip -= k
              off += k
              if (skip === 0) complete()
              continue
            }
            if (pending.length === 0) throw new ProtocolStop('the server sent bytes nobody asked for')
            // header: up to the blank line
            const chunk = buf.subarray(off, n)
            const joined: Buffer = head ? Buffer.concat([head, chunk]) : chunk
            const endAt = joined.indexOf('\r\n\r\n')
            if (endAt < 0) {
              if (joined.length > MAX_HEADER_BYTES) throw new ProtocolStop('response header too large')
              head = Buffer.from(joined)
              return
            }
            const consumed = endAt + 4 - (head ? head.length : 0)
            const text = joined.toString('latin1', 0, endAt)
            head = undefined
            off += consumed
            startResponse(text)
          }
        } catch (err) {
          end(err instanceof ProtocolStop ? err.message : String(err))
        }
      }

      const startResponse = (text: string) => {
        const lines = text.split('\r\n')
        const m = /^HTTP\/1\.([01]) (\d{3})/.exec(lines[0])
        if (!m) throw new ProtocolStop(`not an HTTP/1.x response: ${JSON.stringify(lines[0].slice(0, 40))}`)
        const status = Number(m[2])
        if (status >= 100 && status < 200) return // interim response: the real one follows
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
        if (!keepAlive) closing = true
        const item = pending[0]
        cur = {item, status}
        const fits = item.upTo !== undefined ? length <= item.upTo : length === item.length
        if (status === 200 && fits) {
          body = opts.allocBody ? opts.allocBody(length) : Buffer.allocUnsafeSlow(length)
          bodyOff = 0
          if (length === 0) complete()
          return
        }
        if (status === 200) handlers.onFailed(item, `sent ${length} bytes, expected ${item.upTo !== undefined ? `at most ${item.upTo}` : item.length}`, status)
        else if (status !== 404) handlers.onFailed(item, `HTTP ${status}`, status)
        if (length > MAX_SKIP) {
          // answered (reported above), but too long to read past: drop the connection
          pending.shift()
          windowLeft += item.length
          answered++
          cur = undefined
          throw new ProtocolStop(`a ${length}-byte error body`)
        }
        cur.status = status === 200 ? -1 : status // reported already: complete() must not report again
        skip = length
        if (skip === 0) complete()
      }

      let connected = false
      sock.setNoDelay(true)
      sock.setTimeout(opts.connectTimeoutMs ?? 5000)
      sock.on(secure ? 'secureConnect' : 'connect', () => {
        connected = true
        sock.setTimeout(opts.idleTimeoutMs ?? 15_000)
        send()
      })
      // a connect that times out is a failure like a refused one (a host whose link is down
      // drops the SYNs): counted, so that bulk fetching from it ends instead of retrying forever
      sock.on('timeout', () => end(!connected ? 'connect timed out' : pending.length > 0 ? 'the server stalled' : undefined))
      sock.on('error', (err: NodeJS.ErrnoException) => end(err.code ?? err.message))
      sock.on('close', () => end(pending.length > 0 || queue.length > 0 ? 'the server closed the connection' : undefined))
    })

  const worker = async () => {
    while (queue.length > 0 && !stop && !opts.signal?.aborted) await runConnection()
  }
  await Promise.all(Array.from({length: Math.max(1, Math.min(opts.connections ?? 2, items.length))}, worker))
  result.unanswered = queue.reverse()
  if (stop) result.stopped = stop
  return result
}
