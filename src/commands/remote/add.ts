import {Args, Flags} from '#oclif'
import path from 'node:path'
import {BaseCommand} from '../../cli/base-command.js'
import {readCaFile, readTokenFile} from '../../cli/credential-files.js'
import {UsageError} from '../../errors.js'
import {isValidRefPart} from '../../store/ref.js'
import {withLock} from '../../store/lock.js'
import type {RemoteConfig} from '../../cli/settings.js'

export default class RemoteAdd extends BaseCommand<typeof RemoteAdd> {
  static override summary = 'Add (or change) a named remote seed.'
  static override description = `Stored in the store's config.json. --token-file and --ca-cert are checked now (the file must exist and hold a token, or PEM certificates) and stored as absolute paths; their contents are read again at each use.

Exit codes: 0 ok, 2 a bad name or URL, or an empty or unreadable file, 3 a --token-file or --ca-cert file that does not exist. On failure the config is unchanged.`
  static override examples = [
    '<%= config.bin %> remote add origin https://seed.example:7070',
    '<%= config.bin %> remote add origin http://10.0.0.1:7070 --token-file /etc/vmi/token',
    '<%= config.bin %> remote add origin https://seed.internal:7070 --ca-cert /etc/vmi/ca.pem',
  ]
  static override args = {
    name: Args.string({description: 'Remote name (origin is the default remote).', required: true}),
    url: Args.string({description: 'http(s) URL of the seed.', required: true}),
  }
  static override flags = {
    'token-file': Flags.string({summary: 'File holding the push token for this remote (first line), read at each push.'}),
    'ca-cert': Flags.string({summary: "PEM file of CA certificates to trust for this remote's TLS certificate (a private CA)."}),
  }

  async run(): Promise<{name: string; url: string}> {
    const {name, url} = this.args
    if (!isValidRefPart(name)) throw new UsageError(`invalid remote name ${JSON.stringify(name)}`)
    let u: URL
    try {
      u = new URL(url)
    } catch {
      throw new UsageError(`${url} is not a URL`)
    }
    if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new UsageError(`${url}: only http:// and https:// remotes are supported`)
    // checked before anything is stored: a typo is an error now, not at the first push
    const tokenFile = this.flags['token-file'] === undefined ? undefined : path.resolve(this.flags['token-file'])
    const caCert = this.flags['ca-cert'] === undefined ? undefined : path.resolve(this.flags['ca-cert'])
    if (tokenFile) await readTokenFile(tokenFile)
    if (caCert) await readCaFile(caCert)
    const store = await this.openStore()
    await withLock(store.layout, {op: 'config'}, async () => {
      const config = await store.readConfig()
      const remotes = {...((config as RemoteConfig).remotes ?? {})}
      remotes[name] = {url: u.href.replace(/\/+$/, ''), ...(tokenFile ? {tokenFile} : {}), ...(caCert ? {caCert} : {})}
      await store.writeConfig({...config, remotes})
    })
    this.log(`${name} ${url}`)
    return {name, url}
  }
}
