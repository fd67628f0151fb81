import {Args, Flags} from '#oclif'
import {BaseCommand} from '../cli/base-command.js'
import {shortId} from '../cli/format.js'
import {withLock} from '../store/lock.js'

export default class Pin extends BaseCommand<typeof Pin> {
  static override summary = 'Pin images so the cache budget never evicts their chunks (and gc keeps them).'
  static override description = 'With no image, lists the pinned images. --remove unpins.'
  static override examples = ['<%= config.bin %> pin debian:12', '<%= config.bin %> pin --remove debian:11', '<%= config.bin %> pin --json']
  static override strict = false
  static override args = {
    image: Args.string({description: 'Images: NAME[:TAG], id or unique id prefix.'}),
  }
  static override flags = {
    remove: Flags.boolean({summary: 'Unpin instead.', default: false}),
  }

  async run(): Promise<{pinned: string[]}> {
    const store = await this.openStore()
    if (this.positional.length > 0)
      await withLock(store.layout, {op: 'pin'}, async () => {
        const ids = []
        for (const spec of this.positional) ids.push(await store.resolveId(spec))
        for (const id of ids) await store.setPinned(id, !this.flags.remove)
      })
    const pinned = await store.listPins()
    const names = await store.refsById()
    for (const id of pinned) this.log(`${shortId(id)}  ${(names.get(id) ?? []).map((r) => `${r.name}:${r.tag}`).join(', ') || '<untagged>'}`)
    return {pinned}
  }
}
