/**
 * An NBD server (fixed newstyle handshake only) exporting one BlockBackend
 * over a unix socket or TCP. Written from the NBD protocol specification.
 *
 * Handshake: NBD_OPT_EXPORT_NAME, ABORT, LIST, INFO, GO (INFO_EXPORT, NAME,
 * DESCRIPTION, BLOCK_SIZE), STRUCTURED_REPLY, LIST/SET_META_CONTEXT with
 * base:allocation; anything else gets NBD_REP_ERR_UNSUP.
 * Transmission: READ (simple, or structured with OFFSET_DATA / OFFSET_HOLE
 * chunks), WRITE (+FUA), FLUSH, TRIM, WRITE_ZEROES (+NO_HOLE), CACHE,
 * BLOCK_STATUS, DISC.
 *
 * Requests on one connection run concurrently (at most `maxInFlight`), and
 * replies go out in completion order. Memory per connection is bounded: the
 * socket reader buffers at most READ_HIGH_WATER bytes ahead (or one request
 * payload), and write payloads plus read replies held in memory are charged
 * to a byte budget (`maxPendingBytes`) until the kernel has taken them.
 * A client breaking the protocol (bad magic, oversized option or payload)
 * is disconnected; bad requests get error replies. Nothing a client sends
 * can throw out of this module.
 */
import net from 'node:net'
import fs from 'node:fs'
import type {BlockBackend, Extent} from '../block-backend.js'
import {errorToNbd} from './errors.js'
import * as P from './protocol.js'
import {hasZeroBlock, normalizeExtents, splitHoles} from './sparse.js'
import * as H from './wire-handshake.js'
import * as W from './wire-transmission.js'
import {PREEMPT_GAP_MS, PollPolicy} from './poll-policy.js'

export const MIN_BLOCK_SIZE = 1
export const PREFERRED_BLOCK_SIZE = 4096
export const MAX_PAYLOAD = 32 << 20
export const MAX_OPTION_LENGTH = 64 << 10
export const MAX_OPTIONS = 128
export const META_CONTEXT_ID = 1
/** Reader buffers at most this much ahead of the request being parsed. */
const READ_HIGH_WATER = 2 << 20
/** Largest READ answered on the synchronous fast path (Connection.readNow). */
const READ_NOW_MAX = 128 * 1024
/** Most extents in one BLOCK_STATUS reply (spec: SHOULD NOT exceed 2^20). */
const MAX_EXTENTS = 1 << 16

export interface NbdRequestEvent {
  type: string
  offset: number
  length: number
}

export interface NbdServerInit {
  socketPath?: string
  host?: string
  port?: number
  /** Export name (default ''); the empty name always selects this export too. */
  exportName?: string
  description?: string
  /** Connections open at once (default 16); more are closed at once. Memory per connection is bounded by maxPendingBytes + 2 MiB. */
  maxConnections?: number
  log?: (line: string) => void
  onRequest?: (ev: NbdRequestEvent) => void
  /** A client must reach transmission within this (default 10 s). */
  handshakeTimeoutMs?: number
  /** Requests processed at once per connection (default 16). */
  maxInFlight?: number
  /** Bytes of write payloads + read replies held per connection (default 64 MiB, at least MAX_PAYLOAD). */
  maxPendingBytes?: number
  /**
   * Adaptive polling, the longest wait in microseconds (default 50; 0 = off).
   * After answering fast-path READs, the connection keeps reading its socket
   * without sleeping for up to this long while requests have been arriving
   * back to back (see SocketReader.poll).
   */
  pollUs?: number
}

/** Default for NbdServerInit.pollUs. */
export const DEFAULT_POLL_US = 50

export interface NbdServer {
  /** nbd+unix:///NAME?socket=PATH or nbd://HOST:PORT/NAME */
  address: string
  port?: number
  socketPath?: string
  /** Open connections right now. */
  connectionCount(): number
  /** Stop accepting, let in-flight requests finish (≤ 5 s), close every connection. */
  close(): Promise<void>
}

class ConnClosed extends Error {}

class ProtocolError extends Error {}

/** Pull-style reader over a socket with bounded read-ahead. */
class SocketReader {
  private chunks: Buffer[] = []
  private avail = 0
  private need = 0
  private wake: (() => void) | undefined
  private failure: Error | undefined
  private paused = false

  constructor(
    private readonly sock: net.Socket,
    private readonly highWater: number,
    /** The socket's descriptor, for polling (-1: never poll). */
    private readonly fd = -1,
    /** Longest poll, ms (0: never poll). */
    pollMaxMs = 0,
  ) {
    this.polling = pollMaxMs > 0 && fd >= 0 ? new PollPolicy(pollMaxMs) : undefined
    sock.on('data', (d: Buffer) => this.onData(d))
    // after a half-close, requests already received are still served
    sock.on('end', () => this.fail(new ConnClosed('client closed the connection')))
    // once the socket is gone nobody can read replies: drop what is buffered
    sock.on('close', () => this.abort(new ConnClosed('connection closed')))
  }

  /**
   * Set by the connection: answers one request header on the spot (true) or
   * leaves it to the request loop (false). Used while the loop is waiting
   * for a header with nothing buffered, so requests are handled inside the
   * data callback, without waking the loop through a promise.
   */
  direct: ((raw: Buffer) => boolean) | undefined
  private headerSize = 0

  /** Adaptive polling: when to poll (undefined: never). */
  readonly polling: PollPolicy | undefined
  private pollBuf: Buffer | undefined

