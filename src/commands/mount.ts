import {Args, Flags} from '#oclif'
import {spawn} from 'node:child_process'
import {BaseCommand} from '../cli/base-command.js'
import {chainFlags, chainFromFlags} from '../cli/chain-flags.js'
import {humanBytes} from '../cli/format.js'
import {UsageError} from '../errors.js'
import {mountImage, type MountStats, type PrefetchMode} from '../mount/mount.js'
import {DEFAULT_POLL_US} from '../mount/nbd/server.js'

export default class Mount extends BaseCommand<typeof Mount> {
  static override summary = 'Serve an image to a hypervisor, fetching each chunk on first read.'
  static override description = `Serves the image as an NBD export (unix socket or TCP) before a single chunk is local. Each chunk is fetched on the guest's first read through local store → peers → seed (the seed only when no local or peer copy exists), verified, stored locally, and served. Writes go to a copy-on-write overlay; the image is never modified ('vmi commit' makes a new image from the overlay).

Bridges for hypervisors that open files: --file PATH (a regular file through FUSE; cloud-hypervisor --disk path=PATH, Firecracker path_on_host=PATH), --vhost-user-blk SOCK (cloud-hypervisor --disk vhost_user=true,socket=SOCK, with --memory shared=on), --device /dev/nbdN (kernel NBD). Both bridges use qemu-storage-daemon.

--exec runs the hypervisor for the life of the mount with {nbd}, {file}, {socket}, {device} and {vhost} substituted, and exits with its exit code. Without --exec the mount runs until SIGINT/SIGTERM. Prints the addresses on stdout.`
  static override examples = [
    '<%= config.bin %> mount debian:12 --exec "qemu-system-x86_64 -m 1G -drive file={nbd},format=raw,if=virtio ..."',
    '<%= config.bin %> mount debian:12 --file /run/vm1.raw --exec "cloud-hypervisor --kernel vmlinux --disk path={file} ..."',
    '<%= config.bin %> mount debian:12 --vhost-user-blk /run/vm1.sock --exec "cloud-hypervisor --memory size=1G,shared=on --disk vhost_user=true,socket={vhost} ..."',
    '<%= config.bin %> mount 3f2a… --peer http://10.0.0.2:7070 --overlay /var/lib/vm1 --record-profile',
  ]
  static override args = {
    image: Args.string({description: 'Image: NAME[:TAG] or id (fetched lazily when not local).', required: true}),
    remote: Args.string({description: 'Seed: a configured remote name or URL (default: origin when configured).'}),
  }
  static override flags = {
    ...chainFlags,
    socket: Flags.string({summary: 'Unix socket for the NBD export (default: in the store tmp/).'}),
    listen: Flags.string({summary: 'Serve NBD on TCP HOST:PORT instead of a unix socket.'}),
    file: Flags.string({summary: 'Also expose the disk as a regular file at PATH (FUSE, qemu-storage-daemon).'}),
    'vhost-user-blk': Flags.string({summary: 'Also expose it as a vhost-user-blk socket (qemu-storage-daemon).'}),
    device: Flags.string({summary: 'Attach it to a kernel NBD device (/dev/nbdN) through nbd-client.'}),
    overlay: Flags.string({summary: 'Keep the copy-on-write overlay in this directory (reused across mounts).'}),
    'read-only': Flags.boolean({summary: 'Refuse writes.', default: false}),
    exec: Flags.string({summary: 'Run this command for the life of the mount ({nbd} {file} {socket} {device} {vhost} substituted).'}),
    prefetch: Flags.string({summary: 'Background fetch after the first reads: none, profile (the recorded boot profile) or all.', options: ['none', 'profile', 'all'], default: 'profile'}),
    'poll-us': Flags.integer({
      summary: 'Adaptive polling: after answering cached reads, keep reading the socket for up to this many µs while requests arrive back to back (0 = off). Lowers the latency of one-at-a-time reads from another core, at the cost of CPU while they last.',
      default: DEFAULT_POLL_US,
      min: 0,
      max: 10_000,
    }),
    'record-profile': Flags.boolean({summary: 'Record which chunks this boot reads, in order, as the image\'s boot profile.', default: false}),
  }

  async run(): Promise<MountStats & {exitCode?: number}> {
    const store = await this.openStore()
    let listen: {host: string; port: number} | undefined
    if (this.flags.listen) {
      const m = /^(.+):(\d+)$/.exec(this.flags.listen)
      if (!m || Number(m[2]) > 65535) throw new UsageError(`--listen ${this.flags.listen}: use HOST:PORT`)
      listen = {host: m[1].replace(/^\[|\]$/g, ''), port: Number(m[2])}
    }
    const {chain, close} = await chainFromFlags(store, this.args.remote, this.flags, {onWarning: (m) => this.note(`warning: ${m}`)})
    const mount = await mountImage(chain, this.args.image, {
      socketPath: this.flags.socket,
      listen,
      overlayDir: this.flags.overlay,
      readOnly: this.flags['read-only'],
      file: this.flags.file,
      vhostUserBlk: this.flags['vhost-user-blk'],
      device: this.flags.device,
      prefetch: this.flags.prefetch as PrefetchMode,
      recordProfile: this.flags['record-profile'],
      pollUs: this.flags['poll-us'],
      log: process.env.VMI_DEBUG ? (l) => process.stderr.write(l + '\n') : undefined,
      signal: this.signal,
    })
    let exitCode: number | undefined
    try {
      const addr: Record<string, string> = {nbd: mount.nbdUri}
      if (mount.socketPath) addr.socket = mount.socketPath
      if (mount.file) addr.file = mount.file
      if (mount.vhostUserBlk) addr.vhost = mount.vhostUserBlk
      if (mount.device) addr.device = mount.device
      if (this.jsonEnabled()) process.stdout.write(JSON.stringify({mounted: mount.id, ...addr}) + '\n')
      else for (const [k, v] of Object.entries(addr)) this.log(`${k}: ${v}`)
      if (this.flags.exec) {
        const cmd = this.flags.exec.replace(/\{(nbd|file|socket|device|vhost)\}/g, (_, k: string) => {
          if (!addr[k]) throw new UsageError(`--exec uses {${k}}, but the mount has no ${k} (add --${k === 'vhost' ? 'vhost-user-blk' : k})`)
          return addr[k]
        })
        const child = spawn('sh', ['-c', cmd], {stdio: ['inherit', 'inherit', 'inherit']})
        const onAbort = () => child.kill('SIGTERM')
        this.signal.addEventListener('abort', onAbort)
        exitCode = await new Promise<number>((resolve) => child.on('exit', (code, sig) => resolve(code ?? (sig ? 128 + 15 : 1))))
        this.signal.removeEventListener('abort', onAbort)
      } else {
        await new Promise<void>((resolve) => this.signal.addEventListener('abort', () => resolve(), {once: true}))
      }
    } finally {
      const stats = mount.stats()
      await mount.close()
      close()
      this.note(
        `unmounted ${mount.id.slice(0, 12)}: fetched ${stats.fetched.peer} chunks (${humanBytes(stats.fetchedBytes.peer)}) from peers, ${stats.fetched.seed} (${humanBytes(stats.fetchedBytes.seed)}) from the seed; ${stats.firstReads} chunks read by the guest, ${stats.prefetched} prefetched`,
      )
    }
    if (exitCode !== undefined) process.exitCode = exitCode
    return {...mount.stats(), ...(exitCode !== undefined ? {exitCode} : {})}
  }
}
