import {Args, Flags} from '#oclif'
import {BaseCommand} from '../cli/base-command.js'
import {humanBytes, rate} from '../cli/format.js'
import {resolveChunkSize} from '../cli/settings.js'
import {UsageError} from '../errors.js'
import {DEFAULT_CHUNK_SIZE, importImage, type ImportResult} from '../store/import.js'

export default class Import extends BaseCommand<typeof Import> {
  static override interruptible = true
  static override summary = 'Import a disk image into the store.'
  static override description = `Reads a raw image from FILE or standard input ("-"), or a qcow2, vmdk, vhdx, vdi or vpc image through qemu-img, splits it into fixed-size chunks named by their BLAKE3 hash, and stores each distinct non-zero chunk once. Prints the image id last on stdout.

Exit codes: 0 ok, 2 bad arguments, 3 file not found, 5 not a usable image, 6 store not writable or full, 7 qemu-img missing or failed (or a converter gave the wrong length), 130 interrupted (143 SIGTERM).`

  static override examples = [
    '<%= config.bin %> import disk.raw debian:12',
    '<%= config.bin %> import cloud.qcow2 ubuntu:24.04 --chunk-size 1M',
    'curl -s https://example.com/disk.raw | <%= config.bin %> import - mydisk',
    '<%= config.bin %> import disk.raw --json',
  ]

  static override args = {
    file: Args.string({description: 'Image file, or - for standard input (raw only).', required: true}),
    ref: Args.string({description: 'NAME[:TAG] to tag the image with (tag defaults to latest).'}),
  }

  static override flags = {
    'chunk-size': Flags.string({summary: `Chunk size, a power of two from 64K to 4M (default ${DEFAULT_CHUNK_SIZE / 1024}K, or the store config's chunkSize).`}),
    parent: Flags.string({summary: 'Record this image (ref or id) as the parent, for vmi log.'}),
    annotation: Flags.string({char: 'a', summary: 'KEY=VALUE to record in the manifest (repeatable).', multiple: true}),
    format: Flags.string({summary: 'Source format; skips detection (raw, qcow2, vmdk, ...).'}),
    created: Flags.string({summary: 'Creation time to record (ISO 8601), for reproducible image ids.'}),
  }

  async run(): Promise<ImportResult> {
    const {file, ref} = this.args
    const store = await this.openStore()
    const chunkSize = resolveChunkSize(this.flags['chunk-size'], process.env, await store.readConfig(), DEFAULT_CHUNK_SIZE)
    const annotations: Record<string, string> = {}
    for (const a of this.flags.annotation ?? []) {
      const eq = a.indexOf('=')
      if (eq <= 0) throw new UsageError(`annotation ${JSON.stringify(a)} is not KEY=VALUE`)
      annotations[a.slice(0, eq)] = a.slice(eq + 1)
    }
    let created: Date | undefined
    if (this.flags.created) {
      created = new Date(this.flags.created)
      if (Number.isNaN(created.getTime())) throw new UsageError(`--created ${this.flags.created} is not a date`)
    }
    const parent = this.flags.parent ? await store.resolveId(this.flags.parent) : undefined
    const r = await importImage(store, file, {
      ref,
      chunkSize,
      parent,
      annotations,
      created,
      format: this.flags.format,
      stdin: file === '-' ? this.stdin() : undefined,
      progress: this.progress(),
      signal: this.signal,
    })
    this.note(
      `imported ${file}${r.ref ? ` as ${r.ref}` : ''}: ${humanBytes(r.virtualSize)} ${r.sourceFormat}, ${r.chunks} chunks of ${humanBytes(r.chunkSize)} ` +
        `(${r.zeroChunks} zero, ${r.dedupedChunks} deduplicated, ${r.newChunks} new = ${humanBytes(r.newBytes)}) in ${r.seconds.toFixed(2)} s, ${rate(r.virtualSize, r.seconds)}`,
    )
    this.log(r.id)
    return r
  }
}
