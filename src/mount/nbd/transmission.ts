/**
 * The transmission phase of one connection: READ (simple, or structured with
 * OFFSET_DATA / OFFSET_HOLE chunks), WRITE (+FUA), FLUSH, TRIM, WRITE_ZEROES
 * (+NO_HOLE), CACHE, BLOCK_STATUS, DISC.
 *
 * Requests run concurrently (at most `maxInFlight`) and replies go out in
 * completion order. Write payloads and read replies held in memory are
 * charged to a byte budget until the kernel has taken them. Bad requests get
 * error replies; a client breaking the protocol (bad magic, a WRITE payload
 * larger than MAX_PAYLOAD) gets a ProtocolError, which ends the connection.
 */
import type {BlockBackend, Extent} from './block-backend.js'
import {ByteBudget} from './buffers.js'
import {errorToNbd, ProtocolError} from './errors.js'
import {MAX_EXTENTS, MAX_PAYLOAD, META_CONTEXT_ID} from './limits.js'
import * as P from './protocol.js'
import {ReadPath} from './reads.js'
import type {ReplyWriter} from './reply-writer.js'
import type {Session} from './session.js'
import type {SocketReader} from './socket-reader.js'
import {normalizeExtents} from './sparse.js'
import {requestError} from './validate.js'
import * as W from './wire-transmission.js'

export interface NbdRequestEvent {
  type: string
  offset: number
  length: number
}

export interface TransmissionInit {
  backend: BlockBackend
  session: Session
  reader: SocketReader
  writer: ReplyWriter
  /** Aborted when the socket closes. */
  signal: AbortSignal
  maxInFlight: number
  /** Byte budget for payloads and replies held (at least MAX_PAYLOAD is granted). */
  maxPendingBytes: number
  /** Sees every request but DISC before it runs. */
  onRequest?: (ev: NbdRequestEvent) => void
  log: (line: string) => void
}

const commandName = (type: number): string => P.COMMAND_NAMES[type] ?? `cmd-${type}`

export class Transmission {
  /** The READ path; its synchronous part may also be called from the socket's data callback. */
  readonly reads: ReadPath
  private readonly backend: BlockBackend
  private readonly session: Session
  private readonly writer: ReplyWriter
  private readonly budget: ByteBudget
  private inFlight = 0
  private slotWaiters: (() => void)[] = []
  private idleWaiters: (() => void)[] = []

  constructor(private readonly init: TransmissionInit) {
    this.backend = init.backend
    this.session = init.session
    this.writer = init.writer
    this.budget = new ByteBudget(Math.max(init.maxPendingBytes, MAX_PAYLOAD))
    this.reads = new ReadPath(init.backend, init.session, init.writer, this.budget, init.signal, init.log)
  }

  /** Serve requests until DISC; throws ProtocolError or the reader's ConnClosed. */
  async run(): Promise<void> {
    const reader = this.init.reader
    const observed = this.init.onRequest !== undefined
    for (;;) {
      // pipelined requests already buffered are taken without a promise
      const raw = reader.tryRead(W.REQUEST_HEADER_SIZE) ?? (await reader.readHeader(W.REQUEST_HEADER_SIZE))
      // a READ the backend can answer at once is answered from the raw header, allocating only the reply
      // (after the observer has seen it, when there is one)
      const read = W.isReadRequest(raw)
      if (read && !observed && this.reads.now(raw)) continue
      const h = W.decodeRequestHeader(raw)
      if (h.magic !== P.REQUEST_MAGIC) throw new ProtocolError(`bad request magic 0x${h.magic.toString(16)}`)
      if (h.type === P.CMD_DISC) return
      this.observe(h)
      if (read && observed && this.reads.now(raw)) continue
      await this.acquireSlot()
      let dispatched = false
      try {
        dispatched = await this.dispatch(h)
      } finally {
        if (!dispatched) this.releaseSlot()
      }
    }
  }

  /** Resolves once no request is in flight. */
  whenIdle(): Promise<void> {
    if (this.inFlight === 0) return Promise.resolve()
    return new Promise<void>((r) => this.idleWaiters.push(r))
  }

  private observe(h: W.RequestHeader): void {
    try {
      this.init.onRequest?.({type: commandName(h.type), offset: h.offset, length: h.length})
    } catch {
      // observers must not break the connection
    }
  }

