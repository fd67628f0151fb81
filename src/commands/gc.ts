import {Flags} from '@oclif/core'
import {BaseCommand} from '../cli/base-command.js'
import {humanBytes} from '../cli/format.js'
import {gc, type GcResult} from '../store/gc.js'

export default class Gc extends BaseCommand<typeof Gc> {
  static override summary = 'Delete objects and manifests no ref or running mount needs.'
  static override description = `Keeps every image a ref points at, and every image a running operation (mount, pull) holds; removes the rest, and staging files left in tmp/ by crashed processes. Waits for running imports and loads to finish.

Exit codes: 0 ok, 6 the store is busy or not writable.`
  static override examples = ['<%= config.bin %> gc --dry-run', '<%= config.bin %> gc --json']
  static override flags = {
    'dry-run': Flags.boolean({char: 'n', summary: 'Report what would be removed; remove nothing.', default: false}),
  }

  async run(): Promise<GcResult> {
    const store = await this.openStore()
    const r = await gc(store, {dryRun: this.flags['dry-run'], progress: this.progress()})
    const verb = r.dryRun ? 'would free' : 'freed'
    this.log(
      `${verb} ${humanBytes(r.freedBytes + r.freedTmpBytes)}: ${r.removedObjects} objects, ${r.removedManifests.length} manifests, ${r.removedTmpFiles} stale tmp files; kept ${r.keptImages} images`,
    )
    for (const m of r.missingRoots) this.note(`warning: image ${m} is referenced but its manifest is missing (run vmi fsck)`)
    return r
  }
}
