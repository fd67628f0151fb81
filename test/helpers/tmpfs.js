// A small tmpfs for full and read-only store tests (root only).
import {spawnSync} from 'node:child_process'
import {mkdirSync} from 'node:fs'
import path from 'node:path'
import {isRoot} from './index.js'

/** Run a command; undefined on success, else a one-line reason. */
export function sh(cmd, args) {
  const r = spawnSync(cmd, args, {encoding: 'utf8'})
  return r.status === 0 ? undefined : `${cmd} ${args.join(' ')}: ${(r.stderr || r.error?.message || '').trim()}`
}

/** Mount a tmpfs of `size` on a new dir under `dir`; returns {mnt, umount} or {reason} to skip. */
export function tmpfs(dir, size, name = 'mnt') {
  if (!isRoot) return {reason: 'not root: cannot mount a tmpfs'}
  const mnt = path.join(dir, name)
  mkdirSync(mnt)
  const err = sh('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', mnt])
  if (err) return {reason: `cannot mount a tmpfs (${err})`}
  return {mnt, umount: () => sh('umount', [mnt]) && sh('umount', ['-l', mnt])}
}
