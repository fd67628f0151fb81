/**
 * Who may read: with read authorization configured (a read token, or a
 * client CA), every request must carry the read token or the push token as
 * `Authorization: Bearer TOKEN`, or come over a TLS connection whose client
 * certificate verified against the client CA. The TLS server already refuses
 * a connection without such a certificate at the handshake (requestCert,
 * rejectUnauthorized); the check here is the same rule stated again at the
 * one place every request passes, so a mistake in the server's TLS options
 * cannot open it.
 */
import {createHash, timingSafeEqual} from 'node:crypto'
import type {IncomingMessage} from 'node:http'
import type {TLSSocket} from 'node:tls'
import {BEARER_CHALLENGE, parseBearer} from '../wire.js'
import {HttpFailure} from './http-io.js'

/** A token's SHA-256: equal-length digests compare in time that does not depend on the token. */
export function tokenDigest(token: string): Buffer {
  return createHash('sha256').update(token, 'utf8').digest()
}

export interface ReadAccessInit {
  /** Tokens any one of which allows reading (the read token, and the push token). */
  tokens: string[]
  /** Require a verified client certificate (mutual TLS). */
  clientCert: boolean
}

export class ReadAccess {
  private readonly digests: Buffer[]
  private readonly clientCert: boolean

  constructor(init: ReadAccessInit) {
    this.digests = init.tokens.map(tokenDigest)
    this.clientCert = init.clientCert
  }

  /** Throws the refusal (401 or 403) for a request that may not read. */
  check(req: IncomingMessage): void {
    if (this.clientCert) {
      const sock = req.socket as Partial<TLSSocket>
      if (sock.authorized !== true) throw new HttpFailure(403, 'a client certificate signed by the client CA is required')
      // mTLS alone is enough: a token is asked for only when no client CA is configured
      return
    }
    const token = parseBearer(req.headers.authorization)
    if (token === undefined) throw new HttpFailure(401, 'read token required', {'WWW-Authenticate': BEARER_CHALLENGE})
    const d = tokenDigest(token)
    if (!this.digests.some((x) => timingSafeEqual(d, x))) throw new HttpFailure(403, 'wrong read token')
  }
}
