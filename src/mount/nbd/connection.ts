/**
 * One client connection: the handshake, then transmission, then an orderly
 * close. Memory is bounded: the socket reader buffers at most
 * READ_HIGH_WATER bytes ahead (or one request payload), and transmission
 * charges what it holds to a byte budget. Nothing a client sends can throw
 * out of this module: every failure ends in `done` resolving.
 */
import type net from 'node:net'
import type {BlockBackend} from './block-backend.js'
import {ConnClosed, ProtocolError} from './errors.js'
import {handshake, type HandshakeIo, type HandshakeTls} from './handshake.js'
import {READ_HIGH_WATER} from './limits.js'
import {ReplyWriter} from './reply-writer.js'
import type {ExportInfo} from './session.js'
import {SocketReader} from './socket-reader.js'
import {upgradeToTls, type NbdTls} from './tls.js'
import {Transmission, type NbdRequestEvent} from './transmission.js'
import {isReadRequest} from './wire-transmission.js'

export interface ConnectionOptions {
  /** A client must reach transmission within this. */
  handshakeTimeoutMs: number
  /** Requests processed at once. */
  maxInFlight: number
  /** Bytes of write payloads + read replies held (at least MAX_PAYLOAD). */
  maxPendingBytes: number
  /** Adaptive polling, the longest wait in µs (0 = off). */
  pollUs: number
  log?: (line: string) => void
  onRequest?: (ev: NbdRequestEvent) => void
  /** Require TLS (STARTTLS) before anything else, with these certificates. */
  tls?: NbdTls
}

/** A logger that never throws: a failing logger must not break a connection. */
export function safeLog(log: ((line: string) => void) | undefined, prefix = ''): (line: string) => void {
  return (line) => {
    try {
      log?.(prefix + line)
    } catch {
      // ignored
    }
  }
}

/** How long a closing socket may take to flush before it is destroyed. */
const CLOSE_GRACE_MS = 2000

let nextConnId = 1

export class Connection {
  readonly id = nextConnId++
  readonly done: Promise<void>
  // replaced once, by TLS (STARTTLS): then they read and write the TLS socket
  private reader: SocketReader
  private writer: ReplyWriter
  private readonly abort = new AbortController()
  private readonly log: (line: string) => void
  private transmission: Transmission | undefined
  private stopping = false
  private handshakeTimer: NodeJS.Timeout | undefined
  private killTimer: NodeJS.Timeout | undefined

  constructor(
    private sock: net.Socket,
    private readonly backend: BlockBackend,
    private readonly exp: ExportInfo,
    private readonly opts: ConnectionOptions,
  ) {
    this.log = safeLog(opts.log, `nbd[${this.id}]: `)
    const fd = (sock as unknown as {_handle?: {fd?: unknown}})._handle?.fd
    const sockFd = typeof fd === 'number' && fd >= 0 ? fd : -1
    this.reader = new SocketReader(sock, READ_HIGH_WATER, sockFd, opts.pollUs / 1000)
    this.writer = new ReplyWriter(sock, sockFd)
    sock.on('error', () => {}) // reported through 'close'; never crash
    sock.on('close', this.onClose)
    if (typeof sock.setNoDelay === 'function') sock.setNoDelay(true)
    this.handshakeTimer = setTimeout(() => {
      this.log(`handshake timeout after ${opts.handshakeTimeoutMs} ms`)
      sock.destroy()
    }, opts.handshakeTimeoutMs)
    this.done = this.run()
  }

  private readonly onClose = (): void => {
    this.abort.abort()
    this.writer.release()
    if (this.killTimer) clearTimeout(this.killTimer)
    if (this.handshakeTimer) clearTimeout(this.handshakeTimer)
  }

  private io(): HandshakeIo {
    return {read: (n: number) => this.reader.read(n), send: (bufs: Buffer[]) => this.writer.send(bufs), stopping: () => this.stopping}
  }

  /**
   * STARTTLS: stop reading the plain socket (a client sends nothing between
   * STARTTLS and its reply), send the ACK, run the TLS handshake, and go on
   * over TLS. No descriptor-level reads or writes (polling, sendNow's direct
   * write) on a TLS socket: those would bypass the encryption.
   */
  private async startTls(cfg: NbdTls, ack: Buffer): Promise<HandshakeIo> {
    if (this.reader.detach() > 0) throw new ProtocolError('data after NBD_OPT_STARTTLS before its reply')
    await this.writer.send([ack])
    const raw = this.sock
    const secure = await upgradeToTls(raw, cfg)
    secure.on('error', () => {})
    secure.on('close', this.onClose)
    secure.setNoDelay(true)
    this.sock = secure
    this.reader = new SocketReader(secure, READ_HIGH_WATER, -1, 0)
    this.writer = new ReplyWriter(secure, -1)
    return this.io()
  }

  /** Server shutdown: stop taking requests, finish the in-flight ones, close. */
  shutdown(): void {
    if (this.stopping) return
    this.stopping = true
    if (!this.transmission) this.sock.destroy()
    else this.reader.abort(new ConnClosed('server shutting down'))
  }

  destroy(): void {
    this.sock.destroy()
  }

  /** The socket is still open (a closed connection may still be finishing backend calls). */
  get open(): boolean {
    return !this.sock.destroyed
  }

  private async run(): Promise<void> {
    try {
      const cfg = this.opts.tls
      const tls: HandshakeTls | undefined = cfg && {start: (ack) => this.startTls(cfg, ack)}
      const session = await handshake(this.io(), this.exp, this.backend, tls)
      if (this.handshakeTimer) clearTimeout(this.handshakeTimer)
      if (session && !this.stopping) {
        const {maxInFlight, maxPendingBytes, onRequest} = this.opts
        const {backend, reader, writer, log} = this
        const t = new Transmission({backend, session, reader, writer, signal: this.abort.signal, maxInFlight, maxPendingBytes, onRequest, log})
        this.transmission = t
        // a READ the backend answers at once needs no trip through the request loop
        if (!onRequest) this.reader.direct = (raw) => isReadRequest(raw) && t.reads.now(raw)
        await t.run()
      }
    } catch (e) {
      if (e instanceof ProtocolError) this.log(`protocol error: ${e.message}; disconnecting`)
      else if (!(e instanceof ConnClosed)) this.log(`error: ${(e as Error)?.stack ?? e}`)
    } finally {
      if (this.handshakeTimer) clearTimeout(this.handshakeTimer)
      // nothing more is read: later bytes are dropped, not buffered
      this.reader.abort(new ConnClosed('connection finishing'))
      await this.transmission?.whenIdle()
      await this.closeSocket()
      this.logPolling()
    }
  }

  private logPolling(): void {
    const polls = this.reader.polling?.stats
    if (polls && polls.hit + polls.miss + polls.preempted + polls.ready > 0)
      this.log(`adaptive polling: ${polls.hit} polls found requests, ${polls.ready} found them at once, ${polls.preempted} found them after being preempted, ${polls.miss} ran out`)
  }

  private closeSocket(): Promise<void> {
    const sock = this.sock
    if (sock.destroyed) return Promise.resolve()
    return new Promise<void>((resolve) => {
      sock.once('close', () => resolve())
      sock.end()
      this.killTimer = setTimeout(() => sock.destroy(), CLOSE_GRACE_MS)
    })
  }
}
