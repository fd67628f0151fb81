/**
 * Files the CLI reads credentials from: push tokens (--token-file, a
 * remote's tokenFile) and CA bundles (--ca-cert, $VMI_CA_CERT, a remote's
 * caCert). A missing file is "not found" (exit 3); an unreadable, empty or
 * malformed one is a bad argument (exit 2).
 */
import {readFile} from 'node:fs/promises'
import {FileNotFoundError, isErrno, UsageError} from '../errors.js'
import {trustContext} from '../peer/tls-trust.js'

export async function readCredentialFile(file: string, what: string): Promise<Buffer> {
  try {
    return await readFile(file)
  } catch (err) {
    if (isErrno(err, 'ENOENT')) throw new FileNotFoundError(`${what} ${file} does not exist`, {cause: err})
    throw new UsageError(`cannot read ${what} ${file}: ${(err as Error).message}`, {cause: err})
  }
}

/** A push token from its file: the first line, which must be one word. */
export async function readTokenFile(file: string): Promise<string> {
  const token = (await readCredentialFile(file, 'token file')).toString('utf8').split(/\r?\n/)[0].trim()
  checkToken(token, `token file ${file}`)
  return token
}

/** A token must be one non-empty word (it travels as `Authorization: Bearer TOKEN`). */
export function checkToken(token: string, from: string): void {
  if (token === '') throw new UsageError(`the push token (${from}) is empty`)
  if (/\s/.test(token)) throw new UsageError(`the push token (${from}) must not contain whitespace`)
}

/** A PEM bundle of CA certificates: at least one certificate, all of them parsable. */
export async function readCaFile(file: string): Promise<string> {
  const pem = (await readCredentialFile(file, 'CA certificate file')).toString('utf8')
  if (!pem.includes('-----BEGIN CERTIFICATE-----')) throw new UsageError(`CA certificate file ${file} holds no PEM certificate (-----BEGIN CERTIFICATE-----)`)
  try {
    trustContext(pem)
  } catch (err) {
    throw new UsageError(`CA certificate file ${file} is not a valid PEM bundle: ${(err as Error).message}`, {cause: err})
  }
  return pem
}
