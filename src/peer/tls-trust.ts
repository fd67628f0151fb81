/**
 * Which TLS certificates the HTTP clients (http-client.ts, the
 * pipelined client in pipelined-get.ts) trust, and how a failure to trust
 * one is recognised (it is not retried: the answer will not change).
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

/** Whether a connection failed because the server's certificate was not trusted. */
export function isTlsTrustError(err: unknown): boolean {
  const code = (err as {code?: unknown})?.code
  return typeof code === 'string' && TLS_TRUST_CODES.has(code)
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
  if (ca === undefined) return undefined
  let ctx = contexts.get(ca)
  if (!ctx) contexts.set(ca, (ctx = tls.createSecureContext({ca: [...tls.rootCertificates, ca]})))
  return ctx
}
