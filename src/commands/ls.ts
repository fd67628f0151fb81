import {Flags} from '#oclif'
import {BaseCommand} from '../cli/base-command.js'
import {humanBytes, shortId, table} from '../cli/format.js'
import {listImages, type ImageSummary} from '../store/images.js'

export default class Ls extends BaseCommand<typeof Ls> {
  static override summary = 'List images in the store.'
  static override description = `One line per tag: name:tag, short id, virtual size, bytes stored for the image's distinct chunks (and how many are absent, for a lazily mounted or evicted image), bytes no other image in the store shares (the figure inspect gives), and creation time. Untagged images are listed when lazy (a mount by id); --all adds every untagged image.`
  static override examples = ['<%= config.bin %> ls', '<%= config.bin %> ls --all --json']
  static override flags = {
    // -a is --annotation wherever vmi has a short -a (import)
    all: Flags.boolean({summary: 'Include images no ref points at.', default: false}),
  }

  async run(): Promise<{images: ImageSummary[]}> {
    const store = await this.openStore()
    const images = await listImages(store, {all: this.flags.all, onDamaged: (id, err) => this.note(`warning: image ${id} left out: ${err.message}`)})
    const rows: string[][] = []
    for (const i of images) {
      const names = i.refs.length ? i.refs : ['<none>']
      for (const n of names)
        rows.push([
          n,
          shortId(i.id),
          humanBytes(i.virtualSize),
          humanBytes(i.storedBytes) + (i.missingChunks ? ` (${i.missingChunks} chunks absent)` : ''),
          humanBytes(i.uniqueBytes),
          i.created.replace(/\.\d+Z$/, 'Z'),
        ])
    }
    if (rows.length > 0) this.log(table(rows, ['NAME:TAG', 'ID', 'VIRTUAL', 'STORED', 'UNIQUE', 'CREATED']))
    else this.note('no images')
    return {images}
  }
}
