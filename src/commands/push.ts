import {Args, Flags} from '#oclif'
import {BaseCommand} from '../cli/base-command.js'
import {clientTlsFromFlags, readTokenFlag, readTokenFromFlags, tlsFlags} from '../cli/chain-flags.js'
import {checkToken, readTokenFile} from '../cli/credential-files.js'
import {S3_CREDENTIALS_HINT, TOKEN_HINT} from '../cli/hints.js'
import {RemoteAuthError} from '../errors.js'
import {humanBytes, rate} from '../cli/format.js'
import {resolveRemote, resolveToken, type RemoteConfig} from '../cli/settings.js'
import {s3AccessFor} from '../cli/s3-settings.js'
import {signerFromKeyFile} from '../cli/signing.js'
import {seedStore} from '../peer/factory.js'
import {pushImage, type PushResult} from '../peer/push.js'

export default class Push extends BaseCommand<typeof Push> {
  static override interruptible = true
  static override summary = 'Send an image to a seed (vmi serve with a push token).'
  static override description = `Asks the remote which chunks it lacks (one batch request), uploads only those, then the manifest, then the ref: the remote's ref never names an image whose chunks are not all there. A re-run after an interruption sends only what is still missing.

Chunks travel and rest compressed (zstd, FORMAT.md "Compressed objects") when the remote stores compressed objects and is across a link: a bucket, or a vmi serve that says so and runs on another machine. A chunk the local store holds compressed goes as it is; a raw one is compressed here, and kept raw when that saves less than 1/16. To a vmi serve on this machine (its URL's host a loopback address, or a name or address of this machine's interfaces) chunks go as they rest, compressed or not: there compressing would cost the push most of its time and save nothing, and that server compresses raw chunks on send to every client across a link (serve --compress-sends). --compress compresses anyway (a seed that should rest compressed, also for a static server over its directory); --no-compress sends raw chunks (a bucket that vmi from before compression must read, or a fast link where the compression CPU is not worth it).

To vmi serve, chunks go in object batches of up to 16 MiB, two at a time; the server hashes every one and refuses wrong bytes, so the chunks are sent as the local store holds them, not hashed again here (--verify hashes them first). To a bucket they go in packs (FORMAT.md "Packs"): up to 16 MiB of chunks in one object and its index, two at a time, then the image's pack list before its manifest, so a pull reads them in a few large ranged GETs instead of one request per chunk; a bucket checks nothing, so each chunk is hashed before it goes. --no-pack puts one object per chunk instead (for readers older than packs, or a bucket other tools write chunks to). To a server without batches they go one request each, --concurrency at a time.

The token comes from --token, else --token-file, else $VMI_PUSH_TOKEN, else the remote's tokenFile in the store config ('vmi remote add NAME URL --token-file FILE'). Without any, the push stops before its first request.

--sign KEY signs the remote ref: a signature over the ref name, the image id and the time, in the SSH signature format (namespace vmi-ref), stored beside the ref (sigs/NAME/TAG) and beside the local ref of the same name. KEY is an unencrypted OpenSSH private key file, or a public key file (.pub) whose private key ssh-agent holds ($SSH_AUTH_SOCK; the way to use an encrypted key). Pulls with --verify-signers then accept the ref only with a signature by a key they allow for its name.

Exit codes: 0 ok, 2 an empty or unreadable token or CA file, a key file vmi cannot sign with (encrypted, unsupported type, no agent), 3 unknown image or remote name, or a token or CA file that does not exist, 9 the remote failed (a TLS certificate it does not trust included), 10 no push token, or the remote refused it, 130 interrupted (143 SIGTERM).`
  static override examples = [
    '<%= config.bin %> push debian:12',
    'VMI_PUSH_TOKEN=$(cat /etc/vmi/token) <%= config.bin %> push web:v2 https://seed.example:7070',
    '<%= config.bin %> push web:v2 https://seed.internal:7070 --token-file /etc/vmi/token --ca-cert /etc/vmi/ca.pem',
    '<%= config.bin %> push 3f2a9c origin --as web:stable',
    '<%= config.bin %> push web:v2 --verify   # hash each chunk here before it goes',
    '<%= config.bin %> push web:v2 http://127.0.0.1:7070 --compress   # a seed on this machine keeps the chunks compressed',
    '<%= config.bin %> push web:v2 s3://images/prod --no-compress --no-pack   # raw loose chunks, for an older vmi that reads the bucket',
    '<%= config.bin %> push web:v2 --sign ~/.ssh/id_ed25519',
    '<%= config.bin %> push web:v2 --sign ~/.ssh/id_ed25519.pub   # the private key in ssh-agent',
  ]
  static override args = {
    image: Args.string({description: 'Image: NAME[:TAG], id or unique id prefix.', required: true}),
    remote: Args.string({description: 'A configured remote name or URL (default: origin).'}),
  }
  static override flags = {
    token: Flags.string({summary: 'Push token (prefer --token-file or $VMI_PUSH_TOKEN: flags show up in ps).', exclusive: ['token-file']}),
    'token-file': Flags.string({summary: 'Read the push token from this file (first line).', exclusive: ['token']}),
    as: Flags.string({summary: 'Name:tag on the remote (default: the name given).'}),
    concurrency: Flags.integer({summary: 'Parallel uploads when chunks go one request each (a bucket, a server without object batches).', default: 8, min: 1, max: 64}),
    verify: Flags.boolean({summary: 'Hash every chunk before sending it, also to a server that checks uploads itself.', default: false}),
    pack: Flags.boolean({
      summary: 'To a bucket: chunks go in packs, a few large objects read by range (--no-pack: one object per chunk, for readers older than packs).',
      default: true,
      allowNo: true,
    }),
    compress: Flags.boolean({
      summary: 'Compress chunks (zstd) for a remote that stores them so, also a vmi serve on this machine (default: except to one on this machine; --no-compress: raw).',
      allowNo: true,
    }),
    sign: Flags.string({summary: 'Sign the remote ref with this SSH key: a private key file, or a .pub file whose key ssh-agent holds.'}),
    ...tlsFlags,
    ...readTokenFlag,
  }