  private onData(d: Buffer): void {
    if (this.failure) return
    const h = this.headerSize
    if (h > 0 && this.wake && this.avail === 0 && this.direct) {
      let pos = 0
      while (d.length - pos >= h && this.direct(d.subarray(pos, pos + h))) pos += h
      if (pos === d.length) {
        const polling = this.polling
        if (polling?.afterBurst(performance.now())) {
          this.poll(polling)
          polling.burstEnd(performance.now())
        }
        return
      }
      if (pos > 0) d = d.subarray(pos)
    }
    this.polling?.interrupted()
    this.queue(d)
  }

  /**
   * Adaptive polling, in the spirit of QEMU's poll-max-ns: every request of
   * a burst was answered in the data callback and the bursts come back to
   * back, so keep reading the socket without sleeping for up to the policy's
   * maxMs and answer what arrives right here. On this 2-core VM a depth-1
   * client on the other core sends its next request ~20 µs after a reply,
   * while sleeping in epoll and being woken again costs ~45 µs of latency and
   * more CPU than the poll (docs/PERFORMANCE.md). PollPolicy decides when to
   * poll and backs off when polls are wasted: a client sharing this core
   * (which cannot send while this thread spins) or one that pauses (a
   * booting guest) costs a rare wasted poll and nothing more.
   */
  private poll(policy: PollPolicy): void {
    const h = this.headerSize
    const sock = this.sock
    const buf = (this.pollBuf ??= Buffer.allocUnsafeSlow(64 * 1024))
    const stackLimit = Error.stackTraceLimit
    Error.stackTraceLimit = 0 // EAGAIN is thrown on every empty read: keep it cheap
    try {
      let start = performance.now()
      let last = start
      // A loop turn longer than PREEMPT_GAP_MS means this thread was off its
      // core meanwhile. Measured per thread, by the clock: the process-wide
      // count of context switches also counted V8's compiler and GC threads,
      // and kept polling backed off for whole runs while they were busy.
      let preempted = false
      // whether a read came back empty before this request
      let spun = false
      for (;;) {
        // bytes the stream holds (or replies still queued) come first: stop polling
        if (this.failure || sock.readableLength > 0 || sock.writableLength > 0 || !this.wake || this.avail !== 0 || this.headerSize !== h) return
        const now = performance.now()
        if (now - last > PREEMPT_GAP_MS) preempted = true
        last = now
        if (now - start > policy.maxMs) {
          policy.record('miss')
          return
        }
        let n: number
        try {
          n = fs.readSync(this.fd, buf, 0, buf.length, null)
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code === 'EAGAIN') {
            spun = true
            continue
          }
          return // the stream sees the same error or end on its next read
        }
        if (n === 0) return // end of stream: the stream's next read reports it
        // preempted: off the core before or inside the read that found it
        policy.record(preempted || performance.now() - last > PREEMPT_GAP_MS ? 'preempted' : spun ? 'hit' : 'ready')
        preempted = spun = false
        let pos = 0
        while (n - pos >= h && this.direct?.(buf.subarray(pos, pos + h))) pos += h
        if (pos < n) {
          // a partial header or a request for the loop: hand over a copy and stop
          this.queue(Buffer.from(buf.subarray(pos, n)))
          return
        }
        start = last = performance.now()
      }
    } finally {
      Error.stackTraceLimit = stackLimit
    }
  }

  private queue(d: Buffer): void {
    this.chunks.push(d)
    this.avail += d.length
    if (this.wake && this.avail >= this.need) {
      const w = this.wake
      this.wake = undefined
      w()
    }
    if (!this.wake && this.avail >= this.highWater && !this.paused) {
      this.paused = true
      this.sock.pause()
    }
  }

  private resumeIfWanted(): void {
    if (this.paused && (this.wake || this.avail < this.highWater)) {
      this.paused = false
      this.sock.resume()
    }
  }

  /** Make every pending and future read fail (after buffered bytes run out). */
  fail(err: Error): void {
    if (!this.failure) this.failure = err
    if (this.wake) {
      const w = this.wake
      this.wake = undefined
      w()
    }
  }

  /** Drop buffered bytes and refuse further reads at once; later bytes are read and discarded. */
  abort(err: Error): void {
    this.chunks = []
    this.avail = 0
    this.fail(err)
    if (this.paused) {
      // keep draining so the peer's FIN (and our 'close') is seen
      this.paused = false
      this.sock.resume()
    }
  }

  private async ensure(n: number): Promise<void> {
    while (this.avail < n) {
      if (this.failure) throw this.failure
      this.need = n
      await new Promise<void>((resolve) => {
        this.wake = resolve
        this.resumeIfWanted()
      })
    }
  }

  private take(n: number): Buffer {
    let out: Buffer
    const first = this.chunks[0]
    if (first.length >= n) {
      out = first.subarray(0, n)
      if (first.length === n) this.chunks.shift()
      else this.chunks[0] = first.subarray(n)
    } else {
      out = Buffer.allocUnsafe(n)
      let at = 0
      while (at < n) {
        const c = this.chunks[0]
        const k = Math.min(c.length, n - at)
        c.copy(out, at, 0, k)
        at += k
        if (k === c.length) this.chunks.shift()
        else this.chunks[0] = c.subarray(k)
      }
    }
    this.avail -= n
    this.resumeIfWanted()
    return out
  }

  /** n bytes at once when they are buffered already (no promise), else undefined. */
  tryRead(n: number): Buffer | undefined {
    if (this.failure || this.avail < n || n === 0) return undefined
    return this.take(n)
  }

  async read(n: number): Promise<Buffer> {
    if (n === 0) return Buffer.alloc(0)
    await this.ensure(n)
    return this.take(n)
  }

  /** Like read, for the next request header: meanwhile whole headers may go to `direct`. */
  async readHeader(n: number): Promise<Buffer> {
    this.headerSize = n
    try {
      await this.ensure(n)
    } finally {
      this.headerSize = 0
    }
    return this.take(n)
  }

  /** Read and discard n bytes without holding them. */
  async skip(n: number): Promise<void> {
    while (n > 0) {
      if (this.avail === 0) await this.ensure(1)
      const k = Math.min(n, this.avail, 1 << 20)
      this.take(k)
      n -= k
    }
  }
}

