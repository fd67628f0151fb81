import {Args, Flags} from '#oclif'
import {BaseCommand} from '../cli/base-command.js'
import {humanBytes, rate} from '../cli/format.js'
import {resolveChunkSize} from '../cli/settings.js'
import {RefNotFoundError, UsageError} from '../errors.js'
import type {LocalStore} from '../store/local-store.js'
import {DEFAULT_CHUNK_SIZE, importImage, type ImportResult} from '../store/import.js'
import {IMPORT_FORMATS} from '../store/formats.js'

export default class Import extends BaseCommand<typeof Import> {
  static override interruptible = true
  static override summary = 'Import a disk image into the store.'
  static override description = `Reads a raw image from FILE or standard input ("-"), or a qcow2, vmdk, vhdx, vdi or vpc image through qemu-img, splits it into fixed-size chunks named by their BLAKE3 hash, and stores each distinct non-zero chunk once. Prints the image id last on stdout.

Exit codes: 0 ok, 2 bad arguments, 3 file or --parent image not found, 5 not a usable image, 6 store not writable or full, 7 qemu-img missing or failed (or a converter gave the wrong length), 130 interrupted (143 SIGTERM).`

  static override examples = [
    '<%= config.bin %> import disk.raw debian:12',
    '<%= config.bin %> import cloud.qcow2 ubuntu:24.04 --chunk-size 1M',
    'curl -s https://example.com/disk.raw | <%= config.bin %> import - mydisk',
    '<%= config.bin %> import disk.raw --json',
    '<%= config.bin %> import build/disk.qcow2 web:$GIT_SHA --parent-if-exists web:latest',
  ]

  static override args = {
    file: Args.string({description: 'Image file, or - for standard input (raw only).', required: true}),
    ref: Args.string({description: 'NAME[:TAG] to tag the image with (tag defaults to latest).'}),
  }

  static override flags = {
    'chunk-size': Flags.string({summary: `Chunk size, a power of two from 64K to 4M (default ${DEFAULT_CHUNK_SIZE / 1024}K, or the store config's chunkSize).`}),
    parent: Flags.string({summary: 'Record this image (ref or id) as the parent, for vmi log.', exclusive: ['parent-if-exists']}),
    'parent-if-exists': Flags.string({
      summary: 'Like --parent, but an image that does not exist records no parent instead of failing (a first build: --parent-if-exists web:latest).',
      exclusive: ['parent'],
    }),
    annotation: Flags.string({char: 'a', summary: 'KEY=VALUE to record in the manifest (repeat -a for each).', multiple: true, multipleNonGreedy: true}),
    format: Flags.string({summary: 'Source format; skips detection (qemu-img still checks the file is of it).', options: [...IMPORT_FORMATS]}),
    created: Flags.string({summary: 'Creation time to record, for reproducible image ids: ISO 8601 (2026-01-31, 2026-01-31T12:00:00Z, …+02:00); a time without an offset is UTC.'}),
  }

  async run(): Promise<ImportResult> {
    const {file, ref} = this.args
    const store = await this.openStore()
    const chunkSize = resolveChunkSize(this.flags['chunk-size'], process.env, await store.readConfig(), DEFAULT_CHUNK_SIZE)
    const annotations: Record<string, string> = {}
    for (const a of this.flags.annotation ?? []) {
      const eq = a.indexOf('=')
      if (eq <= 0) throw new UsageError(`annotation ${JSON.stringify(a)} is not KEY=VALUE`)
      const key = a.slice(0, eq)
      if (Object.hasOwn(annotations, key)) throw new UsageError(`annotation ${JSON.stringify(key)} is given twice`)
      annotations[key] = a.slice(eq + 1)
    }
    const created = this.flags.created === undefined ? undefined : parseIsoTime(this.flags.created, '--created')
    const parent = await this.resolveParent(store)
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

  /** --parent must exist; --parent-if-exists may name nothing yet (the first build of a series). */
  private async resolveParent(store: LocalStore): Promise<string | undefined> {
    if (this.flags.parent) return store.resolveId(this.flags.parent)
    const spec = this.flags['parent-if-exists']
    if (!spec) return undefined
    try {
      return await store.resolveId(spec)
    } catch (err) {
      if (!(err instanceof RefNotFoundError)) throw err
      this.note(`no image ${spec} here: imported without a parent`)
      return undefined
    }
  }
}

/**
 * An ISO 8601 date or date-time, read the same on every machine: a time
 * without an offset is UTC (Date would read it in the local time zone, and
 * the same command would give another image id elsewhere). Anything else,
 * or a day the calendar does not have, is a usage error.
 */
export function parseIsoTime(text: string, what: string): Date {
  const m = /^(\d{4})-(\d{2})-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(\.\d{1,9})?)?(Z|[+-]\d{2}:\d{2})?)?$/.exec(text)
  const bad = () => new UsageError(`${what} ${JSON.stringify(text)} is not an ISO 8601 date or time (2026-01-31, 2026-01-31T12:00:00Z, 2026-01-31T12:00:00+02:00)`)
  if (!m) throw bad()
  const [, y, mo, d, h = '00', mi = '00', sec = '00', frac = '', zone = 'Z'] = m
  const date = new Date(`${y}-${mo}-${d}T${h}:${mi}:${sec}${frac.slice(0, 4)}${zone}`)
  // Date rolls 2026-02-30 over into March: the day must be the one written
  const day = new Date(Date.UTC(Number(y), Number(mo) - 1, Number(d)))
  if (Number.isNaN(date.getTime()) || day.getUTCMonth() !== Number(mo) - 1 || day.getUTCDate() !== Number(d) || Number(h) > 23 || Number(mi) > 59 || Number(sec) > 59) throw bad()
  return date
}
