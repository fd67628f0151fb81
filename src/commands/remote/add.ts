import {Args, Flags} from '#oclif'
import {BaseCommand} from '../../cli/base-command.js'
import {UsageError} from '../../errors.js'
import {isValidRefPart} from '../../store/ref.js'
import {withLock} from '../../store/lock.js'
import type {RemoteConfig} from '../../cli/settings.js'

export default class RemoteAdd extends BaseCommand<typeof RemoteAdd> {
  static override summary = 'Add (or change) a named remote seed.'
  static override examples = ['<%= config.bin %> remote add origin https://seed.example:7070', '<%= config.bin %> remote add origin http://10.0.0.1:7070 --token-file /etc/vmi/token']
  static override args = {
    name: Args.string({description: 'Remote name (origin is the default remote).', required: true}),
    url: Args.string({description: 'http(s) URL of the seed.', required: true}),
  }
  static override flags = {
    'token-file': Flags.string({summary: 'File holding the push token for this remote.'}),
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
    const store = await this.openStore()
    await withLock(store.layout, {op: 'config'}, async () => {
      const config = await store.readConfig()
      const remotes = {...((config as RemoteConfig).remotes ?? {})}
      remotes[name] = {url: u.href.replace(/\/+$/, ''), ...(this.flags['token-file'] ? {tokenFile: this.flags['token-file']} : {})}
      await store.writeConfig({...config, remotes})
    })
    this.log(`${name} ${url}`)
    return {name, url}
  }
}
