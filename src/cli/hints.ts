/**
 * What the CLI adds to a library error: the flags, variables and commands
 * that fix it (library messages never name flags).
 */
import {FileExistsError, RemoteAuthError, RemoteError, RemoteTlsError} from '../errors.js'
import {mentionsClientCertRefusal, mentionsTlsTrust} from '../peer/tls-trust.js'
import type {LocalStore} from '../store/local-store.js'
import {parseRef} from '../store/ref.js'

export const TOKEN_HINT =
  "give the seed's push token with --token-file FILE, $VMI_PUSH_TOKEN or --token, or store it with the remote: 'vmi remote add NAME URL --token-file FILE'"

export const S3_CREDENTIALS_HINT =
  'S3 credentials come from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN), else ~/.aws/credentials or ~/.aws/config for the profile AWS_PROFILE names; check the keys, the endpoint (AWS_ENDPOINT_URL_S3) and the region (AWS_REGION)'

export const TLS_HINT =
  "to trust a private CA, pass its certificate with --ca-cert FILE (or $VMI_CA_CERT, or 'vmi remote add NAME URL --ca-cert FILE'); --insecure skips verification"

export const CLIENT_CERT_HINT =
  "the server requires a client certificate signed by its CA (vmi serve --client-ca): give one with --tls-client-cert FILE --tls-client-key FILE (or $VMI_TLS_CLIENT_CERT/$VMI_TLS_CLIENT_KEY, or 'vmi remote add NAME URL --tls-client-cert FILE --tls-client-key FILE'); an expired certificate, or one from another CA, is refused too"

export const CONNECTION_RESET_TLS_HINT =
  "an https server closed the connection before answering: a server that requires client certificates (vmi serve --client-ca) does that when it refuses the one given (expired, or signed by another CA than its --client-ca); check the certificate with 'openssl x509 -noout -dates -issuer -in FILE'. Else the server may have restarted: try again"

export const READ_TOKEN_HINT =
  "the server requires a read token (vmi serve --read-token-file): give it with --read-token-file FILE, $VMI_READ_TOKEN, or store it with the remote: 'vmi remote add NAME URL --read-token-file FILE'"

/** A hint any command may give (push adds TOKEN_HINT itself: a 401 to a pull is not about push tokens). */
export function hintFor(err: unknown): string | undefined {
  // only the output files of export and save are refused as existing, and both take --force
  if (err instanceof FileExistsError) return '--force replaces it'
  if (err instanceof RemoteTlsError) return TLS_HINT
  if (err instanceof RemoteAuthError && err.data.s3Code !== undefined) return S3_CREDENTIALS_HINT
  if (err instanceof RemoteError && mentionsTlsTrust(err.message)) return TLS_HINT
  if (err instanceof RemoteError && mentionsClientCertRefusal(err.message)) return CLIENT_CERT_HINT
  // TLS 1.3: the server checks a client certificate after the client's side of the handshake is done, so a refusal reaches the client as a reset
  if (err instanceof RemoteError && /https:\/\//.test(err.message) && /ECONNRESET|socket hang up/.test(err.message)) return CONNECTION_RESET_TLS_HINT
  if (err instanceof RemoteAuthError) return READ_TOKEN_HINT
  return undefined
}

/**
 * An image lacks chunks (evicted, a lazy mount, damage): where to get them
 * again — the remotes it came from when known — and fsck to see the extent.
 */
export async function missingChunksHint(store: LocalStore, spec: string): Promise<string> {
  const id = await store.resolveId(spec).catch(() => undefined)
  const source = id ? await lastSource(store, id) : undefined
  // a pull takes NAME:TAG or a full id, not an id prefix
  const named = await Promise.resolve()
    .then(() => store.readRef(parseRef(spec)))
    .catch(() => undefined)
  if (id && named !== id) spec = id
  const fsck = "'vmi fsck' lists every missing or damaged chunk"
  if (source) return `fetch what is missing again with 'vmi pull ${spec} ${source}'; ${fsck}`
  return `no remote is known to hold this image: pull it again from a seed that has it ('vmi pull ${spec} REMOTE'), or load it from a bundle; ${fsck}`
}

/** The remote image `id` last came from (a pull, a lazy mount), when the store knows one. */
export async function lastSource(store: LocalStore, id: string): Promise<string | undefined> {
  const sources = await store.getSources(id).catch(() => [])
  return sources[sources.length - 1]
}
