// @ts-check
// docs/PERFORMANCE.md and its plots (docs/img/*.svg), rendered from the saved
// results: bench/results/latest-{store,dist,mount,writes,s3,fleet,fleet-boot,compress,sim}.json.
// Each benchmark's section is the body its own report has (bench/lib/<kind>-report.js,
// from the same JSON), with its charts; the simulation's is written here. Every
// number comes from those files; nothing here is typed in by hand. bench/run.js
// calls renderPerformanceDoc() at the end of every run, and
// `node bench/run.js --render` calls it alone (no measuring).
import {existsSync, promises as fsp, readFileSync} from 'node:fs'
import path from 'node:path'
import {fileURLToPath} from 'node:url'
import {bytesHuman, f, GiB, int, table, times as x} from './format.js'
import {lineChart} from './svg-plot.js'
import {bootBody, bootGoals, fleetBody, fleetGoals} from './fleet-report.js'
import {distGoals, goalTable, mountGoals, storeGoals} from './report.js'
import {storeBody} from './store-report.js'
import {distBody, s3Goals, s3Body} from './dist-report.js'
import {compressBody, compressGoals} from './compress-report.js'
import {mountBody, writesBody} from './mount-report.js'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..')

/** Why vmi's HTTP clients are what they are (the A/B runs are in a dated report). */
const HTTP_CLIENT = [
  '### HTTP client',
  '',
  'One general client (src/peer/http-client.ts, Node\'s http/https) and one hand-written transport (the pipelined bulk GET, src/peer/pipelined-get.ts). ' +
    'undici was measured as the replacement for both and not adopted: its llhttp parser is WebAssembly, which on Node 20 cannot run under a virtual-memory limit ' +
    '(`ulimit -v`; tampered.test.js runs the CLI under 2 GiB and every request died), and its bulk GETs cost more client CPU than the pipelined client in the same run. ' +
    'got was replaced by node:http, which halved the client CPU of a push. ' +
    'The A/B tables (alternating builds, min–median–max): [2026-12-06-http-client-choice.md](../bench/results/2026-12-06-http-client-choice.md).',
  '',
  'A push to vmi serve sends its chunks in object batches (docs/PROTOCOL.md, "Object batches"), which the server hashes and stores on writer threads; against one PUT per chunk, the same push took about 2.7× less time in an A/B of alternating builds: [2026-12-06-push-batches.md](../bench/results/2026-12-06-push-batches.md).',
  '',
  "While it receives object batches, vmi serve runs a young-generation collection every 4 MiB of body (src/util/young-gc.ts): node:http's body pieces count as external memory, and in the server's small heap V8 otherwise met them with 26–33 full collections per push of the Debian image. With the pacing: 1–2, and the server's user CPU 0.73× (median of 8 alternating pairs); its sys time, file creation, did not change, and the push's wall did not separate: [2026-12-07-push-young-gc.md](../bench/results/2026-12-07-push-young-gc.md). Collecting on the serve's main thread alone (`node --single-threaded-gc`) did not separate either (wall 0.71–1.00–1.25× in 10 alternating rounds): [2026-12-07-serve-single-threaded-gc.md](../bench/results/2026-12-07-serve-single-threaded-gc.md).",
  '',
  "vmi serve stores object batches on one writer thread per core beyond its main thread, which reads the bodies (at least one, at most two: one on this machine). Against two writers on these 2 cores, a push of the Debian image to a server on the same machine took 0.76–0.89–0.98× the time (10 alternating rounds, faster in every one) and 0.89× the server's CPU; a push with `--compress`, bound by the client's compressing, 0.97–1.02–1.08× (6 rounds). Where each file creation is expensive (this machine's journal-less root filesystem in the minutes after mass deletions), two writers share the kernel's work and one took 1.48× the time: [2026-12-07-upload-writers.md](../bench/results/2026-12-07-upload-writers.md).",
  '',
]

