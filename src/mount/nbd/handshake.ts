/**
 * The fixed-newstyle handshake (the only one served): greeting, client
 * flags, then options until the client goes to transmission or aborts.
 */
import type {BlockBackend} from './block-backend.js'
import {ProtocolError} from './errors.js'
import {MAX_OPTION_LENGTH, MAX_OPTIONS} from './limits.js'
import {handleOption, optError, type OptionContext} from './options.js'
import * as P from './protocol.js'
import type {ExportInfo, Session} from './session.js'
import * as H from './wire-handshake.js'

/**
 * TLS, when the server has it (tls.ts): required before any other option.
 * `start` sends the ACK to STARTTLS, runs the TLS handshake and returns the
 * connection's io over TLS; it throws when the handshake fails.
 */
export interface HandshakeTls {
  start(ack: Buffer): Promise<HandshakeIo>
}

/** What the handshake needs from its connection. */
export interface HandshakeIo {
  read(n: number): Promise<Buffer>
  send(bufs: Buffer[]): Promise<void>
  /** The server is shutting down: refuse further options. */
  stopping(): boolean
}

/**
 * Negotiate with one client. Returns the session to enter transmission
 * with, or undefined when the client aborted or the server is shutting down.
 * Throws ProtocolError when the client breaks the protocol.
 */
export async function handshake(
  // reassigned once TLS starts: every later read and reply goes through TLS
  io: HandshakeIo,
  exp: ExportInfo,
  backend: Pick<BlockBackend, 'size' | 'readOnly' | 'multiConnSafe'>,
  tls?: HandshakeTls,
): Promise<Session | undefined> {
  await io.send([H.encodeGreeting(P.FLAG_FIXED_NEWSTYLE | P.FLAG_NO_ZEROES)])
  const clientFlags = H.decodeClientFlags(await io.read(H.CLIENT_FLAGS_SIZE))
  if (clientFlags & ~(P.FLAG_C_FIXED_NEWSTYLE | P.FLAG_C_NO_ZEROES)) {
    throw new ProtocolError(`unknown client flags 0x${clientFlags.toString(16)}`)
  }
  const session: Session = {structured: false, metaContext: false, noZeroes: (clientFlags & P.FLAG_C_NO_ZEROES) !== 0}
  const ctx: OptionContext = {exp, backend, session, send: (bufs) => io.send(bufs)}
  let secured = false
  for (let count = 0; ; count++) {
    const h = H.decodeOptionHeader(await io.read(H.OPTION_HEADER_SIZE))
    if (h.magic !== P.IHAVEOPT) throw new ProtocolError('bad option magic')
    if (count >= MAX_OPTIONS) throw new ProtocolError(`more than ${MAX_OPTIONS} options`)
    if (h.length > MAX_OPTION_LENGTH) throw new ProtocolError(`option ${h.option} data of ${h.length} bytes is too long`)
    const data = await io.read(h.length)
    if (io.stopping()) {
      await optError(ctx, h.option, P.REP_ERR_SHUTDOWN, 'server is shutting down')
      return undefined
    }
    if (tls && !secured) {
      if (h.option === P.OPT_STARTTLS) {
        if (data.length) {
          await optError(ctx, h.option, P.REP_ERR_INVALID, 'NBD_OPT_STARTTLS takes no data')
          continue
        }
        io = await tls.start(H.encodeOptionReply(h.option, P.REP_ACK))
        secured = true
        // nothing negotiated in the clear carries over into TLS (none could be: see below)
        session.structured = false
        session.metaContext = false
        continue
      }
      // EXPORT_NAME has no error reply: the spec says disconnect
      if (h.option === P.OPT_EXPORT_NAME) throw new ProtocolError('NBD_OPT_EXPORT_NAME without TLS, which this server requires')
      if (h.option !== P.OPT_ABORT) {
        await optError(ctx, h.option, P.REP_ERR_TLS_REQD, 'TLS is required: negotiate NBD_OPT_STARTTLS first')
        continue
      }
    } else if (tls && h.option === P.OPT_STARTTLS) {
      await optError(ctx, h.option, P.REP_ERR_INVALID, 'TLS is already negotiated')
      continue
    }
    const outcome = await handleOption(ctx, h.option, data)
    if (outcome !== 'continue') return outcome === 'go' ? session : undefined
  }
}
