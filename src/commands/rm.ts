import {Args} from '#oclif'
import {BaseCommand} from '../cli/base-command.js'
import {removeImages, type RemoveResult} from '../store/images.js'

const KEPT = {pinned: "is pinned ('vmi pin --remove' releases it)", 'in-use': 'is in use by a running mount or pull'}

export default class Rm extends BaseCommand<typeof Rm> {
  static override summary = 'Remove image refs.'
  static override description = `Removes each named ref; an id (or prefix) removes every ref to that image. Nothing is removed if any name is unknown. The chunks are freed by the next 'vmi gc'. An image that is pinned, or that a running mount or pull is using, keeps its manifest and chunks until that ends (or 'vmi pin --remove'): the next gc after that frees them.`
  static override examples = ['<%= config.bin %> rm debian:11', '<%= config.bin %> rm web:v1 web:v2 && <%= config.bin %> gc']
  static override strict = false
  static override args = {
    image: Args.string({description: 'Images: NAME[:TAG], id or unique id prefix (one or more).', required: true}),
  }

  async run(): Promise<{removed: RemoveResult[]}> {
    const store = await this.openStore()
    const specs = this.positional
    const removed = await removeImages(store, specs)
    for (const r of removed) {
      this.log(r.untagged.length ? r.untagged.map((u) => `untagged ${u}`).join('\n') : r.kept ? `kept ${r.id}` : `removed ${r.id}`)
      if (r.kept) this.log(`  ${r.id.slice(0, 12)} ${KEPT[r.kept]}: gc keeps its chunks until then`)
    }
    return {removed}
  }
}