/** Where a 16-host fill's time goes, and what was measured and did not help (a dated report). */
const FLEET_NOTES = [
  '### Where a 16-host fill\'s time goes',
  '',
  'The start-up on the shared cores, the seed\'s link sending one copy, and a tail of owners still forwarding; and what was measured and did not close the gap ' +
    '(TCP congestion control, file creation, two connections per owner, smaller windows to the seed, the seed\'s link shared per owner; owner balance slack too, then): ' +
    '[2026-12-06-fleet-fill-anatomy.md](../bench/results/2026-12-06-fleet-fill-anatomy.md). ' +
    'A pull\'s connections to peers share one window, so that the chunks it asked of other owners do not crowd its own share from the seed out of its downlink: about 8 % off a 16-host fill in an A/B of alternating builds, ' +
    '[2026-12-07-peer-window.md](../bench/results/2026-12-07-peer-window.md). ' +
    'Keeping an owner\'s connections to the seed open between its batches cut its CPU but lengthened the tail, and was reverted (the same report). ' +
    'Once the window was shared, owners splitting the image evenly (no slack above the mean) did pay, their uplinks finishing together: 0.96× the fill time in 8 alternating pairs, ' +
    '[2026-12-07-owner-slack.md](../bench/results/2026-12-07-owner-slack.md). ' +
    'Each host asking an owner from a random starting point instead of in manifest order, so that hosts would lack different chunks at the end, took 1.47–1.52× the fill time (4 alternating pairs): each owner then fetched its whole share from the seed at once, and every host waited, ' +
    '[2026-12-07-owner-order.md](../bench/results/2026-12-07-owner-order.md). ' +
    'A pull receiving on its own thread too, and starting one writer thread fewer, brought the seed\'s first bytes forward on the shared cores: 0.91–0.94–1.09× the fill time in 8 alternating pairs (faster in 7), ' +
    '[2026-12-07-main-thread-receiver.md](../bench/results/2026-12-07-main-thread-receiver.md). ' +
    'Most packets a fill loses are a host\'s own, dropped by the tbf on its own end (15 connections into a 384 KiB queue); raising that queue to 4 MiB, as a NIC\'s qdisc would hold them, took 1.06–1.14× the fill time in 3 alternating pairs, every request waiting behind what its owner had queued for the other hosts: ' +
    '[2026-12-07-lab-uplink-queue.md](../bench/results/2026-12-07-lab-uplink-queue.md). ' +
    'Asking the peers for the manifest at once instead of one after another brought the seed\'s first 1 % from 2.04–2.29–2.44 s to 1.20–1.65–2.20 s, and the fill to 0.918–0.977–1.070× its time in 6 alternating pairs: ' +
    '[2026-12-07-manifest-asks.md](../bench/results/2026-12-07-manifest-asks.md). ' +
    'Where the 16-host fill\'s CPU goes: in the pulls, half in the kernel (creating one file per chunk on this filesystem, copying into the page cache), and start-up (node, the CLI, module compiling) on the shared cores; socket reads are few and large (median 32 KB, about 90 a second per pull). ' +
    'On a day when this machine started node at half its earlier speed (0.086 CPU-s for `node -e 0`, against 0.04), the unchanged build took 24.00 s, the seed\'s link at 82 % of its rate: at 36 Mbit/s the 16-host fill moves with the cores. ' +
    'A 2-host fill loses its time in the seed\'s phase (the link at 89–93 % of its rate), not in a tail (0.26 s): ' +
    '[2026-12-07-fleet-cpu-anatomy.md](../bench/results/2026-12-07-fleet-cpu-anatomy.md). ' +
    'Each top-level command built as one file took a command\'s start to 0.72–0.87× its CPU (6 alternating rounds); in the 16-host fill that was not separated from the runs\' spread (0.95–0.99–1.05× in 3 alternating pairs): ' +
    '[2026-12-07-command-bundles.md](../bench/results/2026-12-07-command-bundles.md). ' +
    "The pull's and push's writer thread built as one file with their jobs took its start to 0.50–0.65–0.84× its CPU (12 alternating starts), and a fresh pull of a small image to 0.74–0.92–0.98× (6 alternating rounds of 20); not measured in the fill, where 16 × about 25 ms is below the runs' spread: " +
    '[2026-12-07-writer-thread-bundle.md](../bench/results/2026-12-07-writer-thread-bundle.md). ' +
    'The same seconds with half the bytes (18 Mbit/s links, 32 MiB of unique chunks) eased the cores (1.22–1.76 of 2 busy) but not the 16-host fill, 1.54–1.56× the limit against 1.47–1.58× at 36 Mbit/s in the same session, each run on a freshly made ext4: the distance is not only the cores saturating, and the lab keeps its scale: ' +
    '[2026-12-07-fleet-lab-scale.md](../bench/results/2026-12-07-fleet-lab-scale.md). ' +
    'With all 16 pulls started and loaded before the clock (a scratch build that waits for a release), the fill took 1.28–1.34–1.38× the limit from the release, against 1.44–1.49–1.57× for the same build started as usual (4 alternating pairs): the start on the shared cores is part of the distance, not all of it. ' +
    "Every link sampled through such a fill: the seed's link at 97–99 % of its rate, the hosts' downlinks and uplinks at a median 90–96 % once under way, headers 3.6 % of that; the downlinks take about 3 s to get there and the hosts finish 2.8–2.9 s after the seed's last chunk, as each chunk reaches its owner at 1/16 of the seed's link before it is forwarded: " +
    '[2026-12-07-fleet-start-and-links.md](../bench/results/2026-12-07-fleet-start-and-links.md). ' +
    "An owner relaying each chunk on as it arrives from the seed (cut-through, its last byte held until verified) shortened the 16-host tail (median 3.41 → 2.84 s) but not the fill, 0.91–0.99–1.08× its time in 8 alternating pairs, the shared cores setting the seed's phase; relaying in slices of a few KiB filled the slower lab (18 Mbit/s) in 0.95× the time for 1.5× the host serves' CPU, the gain going with the smoother sending, not with the shorter wait. The lab does not scale the chunk, so that wait is about 0.47 s here and under 2 ms in the fleet it models; not adopted (28a9864, reverted): " +
    '[2026-12-08-fetch-through-relay.md](../bench/results/2026-12-08-fetch-through-relay.md).',
  '',
  'The fleet CPU goal compares vmi with one direct pull from nginx per fleet size. At 16 hosts that single run measured 21.02, 15.34, 21.73, 21.30, 24.57 and 25.87 CPU-s per GiB in six full runs of 2026-12-07 ' +
    '(at 20f9cae, bd919bf, 3c9fb10, 2a16b72, 675ec65 and dca667c), while vmi through the owners measured 22.32–33.49 (the median of each run\'s three): met or missed at 1.5× turns on that one anchor run. ' +
    'Full runs also differ from each other in the fill: the 16-host median was 21.60 s at 2a16b72, 22.12 s at 675ec65 and 20.36 s at dca667c, although the change between the first two made the fill faster in 7 of 8 pairs run alternately, and the changes between the last two made it 0.977× in 6; compare builds only within one run. ' +
    'The earlier reports: [2026-12-07-fleet-20f9cae.md](../bench/results/2026-12-07-fleet-20f9cae.md), [2026-12-07-fleet-bd919bf.md](../bench/results/2026-12-07-fleet-bd919bf.md), [2026-12-07-fleet-3c9fb10.md](../bench/results/2026-12-07-fleet-3c9fb10.md), [2026-12-07-fleet-2a16b72.md](../bench/results/2026-12-07-fleet-2a16b72.md), [2026-12-07-fleet-675ec65.md](../bench/results/2026-12-07-fleet-675ec65.md).',
  '',
]

