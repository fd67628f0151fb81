/**
 * Signed refs on the command line: the key `push --sign` signs with, and
 * the allowed signers `pull`, `mount` and `verify` check against
 * (--verify-signers, else $VMI_ALLOWED_SIGNERS, else config allowedSigners).
 */
import {Flags} from '#oclif'
import {UsageError} from '../errors.js'
import {parseAllowedSigners, type AllowedSigner} from '../security/allowed-signers.js'
import {agentSigner} from '../security/ssh-agent.js'
import {parsePublicKeyLine, signerFromPrivateKey, type SshSigner} from '../security/ssh-keys.js'
import {readCredentialFile} from './credential-files.js'
import type {Env} from './settings.js'

export const verifySignersFlag = {
  'verify-signers': Flags.string({
    summary: "Allowed signers file (git's format): a NAME:TAG must be signed by a key it allows for that name. Else $VMI_ALLOWED_SIGNERS, else config allowedSigners.",
  }),
}

/** The allowed signers file: the flag, else $VMI_ALLOWED_SIGNERS, else the store config's allowedSigners; undefined when none. */
export function resolveAllowedSignersFile(flag: string | undefined, env: Env, config: object): string | undefined {
  if (flag !== undefined) return flag
  if (env.VMI_ALLOWED_SIGNERS) return env.VMI_ALLOWED_SIGNERS
  const v = (config as {allowedSigners?: unknown}).allowedSigners
  return typeof v === 'string' ? v : undefined
}

/** Read and parse an allowed signers file: missing is exit 3, unreadable, malformed or without a key exit 2. */
export async function readAllowedSigners(file: string): Promise<AllowedSigner[]> {
  const text = (await readCredentialFile(file, 'allowed signers file')).toString('utf8')
  const signers = parseAllowedSigners(text, file)
  if (signers.length === 0) throw new UsageError(`allowed signers file ${file} lists no key: every signed ref would be refused`)
  return signers
}

/** The allowed signers a command checks against, or undefined when none is configured. */
export async function allowedSignersFromSettings(flag: string | undefined, config: object): Promise<AllowedSigner[] | undefined> {
  const file = resolveAllowedSignersFile(flag, process.env, config)
  return file === undefined ? undefined : readAllowedSigners(file)
}

/**
 * The signer of `push --sign KEY`: KEY is an unencrypted OpenSSH private
 * key file, or a public key file (`.pub`) whose private key ssh-agent holds
 * (the agent at `agentSocket`, $SSH_AUTH_SOCK) — as git's user.signingKey.
 */
export async function signerFromKeyFile(file: string, agentSocket: string | undefined): Promise<SshSigner> {
  const text = (await readCredentialFile(file, 'signing key file')).toString('utf8')
  if (text.includes('PRIVATE KEY-----')) return signerFromPrivateKey(text, file)
  let publicKey
  try {
    publicKey = parsePublicKeyLine(text.split('\n').find((l) => l.trim() !== '') ?? '')
  } catch (err) {
    throw new UsageError(`signing key file ${file} is neither an OpenSSH private key nor a public key line: ${(err as Error).message}`, {cause: err})
  }
  if (!agentSocket) throw new UsageError(`signing key file ${file} is a public key: signing with it needs ssh-agent holding its private key, and SSH_AUTH_SOCK is not set`)
  return agentSigner(agentSocket, publicKey)
}
