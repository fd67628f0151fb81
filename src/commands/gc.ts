import {Flags} from '#oclif'
import {BaseCommand} from '../cli/base-command.js'
import {humanBytes} from '../cli/format.js'
import {gc, type GcResult} from '../store/gc.js'
import {evict, type EvictResult} from '../store/evict.js'
import {resolveMaxCache} from '../cli/settings.js'

export default class Gc extends BaseCommand<typeof Gc> {
  static override summary = 'Delete objects and manifests no ref or running mount needs.'
  static override description = `Keeps every image a ref points at, and every image a running operation (mount, pull) holds; removes the rest, and staging files left in tmp/ by crashed processes. Waits for running imports and loads to finish.

With a cache budget (--max-cache), then evicts least-recently-used chunks, but only chunks that can be fetched again: never one of a pinned image, of an image in use, or of an image no remote is known to hold (imported, committed or loaded here and never pushed: its chunks may be the only copy). An image pulled or mounted from a remote, or pushed to one, is cache.

Exit codes: 0 ok, 6 the store is busy or not writable.`
  static override examples = ['<%= config.bin %> gc --dry-run', '<%= config.bin %> gc --json']
  static override flags = {
    'dry-run': Flags.boolean({char: 'n', summary: 'Report what would be removed; remove nothing.', default: false}),
    'max-cache': Flags.string({summary: 'Then evict least-recently-used chunks of unpinned images until the objects fit (e.g. 20G). Else $VMI_MAX_CACHE or config maxCache.'}),
  }

  async run(): Promise<GcResult & {evicted?: EvictResult}> {
    const store = await this.openStore()
    const r = await gc(store, {dryRun: this.flags['dry-run'], progress: this.progress()})
    const maxBytes = resolveMaxCache(this.flags['max-cache'], process.env, (await store.readConfig()) as {maxCache?: unknown})
    const evicted = maxBytes === undefined ? undefined : await evict(store, {maxBytes, dryRun: this.flags['dry-run']})
    const verb = r.dryRun ? 'would free' : 'freed'
    this.log(
      `${verb} ${humanBytes(r.freedBytes + r.freedTmpBytes)}: ${r.removedObjects} objects, ${r.removedManifests.length} manifests, ${r.removedTmpFiles} stale tmp files; kept ${r.keptImages} images`,
    )
    if (evicted)
      this.log(
        `cache budget ${humanBytes(evicted.maxBytes)}: ${r.dryRun ? 'would evict' : 'evicted'} ${evicted.removedObjects} chunks (${humanBytes(evicted.freedBytes)}), ${evicted.thinnedImages.length} images now partial` +
          (evicted.overBudget > 0
            ? `; still ${humanBytes(evicted.overBudget)} over: the rest is pinned, in use, or the only copy (${evicted.onlyCopyImages.length} images no remote is known to hold: imported, committed or loaded here, never pushed)`
            : ''),
      )
    for (const m of r.missingRoots) this.note(`warning: image ${m} is referenced but its manifest is missing (run vmi fsck)`)
    return {...r, ...(evicted ? {evicted} : {})}
  }
}
