import {Flags} from '#oclif'
import {BaseCommand} from '../cli/base-command.js'
import {clientTlsFromFlags, readTokenFromFlags, tlsFlags} from '../cli/chain-flags.js'
import {checkKeyOfCert, checkToken, readCaFile, readCredentialFile, readTokenFile} from '../cli/credential-files.js'
import {jsonLine} from '../cli/json.js'
import {isLoopbackHost, listenError, parseListen} from '../cli/listen.js'
import {StoreReadOnlyError, UsageError} from '../errors.js'
import {upstreamSource} from '../peer/factory.js'
import {s3AccessFor} from '../cli/s3-settings.js'
import {LOG_FORMATS, SEND_COMPRESSION_POLICIES, startServer, type LogFormat, type LogLevel, type SendCompressionPolicy} from '../peer/server.js'

export const DEFAULT_LISTEN = '127.0.0.1:7070'
const CLOSE_GRACE_MS = 10_000

export interface ServeResult {
  url: string
}

export default class Serve extends BaseCommand<typeof Serve> {
  static override interruptible = true
  static override summary = 'Serve the store over HTTP to peers and pullers (and accept pushes with a token).'
  static override description = `Answers the wire protocol (docs/PROTOCOL.md): objects, manifests and refs at their store-layout paths, a batch missing-check, the ref list, /healthz and Prometheus /metrics. Read-only unless a push token is given (--token-file, --token, or $VMI_PUSH_TOKEN; --push-token-file and --push-token are their old names); uploads are re-hashed and refused when they do not match their id.

Read authorization: with --client-ca FILE (and --tls-cert/--tls-key) every connection must show a client certificate signed by that CA (mutual TLS); with --read-token-file FILE every request must carry that token, or the push token, as "Authorization: Bearer TOKEN". Listening on anything but a loopback address (127.0.0.0/8, ::1, localhost) needs one of the two, or an explicit --allow-anonymous-read (which warns). --health-listen HOST:PORT answers /healthz and /metrics to anyone on a second, plain-HTTP listener. See docs/SECURITY.md.

Objects are sent as they rest (a zstd frame, or the raw chunk) to a client that reads frames; with --compress-sends auto (the default) an object resting raw is compressed for a client on another machine (not on a loopback address, nor connecting from the address it reached), each chunk once while it stays in a 32 MiB cache (docs/PROTOCOL.md "Compressing on send").

With --seed URL, a GET for an absent chunk carrying "X-Vmi-Fetch: upstream" is fetched once from the seed, verified, stored and served, so a cluster pulls each chunk across the seed link about once.

Prints "listening on URL" (with --json: {"version":1,"url":...}) as the first line of stdout, then runs until SIGINT or SIGTERM, finishes requests in flight (at most 10 s) and exits 0.

Exit codes: 0 stopped by SIGINT or SIGTERM, 2 bad arguments, the address cannot be listened on, or a non-loopback address without read authorization or --allow-anonymous-read, 3 a --token-file, --read-token-file, --client-ca, --tls-* or --ca-cert file is missing, 6 store unusable.`

  static override examples = [
    '<%= config.bin %> serve',
    '<%= config.bin %> serve --listen :7443 --tls-cert cert.pem --tls-key key.pem --client-ca /etc/vmi/ca.pem --log   # mutual TLS',
    '<%= config.bin %> serve --listen :7070 --read-token-file /etc/vmi/read-token --token-file /etc/vmi/push-token',
    '<%= config.bin %> serve --listen 0.0.0.0:7070 --allow-anonymous-read --log --log-format json   # one JSON object a line',
    'VMI_PUSH_TOKEN=s3cret <%= config.bin %> serve --listen 10.0.0.5:7070 --read-token-file /etc/vmi/read-token',
    '<%= config.bin %> serve --listen :7070 --allow-anonymous-read --seed https://seed.example.com:7070   # a peer with fetch-through',
    '<%= config.bin %> serve --listen :7443 --tls-cert peer.pem --tls-key peer.key --client-ca ca.pem --seed https://seed.internal:7443 --ca-cert ca.pem --tls-client-cert peer.pem --tls-client-key peer.key',
    '<%= config.bin %> serve --listen :7443 --tls-cert cert.pem --tls-key key.pem --client-ca ca.pem --health-listen :9100   # probes and scrapers without a certificate',
    '<%= config.bin %> serve --listen 127.0.0.1:0 --json   # ephemeral port, prints {"version":1,"url":...}',
  ]

