/**
 * One owner per path: an overlay directory, a --file path, an NBD socket.
 *
 * The lock is a listening unix socket in Linux's abstract namespace, named
 * after the path's canonical form. Binding it is atomic, and the kernel
 * drops it when its process exits in any way (kill -9 included), so a lock
 * survives nothing but its process and no stale lock file needs reaping. A
 * process that finds the name taken connects to it and reads who holds it.
 *
 * Abstract sockets belong to a network namespace: two processes in
 * different network namespaces do not see each other's locks.
 */
import {createHash} from 'node:crypto'
import {realpathSync} from 'node:fs'
import net from 'node:net'
import path from 'node:path'
import {InUseError} from '../errors.js'

export interface OwnerInfo {
  pid: number
  /** What holds it, e.g. "vmi mount of <id>". */
  holder: string
  started: string
}

export interface OwnerLock {
  readonly path: string
  release(): Promise<void>
}

/**
 * The path with its deepest existing ancestor resolved through symlinks and
 * the rest appended: the same name before and after the missing directories
 * are created (the path itself, and directories leading to it, may not
 * exist yet), so that two spellings of one path share one lock.
 */
export function canonicalPath(p: string): string {
  let existing = path.resolve(p)
  const rest: string[] = []
  for (;;) {
    try {
      return path.join(realpathSync(existing), ...rest)
    } catch {
      const parent = path.dirname(existing)
      if (parent === existing) return path.resolve(p)
      rest.unshift(path.basename(existing))
      existing = parent
    }
  }
}

function socketName(kind: string, canonical: string): string {
  return '\0vmi-owner/' + createHash('sha256').update(`${kind}\n${canonical}`).digest('hex')
}

/** Ask the holder of a taken name who it is (undefined when it does not answer within `ms`). */
function askHolder(name: string, ms = 1000): Promise<OwnerInfo | undefined> {
  return new Promise((resolve) => {
    let body = ''
    const sock = net.connect({path: name})
    const done = (info?: OwnerInfo) => {
      clearTimeout(timer)
      sock.destroy()
      resolve(info)
    }
    const timer = setTimeout(() => done(), ms)
    sock.setEncoding('utf8')
    sock.on('data', (d: string) => (body += d.slice(0, 4096)))
    sock.on('end', () => {
      try {
        const info = JSON.parse(body) as OwnerInfo
        done(typeof info?.pid === 'number' ? info : undefined)
      } catch {
        done()
      }
    })
    sock.on('error', () => done())
  })
}

/**
 * Become the one owner of `p` for `kind` ('overlay', 'file', 'socket'), or
 * throw InUseError naming the holder's pid. `holder` says what this process is.
 */
export async function acquireOwner(kind: string, p: string, holder: string): Promise<OwnerLock> {
  const canonical = canonicalPath(p)
  const name = socketName(kind, canonical)
  const info: OwnerInfo = {pid: process.pid, holder, started: new Date().toISOString()}
  const server = net.createServer((sock) => {
    sock.on('error', () => {})
    sock.end(JSON.stringify(info))
  })
  server.on('error', () => {})
  const bound = await new Promise<boolean>((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException) => (err.code === 'EADDRINUSE' ? resolve(false) : reject(err))
    server.once('error', onError)
    server.listen({path: name}, () => {
      server.off('error', onError)
      resolve(true)
    })
  })
  if (!bound) {
    const other = await askHolder(name)
    const who = other ? `${other.holder} (pid ${other.pid}, since ${other.started})` : 'another process that does not say which'
    throw new InUseError(`${kind} ${canonical} is in use by ${who}`, {data: {kind, path: canonical, pid: other?.pid}})
  }
  // the lock must not keep the process alive by itself
  server.unref()
  return {
    path: canonical,
    release: () => new Promise<void>((resolve) => server.close(() => resolve())),
  }
}
