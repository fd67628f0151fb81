import {BaseCommand} from '../../cli/base-command.js'
import {showConfigValue} from '../../cli/config-keys.js'

export default class ConfigList extends BaseCommand<typeof ConfigList> {
  static override summary = "List the settings in the store's config.json."
  static override description = 'One KEY=VALUE line per setting kept in the store config. Flags and VMI_* variables override these for a command (README, Settings).'
  static override examples = ['<%= config.bin %> config list', '<%= config.bin %> config list --json']

  async run(): Promise<{config: Record<string, unknown>}> {
    const store = await this.openStore()
    const {version: _format, ...config} = await store.readConfig()
    for (const [k, v] of Object.entries(config)) this.log(`${k}=${showConfigValue(v)}`)
    return {config}
  }
}
