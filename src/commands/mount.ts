import {Args, Flags} from '#oclif'
import {BaseCommand} from '../cli/base-command.js'
import {chainFlags, chainFromFlags} from '../cli/chain-flags.js'
import {allowedSignersFromSettings, verifySignersFlag} from '../cli/signing.js'
import {humanBytes} from '../cli/format.js'
import {jsonLine} from '../cli/json.js'
import {readCaFile, readCredentialFile} from '../cli/credential-files.js'
import {isLoopbackHost, listenError, parseListen} from '../cli/listen.js'
import {InterruptedError, UsageError} from '../errors.js'
import {execCommandLine, execPlaceholders, runHypervisor, type HypervisorExit, type MountAddresses} from '../mount/hypervisor.js'
import {mountImage, PREFETCH_CONCURRENCY, type Mount as ImageMount, type MountStats, type PrefetchMode} from '../mount/mount.js'
import {registerMount} from '../mount/mount-registry.js'
import {DEFAULT_POLL_US, type NbdTls} from '../mount/nbd/server.js'
import {createSecureContext} from 'node:tls'

/**
 * A guest read waits for a source's connection at most this long, once:
 * then the source is marked down and later reads skip it (a guest with no
 * reachable source gets EIO at once rather than after seconds).
 */
const MOUNT_CONNECT_TIMEOUT_MS = 1000

/** The flag that gives each --exec placeholder its address; {nbd} always has one. */
const PLACEHOLDER_FLAG = {file: 'file', vhost: 'vhost-user-blk', device: 'device'} as const

/** Refuse, before mounting, an --exec command line that names an address the mount will not have. */
function checkExecPlaceholders(exec: string, flags: {listen?: string; file?: string; 'vhost-user-blk'?: string; device?: string}): void {
  for (const k of execPlaceholders(exec)) {
    if (k === 'nbd') continue
    if (k === 'socket') {
      if (flags.listen) throw new UsageError('--exec uses {socket}, but with --listen the mount has no unix socket (use {nbd})')
      continue
    }
    if (!flags[PLACEHOLDER_FLAG[k]]) throw new UsageError(`--exec uses {${k}}, but the mount has no ${k} (add --${PLACEHOLDER_FLAG[k]})`)
  }
}

