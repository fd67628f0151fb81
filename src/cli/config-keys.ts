/**
 * Every setting vmi reads, where it can come from, and how `vmi config set`
 * checks a value for the store's config.json. The README's settings table is
 * tested against this list, and this list against the VMI_* variables the
 * code reads, so none of the three can drift from the others.
 *
 * Precedence is the same for every setting (see settings.ts):
 * flag → VMI_* environment variable → store config file → default.
 */
import path from 'node:path'
import {UsageError} from '../errors.js'
import {isValidChunkSize} from '../store/manifest.js'
import {isHttpUrl, parsePeerList} from '../peer/peer-list.js'
import {readPeersFile} from '../peer/factory.js'
import {parseSize} from './settings.js'
import {readAllowedSigners} from './signing.js'

export interface Setting {
  /** What it is, for tables and help. */
  name: string
  /** Key in the store's config.json; undefined when the setting is not kept there. */
  key?: string
  /** Environment variables, in the order they are consulted. */
  env: string[]
  /** Flags, as `--flag (command, command)`. */
  flags: string[]
  summary: string
  /** Text → the value stored in config.json (throws UsageError); undefined when `vmi config set` must not write it. */
  parse?: (text: string) => unknown
  /** The value names a file that must exist when it is set. */
  file?: boolean
  /** Reads that file as the commands will (a missing one: exit 3; one they would refuse: exit 2), so that a bad one is refused when set. */
  check?: (file: string) => Promise<unknown>
  /** Set by another command instead of `vmi config set`. */
  managedBy?: string
}

/** A setting naming a file: stored as an absolute path. */
function parsePath(what: string): (text: string) => string {
  return (text) => {
    if (text.trim() === '') throw new UsageError(`${what}: give a path`)
    return path.resolve(text)
  }
}

