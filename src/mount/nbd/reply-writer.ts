/**
 * The sending side of a connection. Every message goes out whole: `send`
 * queues its buffers back to back on the stream, and `sendNow` writes a
 * finished reply to the descriptor only when nothing is queued before it, so
 * bytes of two replies never interleave.
 */
import fs from 'node:fs'
import type net from 'node:net'

export class ReplyWriter {
  private corked = false
  private readonly pending = new Set<() => void>()

  constructor(
    private readonly sock: net.Socket,
    /** The socket's descriptor for direct writes (sendNow), or -1: then everything goes through the stream. */
    private readonly fd: number,
  ) {}

  /** The socket is gone: nothing sent now reaches the client. */
  get closed(): boolean {
    return this.sock.destroyed
  }

  /** Bytes queued on the stream that the kernel has not taken yet. */
  get backlog(): number {
    return this.sock.writableLength
  }

  /** The socket closed: settle every send still waiting for the kernel. */
  release(): void {
    for (const resolve of this.pending) resolve()
    this.pending.clear()
  }

  /** Queue buffers as one contiguous message; resolves when the kernel has them (or the socket is gone). */
  send(bufs: Buffer[]): Promise<void> {
    const sock = this.sock
    if (sock.destroyed || !sock.writable || bufs.length === 0) return Promise.resolve()
    return new Promise<void>((resolve) => {
      const done = () => {
        if (this.pending.delete(done)) resolve()
      }
      this.pending.add(done)
      // replies finished in the same turn of the event loop leave in one
      // writev: one system call for many small replies
      this.corkForThisTurn()
      for (let i = 0; i < bufs.length - 1; i++) sock.write(bufs[i])
      sock.write(bufs[bufs.length - 1], done)
    })
  }

  /**
   * Send the first `length` bytes of `buf`, a whole reply, at once: straight
   * to the socket's descriptor when nothing is queued before it; whatever
   * the kernel does not take (or everything, without a descriptor) is copied
   * and goes through the stream, so `buf` may be reused on return. Not
   * batched with the other replies of this turn: a client waiting on several
   * requests starts on the first answer while the next ones are read.
   */
  sendNow(buf: Buffer, length: number): void {
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
}
