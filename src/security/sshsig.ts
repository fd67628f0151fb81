/**
 * Detached SSH signatures (openssh PROTOCOL.sshsig): what `ssh-keygen -Y
 * sign` writes and `ssh-keygen -Y verify` and git's `gpg.format=ssh` read.
 *
 * The blob: "SSHSIG", uint32 version 1, string public key, string
 * namespace, string reserved, string hash algorithm, string signature. The
 * key signs "SSHSIG", string namespace, string reserved, string hash
 * algorithm, string H(message). Armored: base64 between
 * `-----BEGIN SSH SIGNATURE-----` and `-----END SSH SIGNATURE-----`.
 */
import {createHash} from 'node:crypto'
import {parsePublicKeyBlob, sshString, sshUint32, SshReader, verifySignatureBlob, type SshPublicKey, type SshSigner} from './ssh-keys.js'

const MAGIC = Buffer.from('SSHSIG', 'latin1')
const VERSION = 1
export const SSHSIG_BEGIN = '-----BEGIN SSH SIGNATURE-----'
export const SSHSIG_END = '-----END SSH SIGNATURE-----'
/** ssh-keygen's line length for the armored base64. */
const LINE = 70

export interface Sshsig {
  publicKey: SshPublicKey
  namespace: string
  hashAlgorithm: 'sha256' | 'sha512'
  signature: Buffer
}

/** The bytes the key signs. */
function signedData(namespace: string, hashAlgorithm: string, message: Buffer): Buffer {
  const h = createHash(hashAlgorithm).update(message).digest()
  return Buffer.concat([MAGIC, sshString(namespace), sshString(''), sshString(hashAlgorithm), sshString(h)])
}

function armor(blob: Buffer): string {
  const b64 = blob.toString('base64')
  const lines = []
  for (let i = 0; i < b64.length; i += LINE) lines.push(b64.slice(i, i + LINE))
  return `${SSHSIG_BEGIN}\n${lines.join('\n')}\n${SSHSIG_END}\n`
}

/** Sign `message` in `namespace` (sha512): the armored signature, ending in a newline. */
export async function signSshsig(message: Buffer, namespace: string, signer: SshSigner): Promise<string> {
  if (namespace === '') throw new TypeError('an SSH signature namespace must not be empty')
  const sig = await signer.sign(signedData(namespace, 'sha512', message))
  // the signer (an agent) must have used the key asked for
  if (!verifySignatureBlob(signer.publicKey, signedData(namespace, 'sha512', message), sig)) throw new Error(`${signer.name} returned a signature that does not verify with its own key`)
  return armor(Buffer.concat([MAGIC, sshUint32(VERSION), sshString(signer.publicKey.blob), sshString(namespace), sshString(''), sshString('sha512'), sshString(sig)]))
}

/** Decode an armored signature; throws with the reason when it is not one. */
export function parseSshsig(armored: string): Sshsig {
  const text = armored.trim()
  if (!text.startsWith(SSHSIG_BEGIN) || !text.endsWith(SSHSIG_END)) throw new Error(`not an armored SSH signature (${SSHSIG_BEGIN} … ${SSHSIG_END})`)
  const b64 = text.slice(SSHSIG_BEGIN.length, text.length - SSHSIG_END.length).replace(/\s+/g, '')
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(b64)) throw new Error('the SSH signature is not base64')
  const r = new SshReader(Buffer.from(b64, 'base64'))
  if (!r.bytes(MAGIC.length).equals(MAGIC)) throw new Error('not an SSHSIG blob')
  const version = r.uint32()
  if (version !== VERSION) throw new Error(`SSH signature version ${version} is not supported`)
  const publicKey = parsePublicKeyBlob(r.string())
  const namespace = r.text()
  r.string() // reserved: ignored, as the spec asks
  const hashAlgorithm = r.text()
  if (hashAlgorithm !== 'sha256' && hashAlgorithm !== 'sha512') throw new Error(`hash algorithm ${JSON.stringify(hashAlgorithm)} is not sha256 or sha512`)
  const signature = r.string()
  if (!r.done) throw new Error('trailing bytes after the SSH signature')
  return {publicKey, namespace, hashAlgorithm, signature}
}

/**
 * Whether `sig` is a valid signature of `message` in `namespace` by the key
 * it carries (who that key belongs to is the caller's question: see
 * allowed-signers.ts).
 */
export function verifySshsig(sig: Sshsig, message: Buffer, namespace: string): boolean {
  if (sig.namespace !== namespace) return false
  return verifySignatureBlob(sig.publicKey, signedData(namespace, sig.hashAlgorithm, message), sig.signature)
}