export const SETTINGS: Setting[] = [
  {
    name: 'store directory',
    env: ['VMI_HOME', 'XDG_DATA_HOME'],
    flags: ['--store (every command)'],
    summary: 'Where the store lives: --store, else $VMI_HOME, else $XDG_DATA_HOME/vmi, else ~/.local/share/vmi.',
  },
  {
    name: 'chunk size',
    key: 'chunkSize',
    env: ['VMI_CHUNK_SIZE'],
    flags: ['--chunk-size (import)'],
    summary: 'Chunk size of new imports: a power of two between 64K and 4M (default 128K).',
    parse: (text) => {
      const n = parseSize(text, 'chunk size')
      if (!isValidChunkSize(n)) throw new UsageError(`chunk size ${n} must be a power of two between 64K and 4M`)
      return n
    },
  },
  {
    name: 'cache budget',
    key: 'maxCache',
    env: ['VMI_MAX_CACHE'],
    flags: ['--max-cache (gc, pull)'],
    summary: 'After a pull, and on gc, evict least-recently-used chunks of unpinned images until the objects fit (default: no budget).',
    parse: (text) => parseSize(text, 'cache budget'),
  },
  {
    name: 'peers',
    key: 'peers',
    env: ['VMI_PEERS'],
    flags: ['--peer (pull, mount, commit)'],
    summary: 'Peer URLs (vmi serve on other hosts) to fetch from before the seed; a list separated by commas, spaces or newlines.',
    parse: (text) => {
      const list = parsePeerList(text)
      for (const u of list) if (!isHttpUrl(u)) throw new UsageError(`peer ${JSON.stringify(u)} is not an http(s) URL`)
      return [...new Set(list.map((u) => u.replace(/\/+$/, '')))]
    },
  },
  {
    name: 'peers file',
    key: 'peersFile',
    env: [],
    flags: ['--peers-file (pull, mount, commit)'],
    summary: 'A file with one peer URL a line, re-read when it changes.',
    parse: parsePath('peers file'),
    file: true,
    check: readPeersFile,
  },
  {
    name: 'remotes',
    key: 'remotes',
    env: [],
    flags: ['REMOTE argument (pull, push, mount, commit)'],
    summary: "Named seeds, each {url, tokenFile, caCert, readTokenFile, tlsClientCert, tlsClientKey} (an s3:// one {url, endpoint, region, pathStyle}); the default is 'origin'.",
    managedBy: 'vmi remote add|rm',
  },
  {
    name: 'push token',
    env: ['VMI_PUSH_TOKEN'],
    flags: ['--token, --token-file (push, serve)'],
    summary: "Bearer token for uploads; else the remote's tokenFile (vmi remote add --token-file).",
  },
  {
    name: 'CA certificates',
    env: ['VMI_CA_CERT'],
    flags: ['--ca-cert (pull, push, mount, commit, serve)'],
    summary: "A PEM bundle of CA certificates trusted besides the system's roots; else the remote's caCert (vmi remote add --ca-cert).",
  },
  {
    name: 'client certificate',
    env: ['VMI_TLS_CLIENT_CERT', 'VMI_TLS_CLIENT_KEY'],
    flags: ['--tls-client-cert, --tls-client-key (pull, push, mount, commit, serve)'],
    summary: "PEM client certificate and key shown to servers that require one (serve --client-ca); serve shows it to its --seed; else the remote's tlsClientCert/tlsClientKey.",
  },
  {
    name: 'read token',
    env: ['VMI_READ_TOKEN'],
    flags: ['--read-token-file (pull, push, mount, commit)'],
    summary: "Bearer token sent on every request to servers started with --read-token-file (serve sends it to its --seed); else the remote's readTokenFile.",
  },
  {
    name: 'allowed signers',
    key: 'allowedSigners',
    env: ['VMI_ALLOWED_SIGNERS'],
    flags: ['--verify-signers (pull, mount, verify)'],
    summary: "An allowed signers file (git's and ssh-keygen's format): pulls and mounts by NAME:TAG then need the ref signed by a key it allows for that name (default: not checked).",
    parse: parsePath('allowed signers file'),
    file: true,
    check: readAllowedSigners,
  },
  {
    name: 'S3 credentials',
    env: ['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_SESSION_TOKEN', 'AWS_PROFILE', 'AWS_SHARED_CREDENTIALS_FILE', 'AWS_CONFIG_FILE'],
    flags: [],
    summary: 'Keys for s3:// remotes, as the AWS CLI reads them: the variables, else ~/.aws/credentials, else ~/.aws/config, for the profile AWS_PROFILE names (default "default"); none: anonymous requests (a public bucket).',
  },
  {
    name: 'S3 region',
    env: ['AWS_REGION', 'AWS_DEFAULT_REGION'],
    flags: ['--region (remote:add)'],
    summary: "Region of s3:// remotes; else the remote's region, else the profile's, else us-east-1.",
  },
  {
    name: 'S3 endpoint',
    env: ['AWS_ENDPOINT_URL_S3', 'AWS_ENDPOINT_URL'],
    flags: ['--endpoint (remote:add)'],
    summary: "Endpoint of an S3-compatible store (Ceph RGW, MinIO, R2) for s3:// remotes; else the remote's endpoint, else the profile's endpoint_url, else AWS.",
  },
  {
    name: 'S3 path style',
    env: ['VMI_S3_PATH_STYLE'],
    flags: ['--path-style (remote:add)'],
    summary: "1: path-style S3 requests (ENDPOINT/BUCKET/KEY), 0: virtual-hosted (BUCKET.ENDPOINT/KEY); else the remote's pathStyle, else path style for IP-address and localhost endpoints only.",
  },
  {
    name: 'peer timeout',
    env: ['VMI_PEER_TIMEOUT_MS'],
    flags: ['--peer-timeout (pull, mount, commit)'],
    summary: 'Milliseconds before a silent peer is given up on and skipped until it answers again (default 10000).',
  },
  {
    name: 'progress interval',
    env: ['VMI_PROGRESS_INTERVAL_MS'],
    flags: [],
    summary: 'Milliseconds between the plain progress lines printed where stderr is not a terminal (default 5000).',
  },
  {
    name: 'zstd implementation',
    env: ['VMI_ZSTD'],
    flags: [],
    summary: '`js`: decode compressed objects with the pure-JS fallback and write chunks raw, as where the native zstd module did not build (default: the native module when it loads).',
  },
  {
    name: 'debug',
    env: ['VMI_DEBUG'],
    flags: [],
    summary: 'Any value: stack traces of internal errors, and mount diagnostics, on stderr.',
  },
]

/** The settings `vmi config` knows, by config.json key. */
export function configKeys(): Map<string, Setting> {
  return new Map(SETTINGS.filter((s): s is Setting & {key: string} => s.key !== undefined).map((s) => [s.key, s]))
}

/** The setting for a config key, or a UsageError naming the keys there are. */
export function configSetting(key: string): Setting {
  const s = configKeys().get(key)
  if (!s) throw new UsageError(`unknown setting ${JSON.stringify(key)}: the settings are ${[...configKeys().keys()].join(', ')}`)
  return s
}

/** A config value as one line of text (lists comma-separated, objects as JSON). */
export function showConfigValue(value: unknown): string {
  if (Array.isArray(value)) return value.join(',')
  if (value !== null && typeof value === 'object') return JSON.stringify(value)
  return String(value)
}
