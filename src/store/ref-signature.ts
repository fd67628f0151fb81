/**
 * Signed refs (docs/FORMAT.md, "Ref signatures"). A ref is the one mutable
 * thing a seed holds; its signature binds a ref name to a manifest id at a
 * time, with an SSH key, in the SSH signature format (namespace
 * REF_SIGNATURE_NAMESPACE). The file `sigs/<name>/<tag>` holds the signed
 * message followed by the armored signature:
 *
 *   vmi-ref-signature v1
 *   ref <name>:<tag>
 *   id <64 hex>
 *   time <ISO 8601 UTC, milliseconds, Z>
 *   -----BEGIN SSH SIGNATURE-----
 *   …
 *   -----END SSH SIGNATURE-----
 *
 * The signed message is exactly the first four lines, each ending in "\n".
 * Who may sign which ref is an allowed signers file: the identity checked
 * against its principals is `<name>:<tag>`.
 */
import {RefNotFoundError, SignatureError} from '../errors.js'
import {findAllowedSigner, type AllowedSigner} from '../security/allowed-signers.js'
import {fingerprint, type SshSigner} from '../security/ssh-keys.js'
import {parseSshsig, signSshsig, verifySshsig, type Sshsig} from '../security/sshsig.js'
import {isValidId} from './layout.js'
import type {LocalStore} from './local-store.js'
import {formatRef, parseRef, type RefName} from './ref.js'

/** The SSH signature namespace of ref signatures (`ssh-keygen -Y sign -n vmi-ref`). */
export const REF_SIGNATURE_NAMESPACE = 'vmi-ref'
const HEADER = 'vmi-ref-signature v1'
/** A signature file is a few hundred bytes (an RSA-8192 one under 3 KiB); anything much larger is not one. */
export const MAX_REF_SIGNATURE_BYTES = 16 * 1024
const TIME_RE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/

export interface RefSignature {
  ref: RefName
  id: string
  /** ISO 8601, as signed. */
  time: string
  /** The signed bytes. */
  message: Buffer
  sig: Sshsig
}

/** What a verified signature says, and which allowed signers line accepted it. */
export interface VerifiedSignature {
  ref: string
  id: string
  time: string
  keyType: string
  /** The key's SHA256 fingerprint, as ssh-keygen prints it. */
  key: string
  /** The principals pattern of the accepting line. */
  principals: string
  /** `file:line` of the accepting line. */
  allowedBy: string
}

/** The exact bytes signed for `ref` → `id` at `time`. */
export function refSignatureMessage(ref: RefName, id: string, time: string): Buffer {
  return Buffer.from(`${HEADER}\nref ${formatRef(ref)}\nid ${id}\ntime ${time}\n`, 'utf8')
}

/** Sign `ref` → `id` now: the whole signature file's text. */
export async function signRef(ref: RefName, id: string, signer: SshSigner, now = new Date()): Promise<string> {
  const message = refSignatureMessage(ref, id, now.toISOString())
  return message.toString('utf8') + (await signSshsig(message, REF_SIGNATURE_NAMESPACE, signer))
}

/** Decode a signature file; throws an Error saying what is wrong (the signature is not checked here). */
export function parseRefSignature(data: Buffer | string): RefSignature {
  const text = typeof data === 'string' ? data : data.toString('utf8')
  if (text.length > MAX_REF_SIGNATURE_BYTES) throw new Error(`${text.length} bytes, more than a ref signature`)
  const lines = text.split('\n')
  if (lines[0] !== HEADER) throw new Error(`does not start with "${HEADER}"`)
  const ref = /^ref (\S+)$/.exec(lines[1] ?? '')
  const id = /^id (\S+)$/.exec(lines[2] ?? '')
  const time = /^time (\S+)$/.exec(lines[3] ?? '')
  if (!ref || !id || !time) throw new Error('expected the lines "ref NAME:TAG", "id ID", "time TIME" after the header')
  if (!ref[1].includes(':')) throw new Error(`ref ${JSON.stringify(ref[1])} is not NAME:TAG`)
  const name = parseRef(ref[1])
  if (!isValidId(id[1])) throw new Error(`id ${JSON.stringify(id[1])} is not a 64-hex id`)
  if (!TIME_RE.test(time[1]) || !Number.isFinite(Date.parse(time[1]))) throw new Error(`time ${JSON.stringify(time[1])} is not ISO 8601 UTC with milliseconds`)
  const message = refSignatureMessage(name, id[1], time[1])
  return {ref: name, id: id[1], time: time[1], message, sig: parseSshsig(lines.slice(4).join('\n'))}
}