/** The S3 client vmi uses, and why; what bounds a bucket as the seed. */
const S3_CLIENT = [
  "The S3 client is vmi's own SigV4 signer (`src/peer/s3/sigv4.ts`, node:crypto, held to AWS's published examples by test/unit/s3-sigv4.test.js) on the project's HTTP client (src/peer/http-client.ts, node:http). " +
    'In the second table the own signer loads several times faster than @smithy/signature-v4 and @aws-sdk/client-s3 (a CLI command pays that at every start); its GETs per second are close to the @smithy signer\'s (ahead of it in a run under heavy load, [2026-12-06-s3-under-load.md](../bench/results/2026-12-06-s3-under-load.md), about a tenth behind in a quieter one) and well ahead of the SDK\'s. The choice rests on the load time and on needing no new dependency (@smithy/signature-v4 is here only as a transitive dev dependency of oclif). ' +
    "The credential chain a user expects (environment, ~/.aws/credentials and config, AWS_PROFILE) is read by src/cli/s3-settings.ts; the SDK's instance and container credential providers are not used. " +
    'The table measures that client chunk by chunk (what mount and the chain do); a pull sends its chunks over the pipelined transport (src/peer/pipelined-get.ts) instead, each request signed by the same signer.',
  '',
  "What bounds it. On an object store a request costs far more than the bytes of one chunk (radosgw and its OSD spend many times nginx's CPU per request, on the same 2 cores as the client), so one key per chunk made both directions request-bound: the rows for `--no-pack` and their server CPU show it. A push therefore puts its chunks in packs (docs/FORMAT.md \"Packs\"): one PUT of up to 16 MiB of chunks and one of its index, two at a time, each chunk compressed and hashed on the writer threads first; a pull reads a pack by byte range, adjacent chunks in one request of up to 4 MiB, and the bucket's CPU falls to a small share. The pull is then bound by the client's own work per chunk (decode, hash, one file per chunk), as the pull from nginx over a copy of the same bucket is: the two take about the same client CPU. `aws s3 cp` moves the raw file, zeros included, in 8 MiB multipart parts, its server CPU going to bytes; vmi moves only the distinct non-zero chunks, compressed. The bucket keeps the store's layout besides (`objects/`, `manifests/`, `refs/`), so a store copied with `aws s3 sync` is still a seed, and `vmi push --no-pack` writes one key per chunk for readers older than packs.",

  '',
]

/**
 * The benchmarks in the doc's order: what the run table calls each, its section's heading (the
 * boot storm's sits inside the fleet lab's), the body it shares with its report, its goals, and
 * what the doc adds before or after the body.
 */
const KINDS = {
  store: {name: 'store (import, export)', heading: '## Store: import and export', body: storeBody, goals: storeGoals},
  dist: {name: 'distribution (pull, push, fleet, serve)', heading: '## Distribution: pull, push, fleets, serving', body: distBody, goals: distGoals, after: HTTP_CLIENT},
  mount: {name: 'mount (reads, boots)', heading: '## Mount: cached reads and lazy boots', body: mountBody, goals: mountGoals},
  writes: {name: 'sub-block writes through the overlay', heading: '## Sub-block writes through the overlay', body: writesBody},
  s3: {name: 'S3 bucket as the seed (radosgw)', heading: '## S3 bucket as the seed', body: s3Body, goals: s3Goals, before: S3_CLIENT},
  fleet: {name: 'fleet lab (namespaces, shaped links)', heading: '## Fleet lab: hosts in their own network namespaces, on shaped links', body: fleetBody, goals: fleetGoals, after: FLEET_NOTES},
  'fleet-boot': {name: 'boot storm in the fleet lab (replay)', heading: '### Boot storm in the lab (a replay)', depth: 2, body: bootBody, goals: bootGoals},
  compress: {
    name: 'compressed objects (loopback, fleet lab)',
    heading: '## Compressed objects: loopback and the fleet lab',
    body: compressBody,
    goals: compressGoals,
    after: [
      'Compressing on send (`vmi serve --compress-sends`, docs/PROTOCOL.md "Compressing on send"): the raw seed with the default `auto` compresses each chunk for a client across a link, on its main thread, once while the chunk stays in its cache. In the 2026-12-07 run (bench/results/2026-12-07-compress.md) one host pulling at 200 Mbit/s took the same time from it as from the compressed seed (9.36 s both, 2.92× faster than raw), for about 1.2 seed CPU-s more; at 1000 Mbit/s 2.82 s against the compressed seed\'s 2.11 and raw 5.80. Four hosts filling at 200 Mbit/s took 0.43× the raw fill\'s time. At 1000 Mbit/s the four-host fill is bound by the 2 cores that 4 clients and 5 serves share, not by the links: there compressing on send cost 1.05× the raw fill\'s time (10.44 s against 9.98), while a compressed seed, which compresses nothing on send, took 0.77×. A fleet\'s hosts each have their own cores; `--compress-sends never` is for links fast enough that decoding costs a client more than the bytes save (decoding runs at about 1.1 GB/s a core here: bench/results/2026-12-06-zstd-choice.md). On loopback `auto` sends raw, so the loopback rows do not change. The boot storm above (2026-12-07) ran with the default, its seed\'s raw store compressing on send: at 16 hosts the seed sent 16.3 MiB for a 48.4 MiB boot set, p99 time-to-boot-set 27.65 s with peers and 25.69 s from the seed alone, where the run of 2026-12-06 (at 6e16f3f, before compressing on send: bench/results/2026-12-06-fleet-boot.md) sent 51.8 MiB and 775 MiB and took 29.51 s and 46.67 s.',
      '',
      'The boot storm with the seed holding the image compressed is a separate run of the boot-storm benchmark, kept apart from the one above: `node bench/fleet-boot.js --compressed-seed` (results `bench/results/<date>-fleet-boot-zstd.md`) against `--label raw` (`<date>-fleet-boot-raw.md`), run one after the other.',
      '',
    ],
  },
}

