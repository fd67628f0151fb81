import {Args} from '#oclif'
import {BaseCommand} from '../../cli/base-command.js'
import {configSetting} from '../../cli/config-keys.js'
import {UsageError} from '../../errors.js'
import {withLock} from '../../store/lock.js'

export default class ConfigUnset extends BaseCommand<typeof ConfigUnset> {
  static override summary = "Remove one setting from the store's config.json (back to its default)."
  static override examples = ['<%= config.bin %> config unset maxCache']
  static override args = {
    key: Args.string({description: 'Setting: chunkSize, maxCache, peers, peersFile, allowedSigners.', required: true}),
  }

  async run(): Promise<{key: string; removed: boolean}> {
    const {key} = this.args
    const setting = configSetting(key)
    if (!setting.parse) throw new UsageError(`${key} is not changed with 'vmi config unset': use ${setting.managedBy}`)
    const store = await this.openStore()
    const removed = await withLock(store.layout, {op: 'config'}, async () => {
      const {[key]: old, ...rest} = await store.readConfig()
      if (old === undefined) return false
      await store.writeConfig({...rest, version: 1})
      return true
    })
    this.log(removed ? `unset ${key}` : `${key} was not set`)
    return {key, removed}
  }
}
