import {Args} from '#oclif'
import {BaseCommand} from '../cli/base-command.js'

export default class Tag extends BaseCommand<typeof Tag> {
  static override summary = 'Point NAME:TAG at an image.'
  static override description = 'Creates or moves a ref, atomically. The source may be a ref, an id or a unique id prefix.'
  static override examples = ['<%= config.bin %> tag debian:12 debian:stable', '<%= config.bin %> tag 3f2a9c web:v2']
  static override args = {
    source: Args.string({description: 'Image: NAME[:TAG], id or unique id prefix.', required: true}),
    target: Args.string({description: 'NAME[:TAG] to create or move.', required: true}),
  }

  async run(): Promise<{id: string; ref: string; previous?: string}> {
    const store = await this.openStore()
    const {tagImage} = await import('../store/images.js')
    const r = await tagImage(store, this.args.source, this.args.target)
    this.log(`${r.ref} -> ${r.id}${r.previous ? ` (was ${r.previous.slice(0, 12)})` : ''}`)
    return r
  }
}
