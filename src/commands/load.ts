import {Args} from '#oclif'
import {BaseCommand} from '../cli/base-command.js'
import {humanBytes} from '../cli/format.js'
import {loadBundle, type LoadResult} from '../store/bundle.js'

export default class Load extends BaseCommand<typeof Load> {
  static override interruptible = true
  static override summary = 'Load images from a tar bundle made by vmi save.'
  static override description = `Every object and manifest is verified against its id before it enters the store; a truncated or tampered bundle is refused and the store is left unchanged.

Exit codes: 0 ok, 5 bad or truncated bundle, 6 store not writable or full, 130 interrupted (143 SIGTERM).`
  static override examples = ['<%= config.bin %> load debian.tar', 'ssh build vmi save web:v2 -o - | <%= config.bin %> load -']
  static override args = {
    file: Args.string({description: 'Bundle file, or - for standard input.', required: true}),
  }

  async run(): Promise<LoadResult> {
    const store = await this.openStore()
    const src = this.args.file === '-' ? this.stdin() : this.args.file
    const r = await loadBundle(store, src, {progress: this.progress(), signal: this.signal})
    for (const i of r.images) this.log(`loaded ${i.id}${i.refs.length ? ` (${i.refs.join(', ')})` : ''}`)
    this.note(`${r.objects} chunks (${humanBytes(r.bytes)}), ${r.newObjects} new to this store`)
    return r
  }
}
