/** Small filesystem helpers shared by the store modules. */
import {randomBytes} from 'node:crypto'
import {promises as fsp} from 'node:fs'
import path from 'node:path'
import {isErrno} from '../errors.js'

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
 */
export async function mkdirp(dir: string): Promise<void> {
  try {
    await fsp.mkdir(dir, {recursive: true})
  } catch (err) {
    if (!isErrno(err, 'ENOENT') || path.dirname(dir) === dir) throw err
    // one level at a time: the level that cannot be created says why (EROFS, EACCES)
    await mkdirp(path.dirname(dir))
    await fsp.mkdir(dir).catch((e: unknown) => {
      if (!isErrno(e, 'EEXIST')) throw e
    })
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
      await mkdirp(path.dirname(dest))
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