export default class Mount extends BaseCommand<typeof Mount> {
  static override interruptible = true
  static override stopsOnSignal = true
  static override summary = 'Serve an image to a hypervisor, fetching each chunk on first read.'
  static override description = `Serves the image as an NBD export (unix socket or TCP) before a single chunk is local. Each chunk is fetched on the guest's first read through local store → peers → seed (the seed only when no local or peer copy exists), verified, stored locally, and served. Writes go to a copy-on-write overlay; the image is never modified ('vmi commit' makes a new image from the overlay).

Bridges for hypervisors that open files: --file PATH (a regular file through FUSE; cloud-hypervisor --disk path=PATH, Firecracker path_on_host=PATH), --vhost-user-blk SOCK (cloud-hypervisor --disk vhost_user=true,socket=SOCK, with --memory shared=on), --device /dev/nbdN (kernel NBD). Both bridges use qemu-storage-daemon.

--listen on an address other than loopback (127.0.0.0/8, ::1) serves NBD over TLS: --tls-cert/--tls-key (and --client-ca to require client certificates from that CA), spoken as the NBD protocol's STARTTLS (nbds:// URIs; QEMU: --object tls-creds-x509,dir=DIR,endpoint=client and tls-creds=ID on the nbd block device; libnbd: nbds://HOST:PORT/?tls-certificates=DIR). Without TLS such an address needs --allow-plain-nbd: anyone on the network could then read (and, without --read-only, write) the disk. The bridges (--file, --vhost-user-blk, --device) do not speak TLS.

--exec runs the hypervisor for the life of the mount with {nbd}, {file}, {socket}, {device} and {vhost} substituted, and exits with its exit code. The command runs in a process group of its own: SIGINT, SIGTERM or SIGHUP to vmi stops that whole group (SIGTERM, then SIGKILL after --exec-stop-timeout seconds), then the bridges and the export, and vmi exits 130, 143 or 129; when the command ends on its own, whatever it left running in the background is stopped the same way. Without --exec the mount runs until SIGINT/SIGTERM and then exits 0. Prints the addresses on stdout.

With --verify-signers FILE (or $VMI_ALLOWED_SIGNERS, or config allowedSigners), a mount by NAME:TAG needs the ref signed as 'vmi pull --verify-signers' checks it: the local ref's stored signature when the name is here, else the seed's, checked before anything is fetched (exit 10 when missing, bad or not allowed). A mount by id needs none.

A mount by NAME:TAG of an image not yet here writes the ref, as a pull does ('vmi ls' lists it with the chunks still absent). From a store this process cannot write (a read-only filesystem), a mount works when the image is whole there: nothing is written to the store, the socket goes to the system's tmp directory; one that would need to fetch a chunk or record a profile is refused (exit 6).`
  static override examples = [
    '<%= config.bin %> mount debian:12 --exec "qemu-system-x86_64 -m 1G -drive file={nbd},format=raw,if=virtio ..."',
    '<%= config.bin %> mount debian:12 --file /run/vm1.raw --exec "cloud-hypervisor --kernel vmlinux --disk path={file} ..."',
    '<%= config.bin %> mount debian:12 --vhost-user-blk /run/vm1.sock --exec "cloud-hypervisor --memory size=1G,shared=on --disk vhost_user=true,socket={vhost} ..."',
    '<%= config.bin %> mount 3f2a… --peer http://10.0.0.2:7070 --overlay /var/lib/vm1 --record-profile',
    '<%= config.bin %> mount web:v2 --listen 10.0.0.5:10809 --tls-cert /etc/vmi/host.pem --tls-key /etc/vmi/host.key --client-ca /etc/vmi/ca.pem   # nbds://',
  ]
  static override args = {
    image: Args.string({description: 'Image: NAME[:TAG] or id (fetched lazily when not local).', required: true}),
    remote: Args.string({description: 'Seed: a configured remote name or URL (default: origin when configured).'}),
  }
  static override flags = {
    ...chainFlags,
    ...verifySignersFlag,
    socket: Flags.string({summary: 'Unix socket for the NBD export (default: in the store tmp/).'}),
    listen: Flags.string({summary: 'Serve NBD on TCP HOST:PORT instead of a unix socket (:PORT = all interfaces, [v6addr]:PORT for IPv6).'}),
    'tls-cert': Flags.string({summary: 'With --listen: serve NBD over TLS (STARTTLS, nbds://) with this PEM certificate; needs --tls-key.', dependsOn: ['tls-key', 'listen']}),
    'tls-key': Flags.string({summary: 'PEM private key of --tls-cert.', dependsOn: ['tls-cert']}),
    'client-ca': Flags.string({summary: 'With --tls-cert: require NBD clients to show a certificate signed by a CA in this PEM file.', dependsOn: ['tls-cert']}),
    'allow-plain-nbd': Flags.boolean({summary: 'Serve NBD without TLS on a non-loopback --listen address (anyone who reaches it can read the disk).', default: false}),
    file: Flags.string({summary: 'Also expose the disk as a regular file at PATH (FUSE, qemu-storage-daemon).'}),
    'vhost-user-blk': Flags.string({summary: 'Also expose it as a vhost-user-blk socket (qemu-storage-daemon).'}),
    device: Flags.string({summary: 'Attach it to a kernel NBD device (/dev/nbdN) through nbd-client.'}),
    overlay: Flags.string({summary: 'Keep the copy-on-write overlay in this directory (reused across mounts).'}),
    'read-only': Flags.boolean({summary: 'Refuse writes (with --overlay: serve the disk as that overlay left it, writes and all).', default: false}),
    exec: Flags.string({summary: 'Run this command for the life of the mount ({nbd} {file} {socket} {device} {vhost} substituted).'}),
    'exec-stop-timeout': Flags.integer({
      summary: 'Seconds the --exec command (its whole process group) has to exit after SIGTERM before SIGKILL.',
      default: 10,
      min: 0,
      max: 3600,
    }),
    prefetch: Flags.string({summary: 'Background fetch after the first reads: none, profile (the recorded boot profile) or all.', options: ['none', 'profile', 'all'], default: 'profile'}),
    'prefetch-concurrency': Flags.integer({summary: 'Chunks prefetched at once (the guest\'s reads still go first).', default: PREFETCH_CONCURRENCY, min: 1, max: 256}),
    'poll-us': Flags.integer({
      summary: 'Adaptive polling: after answering cached reads, keep reading the socket for up to this many µs while requests arrive back to back (0 = off). Lowers the latency of one-at-a-time reads from another core, at the cost of CPU while they last.',
      default: DEFAULT_POLL_US,
      min: 0,
      max: 10_000,
    }),
    'record-profile': Flags.boolean({summary: 'Record which chunks this boot reads, in order, as the image\'s boot profile.', default: false}),
  }

