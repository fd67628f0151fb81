import {Args} from '#oclif'
import {BaseCommand} from '../../cli/base-command.js'
import {UnknownRemoteError} from '../../errors.js'
import {withLock} from '../../store/lock.js'
import type {RemoteConfig} from '../../cli/settings.js'

export default class RemoteRm extends BaseCommand<typeof RemoteRm> {
  static override summary = 'Remove a named remote.'
  static override examples = ['<%= config.bin %> remote rm backup']
  static override args = {
    name: Args.string({description: 'Remote name.', required: true}),
  }

  async run(): Promise<{name: string}> {
    const store = await this.openStore()
    await withLock(store.layout, {op: 'config'}, async () => {
      const config = await store.readConfig()
      const remotes = {...((config as RemoteConfig).remotes ?? {})}
      if (!remotes[this.args.name]) throw new UnknownRemoteError(`no remote named ${JSON.stringify(this.args.name)}`)
      delete remotes[this.args.name]
      await store.writeConfig({...config, remotes})
    })
    this.log(`removed ${this.args.name}`)
    return {name: this.args.name}
  }
}
