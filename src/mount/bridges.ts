/**
 * The bridges of a mount: the NBD export handed on as a regular file (FUSE,
 * through qemu-storage-daemon), a vhost-user-blk socket (qemu-storage-daemon)
 * or a kernel /dev/nbdN (nbd-client).
 */
import {execa, type ResultPromise} from 'execa'
import {existsSync, promises as fsp} from 'node:fs'
import path from 'node:path'
import {DependencyError} from '../errors.js'

export interface BridgeInit {
  file?: string
  vhostUserBlk?: string
  device?: string
  readOnly?: boolean
  /** Where the NBD export listens: a unix socket, or TCP. */
  socketPath?: string
  listen?: {host: string; port: number}
  /** The image's size: the FUSE file is up when it has it. */
  virtualSize: number
}

export interface Bridges {
  file?: string
  vhostUserBlk?: string
  device?: string
}

/**
 * Start the bridges `init` asks for (at most one, the caller checked), each
 * once its tool answers; each one's stop goes to `cleanups` as soon as it
 * runs, so a failure later stops it too.
 */
export async function startBridges(init: BridgeInit, cleanups: (() => Promise<void>)[]): Promise<Bridges> {
  const out: Bridges = {}
  const writable = init.readOnly ? 'off' : 'on'
  const {socketPath} = init
  const nbdNode =
    (socketPath
      ? `driver=nbd,server.type=unix,server.path=${socketPath},node-name=vmi0`
      : `driver=nbd,server.type=inet,server.host=${init.listen!.host},server.port=${init.listen!.port},node-name=vmi0`) + (init.readOnly ? ',read-only=on' : '')
  if (init.file) {
    const file = path.resolve(init.file)
    const created = !existsSync(file)
    if (created) await fsp.writeFile(file, '')
    const child = qsd(['--blockdev', nbdNode, '--export', `type=fuse,id=vmi-fuse,node-name=vmi0,mountpoint=${file},writable=${writable}`])
    cleanups.push(async () => {
      child.kill('SIGTERM')
      await child
      if (created) await fsp.rm(file, {force: true})
    })
    await waitFor(async () => (await fsp.stat(file)).size === init.virtualSize, `the FUSE file ${file} (qemu-storage-daemon)`, 15_000, child)
    out.file = file
  }
  if (init.vhostUserBlk) {
    const sock = path.resolve(init.vhostUserBlk)
    await fsp.rm(sock, {force: true})
    const child = qsd(['--blockdev', nbdNode, '--export', `type=vhost-user-blk,id=vmi-vub,node-name=vmi0,addr.type=unix,addr.path=${sock},writable=${writable}`])
    cleanups.push(async () => {
      child.kill('SIGTERM')
      await child
      await fsp.rm(sock, {force: true})
    })
    await waitFor(async () => existsSync(sock), `the vhost-user-blk socket ${sock} (qemu-storage-daemon)`, 15_000, child)
    out.vhostUserBlk = sock
  }
  if (init.device) {
    const device = init.device
    if (!existsSync(device) || !existsSync('/sys/module/nbd'))
      throw new DependencyError(`${device} is not available: this kernel has no NBD driver loaded (modprobe nbd), use --file instead`)
    const args = socketPath ? ['-unix', socketPath, device] : [init.listen!.host, String(init.listen!.port), device]
    const r = await execa('nbd-client', args, {reject: false})
    if (r.exitCode !== 0) throw new DependencyError(`nbd-client could not attach ${device}: ${String(r.stderr).trim()}`)
    cleanups.push(async () => {
      await execa('nbd-client', ['-d', device], {reject: false})
    })
    out.device = device
  }
  return out
}

async function waitFor(check: () => Promise<boolean>, what: string, timeoutMs = 15_000, child?: ResultPromise): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (await check()) return
    if (child && child.exitCode !== null) break
    await new Promise((r) => setTimeout(r, 50))
  }
  let detail = ''
  if (child) {
    child.kill('SIGTERM')
    const r = await child.catch((e) => e)
    detail = `: ${String(r.stderr ?? '').trim().split('\n').slice(-3).join(' ')}`
  }
  throw new DependencyError(`${what} did not come up${detail}`)
}

function qsd(args: string[]): ResultPromise {
  const child = execa('qemu-storage-daemon', args, {reject: false, stdin: 'ignore', stdout: 'ignore', stderr: 'pipe', buffer: {stderr: true}})
  child.catch(() => {})
  return child
}
