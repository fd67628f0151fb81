/**
 * `vmi serve`: the wire protocol (docs/PROTOCOL.md, routes in wire.ts) over
 * node:http/https. This module runs the HTTP server: its limits and
 * timeouts, per-request bookkeeping (access log, metrics, requests in
 * flight) and a graceful close. The parts live in server/: dispatch.ts
 * (route to handler, failures to answers), reads.ts (objects, manifests,
 * profiles, refs), fetch-through.ts, uploads.ts (missing-check and PUTs),
 * http-io.ts (bodies and answers), access-log.ts, metrics.ts.
 *
 * Every path is checked against strict patterns before anything touches the
 * filesystem (parseTarget). Nothing outside objects/, manifests/, profiles/
 * and refs/ is ever read, and directories are never listed.
 */
import http, {type IncomingMessage, type ServerResponse} from 'node:http'
import https from 'node:https'
import type {AddressInfo, Socket} from 'node:net'
import type {LocalStore} from '../store/local-store.js'
import {onResponseDone} from './response-done.js'
import {createLogger, type LogFormat, type LogLevel} from './server/access-log.js'
import type {ServerContext} from './server/context.js'
import {SendCompression, type SendCompressionPolicy} from './server/send-compression.js'
import {describe, Dispatcher} from './server/dispatch.js'
import {FetchThrough} from './server/fetch-through.js'
import type {Exchange} from './server/http-io.js'
import {createMetrics} from './server/metrics.js'
import {ReadAccess} from './server/read-access.js'
import {ReadHandlers} from './server/reads.js'
import {UploadHandlers} from './server/uploads.js'
import type {UpstreamSource} from './chain.js'
import {MAX_HEADER_BYTES} from './wire.js'

export {LOG_FORMATS, type LogFormat, type LogLevel} from './server/access-log.js'
export {SEND_COMPRESSION_POLICIES, type SendCompressionPolicy} from './server/send-compression.js'

export interface ServeInit {
  /** Interface to bind (default 127.0.0.1). */
  host?: string
  /** Port (default 7070; 0 picks a free one). */
  port?: number
  /** Enables PUT; without it the server is read-only (PUT answers 405). */
  pushToken?: string
  /** Fetch-through source for `X-Vmi-Fetch: upstream` (usually the seed). */
  upstream?: UpstreamSource
  /** Which clients get objects that rest raw as frames (default auto: any on another machine; send-compression.ts). */
  compressSends?: SendCompressionPolicy
  /**
   * HTTPS. With `clientCa` (PEM), mutual TLS: a client must show a
   * certificate that chains to it, else the handshake fails.
   */
  tls?: {cert: Buffer; key: Buffer; clientCa?: string}
  /**
   * Read authorization by token: every request must carry this token (or
   * the push token) as a bearer token. Without it and without a client CA,
   * anyone who reaches the server may read.
   */
  readToken?: string
  /** A second, plain-HTTP listener answering /healthz and /metrics to anyone (for probes and scrapers outside the auth). */
  health?: {host: string; port: number}
  /**
   * Where log lines go: one per request ('info'), a chunk file not served
   * ('warn'), error details ('error').
   */
  log?: (line: string, level: LogLevel) => void
  /** Text lines (default), or one JSON object a line (access-log.ts). */
  logFormat?: LogFormat
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
  /** Base URL of the health listener, when there is one. */
  healthUrl?: string
  /** Prometheus text exposition of this server's counters. */
  metrics: () => Promise<string>
  /** Stop accepting, let requests in flight finish (up to graceMs, default 10 s), then drop the rest. */
  close(opts?: {graceMs?: number}): Promise<void>
}

const METHODS = new Set(['GET', 'HEAD', 'PUT', 'POST', 'DELETE', 'OPTIONS', 'PATCH'])

/** Requests being answered, and a close waiting for them. */
class InFlight {
  count = 0
  closing = false
  private drained?: () => void

  /** Resolves when no request is in flight, or after graceMs. */
  wait(graceMs: number): Promise<void> {
    if (this.count === 0) return Promise.resolve()
    return new Promise<void>((resolve) => {
      this.drained = resolve
      setTimeout(resolve, graceMs).unref()
    })
  }

  done(): void {
    this.count--
    if (this.closing && this.count === 0) this.drained?.()
  }
}

function serverOptions(requestTimeoutMs: number): http.ServerOptions {
  const headersTimeout = Math.min(requestTimeoutMs, 20_000)
  return {
    requestTimeout: requestTimeoutMs,
    headersTimeout,
    keepAliveTimeout: 5000,
    // how often node checks the two timeouts above
    connectionsCheckingInterval: Math.max(50, Math.min(30_000, Math.floor(headersTimeout / 4))),
    maxHeaderSize: MAX_HEADER_BYTES,
  }
}

/** A malformed request, headers too large or too slow: answered on the socket, which then closes. */
function onClientError(err: NodeJS.ErrnoException, socket: Socket): void {
  if (!socket.writable || err.code === 'ECONNRESET') return void socket.destroy()
  const status = err.code === 'HPE_HEADER_OVERFLOW' ? 431 : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400
  socket.end(`HTTP/1.1 ${status} ${http.STATUS_CODES[status]}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`)
  socket.destroySoon()
}