  static override flags = {
    listen: Flags.string({summary: 'HOST:PORT to listen on (:PORT = all interfaces; port 0 = any free port).', default: DEFAULT_LISTEN}),
    token: Flags.string({
      summary: 'Accept uploads carrying "Authorization: Bearer TOKEN" (default $VMI_PUSH_TOKEN; none = read-only). Visible in ps: prefer the file or the variable.',
      aliases: ['push-token'],
      exclusive: ['token-file'],
    }),
    'token-file': Flags.string({summary: 'Read the push token from this file (first line).', aliases: ['push-token-file'], exclusive: ['token']}),
    seed: Flags.string({summary: 'Upstream seed URL for fetch-through (X-Vmi-Fetch: upstream).'}),
    ...tlsFlags,
    'tls-cert': Flags.string({summary: 'PEM certificate (chain) for HTTPS; needs --tls-key.', dependsOn: ['tls-key']}),
    'tls-key': Flags.string({summary: 'PEM private key for HTTPS; needs --tls-cert.', dependsOn: ['tls-cert']}),
    'client-ca': Flags.string({summary: 'Require a client certificate signed by a CA in this PEM file on every connection (mutual TLS); needs --tls-cert.', dependsOn: ['tls-cert']}),
    'read-token-file': Flags.string({summary: 'Require this token (first line of the file), or the push token, as "Authorization: Bearer TOKEN" on every request.'}),
    'allow-anonymous-read': Flags.boolean({summary: 'Let anyone who reaches a non-loopback --listen address read every image (without it, such an address needs --client-ca or --read-token-file).', default: false}),
    'health-listen': Flags.string({summary: 'Also answer /healthz and /metrics, to anyone, over plain HTTP on this HOST:PORT.'}),
    log: Flags.boolean({summary: 'Log one line per request to stderr (method, path, status, bytes, ms, client address).', default: false}),
    'log-format': Flags.string({
      summary: 'Log lines as text, or as JSON objects, one a line: {time, level, client, method, path, status, bytes, ms} per request, {time, level, msg} for a problem.',
      options: [...LOG_FORMATS],
      default: 'text',
    }),
    'compress-sends': Flags.string({
      summary: 'Send objects that rest raw as zstd frames to clients that read frames: auto = clients on other machines (not loopback, nor the address they reached); always; never (for links so fast that decoding costs a client more time than the bytes it saves: docs/PERFORMANCE.md).',
      options: [...SEND_COMPRESSION_POLICIES],
      default: 'auto',
    }),
    'request-timeout': Flags.integer({summary: 'Longest time in ms a client may take to send a request.', hidden: true, min: 50}),
  }