/** FIFO counting semaphore over bytes. */
class ByteBudget {
  private waiters: {n: number; resolve: () => void}[] = []
  private free: number
  readonly capacity: number
  constructor(capacity: number) {
    this.free = this.capacity = capacity
  }

  async acquire(n: number): Promise<number> {
    n = Math.min(n, this.capacity)
    if (this.waiters.length === 0 && this.free >= n) {
      this.free -= n
      return n
    }
    await new Promise<void>((resolve) => this.waiters.push({n, resolve}))
    return n
  }

  release(n: number): void {
    this.free += n
    while (this.waiters.length && this.free >= this.waiters[0].n) {
      const w = this.waiters.shift()!
      this.free -= w.n
      w.resolve()
    }
  }
}

interface ExportInfo {
  name: string
  description: string
}

let nextConnId = 1

/**
 * Reply buffers for large reads, reused once the kernel has taken their bytes:
 * a fresh multi-megabyte buffer per READ kept the garbage collector busy
 * for a third of a sequential-read benchmark. Small reads use Node's own pool.
 */
class ReplyBufferPool {
  private readonly free = new Map<number, Buffer[]>()
  private pooled = 0
  constructor(
    private readonly minSize = 64 * 1024,
    private readonly maxPooled = 32 * 1024 * 1024,
  ) {}

  take(length: number): Buffer | undefined {
    if (length < this.minSize) return undefined
    const b = this.free.get(length)?.pop()
    if (b) {
      this.pooled -= length
      return b
    }
    return Buffer.allocUnsafeSlow(length)
  }

  give(b: Buffer): void {
    if (b.length < this.minSize || this.pooled + b.length > this.maxPooled) return
    let list = this.free.get(b.length)
    if (!list) this.free.set(b.length, (list = []))
    list.push(b)
    this.pooled += b.length
  }
}

class Connection {
  readonly id = nextConnId++
  private readonly pool = new ReplyBufferPool()
  private corked = false
  /** The socket's descriptor for direct writes of fast-path replies, or -1 (then the stream). */
  private readonly fd: number
  /** Where a fast-path reply is built; it is reused as soon as the kernel has taken the reply (sendNow). */
  private scratch = Buffer.allocUnsafeSlow(0)
  private readonly reader: SocketReader
  private readonly budget: ByteBudget
  private readonly abort = new AbortController()
  private readonly pendingWrites = new Set<() => void>()
  private structured = false
  private noZeroes = false
  private metaContext = false
  private transmitting = false
  private stopping = false
  private inFlight = 0
  private slotWaiters: (() => void)[] = []
  private idleWaiters: (() => void)[] = []
  private handshakeTimer: NodeJS.Timeout | undefined
  private killTimer: NodeJS.Timeout | undefined
  readonly done: Promise<void>

  constructor(
    private readonly sock: net.Socket,
    private readonly backend: BlockBackend,
    private readonly exp: ExportInfo,
    private readonly opts: Required<Pick<NbdServerInit, 'handshakeTimeoutMs' | 'maxInFlight' | 'maxPendingBytes' | 'pollUs'>> &
      Pick<NbdServerInit, 'log' | 'onRequest'>,
  ) {
    this.budget = new ByteBudget(Math.max(opts.maxPendingBytes, MAX_PAYLOAD))
    const fd = (sock as unknown as {_handle?: {fd?: unknown}})._handle?.fd
    this.fd = typeof fd === 'number' && fd >= 0 ? fd : -1
    this.reader = new SocketReader(sock, READ_HIGH_WATER, this.fd, opts.pollUs / 1000)
    sock.on('error', () => {}) // reported through 'close'; never crash
    sock.on('close', () => {
      this.abort.abort()
      for (const resolve of this.pendingWrites) resolve()
      this.pendingWrites.clear()
      if (this.killTimer) clearTimeout(this.killTimer)
      if (this.handshakeTimer) clearTimeout(this.handshakeTimer)
    })
    if (typeof sock.setNoDelay === 'function') sock.setNoDelay(true)
    this.handshakeTimer = setTimeout(() => {
      this.log(`handshake timeout after ${opts.handshakeTimeoutMs} ms`)
      sock.destroy()
    }, opts.handshakeTimeoutMs)
    this.done = this.run()
  }

  private log(line: string): void {
    try {
      this.opts.log?.(`nbd[${this.id}]: ${line}`)
    } catch {
      // a failing logger must not break the connection
    }
  }

