/**
 * Disk image formats: detection (qemu-img info, or magic bytes when qemu-img
 * is absent) and raw streams of non-raw images through QEMU's tools.
 */
import {spawn} from 'node:child_process'
import {BadInputError, DependencyError, UsageError} from '../errors.js'

/** Formats imported through qemu-img / qemu-nbd. */
export const QEMU_FORMATS = ['qcow2', 'vmdk', 'vhdx', 'vdi', 'vpc', 'qed', 'qcow', 'parallels', 'dmg', 'cloop', 'bochs'] as const
/** What `import --format` names. */
export const IMPORT_FORMATS: readonly string[] = ['raw', ...QEMU_FORMATS]
/** What export writes (qemu-img convert -O). */
export const EXPORT_FORMATS: readonly string[] = ['raw', 'qcow2', 'vmdk', 'vhdx', 'vdi', 'vpc']

/** `format` when it is one of `known`, else a usage error listing them. */
export function checkFormat(format: string, known: readonly string[]): string {
  if (!known.includes(format)) throw new UsageError(`unknown format ${JSON.stringify(format)}: one of ${known.join(', ')}`)
  return format
}

export interface FormatInfo {
  format: string
  virtualSize: number
  /** How it was detected ('given': named by the user, its virtual size from qemu-img). */
  via: 'qemu-img' | 'magic' | 'given'
}

export interface Tools {
  qemuImg: string
  qemuNbd: string
  nbdcopy: string
}

export const DEFAULT_TOOLS: Tools = {qemuImg: 'qemu-img', qemuNbd: 'qemu-nbd', nbdcopy: 'nbdcopy'}

/** Recognise a format from the first bytes of a file (≥ 512 bytes). */
export function sniffFormat(head: Uint8Array): string | undefined {
  const b = Buffer.from(head.buffer, head.byteOffset, head.byteLength)
  const at = (off: number, s: string) => b.length >= off + s.length && b.toString('latin1', off, off + s.length) === s
  if (at(0, 'QFI\xfb')) return 'qcow2'
  if (at(0, 'KDMV') || at(0, '# Disk DescriptorFile') || at(0, 'COWD')) return 'vmdk'
  if (at(0, 'vhdxfile')) return 'vhdx'
  if (b.length >= 0x44 && b.readUInt32LE(0x40) === 0xbeda107f) return 'vdi'
  if (at(0, 'conectix')) return 'vpc'
  if (at(0, 'QED\0')) return 'qed'
  return undefined
}

/**
 * Text (a config file, JSON, a script) passed by mistake: the first bytes
 * have no NUL, contain a line break, and decode as printable UTF-8. Real
 * disk images always have NUL bytes in their first 4 KiB.
 */
export function looksLikeText(head: Uint8Array): boolean {
  const b = Buffer.from(head.buffer, head.byteOffset, head.byteLength)
  if (b.length === 0 || b.includes(0) || (!b.includes(0x0a) && !b.includes(0x0d))) return false
  const text = b.toString('utf8')
  // allow a multi-byte character cut at the end of the sample
  return !/[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]/.test(text) && !/\ufffd./s.test(text)
}

/** Compressed or archive formats people pass by mistake. */
export function sniffArchive(head: Uint8Array): string | undefined {
  const b = Buffer.from(head.buffer, head.byteOffset, head.byteLength)
  if (b[0] === 0x1f && b[1] === 0x8b) return 'gzip'
  if (b.length >= 6 && b.subarray(0, 6).equals(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]))) return 'xz'
  if (b.length >= 4 && b.readUInt32LE(0) === 0xfd2fb528) return 'zstd'
  if (b.toString('latin1', 0, 3) === 'BZh') return 'bzip2'
  if (b.toString('latin1', 0, 4) === 'PK\x03\x04') return 'zip'
  if (b.length >= 262 && b.toString('latin1', 257, 262) === 'ustar') return 'tar'
  return undefined
}

function isEnoent(err: unknown): boolean {
  return (err as {code?: string})?.code === 'ENOENT'
}

interface ToolResult {
  exitCode: number
  stdout: string
  stderr: string
}

