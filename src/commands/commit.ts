import {promises as fsp} from 'node:fs'
import path from 'node:path'
import {Args} from '#oclif'
import {BaseCommand} from '../cli/base-command.js'
import {chainFlags, chainFromFlags} from '../cli/chain-flags.js'
import {humanBytes} from '../cli/format.js'
import {lastSource} from '../cli/hints.js'
import {ChunkMissingError} from '../errors.js'
import {commitOverlay, type CommitResult} from '../mount/commit.js'
import type {LocalStore} from '../store/local-store.js'

export default class Commit extends BaseCommand<typeof Commit> {
  static override summary = "Make a new image from a mount's overlay (the base with the guest's writes)."
  static override description = "Only the chunks the guest changed are stored; the new image's parent is the mounted image. Base chunks not yet local (a lazy mount reads only what the guest asks for) are fetched through the chain first, so that the new image is whole here; without a seed that holds them the commit fails and writes no ref. Commits what the overlay holds as of the mount's last flush."
  static override examples = ['<%= config.bin %> mount web:v1 --overlay /var/lib/vmi/web1 … && <%= config.bin %> commit /var/lib/vmi/web1 web:v2']
  static override args = {
    overlay: Args.string({description: 'Overlay directory (vmi mount --overlay DIR).', required: true}),
    ref: Args.string({description: 'NAME[:TAG] for the new image.', required: true}),
    remote: Args.string({description: 'Seed for base chunks not local (default: origin when configured).'}),
  }
  static override flags = {...chainFlags}

  async run(): Promise<CommitResult> {
    const store = await this.openStore()
    const {chain, close} = await chainFromFlags(store, this.args.remote, this.flags)
    try {
      const r = await commitOverlay(chain, this.args.overlay, this.args.ref, this.signal).catch(async (err: unknown) => {
        if (err instanceof ChunkMissingError && this.args.remote === undefined) err.hint = await this.seedHint(store)
        throw err
      })
      this.note(`${r.changedChunks} chunks changed, ${r.newChunks} new (${humanBytes(r.newBytes)}); parent ${r.parent.slice(0, 12)}`)
      this.log(r.id)
      return r
    } finally {
      close()
    }
  }

  /** Where the base's chunks can be had: the seed the mount fetched from, when the store knows it. */
  private async seedHint(store: LocalStore): Promise<string> {
    const base = await fsp
      .readFile(path.join(this.args.overlay, 'meta.json'), 'utf8')
      .then((t) => String((JSON.parse(t) as {base?: unknown}).base))
      .catch(() => undefined)
    const seed = (base && (await lastSource(store, base))) || 'SEED'
    return `the base chunks the mount never read come from a seed: name it ('vmi commit ${this.args.overlay} ${this.args.ref} ${seed}'), or configure origin`
  }
}
