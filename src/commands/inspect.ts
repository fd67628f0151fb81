import {Args} from '#oclif'
import {BaseCommand} from '../cli/base-command.js'
import {humanBytes} from '../cli/format.js'
import {inspectImage, type ImageDetails} from '../store/images.js'

export default class Inspect extends BaseCommand<typeof Inspect> {
  static override summary = 'Show the details of an image.'
  static override examples = ['<%= config.bin %> inspect debian:12', '<%= config.bin %> inspect 3f2a --json']
  static override args = {
    image: Args.string({description: 'Image: NAME[:TAG], id or unique id prefix.', required: true}),
  }

  async run(): Promise<ImageDetails> {
    const store = await this.openStore()
    const d = await inspectImage(store, this.args.image)
    const lines: [string, string][] = [
      ['id', d.id],
      ['refs', d.refs.join(', ') || '<none>'],
      ['virtual size', `${d.virtualSize} (${humanBytes(d.virtualSize)})`],
      ['chunk size', humanBytes(d.chunkSize)],
      ['chunks', `${d.chunks} (${d.zeroChunks} zero, ${d.distinctChunks} distinct non-zero${d.missingChunks ? `, ${d.missingChunks} not in this store` : ''})`],
      ['stored', `${d.storedBytes} (${humanBytes(d.storedBytes)})`],
      ['unique', `${d.uniqueBytes} (${humanBytes(d.uniqueBytes)})`],
      ['source format', d.sourceFormat],
      ['created', d.created],
      ['parent', d.parent ?? '<none>'],
      ['manifest bytes', String(d.manifestBytes)],
    ]
    for (const [k, v] of Object.entries(d.annotations)) lines.push([`annotation ${k}`, v])
    const w = Math.max(...lines.map(([k]) => k.length))
    this.log(lines.map(([k, v]) => `${(k + ':').padEnd(w + 1)} ${v}`).join('\n'))
    return d
  }
}