/** execa, loaded on first use: most imports of raw files never run a tool, and loading it costs ~65 ms. */
function loadExeca(): Promise<typeof import('execa')> {
  return import('execa')
}

/** Run a tool to completion; undefined when it is not installed. */
async function runTool(tool: string, args: string[], timeout = 600_000): Promise<ToolResult | undefined> {
  const {execa} = await loadExeca()
  const r = await execa(tool, args, {reject: false, timeout, stdin: 'ignore'})
  if (r.failed && isEnoent(r)) return undefined
  if (r.failed && r.exitCode === undefined) throw new DependencyError(`running ${tool} failed: ${r.shortMessage ?? r.message}`)
  return {exitCode: r.exitCode ?? 1, stdout: String(r.stdout), stderr: String(r.stderr)}
}

/**
 * `file` read as `format`, which the user named (no detection): its virtual
 * size from `qemu-img info -f`, which also refuses a file that is not of
 * that format. Raw needs no tool.
 */
export async function givenFormat(file: string, format: string, size: number, tools: Tools = DEFAULT_TOOLS): Promise<FormatInfo> {
  checkFormat(format, IMPORT_FORMATS)
  if (format === 'raw') return {format, virtualSize: size, via: 'given'}
  const r = await runTool(tools.qemuImg, ['info', '-f', format, '--output=json', '--force-share', file], 60_000)
  if (r === undefined) throw new DependencyError(`importing ${format} needs qemu-img, which is not installed (Debian: apt-get install qemu-utils)`, {data: {format}})
  if (r.exitCode !== 0) throw new BadInputError(`${file} cannot be read as ${format}: ${lastLine(r.stderr)}`, {data: {format}})
  let vs: unknown
  try {
    vs = (JSON.parse(r.stdout) as {'virtual-size'?: unknown})['virtual-size']
  } catch {
    throw new DependencyError(`qemu-img info printed unexpected output for ${file}`)
  }
  if (typeof vs !== 'number' || !Number.isSafeInteger(vs) || vs <= 0) throw new BadInputError(`${file}: qemu-img reports no usable virtual size`)
  return {format, virtualSize: vs, via: 'given'}
}

/**
 * Detect the format of `file` (size `size`, first bytes `head`). Uses
 * `qemu-img info --output=json` when available; otherwise magic bytes, and a
 * non-raw format then needs qemu-img (DependencyError).
 */
export async function detectFormat(file: string, size: number, head: Uint8Array, tools: Tools = DEFAULT_TOOLS): Promise<FormatInfo> {
  const sniffed = sniffFormat(head)
  let info: {format?: string; 'virtual-size'?: number} | undefined
  const r = await runTool(tools.qemuImg, ['info', '--output=json', '--force-share', file], 60_000)
  if (r === undefined) {
    if (sniffed)
      throw new DependencyError(`${file} is a ${sniffed} image; importing ${sniffed} needs qemu-img, which is not installed (Debian: apt-get install qemu-utils)`, {
        data: {format: sniffed},
      })
    return {format: 'raw', virtualSize: size, via: 'magic'}
  }
  if (r.exitCode !== 0) {
    if (sniffed) throw new BadInputError(`${file} looks like ${sniffed} but qemu-img cannot read it: ${lastLine(r.stderr)}`)
    // qemu-img refused something with no known magic: it is read as raw
  } else {
    try {
      info = JSON.parse(r.stdout)
    } catch {
      throw new DependencyError(`qemu-img info printed unexpected output for ${file}`)
    }
  }
  if (!info || info.format === undefined || info.format === 'raw') return {format: 'raw', virtualSize: size, via: info ? 'qemu-img' : 'magic'}
  const vs = info['virtual-size']
  if (typeof vs !== 'number' || !Number.isSafeInteger(vs) || vs <= 0) throw new BadInputError(`${file}: qemu-img reports no usable virtual size`)
  return {format: info.format, virtualSize: vs, via: 'qemu-img'}
}

function lastLine(s: string): string {
  return s.trim().split('\n').pop() ?? ''
}