  async run(): Promise<PushResult> {
    const store = await this.openStore()
    const config = (await store.readConfig()) as RemoteConfig
    const remote = resolveRemote(this.args.remote, config)
    const source = resolveToken({token: this.flags.token, tokenFile: this.flags['token-file']}, process.env, remote)
    let token: string | undefined
    if (source && 'file' in source) token = await readTokenFile(source.file)
    else if (source) checkToken((token = source.token), source.from)
    const tls = await clientTlsFromFlags(this.flags, remote)
    const readToken = await readTokenFromFlags(this.flags, remote)
    const signer = this.flags.sign === undefined ? undefined : await signerFromKeyFile(this.flags.sign, process.env.SSH_AUTH_SOCK)
    let r: PushResult
    try {
      const s3 = await s3AccessFor(remote.url, remote)
      r = await pushImage(store, this.args.image, seedStore(remote.url, {token, readToken, insecure: this.flags.insecure, tls, s3, pack: this.flags.pack}), {
        as: this.flags.as,
        concurrency: this.flags.concurrency,
        verify: this.flags.verify,
        compress: this.flags.compress,
        signer,
        progress: this.progress(),
        signal: this.signal,
      })
    } catch (err) {
      if (err instanceof RemoteAuthError) err.hint = /^s3:/i.test(remote.url) ? S3_CREDENTIALS_HINT : TOKEN_HINT
      throw err
    }
    this.log(
      `pushed ${r.id.slice(0, 12)}${r.ref ? ` as ${r.ref}` : ''} to ${r.remote}: ${r.uploadedChunks} chunks uploaded (${humanBytes(r.uploadedBytes)}${r.uploadedBytes < r.uploadedChunkBytes ? `, compressed from ${humanBytes(r.uploadedChunkBytes)}` : ''}), ${r.alreadyThere} already there, ${r.seconds.toFixed(2)} s, ${rate(r.uploadedBytes, r.seconds)}`,
    )
    if (r.signature) this.log(`signed ${r.ref} with ${r.signature.keyType} key ${r.signature.key}`)
    return r
  }
}
