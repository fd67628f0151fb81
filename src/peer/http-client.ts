/**
 * The general HTTP client: every request that is not a bulk object GET
 * (HEAD, the missing-check POST, uploads, pings, and the GETs the narrow
 * pipelined client of pipelined-get.ts hands back). Node's own http/https
 * with keep-alive agents, bounded per origin, redirects followed, gzip,
 * deflate and br bodies decoded, and the same TLS trust as the bulk path
 * (tls-trust.ts). Why not undici or got: docs/PERFORMANCE.md, "HTTP client".
 *
 * Retries are the caller's (retry.ts): a request here is one attempt, and a
 * failure keeps the Node code that failureKind() sorts (ECONNREFUSED,
 * ETIMEDOUT, ECONNRESET, …).
 */
import http from 'node:http'
import https from 'node:https'
import zlib from 'node:zlib'
import type {Readable} from 'node:stream'
import {clientContext, type ClientTls} from './tls-trust.js'
import {USER_AGENT} from './wire.js'

export interface HttpClientInit {
  /** Connection timeout, ms (default 5000). */
  connectTimeoutMs?: number
  /** Silence allowed on a connection while an answer is awaited, ms (default 15000). */
  idleTimeoutMs?: number
  /** Accept any TLS certificate (no verification). */
  insecure?: boolean
  /** A private CA trusted besides the system's roots, and the client certificate shown (tls-trust.ts). */
  tls?: ClientTls
  /** Max parallel connections per origin (default 16). */
  maxSockets?: number
  /** Headers on every request (a read token); a request's own headers override them. */
  headers?: Record<string, string>
}

export interface HttpRequest {
  method: 'GET' | 'HEAD' | 'PUT' | 'POST'
  headers?: Record<string, string>
  /** The body; a list of buffers is sent one after the other (an object batch's frames), not joined. */
  body?: Buffer | string | Buffer[]
  /** Called as each part of a list body has been handed to the connection (progress of a long upload). */
  onPartWritten?: (index: number) => void
  signal?: AbortSignal
  /** A body longer than this (decoded) is refused with BodyTooLargeError, before or while it is read. */
  maxBytes?: number
  /** The whole request, redirects included, must finish within this (ms). */
  timeoutMs?: number
}

export interface HttpAnswer {
  status: number
  headers: http.IncomingHttpHeaders
  /** Decoded body (empty for HEAD). */
  body: Buffer
  /** Whether the body arrived with a content coding (then Content-Length counted the coded bytes). */
  decoded: boolean
}

/** A response body over the caller's cap: a wrong answer, not an accident (not retried). */
export class BodyTooLargeError extends Error {
  constructor(readonly maxBytes: number) {
    super(`response larger than ${maxBytes} bytes`)
    this.name = 'BodyTooLargeError'
  }
}

const MAX_REDIRECTS = 10
const REDIRECTS = new Set([301, 302, 303, 307, 308])
const codeError = (message: string, code: string) => Object.assign(new Error(message), {code})
/** A bound that ran out: named as retry.ts and the circuit breaker recognise it, with the phase. */
const timeoutError = (message: string, event: 'connect' | 'socket') => Object.assign(new Error(message), {name: 'TimeoutError', code: 'ETIMEDOUT', event})

export class HttpClient {
  private readonly base: URL
  private readonly agents: {http: http.Agent; https: https.Agent}

  constructor(
    base: string,
    private readonly init: HttpClientInit = {},
  ) {
    this.base = new URL(base.endsWith('/') ? base : base + '/')
    const maxSockets = init.maxSockets ?? 16
    this.agents = {
      http: new http.Agent({keepAlive: true, maxSockets}),
      https: new https.Agent({keepAlive: true, maxSockets, rejectUnauthorized: !init.insecure, secureContext: clientContext(init.tls)}),
    }
  }

  /**
   * One attempt at `method path` (relative to the base URL). Any status is
   * an answer; only a failure to get one throws. Redirects are followed for
   * GET and HEAD, and for 307/308 also for PUT and POST (the body resent).
   */
  async request(path: string, req: HttpRequest): Promise<HttpAnswer> {
    const signal = req.timeoutMs === undefined ? req.signal : anySignal(req.signal, AbortSignal.timeout(req.timeoutMs))
    let url = new URL(path, this.base)
    const origin = url.origin
    for (let hops = 0; ; hops++) {
      // a token goes only to the origin it was given for, not along a redirect elsewhere
      const answer = await this.once(url, req, signal, url.origin === origin)
      const location = answer.headers.location
      const follow = REDIRECTS.has(answer.status) && location && (req.method === 'GET' || req.method === 'HEAD' || answer.status >= 307)
      if (!follow) return answer
      if (hops >= MAX_REDIRECTS) throw codeError(`more than ${MAX_REDIRECTS} redirects from ${url.origin}`, 'VMI_TOO_MANY_REDIRECTS')
      url = new URL(location, url)
      if (url.protocol !== 'http:' && url.protocol !== 'https:') throw codeError(`a redirect to ${url.protocol} is not followed`, 'VMI_BAD_REDIRECT')
    }
  }

