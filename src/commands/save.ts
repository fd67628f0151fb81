import {Args, Flags} from '#oclif'
import {BaseCommand} from '../cli/base-command.js'
import {humanBytes} from '../cli/format.js'
import {UsageError} from '../errors.js'
import {saveBundle, type SaveResult} from '../store/bundle.js'

export default class Save extends BaseCommand<typeof Save> {
  static override interruptible = true
  static override summary = 'Write images, their refs and chunks to a tar bundle.'
  static override description = `The bundle carries each image's manifest, the refs named and every distinct chunk once; 'vmi load' verifies all of it before anything enters a store. A file is written beside FILE and put in place when complete, so a failed save leaves nothing behind; an existing FILE is replaced only with --force.

Exit codes: 0 ok, 2 bad arguments, FILE exists (without --force) or its directory does not exist, 3 unknown image, 4 ambiguous id prefix, 8 a chunk is missing or corrupt, 130 interrupted (143 SIGTERM).`
  static override examples = ['<%= config.bin %> save debian:12 -o debian.tar', '<%= config.bin %> save web:v1 web:v2 -o - | ssh host vmi load -']
  static override strict = false
  static override args = {
    image: Args.string({description: 'Images: NAME[:TAG], id or unique id prefix (one or more).', required: true}),
  }
  static override flags = {
    output: Flags.string({char: 'o', summary: 'Bundle file, or - for standard output.', required: true}),
    force: Flags.boolean({summary: 'Replace the bundle file when it exists (it is replaced whole, only once the save succeeded).', default: false}),
  }

  async run(): Promise<SaveResult> {
    const store = await this.openStore()
    const specs = this.positional
    const toStdout = this.flags.output === '-'
    if (toStdout && this.jsonEnabled()) throw new UsageError('--json cannot be combined with -o - (standard output carries the bundle)')
    const r = await saveBundle(store, specs, toStdout ? process.stdout : this.flags.output, {progress: this.progress(), signal: this.signal, overwrite: this.flags.force})
    this.note(`saved ${r.images.length} image(s), ${r.objects} chunks (${humanBytes(r.bytes)})`)
    return r
  }

}
