import {Args, Flags} from '#oclif'
import {BaseCommand} from '../cli/base-command.js'
import {humanBytes, rate} from '../cli/format.js'
import {resolveMaxCache, type RemoteConfig} from '../cli/settings.js'
import {chainFlags, chainFromFlags} from '../cli/chain-flags.js'
import {allowedSignersFromSettings, verifySignersFlag} from '../cli/signing.js'
import {pullImage, type PullResult} from '../peer/pull.js'

export default class Pull extends BaseCommand<typeof Pull> {
  static override interruptible = true
  static override summary = 'Bring an image into the local store, from peers first and the seed only for what no peer has.'
  static override description = `Every chunk the image needs comes through the chain local store → peers → seed, and is verified against its id before it is stored. With peers, each chunk's owner (rendezvous hashing over the peer list, balanced over the image's chunks) is asked first; it fetches from the seed once for all hosts. Resumable: a re-run fetches only what is still missing. Ends with "local X, peers Y, seed Z".

By image id, a pull works with the seed down as long as a peer has the image (content addressing makes any holder trustworthy); by NAME:TAG the seed is asked what the name points at.

With --verify-signers FILE (or $VMI_ALLOWED_SIGNERS, or config allowedSigners), a pull by NAME:TAG first fetches the ref's signature (written by 'vmi push --sign') and refuses the ref, before fetching anything else, unless it signs this name and this image id with a key FILE allows for the name (git's allowed_signers format; principals are patterns matched against NAME:TAG, e.g. web:* or *). The verified signature is stored beside the local ref ('vmi verify'). A pull by image id needs no signature: the id is the trust.

Exit codes: 0 ok, 2 bad arguments (a bad line in a peers file or an allowed signers file is named by file:line), 3 the seed has no such name, or the remote name, peers file or allowed signers file does not exist, 9 no source had a chunk or all failed (the message names the chunk and every source tried), 10 the ref's signature is missing, bad, or by a key not allowed for its name (nothing was pulled), 130 interrupted (143 SIGTERM).`
  static override examples = [
    '<%= config.bin %> pull debian:12',
    '<%= config.bin %> pull debian:12 https://seed.example:7070 --peer http://10.0.0.2:7070 --peer http://10.0.0.3:7070',
    '<%= config.bin %> pull 3f2a9c…(full id) --peers-file /etc/vmi/peers',
    '<%= config.bin %> pull web:v2 --verify-signers /etc/vmi/allowed_signers',
  ]
  static override args = {
    image: Args.string({description: 'NAME[:TAG] (looked up on the seed) or a full image id.', required: true}),
    remote: Args.string({description: 'Seed: a configured remote name or URL (default: origin).'}),
  }
  static override flags = {
    ...chainFlags,
    ...verifySignersFlag,
    as: Flags.string({summary: 'Store it under this NAME:TAG.'}),
    concurrency: Flags.integer({summary: 'Chunks fetched in parallel when fetching chunk by chunk.', default: 8, min: 1, max: 256}),
    bulk: Flags.boolean({
      summary: 'Fetch chunks in pipelined bulk requests from each first source (default); --no-bulk asks chunk by chunk.',
      default: true,
      allowNo: true,
    }),
    verbose: Flags.boolean({summary: 'Also list every peer and the seed: up or down (and why), and what each sent.', default: false}),
    'max-cache': Flags.string({summary: 'Cache budget (e.g. 20G): afterwards evict least-recently-used chunks of unpinned images. Else $VMI_MAX_CACHE or config maxCache.'}),
  }

  async run(): Promise<PullResult> {
    const store = await this.openStore()
    const config = (await store.readConfig()) as RemoteConfig
    const {chain, close} = await chainFromFlags(store, this.args.remote, this.flags, {seedRequired: true, onWarning: (m, e) => this.warning(m, e), quiet: ['chunk-unavailable']})
    try {
      const maxCacheBytes = resolveMaxCache(this.flags['max-cache'], process.env, config as {maxCache?: unknown})
      const verifySigners = await allowedSignersFromSettings(this.flags['verify-signers'], config)
      const r = await pullImage(chain, this.args.image, {as: this.flags.as, verifySigners, concurrency: this.flags.concurrency, bulk: this.flags.bulk, maxCacheBytes, progress: this.progress(), signal: this.signal})
      if (r.evicted && r.evicted.removedObjects > 0) this.note(`cache budget ${humanBytes(r.evicted.maxBytes)}: evicted ${r.evicted.removedObjects} chunks (${humanBytes(r.evicted.freedBytes)})`)
      const b = r.fromBytes
      this.note(
        `pulled ${r.id.slice(0, 12)}${r.ref ? ` as ${r.ref}` : ''}${r.upToDate ? ' (already here whole)' : ''}: ${r.distinctChunks} distinct chunks, ${humanBytes(b.local + b.peer + b.seed)} in ${r.seconds.toFixed(2)} s, ${rate(b.peer + b.seed, r.seconds)} fetched${r.wireBytes < b.peer + b.seed ? ` (${humanBytes(r.wireBytes)} on the wire, compressed)` : ''}`,
      )
      if (r.signature) this.note(`signature of ${r.signature.ref}: good, ${r.signature.keyType} key ${r.signature.key}, signed ${r.signature.time} (allowed by ${r.signature.allowedBy})`)
      if (this.flags.verbose)
        for (const src of r.sources)
          this.note(`  ${src.name}: ${src.up ? 'up' : `down since ${src.downSince} (${src.downReason})`}, sent ${src.chunks} chunks (${humanBytes(src.bytes)})`)
      this.log(`local ${humanBytes(b.local)} (${r.fromChunks.local}), peers ${humanBytes(b.peer)} (${r.fromChunks.peer}), seed ${humanBytes(b.seed)} (${r.fromChunks.seed})`)
      return r
    } finally {
      close()
    }
  }
}

