/**
 * Which TLS certificates the HTTP clients (http-client.ts, the
 * pipelined client in pipelined-get.ts) trust, which client certificate they
 * present (a server started with --client-ca asks for one), and how a failure
 * to trust one is recognised (it is not retried: the answer will not change).
 */
import tls from 'node:tls'

/** OpenSSL's and Node's codes for a certificate the client does not trust. */
const TLS_TRUST_CODES = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_UNTRUSTED',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_SIGNATURE_FAILURE',
  'ERR_TLS_CERT_ALTNAME_INVALID',
])

/** Whether a message (say, a chain's summary of every source's failure) tells of an untrusted certificate. */
export function mentionsTlsTrust(message: string): boolean {
  return [...TLS_TRUST_CODES].some((c) => message.includes(c))
}

/** OpenSSL's alerts from a server that refused this client's certificate (or its absence). */
const CLIENT_CERT_REFUSALS = ['ALERT_CERTIFICATE_REQUIRED', 'ALERT_UNKNOWN_CA', 'ALERT_BAD_CERTIFICATE', 'ALERT_CERTIFICATE_EXPIRED', 'ALERT_HANDSHAKE_FAILURE']

/** Whether a message tells of a server refusing the client certificate at the handshake. */
export function mentionsClientCertRefusal(message: string): boolean {
  return CLIENT_CERT_REFUSALS.some((c) => message.includes(c))
}

/** Whether a connection failed because the server's certificate was not trusted. */
export function isTlsTrustError(err: unknown): boolean {
  const code = (err as {code?: unknown})?.code
  return typeof code === 'string' && TLS_TRUST_CODES.has(code)
}

/**
 * A client's TLS settings, as plain text (PEM): a private CA to trust
 * besides the system's roots, and a client certificate with its key. Plain
 * strings so the object can go to writer threads (a SecureContext cannot).
 */
export interface ClientTls {
  ca?: string
  /** Client certificate (chain), presented when a server asks for one; needs `key`. */
  cert?: string
  key?: string
}

const contexts = new Map<string, tls.SecureContext>()

/**
 * A TLS context trusting the system's roots plus `ca` (PEM, one certificate
 * or a bundle); undefined without `ca` (Node's default roots). Built once per
 * bundle and thread: parsing the roots costs milliseconds, too much for every
 * connection (and a context cannot be sent to a writer thread; the PEM text
 * can). Throws on a bundle that holds no usable certificate.
 */
export function trustContext(ca: string | undefined): tls.SecureContext | undefined {
  return clientContext({ca})
}

/**
 * The context for `t`: trust as trustContext, plus the client certificate
 * and key when given. undefined when `t` sets nothing (Node's defaults).
 * Cached like trustContext. Throws on a key that does not match its
 * certificate, or PEM that does not parse.
 */
export function clientContext(t: ClientTls | undefined): tls.SecureContext | undefined {
  if (t?.ca === undefined && t?.cert === undefined) return undefined
  const cacheKey = `${t.ca ?? ''}\0${t.cert ?? ''}\0${t.key ?? ''}`
  let ctx = contexts.get(cacheKey)
  if (!ctx) {
    ctx = tls.createSecureContext({...(t.ca !== undefined ? {ca: [...tls.rootCertificates, t.ca]} : {}), ...(t.cert !== undefined ? {cert: t.cert, key: t.key} : {})})
    contexts.set(cacheKey, ctx)
  }
  return ctx
}
