/** Flags and resolution shared by the commands that fetch through the chain (pull, mount, commit). */
import {Flags} from '#oclif'
import type {LocalStore} from '../store/local-store.js'
import type {ChainEvent} from '../peer/chain.js'
import {buildChain, type BuiltChain} from '../peer/factory.js'
import {readCaFile} from './credential-files.js'
import {s3AccessFor} from './s3-settings.js'
import {resolveCaCert, resolvePeers, resolveRemote, type RemoteConfig} from './settings.js'

/** How a command that talks to remotes over https decides whom to trust (pull, push, mount, serve --seed). */
export const tlsFlags = {
  insecure: Flags.boolean({summary: 'Accept any TLS certificate (no verification): tests only; prefer --ca-cert.', default: false}),
  'ca-cert': Flags.string({summary: 'PEM file of CA certificates (a private CA) to trust besides the system roots. Else $VMI_CA_CERT, else the remote\'s caCert.'}),
}

/** The CA bundle to trust (read and checked), or undefined for the system roots only. */
export async function caFromFlags(flags: {'ca-cert'?: string}, remote: {caCert?: string} = {}): Promise<string | undefined> {
  const file = resolveCaCert(flags['ca-cert'], process.env, remote)
  return file === undefined ? undefined : readCaFile(file)
}

export const chainFlags = {
  peer: Flags.string({summary: 'A peer to fetch from (vmi serve on another host); repeatable. Else $VMI_PEERS, else the config.', multiple: true}),
  'peers-file': Flags.string({summary: 'File with one peer URL a line; re-read when it changes.'}),
  'no-seed': Flags.boolean({summary: 'Use only the local store and peers.', default: false}),
  'no-owner-hashing': Flags.boolean({summary: "Ask peers in list order instead of each chunk's owner first.", default: false}),
  ...tlsFlags,
  'peer-timeout': Flags.integer({summary: 'Give up on a silent peer after this many ms (then skip it until it answers again).', env: 'VMI_PEER_TIMEOUT_MS', default: 10_000, min: 100}),
}

export interface ChainFlagValues {
  peer?: string[]
  'peers-file'?: string
  'no-seed': boolean
  'no-owner-hashing': boolean
  insecure: boolean
  'ca-cert'?: string
  'peer-timeout': number
}

/**
 * Build the chain for a command: the seed is the remote argument, else
 * `origin` when configured; with peers and no remote at all, peers only.
 * `seedRequired` makes a missing remote an error even with peers.
 */
export async function chainFromFlags(
  store: LocalStore,
  remoteArg: string | undefined,
  flags: ChainFlagValues,
  opts: {
    seedRequired?: boolean
    onWarning?: (msg: string, event: ChainEvent) => void
    /** Events not to pass on (a pull's error already names an unavailable chunk and its sources). */
    quiet?: ChainEvent['type'][]
    /** Connection timeout for every source, ms (see ChainConfig). */
    connectTimeoutMs?: number
  } = {},
): Promise<BuiltChain> {
  const config = (await store.readConfig()) as RemoteConfig
  const peers = resolvePeers(flags.peer, process.env, config)
  const peersFile = flags['peers-file'] ?? config.peersFile
  let seed: ReturnType<typeof resolveRemote> | undefined
  if (!flags['no-seed']) {
    const haveRemote = remoteArg !== undefined || Boolean(config.remotes?.origin)
    if (haveRemote || (opts.seedRequired && peers.length === 0 && !peersFile)) seed = resolveRemote(remoteArg, config)
  }
  return buildChain(store, {
    seedUrl: seed?.url,
    s3: await s3AccessFor(seed?.url, seed),
    // one CA bundle for the seed and the peers: a fleet's private CA signs them all
    ca: await caFromFlags(flags, seed),
    peers,
    peersFile,
    ownerHashing: !flags['no-owner-hashing'],
    insecure: flags.insecure,
    peerTimeoutMs: flags['peer-timeout'],
    connectTimeoutMs: opts.connectTimeoutMs,
    onEvent: (e) => opts.quiet?.includes(e.type) || opts.onWarning?.(e.message, e),
  })
}
