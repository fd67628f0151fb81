import {Args, Flags} from '#oclif'
import {readFileSync} from 'node:fs'
import {BaseCommand} from '../cli/base-command.js'
import {humanBytes, rate} from '../cli/format.js'
import {resolveRemote, resolveToken, type RemoteConfig} from '../cli/settings.js'
import {UsageError} from '../errors.js'
import {seedStore} from '../peer/factory.js'
import {pushImage, type PushResult} from '../peer/push.js'

export default class Push extends BaseCommand<typeof Push> {
  static override interruptible = true
  static override summary = 'Send an image to a seed (vmi serve with a push token).'
  static override description = `Asks the remote which chunks it lacks (one batch request), uploads only those in parallel, then the manifest, then the ref: the remote's ref never names an image whose chunks are not all there. A re-run after an interruption sends only what is still missing.

The token comes from --token, else $VMI_PUSH_TOKEN, else the remote's tokenFile in the store config.

Exit codes: 0 ok, 3 unknown image or remote name, 9 the remote failed, 10 the remote refused the token, 130 interrupted (143 SIGTERM).`
  static override examples = [
    '<%= config.bin %> push debian:12',
    'VMI_PUSH_TOKEN=$(cat /etc/vmi/token) <%= config.bin %> push web:v2 https://seed.example:7070',
    '<%= config.bin %> push 3f2a9c origin --as web:stable',
  ]
  static override args = {
    image: Args.string({description: 'Image: NAME[:TAG], id or unique id prefix.', required: true}),
    remote: Args.string({description: 'A configured remote name or URL (default: origin).'}),
  }
  static override flags = {
    token: Flags.string({summary: 'Push token (prefer $VMI_PUSH_TOKEN: flags show up in ps).'}),
    as: Flags.string({summary: 'Name:tag on the remote (default: the name given).'}),
    concurrency: Flags.integer({summary: 'Parallel uploads.', default: 8, min: 1, max: 64}),
    insecure: Flags.boolean({summary: 'Accept self-signed TLS certificates.', default: false}),
  }

  async run(): Promise<PushResult> {
    const store = await this.openStore()
    const config = (await store.readConfig()) as RemoteConfig
    const remote = resolveRemote(this.args.remote, config)
    let token = resolveToken(this.flags.token, process.env)
    if (!token && remote.tokenFile) {
      try {
        token = readFileSync(remote.tokenFile, 'utf8').trim()
      } catch (err) {
        throw new UsageError(`cannot read token file ${remote.tokenFile}: ${(err as Error).message}`)
      }
    }
    const r = await pushImage(store, this.args.image, seedStore(remote.url, {token, insecure: this.flags.insecure}), {
      as: this.flags.as,
      concurrency: this.flags.concurrency,
      progress: this.progress(),
      signal: this.signal,
    })
    this.log(
      `pushed ${r.id.slice(0, 12)}${r.ref ? ` as ${r.ref}` : ''} to ${r.remote}: ${r.uploadedChunks} chunks uploaded (${humanBytes(r.uploadedBytes)}), ${r.alreadyThere} already there, ${r.seconds.toFixed(2)} s, ${rate(r.uploadedBytes, r.seconds)}`,
    )
    return r
  }
}
