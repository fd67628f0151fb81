import {Args} from '#oclif'
import {BaseCommand} from '../../cli/base-command.js'
import {configSetting, showConfigValue} from '../../cli/config-keys.js'
import {SettingNotSetError} from '../../errors.js'

export default class ConfigGet extends BaseCommand<typeof ConfigGet> {
  static override summary = "Print one setting from the store's config.json."
  static override description = 'Prints the value kept in the store config (lists comma-separated). Exits 3 when the setting is not set there; a flag or VMI_* variable still overrides it for a command (see README, Settings).'
  static override examples = ['<%= config.bin %> config get maxCache', '<%= config.bin %> config get peers --json']
  static override args = {
    key: Args.string({description: 'Setting (config.json key): chunkSize, maxCache, peers, peersFile, remotes.', required: true}),
  }

  async run(): Promise<{key: string; value: unknown}> {
    const {key} = this.args
    configSetting(key)
    const store = await this.openStore()
    const value = (await store.readConfig())[key]
    if (value === undefined) throw new SettingNotSetError(`${key} is not set in ${store.layout.configFile}`, {data: {key}})
    this.log(showConfigValue(value))
    return {key, value}
  }
}
