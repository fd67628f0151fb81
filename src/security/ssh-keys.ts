/**
 * SSH keys as OpenSSH writes them, read with node:crypto only: the wire
 * encoding of RFC 4251 (uint32, string, mpint), public key blobs and
 * `authorized_keys`-style lines (RFC 4253, RFC 5656, RFC 8709), signature
 * blobs, and unencrypted private keys in the "openssh-key-v1" format
 * (openssh PROTOCOL.key).
 *
 * Key types: ssh-ed25519, ecdsa-sha2-nistp256/384/521 and ssh-rsa (signing
 * with rsa-sha2-512). Security keys (sk-*), certificates and DSA are not
 * supported: they are refused by name.
 */
import {createHash, createPrivateKey, createPublicKey, sign as cryptoSign, verify as cryptoVerify, type KeyObject} from 'node:crypto'
import {UsageError} from '../errors.js'

// ------------------------------------------------------------ wire encoding

/** Reads the RFC 4251 types from a buffer; any overrun throws. */
export class SshReader {
  private pos = 0
  constructor(private readonly buf: Buffer) {}

  get done(): boolean {
    return this.pos === this.buf.length
  }

  get rest(): Buffer {
    return this.buf.subarray(this.pos)
  }

  bytes(n: number): Buffer {
    if (n < 0 || this.pos + n > this.buf.length) throw new Error('truncated SSH data')
    const out = this.buf.subarray(this.pos, this.pos + n)
    this.pos += n
    return out
  }

  uint32(): number {
    return this.bytes(4).readUInt32BE(0)
  }

  string(): Buffer {
    return this.bytes(this.uint32())
  }

  text(): string {
    return this.string().toString('utf8')
  }

  /** An mpint as its unsigned big-endian magnitude (leading zero bytes dropped). */
  mpint(): Buffer {
    const b = this.string()
    if (b.length > 0 && b[0] & 0x80) throw new Error('negative mpint')
    let i = 0
    while (i < b.length && b[i] === 0) i++
    return b.subarray(i)
  }
}

export function sshUint32(n: number): Buffer {
  const b = Buffer.alloc(4)
  b.writeUInt32BE(n, 0)
  return b
}

export function sshString(data: Buffer | string): Buffer {
  const b = typeof data === 'string' ? Buffer.from(data, 'utf8') : data
  return Buffer.concat([sshUint32(b.length), b])
}

/** An unsigned magnitude as an mpint (a zero byte in front when its top bit is set). */
export function sshMpint(magnitude: Buffer): Buffer {
  let i = 0
  while (i < magnitude.length && magnitude[i] === 0) i++
  const m = magnitude.subarray(i)
  return sshString(m.length > 0 && m[0] & 0x80 ? Buffer.concat([Buffer.from([0]), m]) : m)
}

const b64url = (b: Buffer) => b.toString('base64url')

// ------------------------------------------------------------ key types

const CURVES: Record<string, {crv: string; size: number; hash: string}> = {
  nistp256: {crv: 'P-256', size: 32, hash: 'sha256'},
  nistp384: {crv: 'P-384', size: 48, hash: 'sha384'},
  nistp521: {crv: 'P-521', size: 66, hash: 'sha512'},
}

/** A public key: its SSH type, its wire blob, and the node:crypto key. */
export interface SshPublicKey {
  type: string
  blob: Buffer
  key: KeyObject
}

function unsupported(type: string): Error {
  return new Error(`key type ${JSON.stringify(type)} is not supported (supported: ssh-ed25519, ecdsa-sha2-nistp256/384/521, ssh-rsa)`)
}

function leftPad(b: Buffer, size: number): Buffer {
  if (b.length > size) throw new Error('integer too large for its curve')
  return Buffer.concat([Buffer.alloc(size - b.length), b])
}

/** Decode a public key blob (the base64 field of a key line). Throws on anything malformed or unsupported. */
export function parsePublicKeyBlob(blob: Buffer): SshPublicKey {
  const r = new SshReader(blob)
  const type = r.text()
  let key: KeyObject
  if (type === 'ssh-ed25519') {
    const pk = r.string()
    if (pk.length !== 32) throw new Error('ed25519 public key is not 32 bytes')
    key = createPublicKey({key: {kty: 'OKP', crv: 'Ed25519', x: b64url(pk)}, format: 'jwk'})
  } else if (type === 'ssh-rsa') {
    const e = r.mpint()
    const n = r.mpint()
    key = createPublicKey({key: {kty: 'RSA', n: b64url(n), e: b64url(e)}, format: 'jwk'})
  } else if (type.startsWith('ecdsa-sha2-')) {
    const curveName = r.text()
    const curve = CURVES[curveName]
    if (!curve || type !== `ecdsa-sha2-${curveName}`) throw unsupported(type)
    const q = r.string()
    if (q.length !== 1 + 2 * curve.size || q[0] !== 4) throw new Error('ecdsa public point is not an uncompressed point of its curve')
    key = createPublicKey({key: {kty: 'EC', crv: curve.crv, x: b64url(q.subarray(1, 1 + curve.size)), y: b64url(q.subarray(1 + curve.size))}, format: 'jwk'})
  } else throw unsupported(type)
  if (!r.done) throw new Error('trailing bytes after the public key')
  return {type, blob, key}
}

