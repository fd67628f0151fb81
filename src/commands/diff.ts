import {Args} from '#oclif'
import {BaseCommand} from '../cli/base-command.js'
import {humanBytes, table} from '../cli/format.js'
import {diffImages, type DiffSide, type ImageDiff} from '../store/images.js'

export default class Diff extends BaseCommand<typeof Diff> {
  static override summary = 'Compare two images chunk by chunk.'
  static override description = `Position by position: chunks (and bytes) the same, changed, or only in one image. By content: distinct chunks shared, or only in A or B — what a host holding A must fetch to get B.`
  static override examples = ['<%= config.bin %> diff web:v1 web:v2', '<%= config.bin %> diff web:v1 web:v2 --json']
  static override args = {
    a: Args.string({description: 'Image A.', required: true}),
    b: Args.string({description: 'Image B.', required: true}),
  }

  async run(): Promise<ImageDiff> {
    const store = await this.openStore()
    const d = await diffImages(store, this.args.a, this.args.b)
    const fmt = (s: DiffSide) => [String(s.chunks), humanBytes(s.bytes)]
    this.log(`A ${d.a}\nB ${d.b}\n`)
    if (d.positional) {
      const p = d.positional
      this.log('by position:')
      this.log(table([['same', ...fmt(p.same)], ['changed', ...fmt(p.changed)], ['only in A', ...fmt(p.onlyA)], ['only in B', ...fmt(p.onlyB)], ['zero in both', ...fmt(p.zeroBoth)]], ['', 'CHUNKS', 'BYTES']))
      this.log('')
    } else this.log('by position: not comparable (different chunk sizes)\n')
    const c = d.content
    this.log('by content (distinct non-zero chunks):')
    this.log(table([['shared', ...fmt(c.shared)], ['only in A', ...fmt(c.onlyA)], ['only in B', ...fmt(c.onlyB)]], ['', 'CHUNKS', 'BYTES']))
    return d
  }
}