/** Listen, and the base URL listened on. */
async function listenOn(server: http.Server, host: string, port: number, scheme: string, sc: ServerContext): Promise<string> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen({host, port}, () => {
      server.off('error', reject)
      resolve()
    })
  })
  server.on('error', (err) => sc.logger.error(`server error: ${err.message}`))
  const addr = server.address() as AddressInfo
  const urlHost = addr.family === 'IPv6' || host.includes(':') ? `[${addr.address}]` : host
  return `${scheme}://${urlHost}:${addr.port}`
}

/**
 * One request's life: counted in flight, dispatched (a failure answered by
 * its error), its outcome counted and logged exactly once however it ends.
 */
function requestHandler(sc: ServerContext, dispatcher: Dispatcher, inFlight: InFlight, closeIdle: () => void) {
  return (req: IncomingMessage, res: ServerResponse, healthOnly: boolean): void => {
    const start = process.hrtime.bigint()
    const x: Exchange = {req, res, ctx: {route: 'other', bytes: 0}}
    // read now: a socket that has closed no longer tells its peer's address
    const client = req.socket.remoteAddress ?? '-'
    inFlight.count++
    sc.metrics.inFlight.inc()
    if (inFlight.closing) res.setHeader('Connection', 'close')
    let done = false
    const finish = () => {
      if (done) return
      done = true
      sc.metrics.inFlight.dec()
      const method = METHODS.has(req.method ?? '') ? req.method! : 'other'
      const status = res.headersSent ? res.statusCode : 0
      sc.metrics.requests.inc({route: x.ctx.route, method, status: String(status)})
      const ms = Number(process.hrtime.bigint() - start) / 1e6
      sc.logger.request({client, method: req.method ?? '-', path: req.url ?? '-', status, bytes: x.ctx.bytes, ms})
      if (inFlight.closing) closeIdle()
      inFlight.done()
    }
    res.once('finish', finish)
    onResponseDone(req, res, finish)
    dispatcher
      .dispatch(x, healthOnly)
      .catch((err: unknown) => dispatcher.answerError(x, err))
      .catch((err: unknown) => {
        sc.logger.error(`internal error answering ${describe(x)}: ${(err as Error)?.stack ?? String(err)}`)
        res.destroy()
      })
  }
}

export async function startServer(store: LocalStore, init: ServeInit = {}): Promise<RunningServer> {
  const {host = '127.0.0.1', port = 7070, upstream, tls, maxConnections = 1024, requestTimeoutMs = 120_000} = init
  const metrics = createMetrics(upstream?.kind)
  const sendCompression = new SendCompression(init.compressSends ?? 'auto', (result) => metrics.sendCompressions.inc({result}))
  const sc: ServerContext = {store, metrics, logger: createLogger(init.log ?? (() => {}), init.logFormat), sendCompression}
  const uploads = new UploadHandlers(sc, init.pushToken)
  const access =
    tls?.clientCa !== undefined || init.readToken !== undefined
      ? new ReadAccess({clientCert: tls?.clientCa !== undefined, tokens: [init.readToken, init.pushToken].filter((t): t is string => t !== undefined)})
      : undefined
  const fetchThrough = upstream && new FetchThrough(sc, upstream)
  const dispatcher = new Dispatcher(sc, new ReadHandlers(sc, fetchThrough), uploads, access)
  const inFlight = new InFlight()
  // (the server is made below; idle connections are closed only once it is closing)
  const handle = requestHandler(sc, dispatcher, inFlight, () => server.closeIdleConnections())
  const onRequest = (req: IncomingMessage, res: ServerResponse) => handle(req, res, false)

  const options = serverOptions(requestTimeoutMs)
  const mtls = tls?.clientCa !== undefined ? {ca: tls.clientCa, requestCert: true, rejectUnauthorized: true} : {}
  const server: http.Server = tls ? https.createServer({...options, cert: tls.cert, key: tls.key, ...mtls}, onRequest) : http.createServer(options, onRequest)
  server.maxConnections = maxConnections
  // a connection idle this long (a client that stopped reading) is closed
  server.timeout = requestTimeoutMs
  server.on('clientError', onClientError)
  const healthServer = init.health ? http.createServer(options, (req, res) => handle(req, res, true)) : undefined
  healthServer?.on('clientError', onClientError)

  const url = await listenOn(server, host, port, tls ? 'https' : 'http', sc)
  let healthUrl: string | undefined
  try {
    if (healthServer && init.health) healthUrl = await listenOn(healthServer, init.health.host, init.health.port, 'http', sc)
  } catch (err) {
    server.close()
    // the caller names the address that failed
    throw Object.assign(err as Error, {listener: 'health'})
  }
  const addr = server.address() as AddressInfo

  let closed: Promise<void> | undefined
  return {
    url,
    healthUrl,
    port: addr.port,
    metrics: () => sc.metrics.registry.metrics(),
    close({graceMs = 10_000} = {}) {
      closed ??= (async () => {
        inFlight.closing = true
        healthServer?.close()
        healthServer?.closeAllConnections()
        const serverClosed = new Promise<void>((resolve) => server.close(() => resolve()))
        server.closeIdleConnections()
        await inFlight.wait(graceMs)
        server.closeAllConnections()
        await serverClosed
        await uploads.close()
        fetchThrough?.flush()
      })()
      return closed
    },
  }
}
