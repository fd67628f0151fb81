/**
 * Configuration resolves in one place, in one order:
 * flag → VMI_* environment variable → store config file → default.
 * Pure: callers pass the environment in.
 */
import path from 'node:path'
import {UnknownRemoteError, UsageError} from '../errors.js'
import {isValidChunkSize} from '../store/manifest.js'
import {isHttpUrl, parsePeerList} from '../peer/peer-list.js'

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

/** A named remote in config.json (vmi remote add): its URL and the files of its credentials. */
export interface RemoteEntry {
  url: string
  tokenFile?: string
  caCert?: string
  readTokenFile?: string
  tlsClientCert?: string
  tlsClientKey?: string
  /** An s3:// remote's endpoint, region and addressing (vmi remote add --endpoint --region --path-style). */
  endpoint?: string
  region?: string
  pathStyle?: boolean
}

export interface RemoteConfig {
  /** endpoint, region, pathStyle: an s3:// remote's (vmi remote add --endpoint --region --path-style). */
  remotes?: Record<string, RemoteEntry>
  peers?: string[]
  peersFile?: string
}

/**
 * A remote's URL, parsed: http(s) with a host, or s3 (its bucket and prefix
 * are checked by parseS3Url); else a usage error naming it.
 */
export function parseRemoteUrl(url: string): URL {
  let u: URL
  try {
    u = new URL(url)
  } catch {
    throw new UsageError(`${url} is not a URL`)
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:' && u.protocol !== 's3:') throw new UsageError(`${url}: only http://, https:// and s3:// remotes are supported`)
  if (u.protocol !== 's3:' && !u.hostname) throw new UsageError(`${url} is not a URL`)
  return u
}

/**
 * Which remote a command talks to: a URL as given, a configured remote name,
 * or (no argument) the remote named `origin`, like git.
 */
export function resolveRemote(arg: string | undefined, config: RemoteConfig): RemoteEntry & {name?: string} {
  if (arg && /^[a-z][a-z0-9+.-]*:\/\//i.test(arg)) {
    parseRemoteUrl(arg)
    return {url: arg}
  }
  const name = arg ?? 'origin'
  const r = config.remotes?.[name]
  if (!r) {
    if (arg) throw new UnknownRemoteError(`no remote named ${JSON.stringify(arg)}: give a URL, or add it with 'vmi remote add ${arg} URL'`)
    throw new UsageError(`no remote given and no 'origin' configured: give a URL, or 'vmi remote add origin URL'`)
  }
  return {...r, name}
}


/** Peers: --peer flags, else VMI_PEERS, else the config's list; each must be an http(s) URL. */
export function resolvePeers(flags: string[] | undefined, env: Env, config: RemoteConfig): string[] {
  const list = flags && flags.length > 0 ? flags : env.VMI_PEERS ? parsePeerList(env.VMI_PEERS) : (config.peers ?? [])
  for (const u of list) if (!isHttpUrl(u)) throw new UsageError(`peer ${JSON.stringify(u)} is not an http(s) URL`)
  return [...new Set(list.map((u) => u.replace(/\/+$/, '')))]
}

/**
 * Where the push token comes from: --token, else --token-file, else
 * $VMI_PUSH_TOKEN, else the remote's token file. Files are read by the caller.
 */
export function resolveToken(
  flags: {token?: string; tokenFile?: string},
  env: Env,
  remote: {tokenFile?: string} = {},
): {token: string; from: string} | {file: string; from: string} | undefined {
  if (flags.token !== undefined) return {token: flags.token, from: '--token'}
  if (flags.tokenFile !== undefined) return {file: flags.tokenFile, from: '--token-file'}
  if (env.VMI_PUSH_TOKEN) return {token: env.VMI_PUSH_TOKEN, from: 'VMI_PUSH_TOKEN'}
  if (remote.tokenFile) return {file: remote.tokenFile, from: "the remote's tokenFile"}
  return undefined
}

/** The CA bundle file to trust besides the system's roots: --ca-cert, else $VMI_CA_CERT, else the remote's caCert. */
export function resolveCaCert(flag: string | undefined, env: Env, remote: {caCert?: string} = {}): string | undefined {
  return flag ?? (env.VMI_CA_CERT || undefined) ?? remote.caCert
}

/**
 * The client certificate and key files: --tls-client-cert/--tls-client-key,
 * else $VMI_TLS_CLIENT_CERT/$VMI_TLS_CLIENT_KEY, else the remote's; the two
 * always come from the same place. undefined: no client certificate.
 */
export function resolveClientCert(
  flags: {cert?: string; key?: string},
  env: Env,
  remote: {tlsClientCert?: string; tlsClientKey?: string} = {},
): {cert: string; key: string} | undefined {
  const pick = (cert: string | undefined, key: string | undefined, from: string) => {
    if (cert === undefined && key === undefined) return undefined
    if (cert === undefined || key === undefined) throw new UsageError(`${from}: a client certificate needs both the certificate and its key`)
    return {cert, key}
  }
  return (
    pick(flags.cert, flags.key, '--tls-client-cert/--tls-client-key') ??
    pick(env.VMI_TLS_CLIENT_CERT || undefined, env.VMI_TLS_CLIENT_KEY || undefined, 'VMI_TLS_CLIENT_CERT/VMI_TLS_CLIENT_KEY') ??
    pick(remote.tlsClientCert, remote.tlsClientKey, "the remote's tlsClientCert/tlsClientKey")
  )
}

/** The read token: --read-token-file, else $VMI_READ_TOKEN, else the remote's readTokenFile. Files are read by the caller. */
export function resolveReadToken(flag: string | undefined, env: Env, remote: {readTokenFile?: string} = {}): {token: string; from: string} | {file: string; from: string} | undefined {
  if (flag !== undefined) return {file: flag, from: '--read-token-file'}
  if (env.VMI_READ_TOKEN) return {token: env.VMI_READ_TOKEN, from: 'VMI_READ_TOKEN'}
  if (remote.readTokenFile) return {file: remote.readTokenFile, from: "the remote's readTokenFile"}
  return undefined
}

/** Cache budget in bytes: --max-cache, else $VMI_MAX_CACHE, else config maxCache; undefined = unlimited. */
export function resolveMaxCache(flag: string | undefined, env: Env, config: {maxCache?: unknown}): number | undefined {
  const raw = flag ?? env.VMI_MAX_CACHE ?? (config.maxCache === undefined ? undefined : String(config.maxCache))
  return raw === undefined || raw === '' ? undefined : parseSize(raw, 'cache budget')
}