  private once(url: URL, req: HttpRequest, signal: AbortSignal | undefined, sameOrigin: boolean): Promise<HttpAnswer> {
    signal?.throwIfAborted()
    const secure = url.protocol === 'https:'
    const body = typeof req.body === 'string' ? [Buffer.from(req.body)] : Buffer.isBuffer(req.body) ? [req.body] : req.body
    const headers: Record<string, string | number> = {'user-agent': USER_AGENT, 'accept-encoding': 'gzip, deflate, br', ...(this.init.headers ?? {}), ...(req.headers ?? {})}
    if (!sameOrigin) delete headers.authorization
    if (body) headers['content-length'] = body.reduce((n, b) => n + b.length, 0)
    const max = req.maxBytes ?? Infinity
    return new Promise<HttpAnswer>((resolve, reject) => {
      let settled = false
      const fail = (err: unknown) => {
        if (settled) return
        settled = true
        signal?.removeEventListener('abort', onAbort)
        clearTimeout(connectTimer)
        request.destroy()
        reject(err)
      }
      const onAbort = () => fail(signal!.reason)
      signal?.addEventListener('abort', onAbort, {once: true})
      const request = (secure ? https : http).request(url, {method: req.method, headers, agent: secure ? this.agents.https : this.agents.http})
      // a host whose link is down drops the SYNs: the connect has its own bound, shorter than the idle one
      const connectTimer = setTimeout(() => fail(timeoutError(`connect to ${url.host} timed out`, 'connect')), this.init.connectTimeoutMs ?? 5000)
      request.on('socket', (sock) => {
        if (!sock.connecting) clearTimeout(connectTimer) // a kept-alive connection
        else sock.once(secure ? 'secureConnect' : 'connect', () => clearTimeout(connectTimer))
      })
      request.setTimeout(this.init.idleTimeoutMs ?? 15_000, () => fail(timeoutError(`${url.host} went silent`, 'socket')))
      request.on('error', fail)
      request.on('response', (res) => {
        const declared = Number(res.headers['content-length'])
        const coding = String(res.headers['content-encoding'] ?? 'identity').toLowerCase()
        if (Number.isFinite(declared) && declared > max && coding === 'identity') return fail(new BodyTooLargeError(max))
        const stream: Readable = decoder(coding, res) ?? res
        const parts: Buffer[] = []
        let seen = 0
        stream.on('data', (part: Buffer) => {
          seen += part.length
          if (seen > max) fail(new BodyTooLargeError(max))
          else parts.push(part)
        })
        stream.on('error', fail)
        res.on('aborted', () => fail(codeError(`${url.host} closed the connection mid-answer`, 'ECONNRESET')))
        stream.on('end', () => {
          if (settled) return
          settled = true
          signal?.removeEventListener('abort', onAbort)
          resolve({status: res.statusCode ?? 0, headers: res.headers, body: parts.length === 1 ? parts[0] : Buffer.concat(parts, seen), decoded: stream !== res})
        })
      })
      const written = req.onPartWritten
      ;(body ?? []).forEach((part, i) => request.write(part, written && (() => written(i))))
      request.end()
    })
  }

  /** Closes idle kept-alive connections. */
  close(): void {
    this.agents.http.destroy()
    this.agents.https.destroy()
  }
}

function decoder(coding: string, res: http.IncomingMessage): Readable | undefined {
  const d =
    coding === 'gzip' || coding === 'x-gzip'
      ? zlib.createGunzip()
      : coding === 'deflate'
        ? zlib.createInflate()
        : coding === 'br'
          ? zlib.createBrotliDecompress()
          : undefined
  if (d) res.on('error', (err) => d.destroy(err)).pipe(d)
  return d
}

function anySignal(a: AbortSignal | undefined, b: AbortSignal): AbortSignal {
  return a ? AbortSignal.any([a, b]) : b
}
