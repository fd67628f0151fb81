/**
 * NBD over TLS (the NBD protocol's STARTTLS, doc/proto.md "TLS support"):
 * after the server's ACK to NBD_OPT_STARTTLS, the plain connection becomes
 * a TLS one, the server being the TLS server, and negotiation goes on inside
 * it. This server runs in the spec's "forced TLS" mode: before TLS, every
 * option but STARTTLS and ABORT is refused with NBD_REP_ERR_TLS_REQD.
 *
 * The handshake is run by a tls.Server that never listens, handed the
 * socket as a new connection: it applies requestCert/rejectUnauthorized the
 * way an HTTPS server does (a client certificate that does not verify ends
 * the connection). A bare TLSSocket would complete the handshake with any
 * client certificate and leave the check to its caller.
 */
import type net from 'node:net'
import tls from 'node:tls'
import {ConnClosed} from './errors.js'

export interface NbdTls {
  /** PEM certificate (chain) and key of the server. */
  cert: string | Buffer
  key: string | Buffer
  /** PEM CA bundle: a client must show a certificate that chains to it. */
  clientCa?: string | Buffer
}

/** The TLS server side of `raw`, once the handshake succeeded (and the client certificate verified, when one is required). */
export function upgradeToTls(raw: net.Socket, cfg: NbdTls): Promise<tls.TLSSocket> {
  const server = tls.createServer({
    cert: cfg.cert,
    key: cfg.key,
    ...(cfg.clientCa !== undefined ? {ca: cfg.clientCa, requestCert: true, rejectUnauthorized: true} : {}),
  })
  return new Promise<tls.TLSSocket>((resolve, reject) => {
    const fail = (why: string) => {
      raw.destroy()
      reject(new ConnClosed(`TLS handshake failed: ${why}`))
    }
    server.once('secureConnection', (s: tls.TLSSocket) => {
      raw.off('close', onClose)
      resolve(s)
    })
    server.once('tlsClientError', (err: Error) => fail(err.message))
    const onClose = () => fail('the connection closed')
    raw.once('close', onClose)
    server.emit('connection', raw)
  })
}
