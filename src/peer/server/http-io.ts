/**
 * Reading requests and writing answers for the server's handlers: bounded
 * bodies, refusals as HttpFailure, and draining a refused body so the client
 * sees the answer instead of a reset.
 */
import type {IncomingMessage, ServerResponse} from 'node:http'
import {CONTENT_JSON, CONTENT_TEXT} from '../wire.js'

/** After refusing a request, read and discard at most this much of its body before closing the connection. */
const MAX_DISCARD_BYTES = 8 * 1024 * 1024
const DISCARD_MS = 5000

/** An answer other than success: its status, message (the body) and headers. */
export class HttpFailure extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly headers: Record<string, string> = {},
    readonly json?: unknown,
  ) {
    super(message)
  }
}

export class BodyTooLarge extends HttpFailure {
  constructor(max: number) {
    super(413, `body larger than ${max} bytes`)
  }
}

/** Per-request state for the access log and metrics. */
export interface RequestCtx {
  route: string
  bytes: number
}

/** One request being answered. */
export interface Exchange {
  req: IncomingMessage
  res: ServerResponse
  ctx: RequestCtx
}

/** A whole answer in one piece (no body for HEAD). */
export function send({req, res, ctx}: Exchange, status: number, body: Buffer | string, headers: Record<string, string | number> = {}): void {
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

export function sendFailure(x: Exchange, f: HttpFailure): void {
  if (f.json !== undefined) send(x, f.status, JSON.stringify(f.json) + '\n', {...f.headers, 'Content-Type': CONTENT_JSON})
  else send(x, f.status, f.message + '\n', f.headers)
}

/**
 * Before refusing a request whose body is not (fully) read: read and
 * discard the rest, within bounds, then answer. Answering first would let
 * the connection close with unread data, which makes the kernel send RST:
 * the client sees EPIPE/ECONNRESET (which it retries) instead of our 4xx.
 * Resolves false when the body is beyond the bounds: answer with
 * `Connection: close` then.
 */
export function drainBody(req: IncomingMessage): Promise<boolean> {
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
export function readBody(req: IncomingMessage, max: number): Promise<Buffer> {
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

/**
 * Hand each piece of the request body to `take` as it arrives; while the
 * promise `take` returns is pending, the body is paused. Rejects with what
 * `take` throws (the rest of the body stays unread), or when the request
 * is aborted or closed before its end. The same as iterating the request,
 * with one promise per pause instead of several per piece.
 */
export function readPieces(req: IncomingMessage, take: (piece: Buffer) => Promise<void> | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    const stop = (err?: Error) => {
      req.off('data', onData)
      req.off('end', onEnd)
      req.off('aborted', onAborted)
      req.off('close', onAborted)
      req.off('error', onError)
      if (err) {
        req.pause()
        reject(err)
      } else resolve()
    }
    const onData = (piece: Buffer) => {
      let wait: Promise<void> | undefined
      try {
        wait = take(piece)
      } catch (err) {
        return stop(err as Error)
      }
      if (wait) {
        req.pause()
        wait.then(() => req.resume(), stop)
      }
    }
    const onEnd = () => stop()
    const onAborted = () => stop(Object.assign(new Error('the request was aborted'), {code: 'ECONNRESET'}))
    const onError = (err: Error) => stop(err)
    req.on('data', onData)
    req.on('end', onEnd)
    req.on('aborted', onAborted)
    // closed before its end: the client went away
    req.on('close', onAborted)
    req.on('error', onError)
  })
}