/** `type base64 [comment]` (a `.pub` file, an allowed_signers key); the type must agree with the blob's. */
export function parsePublicKeyLine(line: string): SshPublicKey {
  const [type, b64] = line.trim().split(/\s+/)
  if (!type || !b64 || !/^[A-Za-z0-9+/]+={0,2}$/.test(b64)) throw new Error('not an SSH public key line (type base64 [comment])')
  const key = parsePublicKeyBlob(Buffer.from(b64, 'base64'))
  if (key.type !== type) throw new Error(`key line says ${type}, its key is ${key.type}`)
  return key
}

/** The key as one line: `type base64`. */
export function formatPublicKey(key: SshPublicKey): string {
  return `${key.type} ${key.blob.toString('base64')}`
}

/** OpenSSH's fingerprint: `SHA256:` and the unpadded base64 of the blob's SHA-256. */
export function fingerprint(key: SshPublicKey): string {
  return 'SHA256:' + createHash('sha256').update(key.blob).digest('base64').replace(/=+$/, '')
}

// ------------------------------------------------------------ signatures

/**
 * Verify an SSH signature blob (`string algorithm, string signature`) over
 * `data` with `key`. False for a wrong signature; an algorithm the key type
 * does not make (ssh-rsa with SHA-1 included) is false too.
 */
export function verifySignatureBlob(key: SshPublicKey, data: Buffer, sigBlob: Buffer): boolean {
  const r = new SshReader(sigBlob)
  const alg = r.text()
  const sig = r.string()
  if (!r.done) return false
  if (key.type === 'ssh-ed25519') return alg === 'ssh-ed25519' && sig.length === 64 && cryptoVerify(null, data, key.key, sig)
  if (key.type === 'ssh-rsa') {
    const hash = alg === 'rsa-sha2-512' ? 'sha512' : alg === 'rsa-sha2-256' ? 'sha256' : undefined
    return hash !== undefined && cryptoVerify(hash, data, key.key, sig)
  }
  const curve = CURVES[key.type.slice('ecdsa-sha2-'.length)]
  if (!curve || alg !== key.type) return false
  const rs = new SshReader(sig)
  const rr = rs.mpint()
  const ss = rs.mpint()
  if (!rs.done || rr.length > curve.size || ss.length > curve.size) return false
  return cryptoVerify(curve.hash, data, {key: key.key, dsaEncoding: 'ieee-p1363'}, Buffer.concat([leftPad(rr, curve.size), leftPad(ss, curve.size)]))
}

/** Something that signs with one key: its public key, and a signature blob for any data. */
export interface SshSigner {
  publicKey: SshPublicKey
  /** Where the key is, for messages ("key file …", "ssh-agent"). */
  name: string
  sign(data: Buffer): Promise<Buffer>
}

/** A signature blob made with a node:crypto private key of the given SSH type. */
function signWithKey(type: string, key: KeyObject, data: Buffer): Buffer {
  if (type === 'ssh-ed25519') return Buffer.concat([sshString('ssh-ed25519'), sshString(cryptoSign(null, data, key))])
  if (type === 'ssh-rsa') return Buffer.concat([sshString('rsa-sha2-512'), sshString(cryptoSign('sha512', data, key))])
  const curve = CURVES[type.slice('ecdsa-sha2-'.length)]
  const p1363 = cryptoSign(curve.hash, data, {key, dsaEncoding: 'ieee-p1363'})
  const inner = Buffer.concat([sshMpint(p1363.subarray(0, curve.size)), sshMpint(p1363.subarray(curve.size))])
  return Buffer.concat([sshString(type), sshString(inner)])
}

// ------------------------------------------------------------ openssh-key-v1 private keys

const PRIVATE_BEGIN = '-----BEGIN OPENSSH PRIVATE KEY-----'
const PRIVATE_END = '-----END OPENSSH PRIVATE KEY-----'
const AUTH_MAGIC = Buffer.from('openssh-key-v1\0', 'latin1')

