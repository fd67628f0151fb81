/**
 * What an import reads: standard input, a raw file or block device read by
 * position, or another image format converted to raw (streamed by a
 * converter, or through a temporary raw file when none is installed).
 */
import {promises as fsp} from 'node:fs'
import {BadInputError, DependencyError, FileNotFoundError, isErrno, UsageError} from '../errors.js'
import {fileChunks, streamChunks} from './chunker.js'
import {convertToRawFile, DEFAULT_TOOLS, detectFormat, givenFormat, looksLikeText, openRawStream, sniffArchive, sniffFormat, type RawStream, type Tools} from './formats.js'
import type {LocalStore} from './local-store.js'

export interface ImportSource {
  chunks: AsyncIterable<Buffer>
  /** The raw size the source announces (a file's size, an image's virtual size); undefined for stdin. */
  expectedSize?: number
  sourceFormat: string
  /** How the source is read. */
  via: string
  converter?: RawStream
  /** A raw file read by position: imported by segments on two threads at once. */
  file?: {fd: number; size: number}
  /** Close what was opened and remove what was staged. */
  cleanup: () => Promise<void>
}

export interface ImportSourceInit {
  format?: string
  tools?: Tools
  signal?: AbortSignal
  stdin?: AsyncIterable<Uint8Array>
}

/** Open `source` (a path, or '-' for `init.stdin`) as chunks of `chunkSize`. */
export async function openImportSource(store: LocalStore, source: string, chunkSize: number, init: ImportSourceInit): Promise<ImportSource> {
  if (source === '-') {
    if (!init.stdin) throw new UsageError('no standard input to read the image from')
    return {chunks: streamChunks(init.stdin, chunkSize, init.signal), sourceFormat: 'raw', via: 'stdin', cleanup: async () => {}}
  }
  const tools = init.tools ?? DEFAULT_TOOLS
  const {fh, size, head} = await openSource(source)
  const closeFile = () => fh.close()
  try {
    const archive = sniffArchive(head)
    if (archive && !sniffFormat(head))
      throw new BadInputError(`${source} is a ${archive} file, not a disk image; unpack it first`, {data: {source, archive}})
    if (!sniffFormat(head) && looksLikeText(head)) throw new BadInputError(`${source} looks like a text file, not a disk image`, {data: {source}})
    const fmt = init.format ? await givenFormat(source, init.format, size, tools) : await detectFormat(source, size, head, tools)
    if (fmt.format === 'raw') {
      checkRawSize(source, size)
      const chunks = fileChunks(fh.fd, size, chunkSize, {signal: init.signal})
      return {chunks, expectedSize: size, sourceFormat: 'raw', via: 'file', file: {fd: fh.fd, size}, cleanup: closeFile}
    }
    const expectedSize = fmt.virtualSize
    checkRawSize(`${source} (${fmt.format}, virtual size)`, expectedSize)
    const converter = await openRawStream(source, fmt.format, tools)
    if (converter) {
      const chunks = streamChunks(converter.stream, chunkSize, init.signal)
      return {chunks, expectedSize, sourceFormat: fmt.format, via: converter.how, converter, cleanup: closeFile}
    }
    return await convertedFile(store, source, fmt.format, expectedSize, chunkSize, tools, closeFile, init.signal)
  } catch (err) {
    await closeFile()
    throw err
  }
}

/** No nbdcopy/qemu-nbd: a sparse raw copy of `source` in the store's tmp/, read as a raw file. */
async function convertedFile(
  store: LocalStore,
  source: string,
  format: string,
  expectedSize: number,
  chunkSize: number,
  tools: Tools,
  closeSource: () => Promise<void>,
  signal?: AbortSignal,
): Promise<ImportSource> {
  const tmp = store.tmpPath('convert.raw')
  const removeTmp = () => fsp.rm(tmp, {force: true})
  let raw: fsp.FileHandle
  try {
    await convertToRawFile(source, format, tmp, tools)
    raw = await fsp.open(tmp, 'r')
  } catch (err) {
    await removeTmp()
    throw err
  }
  const cleanup = async () => {
    await raw.close()
    await removeTmp()
    await closeSource()
  }
  try {
    const converted = (await raw.stat()).size
    if (converted !== expectedSize)
      throw new DependencyError(`qemu-img convert turned ${source} (${format}) into ${converted} bytes, expected its virtual size ${expectedSize}`, {
        data: {tool: tools.qemuImg, bytes: converted, expected: expectedSize},
      })
  } catch (err) {
    await raw.close()
    await removeTmp()
    throw err
  }
  const chunks = fileChunks(raw.fd, expectedSize, chunkSize, {signal})
  return {chunks, expectedSize, sourceFormat: format, via: 'qemu-img convert (temporary raw file)', file: {fd: raw.fd, size: expectedSize}, cleanup}
}

export function checkRawSize(what: string, size: number): void {
  if (size === 0) throw new BadInputError(`${what} is empty`)
  if (size % 512 !== 0)
    throw new BadInputError(`${what} is not a disk image: its size ${size} is not a multiple of 512 bytes`, {data: {size}})
}

async function openSource(source: string): Promise<{fh: fsp.FileHandle; size: number; head: Buffer}> {
  let fh: fsp.FileHandle
  try {
    fh = await fsp.open(source, 'r')
  } catch (err) {
    if (isErrno(err, 'ENOENT', 'ENOTDIR')) throw new FileNotFoundError(`no such file: ${source}`, {data: {source}})
    if (isErrno(err, 'EACCES', 'EPERM')) throw new BadInputError(`cannot read ${source}: permission denied`, {data: {source}})
    if (isErrno(err, 'EISDIR')) throw new BadInputError(`${source} is a directory, not a disk image`, {data: {source}})
    throw new BadInputError(`cannot open ${source}: ${(err as Error).message}`, {cause: err})
  }
  try {
    const st = await fh.stat()
    if (st.isDirectory()) throw new BadInputError(`${source} is a directory, not a disk image`, {data: {source}})
    let size = st.size
    if (st.isBlockDevice()) size = await blockDeviceSize(fh)
    else if (!st.isFile()) throw new BadInputError(`${source} is not a regular file or block device; pipe it to 'vmi import -'`)
    if (size === 0) throw new BadInputError(`${source} is empty`, {data: {source}})
    const head = Buffer.alloc(Math.min(size, 4096))
    try {
      await fh.read(head, 0, head.length, 0)
    } catch (err) {
      if (isErrno(err, 'EISDIR')) throw new BadInputError(`${source} is a directory, not a disk image`)
      throw new BadInputError(`cannot read ${source}: ${(err as Error).message}`, {cause: err})
    }
    return {fh, size, head}
  } catch (err) {
    await fh.close()
    throw err
  }
}

async function blockDeviceSize(fh: fsp.FileHandle): Promise<number> {
  // lseek(SEEK_END) is not exposed; probe the size by binary search on reads.
  const buf = Buffer.alloc(512)
  let lo = 0
  let hi = 512
  while ((await fh.read(buf, 0, 1, hi - 1)).bytesRead === 1) {
    lo = hi
    hi *= 2
  }
  while (hi - lo > 512) {
    const mid = lo + Math.floor((hi - lo) / 1024) * 512
    if ((await fh.read(buf, 0, 1, mid - 1)).bytesRead === 1) lo = mid
    else hi = mid
  }
  return lo
}
