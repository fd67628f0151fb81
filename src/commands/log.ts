import {Args, Flags} from '#oclif'
import {BaseCommand} from '../cli/base-command.js'
import {humanBytes} from '../cli/format.js'
import {imageLog, type LogEntry} from '../store/images.js'

export default class Log extends BaseCommand<typeof Log> {
  static override summary = "Show an image's parent lineage, newest first."
  static override examples = ['<%= config.bin %> log web:v3', '<%= config.bin %> log web:v3 --json']
  static override args = {
    image: Args.string({description: 'Image: NAME[:TAG], id or unique id prefix.', required: true}),
  }
  static override flags = {
    // -n is --dry-run wherever vmi has a short -n (gc)
    max: Flags.integer({summary: 'Show at most this many entries.', min: 1}),
  }

  async run(): Promise<{entries: LogEntry[]}> {
    const store = await this.openStore()
    const entries = await imageLog(store, this.args.image, {max: this.flags.max})
    for (const e of entries) {
      this.log(`image ${e.id}${e.refs.length ? ` (${e.refs.join(', ')})` : ''}`)
      this.log(`created ${e.created}, ${humanBytes(e.virtualSize)}`)
      if (e.missingParent) this.log(`parent ${e.missingParent} (not in this store)`)
      this.log('')
    }
    return {entries}
  }
}