  /** The NBD server's TLS settings, read and checked; refuses plain NBD on a non-loopback address without --allow-plain-nbd. */
  private async nbdTls(listen: {host: string} | undefined): Promise<NbdTls | undefined> {
    const f = this.flags
    if (f['tls-cert'] === undefined || f['tls-key'] === undefined) {
      if (listen && !isLoopbackHost(listen.host) && !f['allow-plain-nbd'])
        throw new UsageError(
          `--listen ${f.listen} is reachable from the network, and plain NBD lets anyone who reaches it read${f['read-only'] ? '' : ' and write'} the disk: serve NBD over TLS (--tls-cert FILE --tls-key FILE, and --client-ca FILE to require client certificates), or pass --allow-plain-nbd`,
          {data: {listen: f.listen}},
        )
      return undefined
    }
    const bridge = (['file', 'vhost-user-blk', 'device'] as const).find((b) => f[b] !== undefined)
    if (bridge) throw new UsageError(`--${bridge} does not speak NBD over TLS: use it without --tls-cert (its NBD connection stays on this host)`)
    const tls: NbdTls = {cert: await readCredentialFile(f['tls-cert'], 'TLS certificate'), key: await readCredentialFile(f['tls-key'], 'TLS key')}
    if (f['client-ca'] !== undefined) tls.clientCa = await readCaFile(f['client-ca'])
    try {
      createSecureContext({cert: tls.cert, key: tls.key})
    } catch (err) {
      throw new UsageError(`bad TLS certificate or key: ${(err as Error).message}`, {cause: err})
    }
    return tls
  }

  async run(): Promise<MountStats & {exitCode?: number}> {
    if (this.flags.exec) checkExecPlaceholders(this.flags.exec, this.flags)
    const listen = this.flags.listen === undefined ? undefined : parseListen(this.flags.listen)
    const tls = await this.nbdTls(listen)
    const store = await this.openStore()
    const verifySigners = await allowedSignersFromSettings(this.flags['verify-signers'], await store.readConfig())
    const {chain, close} = await chainFromFlags(store, this.args.remote, this.flags, {onWarning: (m, e) => this.warning(m, e), connectTimeoutMs: MOUNT_CONNECT_TIMEOUT_MS, storeRaw: true})
    let mount: ImageMount
    try {
      mount = await mountImage(chain, this.args.image, {
        socketPath: this.flags.socket,
        listen,
        tls,
        overlayDir: this.flags.overlay,
        readOnly: this.flags['read-only'],
        file: this.flags.file,
        vhostUserBlk: this.flags['vhost-user-blk'],
        device: this.flags.device,
        prefetch: this.flags.prefetch as PrefetchMode,
        prefetchConcurrency: this.flags['prefetch-concurrency'],
        recordProfile: this.flags['record-profile'],
        pollUs: this.flags['poll-us'],
        verifySigners,
        log: process.env.VMI_DEBUG ? (l) => process.stderr.write(l + '\n') : undefined,
        signal: this.signal,
      })
    } catch (err) {
      close()
      throw (this.flags.listen && listenError(err, this.flags.listen)) || err
    }
    let run: HypervisorExit | undefined
    // `vmi status` lists this mount from here on
    const registration = await registerMount(store.layout, () => ({
      image: mount.id,
      spec: this.args.image,
      nbd: mount.nbdUri,
      ...(mount.socketPath ? {socket: mount.socketPath} : {}),
      ...(mount.file ? {file: mount.file} : {}),
      ...(mount.vhostUserBlk ? {vhostUserBlk: mount.vhostUserBlk} : {}),
      ...(mount.device ? {device: mount.device} : {}),
      ...(mount.overlayDir ? {overlay: mount.overlayDir} : {}),
      readOnly: this.flags['read-only'],
      stats: mount.stats(),
    }))
    try {
      const addr: MountAddresses = {nbd: mount.nbdUri, socket: mount.socketPath, file: mount.file, vhost: mount.vhostUserBlk, device: mount.device}
      const shown = Object.entries(addr).filter((e): e is [string, string] => e[1] !== undefined)
      if (this.jsonEnabled()) process.stdout.write(jsonLine({mounted: mount.id, ...Object.fromEntries(shown)}))
      else for (const [k, v] of shown) this.log(`${k}: ${v}`)
      if (this.flags.exec) {
        run = await runHypervisor(execCommandLine(this.flags.exec, addr), {signal: this.signal, graceMs: this.flags['exec-stop-timeout'] * 1000})
      } else if (!this.signal.aborted) {
        await new Promise<void>((resolve) => this.signal.addEventListener('abort', () => resolve(), {once: true}))
      }
    } finally {
      await registration.remove()
      const stats = mount.stats()
      let closing: unknown
      await mount.close().catch((err) => (closing = err))
      close()
      if (closing !== undefined) throw closing
      this.note(
        `unmounted ${mount.id.slice(0, 12)}: fetched ${stats.fetched.peer} chunks (${humanBytes(stats.fetchedBytes.peer)}) from peers, ${stats.fetched.seed} (${humanBytes(stats.fetchedBytes.seed)}) from the seed; ${stats.firstReads} chunks read by the guest, ${stats.prefetched} prefetched`,
      )
    }
    // stopped by a signal: the hypervisor's whole process group is gone, and so is the mount
    if (run?.stopped) throw new InterruptedError('the --exec command was stopped (its whole process group) and the image unmounted')
    const exitCode = run?.exitCode
    if (exitCode !== undefined) process.exitCode = exitCode
    return {...mount.stats(), ...(exitCode !== undefined ? {exitCode} : {})}
  }
}
