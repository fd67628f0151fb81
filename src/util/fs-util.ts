/** Small filesystem helpers shared by the store modules. */
import {randomBytes} from 'node:crypto'
import fs, {constants as fsConstants, promises as fsp} from 'node:fs'
import path from 'node:path'
import {isErrno, StoreError} from '../errors.js'

/** A unique file name for staging under tmp/: `<pid>-<random>-<label>`. */
export function tmpName(label: string): string {
  return `${process.pid}-${randomBytes(6).toString('hex')}-${label.replace(/[^A-Za-z0-9._-]/g, '_').slice(0, 40)}`
}

let stagingPrefix: string | undefined
let stagingCount = 0

/**
 * tmpName for hot paths (one per chunk object): the same `<pid>-<random>-`
 * shape, with the random part drawn once per process and a counter after it.
 */
export function fastTmpName(label: string): string {
  stagingPrefix ??= `${process.pid}-${randomBytes(6).toString('hex')}-`
  return `${stagingPrefix}${(stagingCount++).toString(36)}.${label}`
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

/**
 * mkdir -p that reports the real cause of a failure: Node's recursive mkdir
 * says ENOENT when a directory cannot be created on a read-only filesystem.
 * Synchronous: it runs on the object write path, and elsewhere a few mkdir
 * calls do not need the thread pool.
 */
export function mkdirpSync(dir: string): void {
  // one level at a time, not mkdirSync's recursive mode: on a filesystem that refuses a new entry with ENOENT
  // (procfs) that mode retries forever; here the level that cannot be made says why (ENOENT, EROFS, EACCES)
  try {
    fs.mkdirSync(dir)
  } catch (err) {
    if (isErrno(err, 'EEXIST')) {
      if (fs.statSync(dir).isDirectory()) return
      throw err
    }
    if (!isErrno(err, 'ENOENT') || path.dirname(dir) === dir) throw err
    mkdirpSync(path.dirname(dir))
    try {
      fs.mkdirSync(dir)
    } catch (e) {
      if (!isErrno(e, 'EEXIST')) throw e
    }
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
    await mkdirp(path.dirname(dest))
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
 *
 * Synchronous system calls on purpose: for small files (chunk objects) this
 * is several times cheaper than the promise API, where each of the five calls
 * is a round trip through libuv's thread pool (docs/FORMAT.md, "Writing
 * objects"). The event loop is blocked for tens of microseconds per object,
 * which the store's callers accept.
 */
export function writeFileNoClobberSync(tmpFile: string, dest: string, data: Uint8Array): boolean {
  writeNewFileSync(tmpFile, data)
  try {
    try {
      fs.linkSync(tmpFile, dest)
      return true
    } catch (err) {
      if (isErrno(err, 'EEXIST')) return false
      if (!isErrno(err, 'ENOENT')) throw err
      mkdirpSync(path.dirname(dest))
      try {
        fs.linkSync(tmpFile, dest)
        return true
      } catch (err2) {
        if (isErrno(err2, 'EEXIST')) return false
        throw err2
      }
    }
  } finally {
    try {
      fs.unlinkSync(tmpFile)
    } catch {
      // already gone; gc removes stale tmp/ files in any case
    }
  }
}

/**
 * Create `file`, which must not exist, read-only (0444), holding `data`, in
 * synchronous calls. When a write or the close fails, the file is removed
 * and the error thrown.
 */
export function writeNewFileSync(file: string, data: Uint8Array): void {
  const fd = fs.openSync(file, 'wx', 0o444)
  try {
    try {
      let off = 0
      while (off < data.length) off += fs.writeSync(fd, data, off, data.length - off)
    } finally {
      fs.closeSync(fd)
    }
  } catch (err) {
    fs.rmSync(file, {force: true})
    throw err
  }
}

/** mkdirpSync for async callers. */
export async function mkdirp(dir: string): Promise<void> {
  mkdirpSync(dir)
}
