/** Flags and resolution shared by the commands that fetch through the chain (pull, mount, commit). */
import {Flags} from '#oclif'
import type {LocalStore} from '../store/local-store.js'
import type {ChainEvent} from '../peer/chain.js'
import {buildChain, type BuiltChain} from '../peer/factory.js'
import type {ClientTls} from '../peer/tls-trust.js'
import {checkToken, readCaFile, readClientCertFiles, readTokenFile} from './credential-files.js'
import {s3AccessFor} from './s3-settings.js'
import {WarningLimiter} from '../peer/warning-limiter.js'
import {resolveCaCert, resolveClientCert, resolvePeers, resolveReadToken, resolveRemote, type RemoteConfig, type RemoteEntry} from './settings.js'

/**
 * How a command that talks to remotes over https decides whom to trust, and
 * which client certificate it shows (pull, push, mount, commit, serve --seed).
 */
export const tlsFlags = {
  insecure: Flags.boolean({summary: 'Accept any TLS certificate (no verification): tests only; prefer --ca-cert.', default: false}),
  'ca-cert': Flags.string({summary: 'PEM file of CA certificates (a private CA) to trust besides the system roots. Else $VMI_CA_CERT, else the remote\'s caCert.'}),
  'tls-client-cert': Flags.string({
    summary: "PEM client certificate shown to servers that require one (serve --client-ca); needs --tls-client-key. Else $VMI_TLS_CLIENT_CERT, else the remote's tlsClientCert.",
    dependsOn: ['tls-client-key'],
  }),
  'tls-client-key': Flags.string({summary: 'PEM private key of --tls-client-cert.', dependsOn: ['tls-client-cert']}),
}

/** The read token a client sends (pull, push, mount, commit); serve's --read-token-file is the server's own. */
export const readTokenFlag = {
  'read-token-file': Flags.string({summary: "Send the read token in this file (first line) to servers started with --read-token-file. Else $VMI_READ_TOKEN, else the remote's readTokenFile."}),
}

type TlsFlagValues = {'ca-cert'?: string; 'tls-client-cert'?: string; 'tls-client-key'?: string}

/** The CA bundle to trust and the client certificate to show (read and checked); undefined for Node's defaults. */
export async function clientTlsFromFlags(flags: TlsFlagValues, remote: Partial<RemoteEntry> = {}): Promise<ClientTls | undefined> {
  const caFile = resolveCaCert(flags['ca-cert'], process.env, remote)
  const certFiles = resolveClientCert({cert: flags['tls-client-cert'], key: flags['tls-client-key']}, process.env, remote)
  if (caFile === undefined && certFiles === undefined) return undefined
  return {...(caFile !== undefined ? {ca: await readCaFile(caFile)} : {}), ...(certFiles ? await readClientCertFiles(certFiles.cert, certFiles.key) : {})}
}

/** The read token to send (read and checked), or undefined. */
export async function readTokenFromFlags(flags: {'read-token-file'?: string}, remote: Partial<RemoteEntry> = {}): Promise<string | undefined> {
  const source = resolveReadToken(flags['read-token-file'], process.env, remote)
  if (source === undefined) return undefined
  if ('file' in source) return readTokenFile(source.file, 'read token')
  checkToken(source.token, source.from, 'read token')
  return source.token
}

export const chainFlags = {
  peer: Flags.string({summary: 'A peer to fetch from (vmi serve on another host); repeat --peer for each. Else $VMI_PEERS, else the config.', multiple: true, multipleNonGreedy: true}),
  'peers-file': Flags.string({summary: 'File with one peer URL a line; re-read when it changes.'}),
  'no-seed': Flags.boolean({summary: 'Use only the local store and peers.', default: false}),
  'no-owner-hashing': Flags.boolean({summary: "Ask peers in list order instead of each chunk's owner first.", default: false}),
  ...tlsFlags,
  ...readTokenFlag,
  'peer-timeout': Flags.integer({summary: 'Give up on a silent peer after this many ms (then skip it until it answers again).', env: 'VMI_PEER_TIMEOUT_MS', default: 10_000, min: 100}),
}

export interface ChainFlagValues {
  peer?: string[]
  'peers-file'?: string
  'no-seed': boolean
  'no-owner-hashing': boolean
  insecure: boolean
  'ca-cert'?: string
  'tls-client-cert'?: string
  'tls-client-key'?: string
  'read-token-file'?: string
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
    /** A warning to print: its message, and the event (or, for a summary of held-back ones, the last event with `suppressed`: their count). */
    onWarning?: (msg: string, data: object) => void
    /** Events not to pass on (a pull's error already names an unavailable chunk and its sources). */
    quiet?: ChainEvent['type'][]
    /** Connection timeout for every source, ms (see ChainConfig). */
    connectTimeoutMs?: number
    /** Store fetched chunks raw (see FetchChainInit.storeRaw). */
    storeRaw?: boolean
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
  // per-chunk warnings limited per source (warning-limiter.ts); what is held back is summed up at close
  const limiter = new WarningLimiter(opts.onWarning ?? (() => {}))
  const built = await buildChain(store, {
    seedUrl: seed?.url,
    s3: await s3AccessFor(seed?.url, seed),
    // one CA bundle and one client identity for the seed and the peers: a fleet's private CA signs them all
    tls: await clientTlsFromFlags(flags, seed),
    readToken: await readTokenFromFlags(flags, seed),
    peers,
    peersFile,
    ownerHashing: !flags['no-owner-hashing'],
    insecure: flags.insecure,
    peerTimeoutMs: flags['peer-timeout'],
    connectTimeoutMs: opts.connectTimeoutMs,
    storeRaw: opts.storeRaw,
    onEvent: (e) => opts.quiet?.includes(e.type) || limiter.warn(e),
  })
  return {
    chain: built.chain,
    close: () => {
      limiter.flush()
      built.close()
    },
  }
}