  /** Server shutdown: stop taking requests, finish the in-flight ones, close. */
  shutdown(): void {
    if (this.stopping) return
    this.stopping = true
    if (!this.transmitting) this.sock.destroy()
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
      const go = await this.handshake()
      if (this.handshakeTimer) clearTimeout(this.handshakeTimer)
      if (go && !this.stopping) {
        this.transmitting = true
        // a READ the backend answers at once needs no trip through the request loop
        if (!this.opts.onRequest)
          this.reader.direct = (raw) => W.isReadRequest(raw) && this.readNow(raw)
        await this.transmission()
      }
    } catch (e) {
      if (e instanceof ProtocolError) this.log(`protocol error: ${e.message}; disconnecting`)
      else if (!(e instanceof ConnClosed)) this.log(`error: ${(e as Error)?.stack ?? e}`)
    } finally {
      if (this.handshakeTimer) clearTimeout(this.handshakeTimer)
      // nothing more is read: later bytes are dropped, not buffered
      this.reader.abort(new ConnClosed('connection finishing'))
      await this.whenIdle()
      await this.closeSocket()
      const polls = this.reader.polling?.stats
      if (polls && polls.hit + polls.miss + polls.preempted + polls.ready > 0)
        this.log(`adaptive polling: ${polls.hit} polls found requests, ${polls.ready} found them at once, ${polls.preempted} found them after being preempted, ${polls.miss} ran out`)
    }
  }

  private closeSocket(): Promise<void> {
    const sock = this.sock
    if (sock.destroyed) return Promise.resolve()
    return new Promise<void>((resolve) => {
      sock.once('close', () => resolve())
      sock.end()
      this.killTimer = setTimeout(() => sock.destroy(), 2000)
    })
  }

  // ------------------------------------------------------------ writing

  /** Replies queued in this turn of the event loop leave together, when it ends. */
  private corkForThisTurn(): void {
    if (this.corked) return
    this.corked = true
    this.sock.cork()
    process.nextTick(this.uncork)
  }

  private readonly uncork = (): void => {
    this.corked = false
    this.sock.uncork()
  }

  /**
   * Send the first `length` bytes of `buf`, a whole fast-path reply, at
   * once: straight to the socket's descriptor when nothing is queued before
   * it; whatever the kernel does not take (or everything, without a
   * descriptor) is copied and goes through the stream, so `buf` may be
   * reused on return. Not batched with the other replies of this turn: a
   * client waiting on several requests starts on the first answer while the
   * next ones are read. Measured (qemu-img bench, 4 KiB at depth 16, server
   * and client pinned to different cores): ~90k IOPS with one corked writev
   * per turn through the stream and a reply buffer per request, ~130k with
   * this, where nbdkit's file plugin did ~135k.
   */
  private sendNow(buf: Buffer, length: number): void {
    const sock = this.sock
    if (sock.destroyed || !sock.writable) return
    let n = 0
    if (this.fd >= 0 && !this.corked && sock.writableLength === 0) {
      try {
        n = fs.writeSync(this.fd, buf, 0, length)
      } catch {
        // EAGAIN (socket buffer full) or a broken connection: the stream reports the latter
      }
      if (n === length) return
    }
    sock.write(Buffer.from(buf.subarray(n, length)))
  }

  /** Queue buffers as one contiguous message; resolves when the kernel has them (or the socket is gone). */
  private send(bufs: Buffer[]): Promise<void> {
    const sock = this.sock
    if (sock.destroyed || !sock.writable || bufs.length === 0) return Promise.resolve()
    return new Promise<void>((resolve) => {
      const done = () => {
        if (this.pendingWrites.delete(done)) resolve()
      }
      this.pendingWrites.add(done)
      // replies finished in the same turn of the event loop leave in one
      // writev: at queue depth 16 this cut the system calls per 4 KiB read
      // several-fold
      this.corkForThisTurn()
      for (let i = 0; i < bufs.length - 1; i++) sock.write(bufs[i])
      sock.write(bufs[bufs.length - 1], done)
    })
  }

  // ---------------------------------------------------------- handshake

  private transmissionFlags(): number {
    const b = this.backend
    let f = P.FLAG_HAS_FLAGS | P.FLAG_SEND_FLUSH | P.FLAG_SEND_CACHE
    if (b.readOnly) f |= P.FLAG_READ_ONLY
    else f |= P.FLAG_SEND_FUA | P.FLAG_SEND_TRIM | P.FLAG_SEND_WRITE_ZEROES
    if (this.structured) f |= P.FLAG_SEND_DF
    if (b.multiConnSafe) f |= P.FLAG_CAN_MULTI_CONN
    return f
  }

  private isOurExport(name: string): boolean {
    return name === this.exp.name || name === ''
  }

  private optReply(opt: number, type: number, data?: Buffer): Buffer {
    return H.encodeOptionReply(opt, type, data)
  }

  private optError(opt: number, type: number, message: string): Promise<void> {
    return this.send([this.optReply(opt, type, Buffer.from(message.slice(0, 256), 'utf8'))])
  }

  /** Returns true to enter transmission, false when the client aborted. */
  private async handshake(): Promise<boolean> {
    await this.send([H.encodeGreeting(P.FLAG_FIXED_NEWSTYLE | P.FLAG_NO_ZEROES)])
    const clientFlags = H.decodeClientFlags(await this.reader.read(H.CLIENT_FLAGS_SIZE))
    if (clientFlags & ~(P.FLAG_C_FIXED_NEWSTYLE | P.FLAG_C_NO_ZEROES)) {
      throw new ProtocolError(`unknown client flags 0x${clientFlags.toString(16)}`)
    }
    this.noZeroes = (clientFlags & P.FLAG_C_NO_ZEROES) !== 0
    for (let count = 0; ; count++) {
      const h = H.decodeOptionHeader(await this.reader.read(H.OPTION_HEADER_SIZE))
      if (h.magic !== P.IHAVEOPT) throw new ProtocolError('bad option magic')
      if (count >= MAX_OPTIONS) throw new ProtocolError(`more than ${MAX_OPTIONS} options`)
      if (h.length > MAX_OPTION_LENGTH) throw new ProtocolError(`option ${h.option} data of ${h.length} bytes is too long`)
      const data = await this.reader.read(h.length)
      if (this.stopping) {
        await this.optError(h.option, P.REP_ERR_SHUTDOWN, 'server is shutting down')
        return false
      }
      const r = await this.option(h.option, data)
      if (r !== 'continue') return r === 'go'
    }
  }

  private async option(opt: number, data: Buffer): Promise<'continue' | 'go' | 'abort'> {
    const exp = this.exp
    switch (opt) {
      case P.OPT_EXPORT_NAME: {
        const name = H.decodeString(data)
        if (name === undefined || !this.isOurExport(name)) {
          // no way to report an error here: the spec says terminate
          const shown = name === undefined ? `(invalid string, ${data.length} bytes)` : JSON.stringify(name.slice(0, 64))
          throw new ProtocolError(`NBD_OPT_EXPORT_NAME for unknown export ${shown}`)
        }
        await this.send([H.encodeExportNameReply(this.backend.size, this.transmissionFlags(), this.noZeroes)])
        return 'go'
      }
      case P.OPT_ABORT:
        await this.send([this.optReply(opt, P.REP_ACK)])
        return 'abort'
      case P.OPT_LIST:
        if (data.length) {
          await this.optError(opt, P.REP_ERR_INVALID, 'NBD_OPT_LIST takes no data')
          return 'continue'
        }
        await this.send([this.optReply(opt, P.REP_SERVER, H.encodeRepServer(exp.name, exp.description)), this.optReply(opt, P.REP_ACK)])
        return 'continue'
      case P.OPT_INFO:
      case P.OPT_GO: {
        const req = H.decodeInfoRequest(data)
        if (!req) {
          await this.optError(opt, P.REP_ERR_INVALID, 'malformed NBD_OPT_INFO/GO request')
          return 'continue'
        }
        if (!this.isOurExport(req.name)) {
          await this.optError(opt, P.REP_ERR_UNKNOWN, `no export named ${JSON.stringify(req.name)}`)
          return 'continue'
        }
        const replies = [this.optReply(opt, P.REP_INFO, H.encodeInfoExport(this.backend.size, this.transmissionFlags()))]
        if (req.infos.includes(P.INFO_NAME)) replies.push(this.optReply(opt, P.REP_INFO, H.encodeInfoString(P.INFO_NAME, exp.name)))
        if (req.infos.includes(P.INFO_DESCRIPTION) && exp.description) {
          replies.push(this.optReply(opt, P.REP_INFO, H.encodeInfoString(P.INFO_DESCRIPTION, exp.description)))
        }
        replies.push(this.optReply(opt, P.REP_INFO, H.encodeInfoBlockSize(MIN_BLOCK_SIZE, PREFERRED_BLOCK_SIZE, MAX_PAYLOAD)))
        replies.push(this.optReply(opt, P.REP_ACK))
        await this.send(replies)
        return opt === P.OPT_GO ? 'go' : 'continue'
      }
      case P.OPT_STRUCTURED_REPLY:
        if (data.length) {
          await this.optError(opt, P.REP_ERR_INVALID, 'NBD_OPT_STRUCTURED_REPLY takes no data')
          return 'continue'
        }
        this.structured = true
        await this.send([this.optReply(opt, P.REP_ACK)])
        return 'continue'
      case P.OPT_LIST_META_CONTEXT:
      case P.OPT_SET_META_CONTEXT: {
        const set = opt === P.OPT_SET_META_CONTEXT
        if (set) this.metaContext = false // replaced even when the request fails
        if (!this.structured) {
          await this.optError(opt, P.REP_ERR_INVALID, 'negotiate structured replies first')
          return 'continue'
        }
        const req = H.decodeMetaContextRequest(data)
        if (!req) {
          await this.optError(opt, P.REP_ERR_INVALID, 'malformed meta context request')
          return 'continue'
        }
        if (!this.isOurExport(req.name)) {
          await this.optError(opt, P.REP_ERR_UNKNOWN, `no export named ${JSON.stringify(req.name)}`)
          return 'continue'
        }
        let match: boolean
        if (set) match = req.queries.includes(P.META_BASE_ALLOCATION)
        else match = req.queries.length === 0 || req.queries.some((q) => q === 'base:' || q === P.META_BASE_ALLOCATION)
        const replies: Buffer[] = []
        if (match) replies.push(this.optReply(opt, P.REP_META_CONTEXT, H.encodeMetaContext(set ? META_CONTEXT_ID : 0, P.META_BASE_ALLOCATION)))
        replies.push(this.optReply(opt, P.REP_ACK))
        if (set) this.metaContext = match
        await this.send(replies)
        return 'continue'
      }
      case P.OPT_STARTTLS:
        await this.optError(opt, P.REP_ERR_UNSUP, 'TLS is not supported')
        return 'continue'
      default:
        await this.optError(opt, P.REP_ERR_UNSUP, `option ${opt} is not supported`)
        return 'continue'
    }
  }

  // ------------------------------------------------------- transmission

  private async acquireSlot(): Promise<void> {
    while (this.inFlight >= this.opts.maxInFlight) await new Promise<void>((r) => this.slotWaiters.push(r))
    this.inFlight++
  }

  private releaseSlot(): void {
    this.inFlight--
    this.slotWaiters.shift()?.()
    if (this.inFlight === 0) for (const w of this.idleWaiters.splice(0)) w()
  }

  private whenIdle(): Promise<void> {
    if (this.inFlight === 0) return Promise.resolve()
    return new Promise<void>((r) => this.idleWaiters.push(r))
  }

  /** NBD error for a request that must not reach the backend, or 0. */
  private check(type: number, flags: number, offset: number, length: number): number {
    let allowed = P.CMD_FLAG_FUA
    switch (type) {
      case P.CMD_READ:
        if (this.structured) allowed |= P.CMD_FLAG_DF
        break
      case P.CMD_WRITE_ZEROES:
        allowed |= P.CMD_FLAG_NO_HOLE
        break
      case P.CMD_BLOCK_STATUS:
        allowed |= P.CMD_FLAG_REQ_ONE
        break
      case P.CMD_WRITE:
      case P.CMD_FLUSH:
      case P.CMD_TRIM:
      case P.CMD_CACHE:
        break
      default:
        return P.EINVAL
    }
    if (flags & ~allowed) return P.EINVAL
    if (type === P.CMD_FLUSH) return 0
    const writes = type === P.CMD_WRITE || type === P.CMD_WRITE_ZEROES || type === P.CMD_TRIM
    if (writes && this.backend.readOnly) return P.EPERM
    if (offset < 0 || offset + length > this.backend.size) {
      return type === P.CMD_WRITE || type === P.CMD_WRITE_ZEROES ? P.ENOSPC : P.EINVAL
    }
    if (type === P.CMD_READ && length > MAX_PAYLOAD) return P.EINVAL
    if (type === P.CMD_BLOCK_STATUS && (!this.metaContext || length === 0)) return P.EINVAL
    return 0
  }

  private async transmission(): Promise<void> {
    for (;;) {
      // pipelined requests already buffered are taken without a promise
      const raw = this.reader.tryRead(W.REQUEST_HEADER_SIZE) ?? (await this.reader.readHeader(W.REQUEST_HEADER_SIZE))
      // a READ the backend can answer at once is answered from the raw header, allocating only the reply
      // (after the observers have seen it, when there are any)
      const fastRead = W.isReadRequest(raw)
      if (fastRead && !this.opts.onRequest && this.readNow(raw)) continue
      const h = W.decodeRequestHeader(raw)
      if (h.magic !== P.REQUEST_MAGIC) throw new ProtocolError(`bad request magic 0x${h.magic.toString(16)}`)
      if (h.type === P.CMD_DISC) return
      try {
        this.opts.onRequest?.({type: P.COMMAND_NAMES[h.type] ?? `cmd-${h.type}`, offset: h.offset, length: h.length})
      } catch {
        // observers must not break the connection
      }
      if (fastRead && this.opts.onRequest && this.readNow(raw)) continue
      await this.acquireSlot()
      let dispatched = false
      try {
        dispatched = await this.dispatch(h)
      } finally {
        if (!dispatched) this.releaseSlot()
      }
    }
  }

  /**
   * Validate one request, read its payload, start its handler. Returns true
   * once the handler owns the slot. Throws ProtocolError to disconnect.
   */
  private async dispatch(h: W.RequestHeader): Promise<boolean> {
    const err = this.check(h.type, h.flags, h.offset, h.length)
    if (h.type === P.CMD_WRITE) {
      if (h.length > MAX_PAYLOAD) {
        // we will not swallow an oversized payload: reply, then hang up
        await this.replyError(h, P.EINVAL, `write of ${h.length} bytes exceeds the ${MAX_PAYLOAD}-byte maximum`)
        throw new ProtocolError(`write payload of ${h.length} bytes is too large`)
      }
      if (err) {
        await this.reader.skip(h.length)
        this.run1(h, () => this.replyError(h, err, 'write rejected'))
        return true
      }
      const held = await this.budget.acquire(h.length)
      let payload: Buffer
      try {
        payload = await this.reader.read(h.length)
      } catch (e) {
        this.budget.release(held)
        throw e
      }
      this.run1(h, () => this.doWrite(h, payload), held)
      return true
    }
    if (err) this.run1(h, () => this.replyError(h, err, `invalid ${P.COMMAND_NAMES[h.type] ?? `command ${h.type}`} request`))
    else this.run1(h, () => this.execute(h))
    return true
  }

  /** Run one request's handler in the background; the slot (and budget) are released when its reply is out. */
  private run1(h: W.RequestHeader, fn: () => Promise<void>, held = 0): void {
    fn()
      .catch((e) => this.log(`request ${P.COMMAND_NAMES[h.type] ?? h.type} failed: ${(e as Error)?.message ?? e}`))
      .finally(() => {
        if (held) this.budget.release(held)
        this.releaseSlot()
      })
  }

  private replyError(h: W.RequestHeader, error: number, message: string): Promise<void> {
    if (this.structured) return this.send([W.encodeErrorChunk(P.REPLY_FLAG_DONE, h.cookie, error, message)])
    return this.send([W.encodeSimpleReply(error, h.cookie)])
  }

  private replyOk(h: W.RequestHeader): Promise<void> {
    return this.send([W.encodeSimpleReply(0, h.cookie)])
  }

  private async backendCall(h: W.RequestHeader, fn: () => Promise<void>): Promise<void> {
    try {
      await fn()
    } catch (e) {
      const err = errorToNbd(e)
      this.log(`${P.COMMAND_NAMES[h.type]} ${h.offset}+${h.length}: ${(e as Error)?.message ?? e}`)
      return this.replyError(h, err, `${P.COMMAND_NAMES[h.type]} failed: ${(e as Error)?.message ?? e}`)
    }
    return this.replyOk(h)
  }

  private doWrite(h: W.RequestHeader, payload: Buffer): Promise<void> {
    if (h.length === 0) return this.replyOk(h)
    const fua = (h.flags & P.CMD_FLAG_FUA) !== 0
    return this.backendCall(h, () => this.backend.write(h.offset, payload, {fua}))
  }

  private async execute(h: W.RequestHeader): Promise<void> {
    const b = this.backend
    if (this.sock.destroyed && h.type !== P.CMD_FLUSH) return
    const fua = (h.flags & P.CMD_FLAG_FUA) !== 0
    switch (h.type) {
      case P.CMD_READ:
        return this.doRead(h)
      case P.CMD_FLUSH:
        return this.backendCall(h, () => b.flush())
      case P.CMD_TRIM:
        if (h.length === 0) return this.replyOk(h)
        return this.backendCall(h, async () => {
          await b.trim(h.offset, h.length)
          if (fua) await b.flush()
        })
      case P.CMD_WRITE_ZEROES:
        if (h.length === 0) return this.replyOk(h)
        return this.backendCall(h, () => b.writeZeroes(h.offset, h.length, {noHole: (h.flags & P.CMD_FLAG_NO_HOLE) !== 0, fua}))
      case P.CMD_CACHE:
        if (h.length === 0) return this.replyOk(h)
        return this.backendCall(h, () => b.cache(h.offset, h.length))
      case P.CMD_BLOCK_STATUS:
        return this.doBlockStatus(h)
      default:
        return this.replyError(h, P.EINVAL, `unknown command ${h.type}`)
    }
  }

  /**
   * A small READ the backend can answer at once (every byte local) is
   * answered here, synchronously, without a slot or a promise chain: for a
   * 4 KiB read from the page cache that bookkeeping cost more than the read.
   * Returns false to take the normal path.
   */
  private readNow(raw: Buffer): boolean {
    const b = this.backend
    const flags = W.requestFlags(raw)
    const offset = W.requestOffset(raw)
    const length = W.requestLength(raw)
    if (!b.readNow || length === 0 || length > READ_NOW_MAX) return false
    if (this.check(P.CMD_READ, flags, offset, length) !== 0) return false
    // a client that does not read its replies goes the budgeted way
    if (this.sock.destroyed || this.sock.writableLength > READ_HIGH_WATER) return false
    if (this.scratch.length === 0) this.scratch = Buffer.allocUnsafeSlow(W.readReplyPrefixSize(true) + READ_NOW_MAX)
    const reply = this.scratch
    // structured replies say "hole" for a range of zeros (one chunk: allowed with DF too)
    if (this.structured && b.zeroNow?.(offset, length)) {
      W.writeHoleReply(reply, raw, offset, length)
      this.sendNow(reply, W.HOLE_REPLY_SIZE)
      return true
    }
    // the reply in one buffer: its header, then the bytes read straight in after it
    const prefix = W.readReplyPrefixSize(this.structured)
    try {
      if (!b.readNow(offset, length, reply, prefix)) return false
    } catch {
      return false
    }
    if (this.structured && hasZeroBlock(reply, offset, 4096, prefix, prefix + length)) {
      // holes inside the range are sent as holes: the general reply path splits them out
      const data = Buffer.from(reply.subarray(prefix, prefix + length))
      this.sendRead(W.decodeRequestHeader(raw), data).catch(() => {})
      return true
    }
    W.writeReadReplyPrefix(reply, this.structured, raw, offset, length)
    this.sendNow(reply, prefix + length)
    return true
  }

  private async doRead(h: W.RequestHeader): Promise<void> {
    if (h.length === 0) {
      if (this.structured) return this.send([W.encodeStructuredDone(h.cookie)])
      return this.replyOk(h)
    }
    const held = await this.budget.acquire(h.length)
    try {
      if (this.sock.destroyed) return // the client is gone: skip the work
      let data: Buffer
      const into = this.pool.take(h.length)
      try {
        data = await this.backend.read(h.offset, h.length, this.abort.signal, into)
        if (!Buffer.isBuffer(data) || data.length !== h.length) {
          throw Object.assign(new Error(`backend returned ${data?.length} bytes, expected ${h.length}`), {errno: 'EIO'})
        }
      } catch (e) {
        if (into) this.pool.give(into)
        if (this.abort.signal.aborted) return
        this.log(`read ${h.offset}+${h.length}: ${(e as Error)?.message ?? e}`)
        return await this.replyError(h, errorToNbd(e), `read failed: ${(e as Error)?.message ?? e}`)
      }
      try {
        return await this.sendRead(h, data)
      } finally {
        // the kernel has the bytes (or the socket is gone): the buffer can be reused
        if (data === into) this.pool.give(into)
      }
    } finally {
      this.budget.release(held)
    }
  }

  private async sendRead(h: W.RequestHeader, data: Buffer): Promise<void> {
    if (!this.structured) return await this.send([W.encodeSimpleReply(0, h.cookie), data])
    if (h.flags & P.CMD_FLAG_DF) {
      const hole = splitHoles(data, h.offset, 4096, 4096)
      if (hole.length === 1 && hole[0].hole) {
        return await this.send([W.encodeOffsetHole(P.REPLY_FLAG_DONE, h.cookie, h.offset, h.length)])
      }
      return await this.send([W.encodeOffsetDataHeader(P.REPLY_FLAG_DONE, h.cookie, h.offset, h.length), data])
    }
    const pieces = splitHoles(data, h.offset, 4096, 4096)
    const bufs: Buffer[] = []
    for (let i = 0; i < pieces.length; i++) {
      const p = pieces[i]
      const flags = i === pieces.length - 1 ? P.REPLY_FLAG_DONE : 0
      if (p.hole) bufs.push(W.encodeOffsetHole(flags, h.cookie, p.offset, p.length))
      else {
        const rel = p.offset - h.offset
        bufs.push(W.encodeOffsetDataHeader(flags, h.cookie, p.offset, p.length), data.subarray(rel, rel + p.length))
      }
    }
    return await this.send(bufs)
  }

  private async doBlockStatus(h: W.RequestHeader): Promise<void> {
    let raw: Extent[]
    try {
      raw = await this.backend.blockStatus(h.offset, h.length)
      if (!Array.isArray(raw)) throw Object.assign(new Error('backend returned no extent list'), {errno: 'EIO'})
    } catch (e) {
      this.log(`block-status ${h.offset}+${h.length}: ${(e as Error)?.message ?? e}`)
      return this.replyError(h, errorToNbd(e), `block status failed: ${(e as Error)?.message ?? e}`)
    }
    const reqOne = (h.flags & P.CMD_FLAG_REQ_ONE) !== 0
    const extents = normalizeExtents(raw, h.length, reqOne ? 1 : MAX_EXTENTS)
    return this.send([W.encodeBlockStatus(P.REPLY_FLAG_DONE, h.cookie, META_CONTEXT_ID, extents)])
  }
}

