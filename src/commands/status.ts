import {Flags} from '#oclif'
import {BaseCommand} from '../cli/base-command.js'
import {humanBytes, shortId, table} from '../cli/format.js'
import {resolvePeers, type RemoteConfig} from '../cli/settings.js'
import {listMounts, type MountRecord} from '../mount/mount-registry.js'
import {readPeersFile} from '../peer/factory.js'
import {probeSources, type ProbeResult} from '../peer/probe.js'
import type {S3Access} from '../peer/s3/s3-store.js'
import {s3AccessFor} from '../cli/s3-settings.js'

export interface MountStatus extends MountRecord {
  /** Bytes of the image this mount has read and verified, by where they came from (stats.fetchedBytes). */
  bytes: {local: number; peer: number; seed: number}
}

export interface SourceStatus extends ProbeResult {
  /** The remote's name (seeds), or where the peer is configured. */
  name?: string
  from: string
}

export default class Status extends BaseCommand<typeof Status> {
  static override summary = 'Running mounts of this store, and whether the peers and seeds this host knows answer.'
  static override description = `Mounts: every running 'vmi mount' of this store (each keeps run/mounts/<pid>.json up to date every 2 s; the records of mounts that are gone are removed): pid, image, NBD address, overlay, --file path, and the image's bytes by source (local, peer, seed).

Peers and seeds: the peers (--peer, else $VMI_PEERS, else the config; and the peers file) and every configured remote are probed at once with one HEAD each; any HTTP answer is up, with its latency.`
  static override examples = ['<%= config.bin %> status', '<%= config.bin %> status --json', '<%= config.bin %> status --no-probe']
  static override flags = {
    peer: Flags.string({summary: 'A peer to probe; repeat --peer for each. Else $VMI_PEERS, else the config.', multiple: true, multipleNonGreedy: true}),
    'peers-file': Flags.string({summary: 'File with one peer URL a line (else the config peersFile).'}),
    insecure: Flags.boolean({summary: 'Accept self-signed TLS certificates.', default: false}),
    'probe-timeout': Flags.integer({summary: 'Connection timeout of each probe, ms (an answer then has 2 s more).', default: 1000, min: 50, max: 60_000}),
    'no-probe': Flags.boolean({summary: 'List mounts and sources without probing them.', default: false}),
  }

  async run(): Promise<{mounts: MountStatus[]; sources: SourceStatus[]}> {
    const store = await this.openStore()
    const config = (await store.readConfig()) as RemoteConfig
    const mounts = (await listMounts(store.layout)).map((m): MountStatus => ({...m, bytes: m.stats.fetchedBytes}))

    const known: {url: string; kind: 'peer' | 'seed'; name?: string; from: string; s3?: S3Access}[] = []
    const peerFrom = this.flags.peer?.length ? '--peer' : process.env.VMI_PEERS ? 'VMI_PEERS' : 'config'
    for (const url of resolvePeers(this.flags.peer, process.env, config)) known.push({url, kind: 'peer', from: peerFrom})
    const peersFile = this.flags['peers-file'] ?? config.peersFile
    if (peersFile) {
      try {
        for (const url of await readPeersFile(peersFile)) if (!known.some((k) => k.url === url)) known.push({url, kind: 'peer', from: peersFile})
      } catch (err) {
        this.warning(`peers file left out: ${(err as Error).message}`, {type: 'peers-file', file: peersFile})
      }
    }
    for (const [name, r] of Object.entries(config.remotes ?? {})) known.push({url: r.url, kind: 'seed', name, from: 'remote', s3: await s3AccessFor(r.url, r)})

    const probed = this.flags['no-probe']
      ? known.map((k) => ({url: k.url, kind: k.kind}) as ProbeResult)
      : await probeSources(known, {connectTimeoutMs: this.flags['probe-timeout'], insecure: this.flags.insecure, signal: this.signal})
    const sources = probed.map((p, i): SourceStatus => ({...p, ...(known[i].name ? {name: known[i].name} : {}), from: known[i].from}))

    if (mounts.length === 0) this.log('no mounts')
    else
      this.log(
        table(
          mounts.map((m) => [
            String(m.pid),
            `${m.spec} (${shortId(m.image)})`,
            m.nbd,
            m.overlay ?? (m.readOnly ? 'read-only' : '-'),
            m.file ?? m.vhostUserBlk ?? m.device ?? '-',
            humanBytes(m.bytes.local),
            humanBytes(m.bytes.peer),
            humanBytes(m.bytes.seed),
          ]),
          ['PID', 'IMAGE', 'NBD', 'OVERLAY', 'FILE', 'LOCAL', 'PEER', 'SEED'],
        ),
      )
    this.log('')
    if (sources.length === 0) this.log('no peers or remotes configured')
    else
      this.log(
        table(
          sources.map((s) => [
            s.kind === 'seed' ? `seed ${s.name}` : 'peer',
            s.url,
            this.flags['no-probe'] ? '?' : s.up ? 'up' : 'down',
            s.up ? `${s.latencyMs} ms` : (s.error ?? '-'),
          ]),
          ['KIND', 'URL', 'STATE', 'LATENCY'],
        ),
      )
    return {mounts, sources}
  }
}