function readJson(file) {
  try {
    return JSON.parse(readFileSync(file, 'utf8'))
  } catch {
    return undefined
  }
}

/** Renders docs/PERFORMANCE.md and docs/img/*.svg; returns what it wrote. */
export async function renderPerformanceDoc({root = ROOT} = {}) {
  const res = path.join(root, 'bench', 'results')
  /** @type {Record<string, any>} */
  const R = Object.fromEntries([...Object.keys(KINDS), 'sim'].map((k) => [k, readJson(path.join(res, `latest-${k}.json`))]))
  const images = new Map() // name → svg
  /** @type {import('./report.js').BodyContext} */
  const ctx = {plot: (name, alt, make) => (images.set(name, make()), [`![${alt}](img/${name})`, '']), bg: [], all: R}

  const out = []
  out.push('# Performance', '')
  out.push(
    '_Generated by `bench/lib/perf-doc.js` from `bench/results/latest-{store,dist,mount,writes,s3,fleet,fleet-boot,compress,sim}.json`, the same bodies as the reports of those runs — do not edit by hand. ' +
      '`npm run bench` measures and regenerates it; `node bench/run.js --render` regenerates it from the saved results without measuring._',
    '',
  )
  out.push(
    'Every measured figure sits next to its **anchor** — the standard tool doing the same job (cp, b3sum, curl from nginx, nbdkit, booting the local raw file), measured in the same run on the same machine — and the **ratio** between them. ' +
      'Ratios are speed ratios, anchor time ÷ vmi time: above 1 vmi is faster, below 1 slower. Everything runs on one machine: the store, distribution and mount benchmarks over loopback; ' +
      (R.fleet
        ? `the [fleet lab](#fleet-lab-hosts-in-their-own-network-namespaces-on-shaped-links) gives every host its own network namespace on a rate-limited link (no latency or loss emulated), up to ${R.fleet.lab.hosts} hosts on the same ${R.fleet.machine.cores} cores; `
        : '') +
      'the [last section](#simulation-owner-hashing-for-1-to-1000-hosts) **simulates** fleets up to 1,000 hosts.',
    '',
  )
  const missing = Object.entries(R)
    .filter(([, v]) => !v)
    .map(([k]) => `bench/results/latest-${k}.json`)
  if (missing.length) out.push(`Not available, so not shown: ${missing.join(', ')}.`, '')

  out.push(...machineSection(R, root))
  const goals = Object.entries(KINDS).flatMap(([k, K]) => (R[k] && K.goals ? K.goals(R[k]) : []))
  if (goals.length) out.push('## Goals', '', `${goals.filter((g) => g.met).length} of ${goals.length} met.`, '', goalTable(goals), '')
  for (const [k, K] of Object.entries(KINDS)) {
    // a kind's body, its headings `depth` levels down (it starts at ##), its charts drawn
    if (R[k]) out.push(K.heading, '', ...(K.before ?? []), K.body(R[k], ctx).join('\n').replace(/^#/gm, '#'.repeat((K.depth ?? 1) + 1)), '', ...(K.after ?? []))
  }
  if (R.sim) out.push(...simSection(R, ctx))

  const docDir = path.join(root, 'docs')
  await fsp.mkdir(path.join(docDir, 'img'), {recursive: true})
  for (const [name, svg] of images) await fsp.writeFile(path.join(docDir, 'img', name), svg)
  const md = out.join('\n').replace(/\n{3,}/g, '\n\n').trimEnd() + '\n'
  await fsp.writeFile(path.join(docDir, 'PERFORMANCE.md'), md)
  return {doc: 'docs/PERFORMANCE.md', images: [...images.keys()].map((n) => `docs/img/${n}`), missing}
}

// ----------------------------------------------------------------- machine and provenance

function machineLine(m) {
  return (
    `${m.cpuModel}, ${m.cores} cores${m.simd?.length ? ` (${m.simd.join(', ')})` : ''}, ${f(m.ramBytes / GiB, 1)} GiB RAM, ${m.kernel}, node ${m.node}, ` +
    `BLAKE3 backend ${m.hashBackend}, work directory on ${m.filesystem}`
  )
}

function machineSection(R, root) {
  const out = ['## Machine and runs', '']
  const runs = Object.keys(KINDS).filter((k) => R[k])
  const lines = [...new Set(runs.map((k) => machineLine(R[k].machine)))]
  if (lines.length === 1) out.push(`All measurements ran on one machine: ${lines[0]}.`)
  else for (const k of runs) out.push(`- ${k}: ${machineLine(R[k].machine)}`)
  const m = R.mount?.machine ?? R.dist?.machine
  if (m) out.push(`Guests boot under ${m.kvmUsable ? 'KVM' : '**TCG** (software emulation; no usable KVM on this machine)'}; tools: ${[R.store?.machine.cp, R.store?.machine.b3sum, m.curl?.split(' ').slice(0, 2).join(' '), m.nginx?.replace('nginx version: ', ''), m.nbdkit, m.qemuImg?.split(' (')[0]].filter(Boolean).join(', ')}.`)
  out.push('')
  out.push(
    table(
      ['benchmark', 'started (UTC)', 'source', 'dist/ build', 'took', 'load average at the end', 'full report'],
      runs.map((k) => {
        const r = R[k]
        const g = r.git
        // the markdown report of the same run: same kind, same start date
        const report = `bench/results/${r.startedAt.slice(0, 10)}-${k}.md`
        return [
          KINDS[k].name,
          r.startedAt.replace('T', ' ').slice(0, 16),
          `git ${g.head}${g.dirtySrcFiles ? ` + ${g.dirtySrcFiles} uncommitted file(s) in src/` : ''}`,
          `${g.distAtStart ?? '–'}${g.distAtEnd !== g.distAtStart ? ` → ${g.distAtEnd} (rebuilt during the run)` : ''}`,
          r.totalSeconds === undefined ? '–' : `${f(r.totalSeconds, 0)} s`,
          r.loadAverageAtEnd?.join(' ') ?? '–',
          existsSync(path.join(root, report)) ? `[${path.basename(report)}](../${report})` : '–',
        ]
      }),
    ),
    '',
  )
  if (R.sim) out.push(`Simulation: \`bench/sim.js\`, seed \`${R.sim.seed}\`, input ${R.sim.input.source}${R.sim.input.sourceStartedAt ? ` (run of ${R.sim.input.sourceStartedAt.slice(0, 10)})` : ''}; ${f(R.sim.seconds, 1)} s.`, '')
  return out
}

// ----------------------------------------------------------------- simulation

/** Seconds of simulated ticks, at the link speed the simulation assumed. */
const simSeconds = (Z) => (ticks) => ticks * Z.model.tickSeconds

function simSection(R, {plot}) {
  const Z = R.sim
  const I = Z.input
  const m = Z.model
  const U = I.uniqueBytes
  const sec = simSeconds(Z)
  const out = ['## Simulation: owner hashing for 1 to 1,000 hosts', '']
  out.push(
    '> **This section is a simulation, not a measurement.** Nothing here ran on a network or on more than one machine. ' +
      'It models what `src/peer/chain.ts` and `src/peer/server.ts` do, to see how owner hashing behaves at fleet sizes the benchmark cannot reach; the benchmark above checks the same property for 1 to ' +
      `${R.dist?.fleet?.at(-1)?.hosts ?? '8'} hosts (real processes on one machine)` +
      (R.fleet ? `, and the [fleet lab](#fleet-lab-hosts-in-their-own-network-namespaces-on-shaped-links) for 1 to ${R.fleet.lab.hosts} hosts on shaped links, where the simulation's ownership is checked against each host's bytes.` : '.'),
    '',
  )
  out.push(
    `\`bench/sim.js\` (seed \`${Z.seed}\`, deterministic; ${f(Z.seconds, 1)} s). The owner of every chunk is chosen by the **real** \`${Z.rendezvous.function ?? 'rankPeers'}\` from \`${Z.rendezvous.module}\`${Z.rendezvous.slack !== undefined ? ` (rendezvous weights, each owner holding at most ${f(1 + Z.rendezvous.slack, 1)}× the mean, as docs/PROTOCOL.md, "Owner hashing", states it; BLAKE3 ${Z.rendezvous.hashBackend} for the peer keys)` : ` (BLAKE3 ${Z.rendezvous.hashBackend})`}, over peer URLs \`http://10.0.x.y:7070\` and synthetic chunk ids (BLAKE3 of a seeded string: uniform, like real ids). ` +
      `The image: ${I.image} from ${I.source}${I.sourceStartedAt ? ` (run of ${I.sourceStartedAt.slice(0, 10)})` : ''} — ${int(I.chunks)} distinct non-zero chunks of ${bytesHuman(I.chunkBytes)} = ${bytesHuman(U)}. ` +
      `A boot fetches ${int(m.bootChunks)} of them (${I.bootSource}).`,
    '',
    'What choosing owners costs a host: one pass over the peer list per chunk, a few integer operations per peer (the peer URLs are hashed once). ' +
      'A pull of 4,096 chunks with 1,000 peers listed spent about 20 s of CPU and 1.8 GiB ranking them when each weight was a BLAKE3 hash; ' +
      'since cb995ea it spends about 30 ms, and the pull took 0.16–0.22–0.28× the time in an A/B of whole processes: ' +
      '[2026-12-06-owner-hash-cost-ab.md](../bench/results/2026-12-06-owner-hash-cost-ab.md).',
    '',
  )
  out.push('Model and assumptions:', '')
  out.push(
    `- Time advances in ticks; one tick moves one chunk over one link. Every host and the seed send at most one chunk and receive at most one chunk per tick (equal, symmetric links). Requests and 404s use no bandwidth. Times in seconds below assume ${f((m.linkBytesPerSecond * 8) / 1e9, 0)} Gbit/s links (1 tick = ${f(m.tickSeconds * 1000, 2)} ms) and a ${f(m.rttSeconds * 1000, 1)} ms round trip — assumptions, not measurements.`,
    `- A pull fetches the distinct chunks in manifest order, the same order on every host, ${m.window} in flight (as \`vmi pull\`); a boot fetches its ${int(m.bootChunks)} chunks in a random (seeded) order, ${m.bootWindow} in flight. All hosts start together.`,
    `- A host asks each chunk's owner — \`balancedOwners(the image's chunks, peer list)\`; the list names every host, itself included — with fetch-through. An owner holding the chunk queues an upload; one lacking it fetches it from the seed once however many ask (single flight, as \`FetchThrough\` in src/peer/server/fetch-through.ts), stores it, then uploads it to every waiter. The host's own serve answers its own pull without using the network.`,
    '- Senders serve their queue first come first served, skipping for this tick a job whose receiver is already receiving; senders take turns in a seeded random order each tick.',
    `- Leaving: a share of the hosts (chosen at random) stops at once when the fleet has received ${(m.leaveAt ?? []).map((a) => `${f(a * 100, 0)} %`).join(' or ')} of its chunks; their transfers and queues are lost and whoever waited asks again. With **updated** lists, the others drop them from their peer lists at that moment (as if the file given to \`--peers-file\`, which vmi re-reads when it changes, were updated everywhere at once), so owners are balanced anew over the shorter list: the departed hosts' chunks move, and the cap moves a few others. With **stale** lists, the others keep asking the departed owner: the connection is refused (once per departed peer and host: its circuit breaker then marks it down and it is skipped, as vmi does), then — as chain.ts does — the first peer up in rank order is the owner and is asked with fetch-through; it sends the chunk if it holds it, and else fetches it from the seed once however many ask. A host fetches from the seed itself only when no peer on its list is left up. Each refused connection costs a round trip.`,
    '- Newcomers: the last hosts of the fleet joined lately; they know every host, but the established hosts\' peer lists do not name them yet.',
    '- Not modelled: CPU, disk, TCP, request latency on the normal path, HTTP errors, probes finding a departed peer back, hosts starting at different times.',
    '',
  )

  // sweep
  const sw = Z.sweep
  out.push('### Seed egress, balance and time against fleet size', '')
  out.push(
    table(
      ['hosts', 'seed ÷ unique, pull', 'seed ÷ unique, boot', 'chunks owned per host: mean / max (max ÷ mean)', 'chunks sent per host: mean / max (max ÷ mean)', 'simulated pull, last host done', '× one host alone', 'without peers (seed link, computed)'],
      sw.map((s) => [
        int(s.hosts),
        `${f(s.pull.seedRatio, 3)}×`,
        `${f(s.boot.seedRatio, 3)}×`,
        `${f(s.pull.owned.mean, s.pull.owned.mean < 100 ? 1 : 0)} / ${int(s.pull.owned.max)} (${x(s.pull.owned.maxOverMean)})`,
        s.hosts > 1 ? `${f(s.pull.served.mean, 0)} / ${int(s.pull.served.max)} (${x(s.pull.served.maxOverMean)})` : '–',
        `${f(sec(s.pull.ticks), 1)} s`,
        x(s.pull.ticks / I.chunks),
        `${f(sec(s.hosts * I.chunks), 1)} s, seed sends ${bytesHuman(s.hosts * U)}`,
      ]),
    ),
    '',
  )
  const hosts = sw.map((s) => s.hosts)
  const virt = I.virtualSize
  const simSeedEgress = () =>
    lineChart({
      title: 'Seed egress, 1 to 1,000 hosts (simulated)',
      subtitle: 'SIMULATION with the real owner function; dashed lines computed (log–log)',
      xLabel: 'hosts',
      yLabel: 'GiB sent by the seed',
      xLog: true,
      yLog: true,
      series: [
        {name: 'owner hashing, pull (simulated)', points: sw.map((s) => [s.hosts, s.pull.seedBytes / GiB])},
        {name: 'owner hashing, boot working set (simulated)', points: sw.map((s) => [s.hosts, s.boot.seedBytes / GiB])},
        {name: `no peers: N × ${bytesHuman(U)}`, dashed: true, marker: false, points: hosts.map((n) => [n, (n * U) / GiB])},
        ...(virt ? [{name: `every host copies the raw file: N × ${bytesHuman(virt)}`, dashed: true, marker: false, points: hosts.map((n) => [n, (n * virt) / GiB])}] : []),
      ],
    })
  out.push(...plot('sim-seed-egress.svg', 'Line chart (simulation): seed egress stays at one copy for 1 to 1,000 hosts, against N copies', simSeedEgress))
  const simBalance = () =>
    lineChart({
      title: 'Load balance: busiest host ÷ mean (simulated)',
      subtitle: `SIMULATION: ${int(I.chunks)} chunks over N owners (balanced owners)`,
      xLabel: 'hosts',
      yLabel: 'max ÷ mean',
      xLog: true,
      yMin: 0,
      series: [
        {name: 'chunks owned (chunks sent to other hosts: the same ratio)', points: sw.map((s) => [s.hosts, s.pull.owned.maxOverMean])},
        {name: 'simulated pull time ÷ one host alone', points: sw.map((s) => [s.hosts, s.pull.ticks / I.chunks])},
      ],
    })
  out.push(...plot('sim-balance.svg', 'Line chart (simulation): owner imbalance and pull time grow with the number of hosts', simBalance))
  const simTime = () =>
    lineChart({
      title: 'Time until every host has the image (simulated)',
      subtitle: `SIMULATION at ${f((m.linkBytesPerSecond * 8) / 1e9, 0)} Gbit/s per host and for the seed (assumed); log–log`,
      xLabel: 'hosts',
      yLabel: 'seconds',
      xLog: true,
      yLog: true,
      series: [
        {name: 'owner hashing, last host done', points: sw.map((s) => [s.hosts, sec(s.pull.ticks)])},
        {name: 'owner hashing, mean host done', points: sw.map((s) => [s.hosts, sec(s.pull.finish.mean)])},
        {name: 'no peers: the seed link sends N copies (computed)', dashed: true, marker: false, points: hosts.map((n) => [n, sec(n * I.chunks)])},
        {name: 'one host alone (computed)', dashed: true, marker: false, points: [hosts[0], hosts.at(-1)].map((n) => [n, sec(I.chunks)])},
      ],
    })
  out.push(...plot('sim-time.svg', 'Line chart (simulation): time for the whole fleet, owner hashing against the seed alone', simTime))

  // leave
  if (Z.leave?.length) {
    out.push(`### Hosts leaving mid-pull (${int(m.churnHosts)} hosts)`, '')
    out.push(
      table(
        ['leave at', 'hosts leaving', 'peer lists', 'seed ÷ unique', 'extra from the seed', 'seed → owner (fetch-through) / seed → host (direct)', '404s', 'simulated pull, last host done'],
        Z.leave.map((l) => [
          `${f(l.at * 100, 0)} % of the pull`,
          `${l.percent} % (${int(l.departed)})`,
          l.lists,
          `${f(l.seedRatio, 3)}×`,
          bytesHuman(Math.max(0, l.extraSeedBytes)),
          `${int(l.seedThrough)} / ${int(l.seedDirect)}`,
          int(l.notFound),
          `${f(sec(l.ticks), 1)} s`,
        ]),
      ),
      '',
    )
    const ats = [...new Set(Z.leave.map((l) => l.at))]
    const series = []
    for (const at of ats)
      for (const lists of ['updated', 'stale'])
        series.push({
          name: `${lists} peer lists, leaving at ${f(at * 100, 0)} %`,
          dashed: lists === 'stale',
          points: Z.leave.filter((l) => l.at === at && l.lists === lists).map((l) => [l.percent, l.seedRatio]),
        })
    const simLeave = () =>
      lineChart({
        title: `Hosts leaving mid-pull (${int(m.churnHosts)} hosts)`,
        subtitle: 'SIMULATION; seed bytes ÷ unique bytes (log scale)',
        xLabel: '% of the hosts leaving',
        yLabel: 'seed bytes ÷ unique bytes',
        yLog: true,
        xTicks: [...new Set(Z.leave.map((l) => l.percent))],
        series,
      })
    out.push(...plot('sim-leave.svg', 'Line chart (simulation): seed egress when hosts leave, with updated or stale peer lists', simLeave))
  }
  // join
  if (Z.join?.length) {
    out.push(`### Newcomers missing from the peer lists (${int(m.churnHosts)} hosts)`, '')
    out.push(
      table(
        ['newcomers', 'seed ÷ unique', 'extra chunks from the seed', 'chunks a newcomer owns on the full list (predicted extra)', 'simulated pull, last host done'],
        Z.join.map((j) => [`${j.percent} % (${int(j.newcomers)})`, `${f(j.seedRatio, 3)}×`, int(j.seedChunks - j.chunks), int(j.predictedExtraChunks), `${f(sec(j.ticks), 1)} s`]),
      ),
      '',
    )
    const simJoin = () =>
      lineChart({
        title: `Newcomers missing from peer lists (${int(m.churnHosts)} hosts)`,
        subtitle: 'SIMULATION; predicted = 1 + chunks a newcomer owns ÷ all chunks',
        yZero: false,
        xLabel: '% of the hosts that are newcomers',
        yLabel: 'seed bytes ÷ unique bytes',
        xTicks: Z.join.map((j) => j.percent),
        series: [
          {name: 'simulated', points: Z.join.map((j) => [j.percent, j.seedRatio])},
          {name: 'predicted: chunks whose owner differs between the two lists', dashed: true, points: Z.join.map((j) => [j.percent, 1 + j.predictedExtraChunks / j.chunks])},
        ],
      })
    out.push(...plot('sim-join.svg', 'Line chart (simulation): extra seed egress grows with the share of newcomers missing from peer lists', simJoin))
  }
  out.push('### What the simulation shows', '', ...simFindings(Z), '')
  return out
}

function simFindings(Z) {
  const I = Z.input
  const m = Z.model
  const sec = simSeconds(Z)
  const sw = Z.sweep
  const lines = []
  const pr = sw.map((s) => s.pull.seedRatio)
  const br = sw.map((s) => s.boot.seedRatio)
  const last = sw.at(-1)
  const exact = pr.every((r) => r === 1) && br.every((r) => r === 1)
  lines.push(
    `- **Seed egress**: with consistent peer lists and nobody leaving, the seed sent ${exact ? 'exactly' : `${f(Math.min(...pr), 3)}–${f(Math.max(...pr), 3)}×`} one copy of the unique bytes at every fleet size from ${int(sw[0].hosts)} to ${int(last.hosts)} hosts, for pulls and for boots — each chunk leaves the seed once, through its owner. ` +
      `Without peers ${int(last.hosts)} hosts would cost the seed ${bytesHuman(last.hosts * I.uniqueBytes)}${I.virtualSize ? `, and copying the raw file to each ${bytesHuman(last.hosts * I.virtualSize)}` : ''}.`,
  )
  const at = (n) => sw.find((s) => s.hosts === n)
  const small = sw.find((s) => s.hosts >= 8) ?? sw[0]
  lines.push(
    `- **Balance**: owners are balanced over the image (docs/PROTOCOL.md, "Owner hashing": at most ⌈${f(1 + (Z.rendezvous.slack ?? 0), 1)} × the mean⌉ chunks each): at ${int(small.hosts)} hosts the busiest owner holds ${x(small.pull.owned.maxOverMean)} the mean, at ${int(last.hosts)} hosts (${f(last.pull.owned.mean, 2)} chunks each on average, so the cap rounds up) it holds ${int(last.pull.owned.max)} chunks, ${x(last.pull.owned.maxOverMean)} the mean. ` +
      `Every other host asks the owner for each of its chunks, so the busiest host sends ${int(last.pull.served.max)} chunks against a mean of ${f(last.pull.served.mean, 0)} (${x(last.pull.served.maxOverMean)}), and its uplink sets the pace: the simulated pull of ${int(last.hosts)} hosts takes ${f(sec(last.pull.ticks), 1)} s, ${x(last.pull.ticks / I.chunks)} one host alone (${f(sec(I.chunks), 1)} s), against ${f(sec(last.hosts * I.chunks), 0)} s for the seed link to send ${int(last.hosts)} copies. ` +
      `Rendezvous hashing alone, before the balance, left the busiest of 1,000 owners 3.25× the mean and the pull 16,519 ticks on the same input (2026-12-06, [2026-12-06-balanced-owners-ab.md](../bench/results/2026-12-06-balanced-owners-ab.md)). What is left above one host alone is the queueing of this model with every host starting at once.`,
  )
  const L = Z.leave ?? []
  if (L.length) {
    const upd = L.filter((l) => l.lists === 'updated')
    const worstUpd = upd.reduce((a, b) => (b.seedRatio > a.seedRatio ? b : a), upd[0])
    const stale = L.filter((l) => l.lists === 'stale')
    const early = Math.min(...stale.map((l) => l.at))
    const late = Math.max(...stale.map((l) => l.at))
    const sEarly = stale.filter((l) => l.at === early)
    const sLate = stale.filter((l) => l.at === late)
    lines.push(
      `- **Hosts leaving, lists updated**: owners are balanced anew over the remaining hosts, so the departed hosts' chunks and a few others move; a new owner that has not pulled the chunk yet fetches it through from the seed even when other hosts hold it (fetch-through goes to the upstream only). ` +
        `The seed sent at most ${x(worstUpd.seedRatio, 3)} the unique bytes (${worstUpd.percent} % leaving at ${f(worstUpd.at * 100, 0)} % of the pull).`,
    )
    lines.push(
      `- **Hosts leaving, lists stale**: the next peer up becomes the owner of a departed owner's chunks on every host alike (the same ranking, the same departed peers found refused), so it fetches each through once: seed ${sLate.map((l) => `${x(l.seedRatio, 3)}`).join(', ')} for ${sLate.map((l) => `${l.percent} %`).join(', ')} leaving at ${f(late * 100, 0)} % of the pull, and ${sEarly.map((l) => `${x(l.seedRatio, 3)}`).join(', ')} at ${f(early * 100, 0)} %; the chunks sent straight to hosts: ${[...sEarly, ...sLate].reduce((a, l) => a + (l.seedDirect ?? 0), 0)}. ` +
        `What stale lists cost is ${[...sEarly, ...sLate].map((l) => int(l.refused)).join(', ')} refused connections (once per departed peer and host) and up to ${f(sec(Math.max(...stale.map((l) => l.ticks))), 0)} s for the pull; these numbers come from one seed and a start where every host begins at once, so read them as orders of magnitude.`,
    )
  }
  const J = Z.join ?? []
  if (J.length) {
    const all = J.every((j) => j.seedChunks - j.chunks === j.predictedExtraChunks)
    lines.push(
      `- **Newcomers missing from the lists**: the established hosts ask the old owner and the newcomers ask the owner on the full list; where those differ (the chunks a newcomer owns, and the few the cap moves besides) the seed sends the chunk twice: ${J.map((j) => `${x(j.seedRatio, 3)} with ${j.percent} % newcomers`).join(', ')}. ` +
        `${all ? 'The simulated extra equals' : 'The simulated extra differs from'} the count predicted from the owners on the two lists${all ? ' in every case' : ''}.`,
    )
  }
  return lines
}
