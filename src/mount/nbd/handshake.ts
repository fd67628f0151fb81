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
  io: HandshakeIo,
  exp: ExportInfo,
  backend: Pick<BlockBackend, 'size' | 'readOnly' | 'multiConnSafe'>,
): Promise<Session | undefined> {
  await io.send([H.encodeGreeting(P.FLAG_FIXED_NEWSTYLE | P.FLAG_NO_ZEROES)])
  const clientFlags = H.decodeClientFlags(await io.read(H.CLIENT_FLAGS_SIZE))
  if (clientFlags & ~(P.FLAG_C_FIXED_NEWSTYLE | P.FLAG_C_NO_ZEROES)) {
    throw new ProtocolError(`unknown client flags 0x${clientFlags.toString(16)}`)
  }
  const session: Session = {structured: false, metaContext: false, noZeroes: (clientFlags & P.FLAG_C_NO_ZEROES) !== 0}
  const ctx: OptionContext = {exp, backend, session, send: (bufs) => io.send(bufs)}
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
    const outcome = await handleOption(ctx, h.option, data)
    if (outcome !== 'continue') return outcome === 'go' ? session : undefined
  }
}
