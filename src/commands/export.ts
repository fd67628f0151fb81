import {Args, Flags} from '#oclif'
import {BaseCommand} from '../cli/base-command.js'
import {humanBytes, rate} from '../cli/format.js'
import {ExitCode, UsageError, VmiError} from '../errors.js'
import {exportImage, type ExportResult} from '../store/export.js'
import {EXPORT_FORMATS} from '../store/formats.js'
import {missingChunksHint} from '../cli/hints.js'

export default class Export extends BaseCommand<typeof Export> {
  static override interruptible = true
  static override summary = 'Write an image out as a disk file.'
  static override description = `Writes the image as a raw disk (sparse on files: all-zero chunks become holes), or in another format through qemu-img. Every chunk is verified against its id. A file is written beside FILE and renamed into place, so a failed export leaves nothing behind; an existing FILE is replaced only with --force.

Exit codes: 0 ok, 2 bad arguments, or FILE exists (without --force), 3 unknown image, 4 ambiguous id prefix, 7 qemu-img missing, 8 a chunk is missing or corrupt, 130 interrupted (143 SIGTERM).`

  static override examples = [
    '<%= config.bin %> export debian:12 disk.raw',
    '<%= config.bin %> export debian:12 disk.qcow2 --format qcow2',
    '<%= config.bin %> export 3f2a9c - | ssh host "dd of=/dev/vdb bs=1M"',
  ]

  static override args = {
    image: Args.string({description: 'Image: NAME[:TAG], id or unique id prefix.', required: true}),
    file: Args.string({description: 'Destination file, or - for standard output.', required: true}),
  }

  static override flags = {
    format: Flags.string({char: 'f', summary: 'Output format.', options: [...EXPORT_FORMATS], default: 'raw'}),
    force: Flags.boolean({summary: 'Replace FILE when it exists (it is replaced whole, only once the export succeeded).', default: false}),
  }

  async run(): Promise<ExportResult> {
    const store = await this.openStore()
    const toStdout = this.args.file === '-'
    if (toStdout && this.jsonEnabled()) throw new UsageError('--json cannot be combined with exporting to standard output')
    let r: ExportResult
    try {
      r = await exportImage(store, this.args.image, toStdout ? process.stdout : this.args.file, {
        format: this.flags.format,
        progress: this.progress(),
        signal: this.signal,
        overwrite: this.flags.force,
      })
    } catch (err) {
      if (err instanceof VmiError && err.exitCode === ExitCode.INTEGRITY) err.hint = await missingChunksHint(store, this.args.image)
      throw err
    }
    this.note(`exported ${r.id.slice(0, 12)} (${humanBytes(r.virtualSize)}) as ${r.format} in ${r.seconds.toFixed(2)} s, ${rate(r.virtualSize, r.seconds)}`)
    return r
  }
}
