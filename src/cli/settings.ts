/**
 * Configuration resolves in one place, in one order:
 * flag → VMI_* environment variable → store config file → default.
 * Pure: callers pass the environment in.
 */
import path from 'node:path'
import {UsageError} from '../errors.js'
import {isValidChunkSize} from '../store/manifest.js'

export interface Env {
  [key: string]: string | undefined
}

/** The store directory: --store, $VMI_HOME, $XDG_DATA_HOME/vmi, ~/.local/share/vmi. */
export function resolveStoreDir(flag: string | undefined, env: Env, home: string): string {
  if (flag) return path.resolve(flag)
  if (env.VMI_HOME) return path.resolve(env.VMI_HOME)
  if (env.XDG_DATA_HOME) return path.resolve(env.XDG_DATA_HOME, 'vmi')
  return path.resolve(home, '.local', 'share', 'vmi')
}

const UNITS: Record<string, number> = {'': 1, b: 1, k: 1024, kb: 1024, kib: 1024, m: 1024 ** 2, mb: 1024 ** 2, mib: 1024 ** 2, g: 1024 ** 3, gb: 1024 ** 3, gib: 1024 ** 3, t: 1024 ** 4, tb: 1024 ** 4, tib: 1024 ** 4}

/** Parse "262144", "256K", "256KiB", "1M", "1.5G" (binary units). */
export function parseSize(input: string, what = 'size'): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(input)
  const unit = m ? UNITS[m[2].toLowerCase()] : undefined
  if (!m || unit === undefined) throw new UsageError(`invalid ${what} ${JSON.stringify(input)}: use a number with an optional unit K, M, G or T`)
  const n = Number(m[1]) * unit
  if (!Number.isSafeInteger(Math.round(n))) throw new UsageError(`${what} ${input} is too large`)
  return Math.round(n)
}

export function resolveChunkSize(flag: string | undefined, env: Env, config: {chunkSize?: unknown}, fallback: number): number {
  let n: number
  let from: string
  if (flag !== undefined) [n, from] = [parseSize(flag, 'chunk size'), '--chunk-size']
  else if (env.VMI_CHUNK_SIZE) [n, from] = [parseSize(env.VMI_CHUNK_SIZE, 'chunk size'), 'VMI_CHUNK_SIZE']
  else if (config.chunkSize !== undefined) [n, from] = [Number(config.chunkSize), 'the store config']
  else return fallback
  if (!isValidChunkSize(n)) throw new UsageError(`chunk size ${n} (from ${from}) must be a power of two between 64K and 4M`)
  return n
}