/**
 * Check that `data` (the signature file of `ref`, from `from`) signs
 * `ref` → `id` with a key `signers` allow for that ref name. Every refusal
 * is a SignatureError saying why.
 */
export function verifyRefSignature(data: Buffer | string | undefined, ref: RefName, id: string, signers: AllowedSigner[], from: string): VerifiedSignature {
  const name = formatRef(ref)
  const refuse = (reason: string, why: string) => new SignatureError(`ref ${name} from ${from} is not trusted: ${why}`, {data: {ref: name, id, reason}})
  if (data === undefined) throw refuse('missing', 'it has no signature')
  let s: RefSignature
  try {
    s = parseRefSignature(data)
  } catch (err) {
    throw refuse('malformed', `its signature file is malformed (${(err as Error).message})`)
  }
  if (formatRef(s.ref) !== name) throw refuse('mismatch', `its signature is for ref ${formatRef(s.ref)}`)
  if (s.id !== id) throw refuse('mismatch', `it points at ${id}, but its signature is for image ${s.id}`)
  if (!verifySshsig(s.sig, s.message, REF_SIGNATURE_NAMESPACE))
    throw refuse('bad', s.sig.namespace !== REF_SIGNATURE_NAMESPACE ? `its signature is for namespace ${JSON.stringify(s.sig.namespace)}, not ${REF_SIGNATURE_NAMESPACE}` : 'its signature does not verify')
  const key = fingerprint(s.sig.publicKey)
  const found = findAllowedSigner(signers, {key: s.sig.publicKey, principal: name, namespace: REF_SIGNATURE_NAMESPACE, time: Date.parse(s.time)})
  if ('reasons' in found)
    throw refuse('not-allowed', `it is signed by ${s.sig.publicKey.type} key ${key}, which the allowed signers do not accept for ${name}${found.reasons.length ? ` (${found.reasons.join('; ')})` : ' (the key is not listed)'}`)
  return {ref: name, id, time: s.time, keyType: s.sig.publicKey.type, key, principals: found.signer.principals, allowedBy: found.signer.where}
}

/**
 * Refuse a rollback: `verified` (a remote's signature of `ref`) signed
 * earlier than the signature of the same ref this store holds — when that
 * one verifies too (with the same signers, for whatever image it names). A
 * seed that serves an older, validly signed state of a ref (an image since
 * replaced) is then refused by every host that has seen the newer one.
 */
export async function checkNotOlder(store: LocalStore, ref: RefName, verified: VerifiedSignature, signers: AllowedSigner[], from: string): Promise<void> {
  const local = await store.readRefSignature(ref).catch(() => undefined)
  if (local === undefined) return
  let known: VerifiedSignature
  try {
    known = verifyRefSignature(local, ref, parseRefSignature(local).id, signers, store.name)
  } catch {
    return // a stale or untrusted local signature says nothing about time
  }
  if (Date.parse(known.time) > Date.parse(verified.time))
    throw new SignatureError(
      `ref ${verified.ref} from ${from} is not trusted: its signature (${verified.time}, image ${verified.id}) is older than the one ${store.name} holds (${known.time}, image ${known.id}): a rollback`,
      {data: {ref: verified.ref, id: verified.id, reason: 'rollback'}},
    )
}

/** Verify the signature stored beside a local ref (`vmi verify`). */
export async function verifyLocalRef(store: LocalStore, spec: string, signers: AllowedSigner[]): Promise<VerifiedSignature> {
  const ref = parseRef(spec)
  const id = await store.readRef(ref)
  if (id === undefined) throw new RefNotFoundError(`no ref ${formatRef(ref)} in ${store.name}`, {data: {spec}})
  return verifyRefSignature(await store.readRefSignature(ref), ref, id, signers, store.name)
}
