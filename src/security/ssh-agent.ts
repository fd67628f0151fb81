/**
 * Signing through ssh-agent (draft-miller-ssh-agent): one
 * SSH_AGENTC_SIGN_REQUEST on the agent's unix socket. The private key never
 * leaves the agent, so an encrypted key, or one on a hardware token the
 * agent fronts, signs without vmi asking for anything.
 */
import net from 'node:net'
import {UsageError} from '../errors.js'
import {sshString, sshUint32, SshReader, type SshPublicKey, type SshSigner} from './ssh-keys.js'

const SSH_AGENT_FAILURE = 5
const SSH_AGENTC_SIGN_REQUEST = 13
const SSH_AGENT_SIGN_RESPONSE = 14
/** Ask for rsa-sha2-512 rather than the agent's default SHA-1 for an RSA key. */
const SSH_AGENT_RSA_SHA2_512 = 4
/** An answer larger than this is not a signature. */
const MAX_ANSWER = 256 * 1024
const TIMEOUT_MS = 30_000

/** One request, one answer: both framed as uint32 length + body. */
function agentRequest(socketPath: string, body: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const sock = net.createConnection(socketPath)
    const parts: Buffer[] = []
    let got = 0
    const fail = (err: Error) => {
      sock.destroy()
      reject(err)
    }
    sock.setTimeout(TIMEOUT_MS, () => fail(new Error(`no answer within ${TIMEOUT_MS / 1000} s (waiting for a confirmation?)`)))
    sock.on('connect', () => sock.write(Buffer.concat([sshUint32(body.length), body])))
    sock.on('data', (d: Buffer) => {
      parts.push(d)
      got += d.length
      if (got >= 4) {
        const all = Buffer.concat(parts)
        const len = all.readUInt32BE(0)
        if (len > MAX_ANSWER) return fail(new Error(`answer of ${len} bytes`))
        if (all.length >= 4 + len) {
          sock.end()
          resolve(all.subarray(4, 4 + len))
        }
      }
    })
    sock.on('error', fail)
    sock.on('close', () => reject(new Error('the agent closed the connection without answering')))
  })
}

/**
 * A signer that asks the agent at `socketPath` to sign with `publicKey`
 * (which the agent must hold). Failures are UsageErrors naming the agent.
 */
export function agentSigner(socketPath: string, publicKey: SshPublicKey): SshSigner {
  const name = `ssh-agent at ${socketPath}`
  return {
    publicKey,
    name,
    async sign(data: Buffer): Promise<Buffer> {
      const flags = publicKey.type === 'ssh-rsa' ? SSH_AGENT_RSA_SHA2_512 : 0
      let answer: Buffer
      try {
        answer = await agentRequest(socketPath, Buffer.concat([Buffer.from([SSH_AGENTC_SIGN_REQUEST]), sshString(publicKey.blob), sshString(data), sshUint32(flags)]))
      } catch (err) {
        throw new UsageError(`cannot sign through the ${name}: ${(err as Error).message}`, {cause: err})
      }
      if (answer[0] === SSH_AGENT_FAILURE) throw new UsageError(`the ${name} refused to sign (it does not hold that key? ssh-add -L lists the keys it has)`)
      if (answer[0] !== SSH_AGENT_SIGN_RESPONSE) throw new UsageError(`the ${name} answered message type ${answer[0]}, not a signature`)
      try {
        return new SshReader(answer.subarray(1)).string()
      } catch (err) {
        throw new UsageError(`the ${name} sent a malformed signature`, {cause: err})
      }
    },
  }
}
