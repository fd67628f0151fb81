/**
 * What the CLI adds to a library error: the flags, variables and commands
 * that fix it (library messages never name flags).
 */
import {RemoteAuthError, RemoteError, RemoteTlsError} from '../errors.js'
import {mentionsTlsTrust} from '../peer/tls-trust.js'

export const TOKEN_HINT =
  "give the seed's push token with --token-file FILE, $VMI_PUSH_TOKEN or --token, or store it with the remote: 'vmi remote add NAME URL --token-file FILE'"

export const TLS_HINT =
  "to trust a private CA, pass its certificate with --ca-cert FILE (or $VMI_CA_CERT, or 'vmi remote add NAME URL --ca-cert FILE'); --insecure skips verification"

export function hintFor(err: unknown): string | undefined {
  if (err instanceof RemoteAuthError) return TOKEN_HINT
  if (err instanceof RemoteTlsError) return TLS_HINT
  if (err instanceof RemoteError && mentionsTlsTrust(err.message)) return TLS_HINT
  return undefined
}
