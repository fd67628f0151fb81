import {Flags} from '#oclif'
import {BaseCommand} from '../cli/base-command.js'
import {humanBytes} from '../cli/format.js'
import {ExitCode} from '../errors.js'
import {fsck, type FsckResult} from '../store/fsck.js'

export default class Fsck extends BaseCommand<typeof Fsck> {
  static override interruptible = true
  static override summary = 'Verify the store: re-hash every object, check manifests and refs.'
  static override description = `Reports each problem on its own line and exits 1 when there is any. --repair moves corrupt objects (and anything not a file where an object should be), damaged manifests, and refs that hold no id or have an invalid name, to quarantine/ (a later pull, load or import stores them again) and removes refs whose image is gone. An image written by a newer vmi (a newer manifest format) is reported, and left as it is: this vmi cannot check it.

Exit codes: 0 clean, 1 problems found, 130 interrupted (143 SIGTERM); repairs made before the signal stay.`
  static override examples = ['<%= config.bin %> fsck', '<%= config.bin %> fsck --repair', '<%= config.bin %> fsck --json']
  static override flags = {
    repair: Flags.boolean({summary: 'Move corrupt objects, damaged manifests and refs aside; drop refs to missing images.', default: false}),
  }

  async run(): Promise<FsckResult> {
    const store = await this.openStore({create: false})
    const r = await fsck(store, {repair: this.flags.repair, progress: this.progress(), signal: this.signal})
    // with --json the problems are in the document
    if (!this.jsonEnabled()) for (const p of r.problems) process.stderr.write(`${p.kind}: ${p.message}${p.repaired ? ` [repaired: ${p.repaired}]` : ''}\n`)
    this.log(`${r.ok ? 'ok' : `${r.problems.length} problem(s)`}: ${r.objects} objects (${humanBytes(r.objectBytes)}${r.compressedObjects > 0 ? `; ${r.compressedObjects} compressed, holding ${humanBytes(r.compressedChunkBytes)}` : ''}), ${r.manifests} manifests, ${r.refs} refs checked`)
    if (!r.ok) process.exitCode = ExitCode.FAILURE
    return r
  }
}