async function removeStaleSocket(path: string): Promise<void> {
  let st: fs.Stats
  try {
    st = fs.statSync(path)
  } catch {
    return
  }
  if (!st.isSocket()) throw Object.assign(new Error(`${path} exists and is not a socket`), {code: 'EEXIST'})
  const live = await new Promise<boolean>((resolve) => {
    const s = net.connect(path)
    s.once('connect', () => {
      s.destroy()
      resolve(true)
    })
    s.once('error', () => resolve(false))
  })
  if (live) throw Object.assign(new Error(`${path} is in use by a running server`), {code: 'EADDRINUSE'})
  fs.rmSync(path, {force: true})
}

function formatAddress(init: NbdServerInit, exportName: string, port?: number): string {
  const name = exportName ? encodeURIComponent(exportName) : ''
  if (init.socketPath) return `nbd+unix:///${name}?socket=${encodeURIComponent(init.socketPath).replace(/%2F/g, '/')}`
  let host = init.host ?? '127.0.0.1'
  if (host.includes(':')) host = `[${host}]`
  return `nbd://${host}:${port}/${name}`
}

export async function startNbdServer(backend: BlockBackend, init: NbdServerInit = {}): Promise<NbdServer> {
  const exp: ExportInfo = {name: init.exportName ?? '', description: init.description ?? ''}
  const maxConnections = init.maxConnections ?? 16
  const connOpts = {
    handshakeTimeoutMs: init.handshakeTimeoutMs ?? 10_000,
    maxInFlight: Math.max(1, init.maxInFlight ?? 16),
    pollUs: Math.max(0, Math.min(10_000, init.pollUs ?? DEFAULT_POLL_US)),
    maxPendingBytes: init.maxPendingBytes ?? 64 << 20,
    log: init.log,
    onRequest: init.onRequest,
  }
  const log = (line: string) => {
    try {
      init.log?.(line)
    } catch {
      // ignore
    }
  }
  const conns = new Set<Connection>()
  let closing = false
  const openCount = () => {
    let n = 0
    for (const c of conns) if (c.open) n++
    return n
  }
  const server = net.createServer({allowHalfOpen: true}, (sock) => {
    const n = openCount()
    if (closing || n >= maxConnections) {
      log(`nbd: refusing connection (${closing ? 'shutting down' : `${n} open, limit ${maxConnections}`})`)
      sock.on('error', () => {})
      sock.destroy()
      return
    }
    const c = new Connection(sock, backend, exp, connOpts)
    conns.add(c)
    void c.done.finally(() => conns.delete(c))
  })
  server.on('error', (e) => log(`nbd: server error: ${e.message}`))

  if (init.socketPath) await removeStaleSocket(init.socketPath)
  await new Promise<void>((resolve, reject) => {
    const onError = (e: Error) => reject(e)
    server.once('error', onError)
    const ready = () => {
      server.off('error', onError)
      resolve()
    }
    if (init.socketPath) server.listen(init.socketPath, ready)
    else server.listen({host: init.host ?? '127.0.0.1', port: init.port ?? 0}, ready)
  })
  const addr = server.address()
  const port = addr && typeof addr === 'object' ? addr.port : undefined
  const address = formatAddress(init, exp.name, port)
  log(`nbd: serving ${backend.size} bytes${backend.readOnly ? ' read-only' : ''} at ${address}`)

  let closed: Promise<void> | undefined
  return {
    address,
    port: init.socketPath ? undefined : port,
    socketPath: init.socketPath,
    connectionCount: openCount,
    close() {
      closed ??= (async () => {
        closing = true
        const stopped = new Promise<void>((resolve) => server.close(() => resolve()))
        const all = [...conns]
        for (const c of all) c.shutdown()
        const finished = Promise.all(all.map((c) => c.done))
        let timer: NodeJS.Timeout | undefined
        const timedOut = await Promise.race([
          finished.then(() => false),
          new Promise<boolean>((r) => (timer = setTimeout(() => r(true), 5000))),
        ])
        clearTimeout(timer)
        if (timedOut) {
          log('nbd: in-flight requests did not finish in 5 s; closing connections')
          for (const c of all) c.destroy()
        }
        await stopped
        if (init.socketPath) fs.rmSync(init.socketPath, {force: true})
      })()
      return closed
    },
  }
}
