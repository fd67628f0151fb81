/**
 * The receiving side of a connection: a pull-style reader over the socket
 * with bounded read-ahead, and the hook that lets whole request headers be
 * answered inside the socket's data callback (direct), with adaptive polling
 * after such bursts.
 */
import fs from 'node:fs'
import type net from 'node:net'
import {ConnClosed} from './errors.js'
import {PREEMPT_GAP_MS, PollPolicy} from './poll-policy.js'

/** Pull-style reader over a socket with bounded read-ahead. */
export class SocketReader {
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
    sock.on('data', this.onDataListener)
    sock.on('end', this.onEnd)
    sock.on('close', this.onClose)
  }

  private readonly onDataListener = (d: Buffer): void => this.onData(d)
  // after a half-close, requests already received are still served
  private readonly onEnd = (): void => this.fail(new ConnClosed('client closed the connection'))
  // once the socket is gone nobody can read replies: drop what is buffered
  private readonly onClose = (): void => this.abort(new ConnClosed('connection closed'))

  /**
   * Stop reading the socket and leave it paused, its later bytes unread (STARTTLS
   * hands the socket to TLS). Returns how many bytes were buffered and not read.
   */
  detach(): number {
    this.sock.pause()
    this.sock.off('data', this.onDataListener)
    this.sock.off('end', this.onEnd)
    this.sock.off('close', this.onClose)
    return this.avail
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
   * maxMs and answer what arrives right here. A client at depth 1 on another
   * core sends its next request soon after each reply, sooner than a sleep in
   * epoll and the wake-up after it would let this thread see it, and the
   * wake-up costs CPU too (measurements: docs/PERFORMANCE.md). PollPolicy
   * decides when to poll and backs off when polls are wasted: a client
   * sharing this core (which cannot send while this thread spins) or one
   * that pauses (a booting guest) costs a rare wasted poll and nothing more.
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
      // core meanwhile. Measured per thread, by the clock: a process-wide
      // count of context switches would count V8's compiler and GC threads
      // too, and back polling off while they are busy.
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