  async run(): Promise<ServeResult | void> {
    const {host, port} = parseListen(this.flags.listen)
    const health = this.flags['health-listen'] === undefined ? undefined : parseListen(this.flags['health-listen'])
    const clientCa = this.flags['client-ca'] === undefined ? undefined : await readCaFile(this.flags['client-ca'])
    const readToken = this.flags['read-token-file'] === undefined ? undefined : await readTokenFile(this.flags['read-token-file'], 'read token')
    const readAuth = clientCa !== undefined || readToken !== undefined
    if (!readAuth && !isLoopbackHost(host)) {
      if (!this.flags['allow-anonymous-read'])
        throw new UsageError(
          `--listen ${this.flags.listen} is reachable from the network, and anyone who reaches it could list and download every image: require a client certificate (--client-ca FILE with --tls-cert/--tls-key) or a read token (--read-token-file FILE), or pass --allow-anonymous-read`,
          {data: {listen: this.flags.listen}},
        )
      this.warning(`serving ${this.flags.listen} without read authorization (--allow-anonymous-read): anyone who reaches it can list and download every image`, {type: 'anonymous-read', listen: this.flags.listen})
    }
    let pushToken: string | undefined
    if (this.flags.token !== undefined) checkToken((pushToken = this.flags.token), '--token')
    else if (this.flags['token-file'] !== undefined) pushToken = await readTokenFile(this.flags['token-file'])
    else if (process.env.VMI_PUSH_TOKEN) checkToken((pushToken = process.env.VMI_PUSH_TOKEN), 'VMI_PUSH_TOKEN')
    let upstream: ReturnType<typeof upstreamSource> | undefined
    if (this.flags.seed !== undefined) {
      const tls = await clientTlsFromFlags(this.flags)
      // the upstream's read token comes from $VMI_READ_TOKEN: --read-token-file is this server's own
      const upstreamToken = await readTokenFromFlags({})
      try {
        const s3 = await s3AccessFor(this.flags.seed)
        upstream = upstreamSource(this.flags.seed, {onEvent: (e) => this.warning(`upstream ${e.message}`, e), insecure: this.flags.insecure, tls, readToken: upstreamToken, s3})
      } catch (err) {
        throw new UsageError(`--seed ${this.flags.seed}: ${(err as Error).message}`)
      }
    }
    const tls =
      this.flags['tls-cert'] && this.flags['tls-key']
        ? {cert: await readCredentialFile(this.flags['tls-cert'], 'TLS certificate'), key: await readCredentialFile(this.flags['tls-key'], 'TLS key'), clientCa}
        : undefined
    if (tls) {
      try {
        checkKeyOfCert(tls.cert, tls.key)
      } catch (err) {
        throw new UsageError(`bad TLS certificate or key: ${this.flags['tls-key']} and ${this.flags['tls-cert']}: ${(err as Error).message}`, {cause: err})
      }
    }
    const store = await this.openStore()
    if (pushToken !== undefined && !(await store.isWritable()))
      throw new StoreReadOnlyError(`store ${store.root} cannot be written, so it cannot take pushes: serve it without a push token to serve it read-only`)
    const json = (this.flags['log-format'] as LogFormat) === 'json'
    // errors are always worth a line; requests and warnings only with --log (a JSON record carries its own time)
    const log = (line: string, level: LogLevel) => {
      if (this.flags.log) process.stderr.write(json ? `${line}\n` : `${new Date().toISOString()} ${line}\n`)
      else if (level === 'error') process.stderr.write(line + '\n')
    }
    let server
    try {
      server = await startServer(store, {
        host,
        port,
        pushToken,
        readToken,
        upstream,
        compressSends: this.flags['compress-sends'] as SendCompressionPolicy,
        tls,
        health,
        log,
        logFormat: this.flags['log-format'] as LogFormat,
        requestTimeoutMs: this.flags['request-timeout'],
      })
    } catch (err) {
      const spec = (err as {listener?: string}).listener === 'health' ? this.flags['health-listen']! : this.flags.listen
      const listenFailed = listenError(err, spec)
      if (listenFailed) throw listenFailed
      if (tls && /PEM|key|certificate/i.test((err as Error).message ?? '')) throw new UsageError(`bad TLS certificate or key: ${(err as Error).message}`)
      throw err
    }
    if (this.jsonEnabled()) process.stdout.write(jsonLine({url: server.url, ...(server.healthUrl ? {healthUrl: server.healthUrl} : {})}))
    else this.log(`listening on ${server.url}`)
    if (server.healthUrl) this.note(`/healthz and /metrics, open to anyone, on ${server.healthUrl}`)
    const auth = clientCa !== undefined ? 'client certificates required' : readToken !== undefined ? 'read token required' : 'anyone may read'
    this.note(
      `serving ${store.root} (${auth}, ${pushToken ? 'push enabled' : 'read-only'}${upstream ? `, fetch-through from ${upstream.inner.url}` : ''}); stop with Ctrl-C or SIGTERM`,
    )
    if (!this.signal.aborted) await new Promise<void>((resolve) => this.signal.addEventListener('abort', () => resolve(), {once: true}))
    this.note('shutting down: finishing requests in flight')
    await server.close({graceMs: CLOSE_GRACE_MS})
    upstream?.breaker.close()
    // the URL was printed already; nothing more on stdout
    return undefined
  }
}
