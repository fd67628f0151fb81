/** Small filesystem helpers shared by the store modules. */
import {randomBytes} from 'node:crypto'
import {constants as fsConstants, promises as fsp} from 'node:fs'
import path from 'node:path'
import {isErrno, StoreError} from '../errors.js'

/** A unique file name for staging under tmp/: `<pid>-<random>-<label>`. */
export function tmpName(label: string): string {
  return `${process.pid}-${randomBytes(6).toString('hex')}-${label.replace(/[^A-Za-z0-9._-]/g, '_').slice(0, 40)}`
}

/** Parse the pid out of a tmp/ or locks/ entry named by tmpName(). */
export function pidOfTmpName(name: string): number | undefined {
  const m = /^(\d+)-/.exec(name)
  return m ? Number(m[1]) : undefined
}

export function pidAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return isErrno(err, 'EPERM')
  }
}

export async function readFileOrUndefined(file: string): Promise<Buffer | undefined> {
  try {
    return await fsp.readFile(file)
  } catch (err) {
    if (isErrno(err, 'ENOENT', 'ENOTDIR')) return undefined
    throw err
  }
}

/**
 * A store file read whole, or undefined when absent; refuses what vmi never
 * writes there before reading a byte: a FIFO or device (it would block or
 * never end), a symbolic link when `noFollow`, or a file over `max` bytes
 * (`tooLarge` makes that error).
 */
export async function readFileBounded(
  file: string,
  max: number,
  tooLarge: (size: number) => Error,
  opts: {noFollow?: boolean} = {},
): Promise<Buffer | undefined> {
  let fh: fsp.FileHandle
  try {
    // O_NONBLOCK: opening a FIFO must not wait for a writer
    fh = await fsp.open(file, fsConstants.O_RDONLY | fsConstants.O_NONBLOCK | (opts.noFollow ? fsConstants.O_NOFOLLOW : 0))
  } catch (err) {
    if (isErrno(err, 'ENOENT', 'ENOTDIR')) return undefined
    if (opts.noFollow && isErrno(err, 'ELOOP')) throw new StoreError(`${file} is a symbolic link; vmi never writes one there and does not follow it`, {cause: err})
    throw err
  }
  try {
    const st = await fh.stat()
    if (!st.isFile()) throw new StoreError(`${file} is not a regular file; vmi never writes anything else there`)
    if (st.size > max) throw tooLarge(st.size)
    const buf = Buffer.allocUnsafe(st.size)
    let off = 0
    while (off < buf.length) {
      const {bytesRead} = await fh.read(buf, off, buf.length - off, off)
      if (bytesRead === 0) break
      off += bytesRead
    }
    return off === buf.length ? buf : buf.subarray(0, off)
  } finally {
    await fh.close().catch(() => {})
  }
}

export async function exists(file: string): Promise<boolean> {
  try {
    await fsp.access(file)
    return true
  } catch (err) {
    if (isErrno(err, 'ENOENT', 'ENOTDIR')) return false
    throw err
  }
}

/** Directory entries, or [] when the directory does not exist. */
export async function readdirOrEmpty(dir: string): Promise<string[]> {
  try {
    return await fsp.readdir(dir)
  } catch (err) {
    if (isErrno(err, 'ENOENT', 'ENOTDIR')) return []
    throw err
  }
}

/** Write `data` to `tmpFile`, optionally fsync, then rename over `dest`. */
export async function writeFileAtomic(tmpFile: string, dest: string, data: Uint8Array | string, sync = true): Promise<void> {
  const fh = await fsp.open(tmpFile, 'wx', 0o644)
  try {
    try {
      await fh.writeFile(data)
      if (sync) await fh.sync()
    } finally {
      await fh.close()
    }
    await fsp.mkdir(path.dirname(dest), {recursive: true})
    await fsp.rename(tmpFile, dest)
  } catch (err) {
    await fsp.rm(tmpFile, {force: true}).catch(() => {})
    throw err
  }
}

/**
 * Write `data` to `tmpFile`, then hard-link it to `dest` unless `dest`
 * already exists (an existing object is never overwritten). Returns true
 * when this call created `dest`.
 */
export async function writeFileNoClobber(tmpFile: string, dest: string, data: Uint8Array): Promise<boolean> {
  try {
    await fsp.writeFile(tmpFile, data, {flag: 'wx', mode: 0o444})
    try {
      await fsp.link(tmpFile, dest)
      return true
    } catch (err) {
      if (isErrno(err, 'EEXIST')) return false
      if (!isErrno(err, 'ENOENT')) throw err
      await fsp.mkdir(path.dirname(dest), {recursive: true})
      try {
        await fsp.link(tmpFile, dest)
        return true
      } catch (err2) {
        if (isErrno(err2, 'EEXIST')) return false
        throw err2
      }
    }
  } finally {
    // unlink, not rm: one syscall fewer per object on the hot path
    await fsp.unlink(tmpFile).catch(() => {})
  }
}
