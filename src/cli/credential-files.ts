/**
 * Files the CLI reads credentials from: push and read tokens (--token-file,
 * --read-token-file, a remote's tokenFile and readTokenFile), CA bundles
 * (--ca-cert, $VMI_CA_CERT, a remote's caCert) and client certificates
 * (--tls-client-cert/--tls-client-key). A missing file is "not found" (exit 3); an unreadable, empty or
 * malformed one is a bad argument (exit 2).
 */
import {createPrivateKey, createPublicKey, X509Certificate} from 'node:crypto'
import {readFile} from 'node:fs/promises'
import {FileNotFoundError, isErrno, UsageError} from '../errors.js'
import {clientContext, trustContext} from '../peer/tls-trust.js'

export async function readCredentialFile(file: string, what: string): Promise<Buffer> {
  try {
    return await readFile(file)
  } catch (err) {
    if (isErrno(err, 'ENOENT')) throw new FileNotFoundError(`${what} ${file} does not exist`, {cause: err})
    throw new UsageError(`cannot read ${what} ${file}: ${(err as Error).message}`, {cause: err})
  }
}

/** A push or read token from its file: the first line, which must be one word. */
export async function readTokenFile(file: string, what = 'push token'): Promise<string> {
  const token = (await readCredentialFile(file, 'token file')).toString('utf8').split(/\r?\n/)[0].trim()
  checkToken(token, `token file ${file}`, what)
  return token
}

/** A token must be one non-empty word (it travels as `Authorization: Bearer TOKEN`). */
export function checkToken(token: string, from: string, what = 'push token'): void {
  if (token === '') throw new UsageError(`the ${what} (${from}) is empty`)
  if (/\s/.test(token)) throw new UsageError(`the ${what} (${from}) must not contain whitespace`)
  // it travels in an HTTP header, which carries visible ASCII only
  if (!/^[\x21-\x7e]+$/.test(token)) throw new UsageError(`the ${what} (${from}) must be printable ASCII (it is sent in an HTTP header)`)
}

/** A client certificate and its key (PEM), checked to load together. */
export async function readClientCertFiles(certFile: string, keyFile: string): Promise<{cert: string; key: string}> {
  const cert = (await readCredentialFile(certFile, 'TLS client certificate')).toString('utf8')
  const key = (await readCredentialFile(keyFile, 'TLS client key')).toString('utf8')
  if (!cert.includes('-----BEGIN CERTIFICATE-----')) throw new UsageError(`TLS client certificate ${certFile} holds no PEM certificate (-----BEGIN CERTIFICATE-----)`)
  try {
    clientContext({cert, key})
    checkKeyOfCert(cert, key)
  } catch (err) {
    throw new UsageError(`TLS client certificate ${certFile} and key ${keyFile} do not load: ${(err as Error).message}`, {cause: err})
  }
  return {cert, key}
}

/**
 * Throws unless `key` is the private key of the (first) certificate in
 * `cert`. OpenSSL refuses a mismatched key of the certificate's own type
 * when loading them, but takes one of another type (an Ed25519 key for an
 * EC certificate), and every handshake then fails.
 */
export function checkKeyOfCert(cert: string | Buffer, key: string | Buffer): void {
  const certKey = new X509Certificate(cert).publicKey
  if (!certKey.equals(createPublicKey(createPrivateKey(key)))) throw new Error('the key is not the certificate\'s (its public key differs)')
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