/** Bytes to the unsigned big-endian magnitude node's JWK wants, from a BigInt. */
function bigToBuf(n: bigint): Buffer {
  let hex = n.toString(16)
  if (hex.length % 2) hex = '0' + hex
  return Buffer.from(hex, 'hex')
}

const bufToBig = (b: Buffer) => (b.length === 0 ? 0n : BigInt('0x' + b.toString('hex')))

/** The node:crypto private key for one decrypted private-key record; checks it matches `pub`. */
function privateKeyFrom(r: SshReader, pub: SshPublicKey): KeyObject {
  const type = r.text()
  if (type !== pub.type) throw new Error(`private key is ${type}, its public key ${pub.type}`)
  if (type === 'ssh-ed25519') {
    const pk = r.string()
    const sk = r.string()
    if (pk.length !== 32 || sk.length !== 64) throw new Error('malformed ed25519 private key')
    return createPrivateKey({key: {kty: 'OKP', crv: 'Ed25519', x: b64url(pk), d: b64url(sk.subarray(0, 32))}, format: 'jwk'})
  }
  if (type === 'ssh-rsa') {
    const [n, e, d, iqmp, p, q] = [r.mpint(), r.mpint(), r.mpint(), r.mpint(), r.mpint(), r.mpint()]
    const D = bufToBig(d)
    const dp = bigToBuf(D % (bufToBig(p) - 1n))
    const dq = bigToBuf(D % (bufToBig(q) - 1n))
    return createPrivateKey({key: {kty: 'RSA', n: b64url(n), e: b64url(e), d: b64url(d), p: b64url(p), q: b64url(q), dp: b64url(dp), dq: b64url(dq), qi: b64url(iqmp)}, format: 'jwk'})
  }
  const curveName = r.text()
  const curve = CURVES[curveName]
  if (!curve) throw unsupported(type)
  const q = r.string()
  const d = r.mpint()
  return createPrivateKey({
    key: {kty: 'EC', crv: curve.crv, x: b64url(q.subarray(1, 1 + curve.size)), y: b64url(q.subarray(1 + curve.size)), d: b64url(leftPad(d, curve.size))},
    format: 'jwk',
  })
}

/**
 * A signer from an unencrypted OpenSSH private key file's text
 * (`-----BEGIN OPENSSH PRIVATE KEY-----`, what ssh-keygen writes). An
 * encrypted key is refused (UsageError) with the way out: ssh-agent.
 * `file` names the key in messages.
 */
export function signerFromPrivateKey(text: string, file: string): SshSigner {
  const bad = (why: string, cause?: unknown) => new UsageError(`${file} is not a usable OpenSSH private key: ${why}`, {cause})
  const begin = text.indexOf(PRIVATE_BEGIN)
  const end = text.indexOf(PRIVATE_END)
  if (begin < 0 || end < begin) {
    if (/-----BEGIN (RSA|EC|DSA|ENCRYPTED)? ?PRIVATE KEY-----/.test(text)) throw bad('it is in PEM format; convert it with ssh-keygen -p -f FILE (which writes the OpenSSH format)')
    throw bad(`no ${PRIVATE_BEGIN} block`)
  }
  const raw = Buffer.from(text.slice(begin + PRIVATE_BEGIN.length, end).replace(/\s+/g, ''), 'base64')
  try {
    if (!raw.subarray(0, AUTH_MAGIC.length).equals(AUTH_MAGIC)) throw bad('not an openssh-key-v1 key')
    const r = new SshReader(raw.subarray(AUTH_MAGIC.length))
    const cipher = r.text()
    const kdf = r.text()
    r.string() // kdf options
    if (cipher !== 'none' || kdf !== 'none')
      throw new UsageError(`${file} is encrypted (cipher ${cipher}); vmi does not ask for passphrases: load it into ssh-agent (ssh-add ${file}) and sign with its public key file instead`, {
        data: {file},
      })
    if (r.uint32() !== 1) throw bad('it holds more than one key')
    const pub = parsePublicKeyBlob(r.string())
    const priv = new SshReader(r.string())
    if (priv.uint32() !== priv.uint32()) throw bad('check integers differ (damaged file)')
    const key = privateKeyFrom(priv, pub)
    const probe = Buffer.from('vmi key check')
    // the private half must match the public one (a damaged or spliced file)
    if (!verifySignatureBlob(pub, probe, signWithKey(pub.type, key, probe))) throw bad('its private and public halves do not match')
    return {publicKey: pub, name: `key file ${file}`, sign: async (data) => signWithKey(pub.type, key, data)}
  } catch (err) {
    if (err instanceof UsageError) throw err
    throw bad((err as Error).message, err)
  }
}
