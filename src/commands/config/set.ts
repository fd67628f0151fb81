import {Args} from '#oclif'
import {BaseCommand} from '../../cli/base-command.js'
import {configSetting, showConfigValue} from '../../cli/config-keys.js'
import {FileNotFoundError, UsageError} from '../../errors.js'
import {exists} from '../../util/fs-util.js'
import {withLock} from '../../store/lock.js'

export default class ConfigSet extends BaseCommand<typeof ConfigSet> {
  static override summary = "Set one setting in the store's config.json."
  static override description = 'The value is checked by the same parser the commands use (a size like 20G, a chunk size, http(s) peer URLs; a peers file or an allowed signers file is read as the commands read it) and stored normalized: sizes in bytes, peer URLs as a list, the peers file as an absolute path. A bad value changes nothing (exit 2). The file is replaced atomically.'
  static override examples = [
    '<%= config.bin %> config set maxCache 50G',
    '<%= config.bin %> config set peers http://10.0.0.2:7070,http://10.0.0.3:7070',
    '<%= config.bin %> config set peersFile /etc/vmi/peers',
    '<%= config.bin %> config set allowedSigners /etc/vmi/allowed_signers',
  ]
  static override args = {
    key: Args.string({description: 'Setting: chunkSize, maxCache, peers, peersFile, allowedSigners.', required: true}),
    value: Args.string({description: 'New value.', required: true}),
  }

  async run(): Promise<{key: string; value: unknown}> {
    const {key, value: text} = this.args
    const setting = configSetting(key)
    if (!setting.parse) throw new UsageError(`${key} is not set with 'vmi config set': use ${setting.managedBy}`)
    const value = setting.parse(text)
    if (setting.file && !(await exists(value as string))) throw new FileNotFoundError(`${key}: no such file ${value}`, {data: {file: value}})
    await setting.check?.(value as string)
    const store = await this.openStore()
    await withLock(store.layout, {op: 'config'}, async () => {
      await store.writeConfig({...(await store.readConfig()), [key]: value})
    })
    this.log(`${key}=${showConfigValue(value)}`)
    return {key, value}
  }
}
