// A hand-driven NBD client over one socket, for tests that need to send
// exactly the bytes they choose (hostile input, pipelining, unread replies).
import * as assert from 'uvu/assert'
import {once} from 'node:events'
import net from 'node:net'
import * as protocol from '../../dist/mount/nbd/protocol.js'
import * as handshake from '../../dist/mount/nbd/wire-handshake.js'
import * as transmission from '../../dist/mount/nbd/wire-transmission.js'

/** The NBD protocol's values and both phases' message layouts, as one namespace. */
export const P = {...protocol, ...handshake, ...transmission}

/** A hand-driven NBD client over one socket. */
export class Raw {
  static async connect(target) {
    const sock = net.connect(target)
    sock.on('error', () => {})
    await once(sock, 'connect')
    return new Raw(sock)
  }

  constructor(sock) {
    this.sock = sock
    this.chunks = []
    this.len = 0
    this.closed = false
    this.waiter = undefined
    sock.on('data', (d) => {
      this.chunks.push(d)
      this.len += d.length
      this.wake()
    })
    sock.on('close', () => {
      this.closed = true
      this.wake()
    })
  }

  wake() {
    const w = this.waiter
    this.waiter = undefined
    w?.()
  }

  async read(n, ms = 5000) {
    const deadline = Date.now() + ms
    while (this.len < n) {
      if (this.closed) throw new Error(`connection closed (wanted ${n} bytes, have ${this.len})`)
      if (Date.now() > deadline) throw new Error(`timeout waiting for ${n} bytes (have ${this.len})`)
      await new Promise((r) => {
        this.waiter = r
        setTimeout(r, 25)
      })
    }
    const all = Buffer.concat(this.chunks)
    this.chunks = [all.subarray(n)]
    this.len -= n
    return all.subarray(0, n)
  }

  /** true when the server closed the connection within ms (buffered data is discarded). */
  async waitClosed(ms = 3000) {
    const deadline = Date.now() + ms
    while (!this.closed && Date.now() < deadline) {
      await new Promise((r) => {
        this.waiter = r
        setTimeout(r, 25)
      })
    }
    return this.closed
  }

  write(b) {
    if (!this.sock.destroyed) this.sock.write(b)
  }

  destroy() {
    this.sock.destroy()
  }

  async greeting(clientFlags = P.FLAG_C_FIXED_NEWSTYLE | P.FLAG_C_NO_ZEROES) {
    const g = await this.read(18)
    assert.is(g.subarray(0, 16).toString('latin1'), 'NBDMAGICIHAVEOPT')
    assert.is(g.readUInt16BE(16), P.FLAG_FIXED_NEWSTYLE | P.FLAG_NO_ZEROES)
    const f = Buffer.alloc(4)
    f.writeUInt32BE(clientFlags >>> 0)
    this.write(f)
  }

  async optReply() {
    const h = P.decodeOptionReplyHeader(await this.read(20))
    assert.is(h.magic, P.OPTION_REPLY_MAGIC, 'option reply magic')
    const data = await this.read(h.length)
    return {...h, data}
  }

  async option(opt, data) {
    this.write(P.encodeOption(opt, data))
    return this.optReply()
  }

  /** Full fixed-newstyle handshake via NBD_OPT_GO; returns {size, flags}. */
  async handshake({structured = true, meta = true, name = ''} = {}) {
    await this.greeting()
    if (structured) assert.is((await this.option(P.OPT_STRUCTURED_REPLY)).type, P.REP_ACK)
    if (meta) {
      const r = await this.option(P.OPT_SET_META_CONTEXT, P.encodeMetaContextRequest(name, ['base:allocation']))
      assert.is(r.type, P.REP_META_CONTEXT)
      assert.is(r.data.subarray(4).toString(), 'base:allocation')
      this.contextId = r.data.readUInt32BE(0)
      assert.is((await this.optReply()).type, P.REP_ACK)
    }
    this.write(P.encodeOption(P.OPT_GO, P.encodeInfoRequest(name, [P.INFO_BLOCK_SIZE])))
    const info = {}
    for (;;) {
      const r = await this.optReply()
      if (r.type === P.REP_ACK) break
      assert.is(r.type, P.REP_INFO, `GO reply ${r.type.toString(16)}: ${r.data}`)
      const t = r.data.readUInt16BE(0)
      if (t === P.INFO_EXPORT) {
        info.size = Number(r.data.readBigUInt64BE(2))
        info.flags = r.data.readUInt16BE(10)
      } else if (t === P.INFO_BLOCK_SIZE) info.blockSize = [r.data.readUInt32BE(2), r.data.readUInt32BE(6), r.data.readUInt32BE(10)]
    }
    this.structured = structured
    return info
  }

  request(type, {flags = 0, cookie = 1n, offset = 0, length = 0, payload} = {}) {
    const h = P.encodeRequest(type, flags, cookie, offset, length)
    this.write(payload ? Buffer.concat([h, payload]) : h)
  }

  /**
   * One reply: simple ({simple, error, cookie, data}) or a whole structured
   * reply ({chunks, error, cookie, data (reassembled for reads)}).
   * `readLength`: data length of a successful simple read reply.
   */
  async reply({readLength = 0, offset = 0} = {}) {
    const magic = (await this.read(4)).readUInt32BE(0)
    if (magic === P.SIMPLE_REPLY_MAGIC) {
      const rest = await this.read(12)
      const error = rest.readUInt32BE(0)
      const cookie = rest.readBigUInt64BE(4)
      const data = error === 0 && readLength ? await this.read(readLength) : Buffer.alloc(0)
      return {simple: true, error, cookie, data}
    }
    assert.is(magic, P.STRUCTURED_REPLY_MAGIC, `reply magic 0x${magic.toString(16)}`)
    const chunks = []
    let error = 0
    let cookie
    let data
    for (let first = true; ; first = false) {
      const h = first ? P.decodeStructuredHeader(Buffer.concat([Buffer.alloc(4), await this.read(16)])) : P.decodeStructuredHeader(await this.read(20))
      if (!first) assert.is(h.magic, P.STRUCTURED_REPLY_MAGIC)
      const payload = await this.read(h.length)
      cookie ??= h.cookie
      assert.is(h.cookie, cookie, 'chunks of one reply share the cookie')
      chunks.push({type: h.type, flags: h.flags, payload})
      if (h.type & 0x8000) error = payload.readUInt32BE(0)
      if (h.type === P.REPLY_TYPE_OFFSET_DATA || h.type === P.REPLY_TYPE_OFFSET_HOLE) {
        data ??= []
        const at = Number(payload.readBigUInt64BE(0)) - offset
        if (h.type === P.REPLY_TYPE_OFFSET_DATA) data.push([at, payload.subarray(8)])
        else data.push([at, Buffer.alloc(payload.readUInt32BE(8))])
      }
      if (h.flags & P.REPLY_FLAG_DONE) break
    }
    let assembled = Buffer.alloc(0)
    if (data) {
      const end = Math.max(...data.map(([at, b]) => at + b.length))
      assembled = Buffer.alloc(end)
      for (const [at, b] of data) b.copy(assembled, at)
    }
    return {simple: false, error, cookie, chunks, data: assembled}
  }

  async readAt(offset, length, flags = 0, cookie = 7n) {
    this.request(P.CMD_READ, {flags, cookie, offset, length})
    const r = await this.reply({readLength: length, offset})
    assert.is(r.cookie, cookie)
    return r
  }
}