export interface RawStream {
  stream: AsyncIterable<Uint8Array>
  /** Resolves when the converter exits cleanly (or was killed by kill()); rejects with its error. */
  done: Promise<void>
  kill(): void
  /** The tools doing the conversion, for messages. */
  how: string
}

/** Bytes of a converter's stderr kept for its error message (the end, where the reason is). */
const STDERR_TAIL = 64 * 1024

/**
 * A raw byte stream of a non-raw image, without a temporary copy:
 * `nbdcopy -- [ qemu-nbd -r -f FMT FILE ] -` (qemu-nbd serves the image over
 * NBD, nbdcopy writes it to stdout). Returns undefined when nbdcopy or
 * qemu-nbd is missing, so the caller can fall back to a converted file.
 *
 * Invariant: no byte of the converter's output is lost, however late the
 * caller starts reading `stream` (an import first waits for the store lock,
 * up to minutes while a gc runs). Node's own child_process leaves an unread
 * stdout paused, so a full pipe stops nbdcopy until the reader comes. execa
 * with `buffer: false` does not: one macrotask after the spawn it resumes an
 * stdout nobody reads yet and its bytes are dropped (execa's resumeStream),
 * which cut random lengths from the start of imports.
 */
export async function openRawStream(file: string, format: string, tools: Tools = DEFAULT_TOOLS): Promise<RawStream | undefined> {
  for (const tool of [tools.nbdcopy, tools.qemuNbd]) if ((await runTool(tool, ['--version'], 10_000)) === undefined) return undefined
  const how = `${tools.nbdcopy} + ${tools.qemuNbd}`
  const child = spawn(tools.nbdcopy, ['--', '[', tools.qemuNbd, '-r', '--cache=none', '--aio=threads', '-f', format, file, ']', '-'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let stderr = ''
  child.stderr.setEncoding('utf8')
  child.stderr.on('data', (s: string) => (stderr = (stderr + s).slice(-STDERR_TAIL)))
  let killed = false
  const done = new Promise<void>((resolve, reject) => {
    child.once('error', (err) => reject(new DependencyError(`running ${tools.nbdcopy} failed: ${err.message}`, {cause: err})))
    child.once('close', (code, signal) => {
      if (killed) resolve()
      else if (signal !== null) reject(new DependencyError(`${how} converting ${file} (${format}) was killed by ${signal}`, {data: {tool: tools.nbdcopy, signal}}))
      else if (code !== 0) reject(new BadInputError(`converting ${file} (${format}) failed: ${lastLine(stderr)}`, {data: {tool: tools.nbdcopy, exitCode: code}}))
      else resolve()
    })
  })
  done.catch(() => {})
  return {
    stream: child.stdout,
    done,
    // unread output is discarded first: 'close' waits for stdout to end, and nbdcopy then stops on EPIPE if not on the signal
    kill: () => {
      killed = true
      child.stdout.destroy()
      child.kill('SIGTERM')
    },
    how,
  }
}

/** Convert to a sparse raw file (fallback when nbdcopy is missing). */
export async function convertToRawFile(file: string, format: string, dest: string, tools: Tools = DEFAULT_TOOLS): Promise<void> {
  const r = await runTool(tools.qemuImg, ['convert', '-f', format, '-O', 'raw', '-S', '4k', file, dest])
  if (r === undefined) throw new DependencyError(`importing ${format} needs qemu-img, which is not installed (Debian: apt-get install qemu-utils)`)
  if (r.exitCode !== 0) throw new BadInputError(`qemu-img could not convert ${file} (${format}): ${lastLine(r.stderr)}`)
}

/** Convert a raw file to another format with qemu-img. */
export async function convertFromRaw(rawFile: string, format: string, dest: string, tools: Tools = DEFAULT_TOOLS): Promise<void> {
  const r = await runTool(tools.qemuImg, ['convert', '-f', 'raw', '-O', format, rawFile, dest])
  if (r === undefined) throw new DependencyError(`exporting as ${format} needs qemu-img, which is not installed (Debian: apt-get install qemu-utils)`)
  if (r.exitCode !== 0) throw new DependencyError(`qemu-img convert to ${format} failed: ${lastLine(r.stderr)}`)
}
