import {BaseCommand} from '../../cli/base-command.js'
import type {RemoteConfig} from '../../cli/settings.js'

export default class RemoteLs extends BaseCommand<typeof RemoteLs> {
  static override summary = 'List configured remotes and peers.'
  static override examples = ['<%= config.bin %> remote ls', '<%= config.bin %> remote ls --json']

  async run(): Promise<{remotes: {name: string; url: string}[]; peers: string[]; peersFile?: string}> {
    const store = await this.openStore()
    const config = (await store.readConfig()) as RemoteConfig
    const remotes = Object.entries(config.remotes ?? {}).map(([name, r]) => ({name, url: r.url}))
    for (const r of remotes) this.log(`${r.name}\t${r.url}`)
    for (const p of config.peers ?? []) this.log(`peer\t${p}`)
    if (config.peersFile) this.log(`peers-file\t${config.peersFile}`)
    return {remotes, peers: config.peers ?? [], ...(config.peersFile ? {peersFile: config.peersFile} : {})}
  }
}
