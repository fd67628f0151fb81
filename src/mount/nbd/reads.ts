/**
 * READ requests: answered synchronously from the raw header when the
 * backend has the bytes at once (`now`), else through the general path
 * (`read`), which waits on the backend and charges the reply to the
 * connection's byte budget. Structured replies send all-zero blocks as holes.
 */
import type {BlockBackend} from './block-backend.js'
import {ReplyBufferPool, type ByteBudget} from './buffers.js'
import {errorToNbd} from './errors.js'
import {HOLE_BLOCK, READ_HIGH_WATER, READ_NOW_MAX} from './limits.js'
import * as P from './protocol.js'
import type {ReplyWriter} from './reply-writer.js'
import type {Session} from './session.js'
import {hasZeroBlock, splitHoles} from './sparse.js'
import {requestError} from './validate.js'
import * as W from './wire-transmission.js'

export class ReadPath {
  private readonly pool = new ReplyBufferPool()
  /** Where a synchronous reply is built; reused as soon as the kernel has taken the reply (sendNow). */
  private scratch = Buffer.allocUnsafeSlow(0)

  constructor(
    private readonly backend: BlockBackend,
    private readonly session: Session,
    private readonly writer: ReplyWriter,
    private readonly budget: ByteBudget,
    /** Aborted when the socket closes: pending backend reads are abandoned. */
    private readonly signal: AbortSignal,
    private readonly log: (line: string) => void,
  ) {}

  /**
   * A small READ the backend can answer at once (every byte local) is
   * answered here, synchronously, without a slot or a promise chain: for a
   * small read from the page cache that bookkeeping costs more than the
   * read. Returns false to take the general path.
   */
  now(raw: Buffer): boolean {
    const b = this.backend
    const offset = W.requestOffset(raw)
    const length = W.requestLength(raw)
    if (!b.readNow || length === 0 || length > READ_NOW_MAX) return false
    if (requestError(P.CMD_READ, W.requestFlags(raw), offset, length, b, this.session) !== 0) return false
    // a client that does not read its replies goes the budgeted way
    if (this.writer.closed || this.writer.backlog > READ_HIGH_WATER) return false
    if (this.scratch.length === 0) this.scratch = Buffer.allocUnsafeSlow(W.readReplyPrefixSize(true) + READ_NOW_MAX)
    const reply = this.scratch
    const structured = this.session.structured
    // structured replies say "hole" for a range of zeros (one chunk: allowed with DF too)
    if (structured && b.zeroNow?.(offset, length)) {
      W.writeHoleReply(reply, raw, offset, length)
      this.writer.sendNow(reply, W.HOLE_REPLY_SIZE)
      return true
    }
    // the reply in one buffer: its header, then the bytes read straight in after it
    const prefix = W.readReplyPrefixSize(structured)
    try {
      if (!b.readNow(offset, length, reply, prefix)) return false
    } catch {
      return false
    }
    if (structured && hasZeroBlock(reply, offset, HOLE_BLOCK, prefix, prefix + length)) {
      // holes inside the range are sent as holes: the general reply splits them out
      const data = Buffer.from(reply.subarray(prefix, prefix + length))
      this.sendRead(W.decodeRequestHeader(raw), data).catch(() => {})
      return true
    }
    W.writeReadReplyPrefix(reply, structured, raw, offset, length)
    this.writer.sendNow(reply, prefix + length)
    return true
  }

  /** A validated READ through the backend's general path; resolves when the reply is out. */
  async read(h: W.RequestHeader): Promise<void> {
    if (h.length === 0) {
      if (this.session.structured) return this.writer.send([W.encodeStructuredDone(h.cookie)])
      return this.writer.send([W.encodeSimpleReply(0, h.cookie)])
    }
    const held = await this.budget.acquire(h.length)
    try {
      if (this.writer.closed) return // the client is gone: skip the work
      let data: Buffer
      const into = this.pool.take(h.length)
      try {
        data = await this.backend.read(h.offset, h.length, this.signal, into)
        if (!Buffer.isBuffer(data) || data.length !== h.length) {
          throw Object.assign(new Error(`backend returned ${data?.length} bytes, expected ${h.length}`), {errno: 'EIO'})
        }
      } catch (e) {
        if (into) this.pool.give(into)
        if (this.signal.aborted) return
        this.log(`read ${h.offset}+${h.length}: ${(e as Error)?.message ?? e}`)
        const reply = W.encodeErrorReply(this.session.structured, h.cookie, errorToNbd(e), `read failed: ${(e as Error)?.message ?? e}`)
        return await this.writer.send([reply])
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
    if (!this.session.structured) return await this.writer.send([W.encodeSimpleReply(0, h.cookie), data])
    const pieces = splitHoles(data, h.offset, HOLE_BLOCK, HOLE_BLOCK)
    if (h.flags & P.CMD_FLAG_DF) {
      // one chunk only: all hole, or all data
      if (pieces.length === 1 && pieces[0].hole) {
        return await this.writer.send([W.encodeOffsetHole(P.REPLY_FLAG_DONE, h.cookie, h.offset, h.length)])
      }
      return await this.writer.send([W.encodeOffsetDataHeader(P.REPLY_FLAG_DONE, h.cookie, h.offset, h.length), data])
    }
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
    return await this.writer.send(bufs)
  }
}
