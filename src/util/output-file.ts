/**
 * A file a command writes for the user (export's image, save's bundle):
 * written beside the destination under a staging name and put in place only
 * when complete, so a failed or interrupted run leaves no partial file and
 * never replaces an existing one unless asked.
 */
import {promises as fsp, type Stats} from 'node:fs'
import path from 'node:path'
import type {Writable} from 'node:stream'
import {FileExistsError, isErrno, UsageError, VmiError} from '../errors.js'
import {tmpName} from './fs-util.js'

/**
 * The destination checked before any work: not a directory, and not an
 * existing file unless `overwrite`. Returns its absolute path and what is
 * there (undefined: nothing; a device or FIFO is written in place by those
 * who support it).
 */
export async function outputTarget(dest: string, overwrite: boolean): Promise<{target: string; st?: Stats}> {
  const target = path.resolve(dest)
  let st: Stats | undefined
  try {
    st = await fsp.stat(target)
  } catch (err) {
    if (!isErrno(err, 'ENOENT')) throw err
  }
  if (st?.isDirectory()) throw new UsageError(`${dest} is a directory; give a file name`)
  if (st?.isFile() && !overwrite) throw new FileExistsError(`${dest} already exists`, {data: {file: target}})
  return {target, st}
}

/** The staging file beside `target` (hidden; the same filesystem, so that publishing it is a link or a rename). */
export function stagingFile(target: string, label: string): string {
  return path.join(path.dirname(target), `.${path.basename(target)}.${tmpName(label)}`)
}

/**
 * Put the finished file in place. Without `overwrite`, a hard link makes it
 * appear only if nothing took the name meanwhile (EEXIST); a filesystem
 * without hard links falls back to a rename.
 */
export async function publishFile(file: string, target: string, overwrite: boolean, shown: string): Promise<void> {
  if (!overwrite) {
    try {
      await fsp.link(file, target)
      await fsp.rm(file, {force: true})
      return
    } catch (err) {
      if (isErrno(err, 'EEXIST')) throw new FileExistsError(`${shown} already exists`, {cause: err, data: {file: target}})
      if (!isErrno(err, 'EPERM', 'ENOTSUP', 'EOPNOTSUPP', 'EMLINK')) throw err
    }
  }
  await fsp.rename(file, target)
}

const DENIED: Record<string, string> = {EACCES: 'permission denied', EPERM: 'operation not permitted', EROFS: 'read-only file system'}

/** A failed write to the destination in words (`what`: "the export", "the bundle"), or `err` itself. */
export function outputError(err: unknown, dest: string | Writable, what: string): unknown {
  const shown = typeof dest === 'string' ? dest : what
  if (isErrno(err, 'EPIPE')) return new VmiError(`the reader of ${what} went away (broken pipe)`, {cause: err})
  if (isErrno(err, 'ENOSPC', 'EDQUOT')) return new VmiError(`no space left writing ${shown}`, {cause: err})
  if (isErrno(err, 'EACCES', 'EPERM', 'EROFS')) return new VmiError(`cannot write ${shown}: ${DENIED[(err as NodeJS.ErrnoException).code!]}`, {cause: err})
  if (isErrno(err, 'ENOENT') && typeof dest === 'string') return new UsageError(`cannot write ${dest}: its directory does not exist`, {cause: err})
  return err
}