  private async acquireSlot(): Promise<void> {
    while (this.inFlight >= this.init.maxInFlight) await new Promise<void>((r) => this.slotWaiters.push(r))
    this.inFlight++
  }

  private releaseSlot(): void {
    this.inFlight--
    this.slotWaiters.shift()?.()
    if (this.inFlight === 0) for (const w of this.idleWaiters.splice(0)) w()
  }

  /**
   * Validate one request, read its payload, start its handler. Returns true
   * once the handler owns the slot. Throws ProtocolError to disconnect.
   */
  private async dispatch(h: W.RequestHeader): Promise<boolean> {
    const err = requestError(h.type, h.flags, h.offset, h.length, this.backend, this.session)
    if (h.type === P.CMD_WRITE) return this.dispatchWrite(h, err)
    if (err) this.run1(h, () => this.replyError(h, err, `invalid ${P.COMMAND_NAMES[h.type] ?? `command ${h.type}`} request`))
    else this.run1(h, () => this.execute(h))
    return true
  }

  private async dispatchWrite(h: W.RequestHeader, err: number): Promise<boolean> {
    const reader = this.init.reader
    if (h.length > MAX_PAYLOAD) {
      // an oversized payload is not swallowed: reply, then hang up
      await this.replyError(h, P.EINVAL, `write of ${h.length} bytes exceeds the ${MAX_PAYLOAD}-byte maximum`)
      throw new ProtocolError(`write payload of ${h.length} bytes is too large`)
    }
    if (err) {
      await reader.skip(h.length)
      this.run1(h, () => this.replyError(h, err, 'write rejected'))
      return true
    }
    const held = await this.budget.acquire(h.length)
    let payload: Buffer
    try {
      payload = await reader.read(h.length)
    } catch (e) {
      this.budget.release(held)
      throw e
    }
    this.run1(h, () => this.doWrite(h, payload), held)
    return true
  }

  /** Run one request's handler in the background; the slot (and budget) are released when its reply is out. */
  private run1(h: W.RequestHeader, fn: () => Promise<void>, held = 0): void {
    fn()
      .catch((e) => this.init.log(`request ${P.COMMAND_NAMES[h.type] ?? h.type} failed: ${(e as Error)?.message ?? e}`))
      .finally(() => {
        if (held) this.budget.release(held)
        this.releaseSlot()
      })
  }

  private replyError(h: W.RequestHeader, error: number, message: string): Promise<void> {
    return this.writer.send([W.encodeErrorReply(this.session.structured, h.cookie, error, message)])
  }

  private replyOk(h: W.RequestHeader): Promise<void> {
    return this.writer.send([W.encodeSimpleReply(0, h.cookie)])
  }

  private async backendCall(h: W.RequestHeader, fn: () => Promise<void>): Promise<void> {
    try {
      await fn()
    } catch (e) {
      const err = errorToNbd(e)
      this.init.log(`${P.COMMAND_NAMES[h.type]} ${h.offset}+${h.length}: ${(e as Error)?.message ?? e}`)
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
    if (this.writer.closed && h.type !== P.CMD_FLUSH) return
    const fua = (h.flags & P.CMD_FLAG_FUA) !== 0
    switch (h.type) {
      case P.CMD_READ:
        return this.reads.read(h)
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

  private async doBlockStatus(h: W.RequestHeader): Promise<void> {
    let raw: Extent[]
    try {
      raw = await this.backend.blockStatus(h.offset, h.length)
      if (!Array.isArray(raw)) throw Object.assign(new Error('backend returned no extent list'), {errno: 'EIO'})
    } catch (e) {
      this.init.log(`block-status ${h.offset}+${h.length}: ${(e as Error)?.message ?? e}`)
      return this.replyError(h, errorToNbd(e), `block status failed: ${(e as Error)?.message ?? e}`)
    }
    const reqOne = (h.flags & P.CMD_FLAG_REQ_ONE) !== 0
    const extents = normalizeExtents(raw, h.length, reqOne ? 1 : MAX_EXTENTS)
    return this.writer.send([W.encodeBlockStatus(P.REPLY_FLAG_DONE, h.cookie, META_CONTEXT_ID, extents)])
  }
}
