// @ts-check
// The fleet benchmark's report (bench/fleet.js) and the figures its goals are
// judged on, shared with docs/PERFORMANCE.md (bench/lib/perf-doc.js).
import {bytesHuman, f, GiB, int, range, table} from './format.js'
import {stats} from './measure.js'
import {renderReport} from './report.js'
import {lineChart} from './svg-plot.js'

export const CONTENDERS = {
  peers: 'vmi, peers + owner hashing',
  seedAlone: 'vmi pull from the seed alone (nginx, no peers)',
  curl: 'curl of the raw file from nginx',
}


/** {median, min, max} of the vmi runs' `key`. */
function peersStat(p, key = 'wall') {
  return stats(p.peers.map((x) => x[key]))
}

/** The fill figures the goals are judged on (also used by bench/lib/perf-doc.js). */
export function fleetGoals(R) {
  const G = R.goals
  const rows = []
  const big = R.fill.at(-1)
  const two = R.fill.find((p) => p.hosts === 2)
  if (!big) return rows
  const wBig = peersStat(big).median
  rows.push({goal: `fleet: N = ${big.hosts}, all hosts done ≤ ${G.limitRatio}× the physical limit`, result: `${f(wBig / R.limitSeconds)}× (${f(wBig)} s vs ${f(R.limitSeconds)} s)`, met: wBig <= G.limitRatio * R.limitSeconds})
  if (two) {
    const w2 = peersStat(two).median
    rows.push({goal: `fleet: flat in N, N = ${big.hosts} within ${G.flatRatio}× of N = 2`, result: `${f(wBig / w2)}× (${f(wBig)} s vs ${f(w2)} s)`, met: wBig <= G.flatRatio * w2})
  }
  const worstSeed = Math.max(...R.fill.flatMap((p) => p.peers.map((x) => x.seedRatio)))
  const worstWire = Math.max(...R.fill.flatMap((p) => p.peers.map((x) => x.seedWireBytes / R.image.uniqueBytes)))
  rows.push({
    goal: `fleet: seed egress ≤ ${G.seedEgress}× the unique bytes, every N (vmi serve's counter)`,
    result: `worst ${f(worstSeed, 3)}×; the seed's link carried at most ${f(worstWire, 3)}×, TCP/IP headers and retransmissions included`,
    met: worstSeed <= G.seedEgress,
  })
  if (big.curl) rows.push({goal: `fleet: N = ${big.hosts}, ≥ ${G.vsCurl}× faster than N curls of the raw file`, result: `${f(big.curl.wall / wBig)}× (${f(big.curl.wall)} s vs ${f(wBig)} s)`, met: big.curl.wall / wBig >= G.vsCurl})
  if (big.seedAlone) {
    const c = cpuPerGiB(R, big)
    rows.push({goal: `fleet CPU: CPU-s per GiB delivered per host through the owners ≤ ${G.cpuVsDirect}× a direct pull from nginx (N = ${big.hosts})`, result: `${f(c.owners / c.direct)}× (${f(c.owners)} vs ${f(c.direct)} CPU-s/GiB)`, met: c.owners <= G.cpuVsDirect * c.direct})
  }
  if (R.churn) {
    const C = R.churn
    const all = Object.values(C)
    const ok = all.every((x) => x.failures.length === 0 && x.fsckFailures === 0)
    rows.push({goal: 'churn: every host completes, no wrong byte (pull verifies each chunk; fsck of every store)', result: all.map((x) => `${x.label}: ${x.failures.length || x.fsckFailures ? 'FAILED' : 'ok'}`).join('; '), met: ok})
    rows.push({goal: `churn: seed egress ≤ ${G.churnSeedEgress}× with an owner lost mid-fill`, result: `${f(C.ownerDown.seedRatio, 3)}×`, met: C.ownerDown.seedRatio <= G.churnSeedEgress})
  }
  return rows
}

/** CPU-seconds per GiB each host received: through the owners (pull + its serve) and directly from nginx (pull). */
export function cpuPerGiB(R, p) {
  const perHost = (cpu) => cpu / p.hosts / (R.image.uniqueBytes / GiB)
  const owners = stats(p.peers.map((x) => perHost(x.clientCpu + x.hostServeCpu))).median
  const ownersPull = stats(p.peers.map((x) => perHost(x.clientCpu))).median
  return {owners, ownersPull, direct: p.seedAlone ? perHost(p.seedAlone.clientCpu) : NaN}
}

/** What the lab's reports say of the machine: it is shared, and by how much shows in the runs. */
const SHARED = '**this machine is shared**: other work used CPU during these runs (the "others" columns say how much)'
const mbit = (b) => `${f(b / 1e6, 0)} Mbit/s`

export function renderFleetReport(R) {
  return renderReport(R, {title: 'vmi fleet benchmark in the lab', tools: SHARED, goals: fleetGoals(R), body: fleetBody, background: false})
}

/** @param {Record<string, any>} R @param {import('./report.js').BodyContext} ctx */
export function fleetBody(R, {plot}) {
  const img = R.image
  const Um = bytesHuman(img.uniqueBytes)
  const out = ['## The lab', '']
  out.push(
    `A seed and ${R.lab.hosts} hosts on this machine, each in its own network namespace with its own address (10.77.0.0/16) on a veth pair into one Linux bridge in a namespace of its own (test/helpers/lab.js). ` +
      `Every link is shaped in both directions by tbf on both ends of its veth: hosts ${mbit(R.lab.rate)}, the seed ${mbit(R.lab.seedRate)}. ` +
      `**This kernel has no netem: no latency, jitter or loss is emulated**; round trips are the veth's and the tbf queues'. ` +
      `The seed runs \`vmi serve\` and nginx (one worker, sendfile) over the same store, and nginx also serves the raw image for curl.`,
    '',
  )
  // the factor from this lab to a fleet on 10 Gbit/s links
  const scale = 10e9 / R.lab.rate
  out.push(
    `**Scaling**: every size and rate here but one is a fleet's scaled down by one factor. At ${mbit(R.lab.rate)} a ${bytesHuman(img.size)} image models, for example, a ${f((img.size * scale) / GiB, 1)} GiB image on 10 Gbit/s links (×${f(scale, 0)}: the same seconds) — ` +
      `as long as CPU stays below saturation, which on this ${R.machine.cores}-core machine shared by all hosts it does not always: the "busy cores" column shows it, and a run near ${R.machine.cores} cores measures CPU, not the links. ` +
      `The one not scaled is the chunk, ${img.chunkSize / 1024} KiB here as in that fleet: the lab has ×${f(scale, 0)} fewer chunks, each as many times longer on a link. ` +
      `What one chunk waits for — reaching its owner before it goes on to the other hosts, the first chunks at the start of a fill and the last at its end — weighs that much more here than in the fleet modelled ` +
      `(bench/results/2026-12-08-fetch-through-relay.md).`,
    '',
  )
  out.push(
    `Image: synthetic, ${bytesHuman(img.size)}: 4 MiB regions alternating random data and holes, so **${Um} of unique non-zero chunks** (${int(img.chunks)} chunks of ${img.chunkSize / 1024} KiB). ` +
      `**Physical limit** = unique bytes ÷ link rate = ${f(R.limitSeconds)} s: the seed must send each unique chunk once and every host must receive each once. ` +
      `On real Ethernet TCP/IP headers add about 4 % to that (1,448 bytes of payload in a 1,514-byte frame); the lab's veths carry 64 KiB GSO packets, so tbf and the byte counters see fewer headers` +
      (R.fill[0]?.seedAlone ? ` (one copy from nginx counted ${f(R.fill[0].seedAlone.seedWireBytes / img.uniqueBytes, 3)}× on the seed's link).` : '.'),
    '',
  )
  out.push(loadSummary(R), '')

  out.push('## Fill: N hosts get the whole image at once', '')
  out.push(
    `Contenders in the same lab, same run: **${CONTENDERS.peers}** (every host: \`vmi serve --seed SEED\` started beforehand, then \`vmi pull ID SEED --peer <every host>\`; seed = vmi serve; ${R.reps} runs, min–median–max); ` +
      `**${CONTENDERS.seedAlone}** (\`vmi pull ID NGINX\`, one run); **${CONTENDERS.curl}** (\`curl -o FILE\`, the whole ${bytesHuman(img.size)}, one run). ` +
      `Wall = all hosts started together (their start-up included) until the last one exits. Seed sent: vmi serve's \`vmi_served_bytes_total{kind="objects"}\` for vmi with peers; the seed veth's transmitted bytes for nginx (and, in the last column, for vmi too: headers and retransmissions included).`,
    '',
  )
  out.push(
    table(
      ['hosts', 'limit', 'vmi with peers: s, median (min–max)', '× limit', 'seed alone: s', '× limit', 'curl: s', '× limit', 'vmi speed ÷ curl', 'seed sent ÷ unique: vmi / seed alone / curl', "vmi: the seed's link ÷ unique"],
      R.fill.map((p) => {
        const w = peersStat(p)
        const lim = R.limitSeconds
        return [
          p.hosts,
          `${f(lim)} s`,
          range(w),
          `${f(w.median / lim)}×`,
          p.seedAlone ? f(p.seedAlone.wall) : '–',
          p.seedAlone ? `${f(p.seedAlone.wall / lim)}×` : '–',
          p.curl ? f(p.curl.wall) : '–',
          p.curl ? `${f(p.curl.wall / lim)}×` : '–',
          p.curl ? `${f(p.curl.wall / w.median)}×` : '–',
          `${f(peersStat(p, 'seedRatio').median, 3)} / ${p.seedAlone ? f(p.seedAlone.seedRatio, 3) : '–'} / ${p.curl ? f(p.curl.seedRatio, 3) : '–'}`,
          f(stats(p.peers.map((x) => x.seedWireBytes / img.uniqueBytes)).median, 3),
        ]
      }),
    ),
    '',
  )
  const hosts = R.fill.map((p) => p.hosts)
  const span = [hosts[0], hosts.at(-1)]
  const fillChart = () =>
    lineChart({
      title: 'Fleet fill in the lab: time for all hosts, against the physical limit',
      subtitle: `measured ${R.startedAt.slice(0, 10)}; ${mbit(R.lab.rate)} links, ${Um} unique; all hosts share ${R.machine.cores} cores`,
      xLabel: 'hosts filling at once',
      yLabel: 'seconds until the last host is done',
      xTicks: hosts,
      xLog: 2,
      yLog: true,
      series: [
        {name: 'vmi, peers + owner hashing (median)', points: R.fill.map((p) => [p.hosts, peersStat(p).median])},
        {name: 'vmi pull from the seed alone (nginx)', points: R.fill.filter((p) => p.seedAlone).map((p) => [p.hosts, p.seedAlone.wall])},
        {name: 'curl of the raw file (anchor)', points: R.fill.filter((p) => p.curl).map((p) => [p.hosts, p.curl.wall])},
        {name: 'physical limit (unique bytes ÷ link rate)', dashed: true, marker: false, color: '#888', points: span.map((n) => [n, R.limitSeconds])},
        {name: `goal: ${R.goals.limitRatio}× the limit`, dashed: true, marker: false, color: '#bbb', points: span.map((n) => [n, R.goals.limitRatio * R.limitSeconds])},
      ],
    })
  out.push(...plot('fleet-fill.svg', 'Line chart: fleet fill time in the lab against the number of hosts, for vmi with peers, pulls from the seed alone and curl, with the physical limit', fillChart))
  out.push('### CPU used', '')
  out.push(
    `CPU-seconds of each run: the clients (pulls or curls, by GNU time), the hosts' \`vmi serve\`s and the seed (vmi serve + nginx) from /proc; "busy cores" is the whole machine's average over the run, ` +
      `"irq" its interrupt and softirq share (veth and bridge traffic is partly handled there, charged to no process), "others" what the rest of the machine used meanwhile (other work on this shared machine). ` +
      `Per GiB delivered per host: (clients + host serves) ÷ N ÷ ${bytesHuman(img.uniqueBytes)}.`,
    '',
  )
  const cpuRows = []
  for (const p of R.fill) {
    for (const x of [...p.peers, p.seedAlone, p.curl].filter(Boolean)) {
      const perGiB = (x.clientCpu + x.hostServeCpu) / p.hosts / ((x.kind === 'curl' ? img.size : img.uniqueBytes) / GiB)
      cpuRows.push([p.hosts, CONTENDERS[x.kind], f(x.wall), f(x.clientCpu), f(x.hostServeCpu), f(x.seedCpu), f(perGiB), f(x.busyCores), f(x.irqCores), f(x.othersCores)])
    }
  }
  out.push(table(['hosts', 'contender', 'wall s', 'CPU s: clients', 'host serves', 'seed', 'CPU-s per GiB per host', `busy cores (of ${R.machine.cores})`, 'irq cores', "others' cores"], cpuRows), '')
  const big = R.fill.at(-1)
  if (big?.seedAlone) {
    const c = cpuPerGiB(R, big)
    out.push(`At ${big.hosts} hosts (medians): ${f(c.owners)} CPU-s per GiB delivered per host through the owners (pull ${f(c.ownersPull)} + its serve), against ${f(c.direct)} for a direct pull from nginx: ${f(c.owners / c.direct)}×.`, '')
  }

  if (R.churn) {
    out.push(`## Churn and faults (${R.churn.ownerDown.hosts} hosts, vmi with peers)`, '')
    const ev = (x) => {
      const e = x.events
      if (e.cutHost) return `${e.cutHost}'s link cut at ${f(e.cutAt)} s (it held ${int(e.heldAtCut)} chunks); its pull is not counted`
      if (e.lateHost) return `${e.lateHost} (serve and pull) started at ${f(e.joinedAt)} s; every list named it from the start`
      if (e.downFor) return `the seed's link down from ${f(e.downAt)} s for ${e.downFor} s`
      if (e.slowHost) return `${e.slowHost}'s link at ${mbit(e.slowRate)}`
      return ''
    }
    out.push(
      table(
        ['scenario', 'what happened', 'completed', 'wall s', '× limit', 'seed sent ÷ unique', 'chunks from peers / seed', 'source errors', 'fsck'],
        Object.values(R.churn).map((x) => [
          x.label,
          ev(x),
          x.failures.length ? `**no**: ${x.failures.join('; ')}` : `all ${x.hosts - (x.events.excluded?.length ?? 0)}`,
          f(x.wall),
          `${f(x.wall / R.limitSeconds)}×`,
          f(x.seedRatio, 3),
          `${int(x.chunksFrom.peer)} / ${int(x.chunksFrom.seed)}`,
          int(x.sourceErrors),
          x.fsckFailures ? `**${x.fsckFailures} failed**` : 'clean',
        ]),
      ),
      '',
    )
  }

  if (R.ownership?.length) {
    out.push('## The simulation checked against the lab', '')
    out.push(
      `${R.ownerFunction ? `bench/sim.js chooses owners with the real \`${R.ownerFunction}\`; over this lab's ${int(img.chunks)} chunk ids and host URLs the same function predicts` : `bench/sim.js chose owners with the real \`rankPeers\` when this ran; over this lab's ${int(img.chunks)} chunk ids and host URLs (spelled without the trailing slash a pull adds, so the per-host comparison is off: fixed since) the same ranking predicted`} the chunk bytes each host serves in a fill (N × what it owns: every host's pull, its own included, asks the owner's serve). ` +
        `Measured: each host serve's \`vmi_served_bytes_total{kind="objects"}\` in the first vmi run of each N. The seed egress the simulation predicts (1.000× at every N with consistent lists) is in the fill table.`,
      '',
    )
    out.push(
      table(
        ['hosts', 'busiest host ÷ mean, predicted', 'measured', 'worst host, measured vs predicted'],
        R.ownership.map((o) => [o.hosts, `${f(o.predictedMaxOverMean, 3)}×`, `${f(o.measuredMaxOverMean, 3)}×`, `${f(o.worstHostError * 100, 1)} %`]),
      ),
      '',
    )
  }

  out.push('## What bounds it', '', ...explain(R), '')
  return out
}

/** How busy the machine was: the share of runs that were CPU-bound and what other work used. */
export function loadSummary(R) {
  const runs = [...R.fill.flatMap((p) => [...p.peers, p.seedAlone, p.curl].filter(Boolean)), ...Object.values(R.churn ?? {})]
  const others = runs.map((x) => x.othersCores).filter(Number.isFinite)
  const bound = runs.filter((x) => x.busyCores >= 0.9 * R.machine.cores).length
  return (
    `**Load in this run**: other work on this shared machine used ${f(Math.min(...others))}–${f(Math.max(...others))} cores (median ${f(stats(others).median)}) of the ${R.machine.cores} during the measurements, ` +
    `and ${bound} of ${runs.length} runs had the machine ≥ 90 % busy: they measure the share of the cores the lab's processes got, not the links. Read the times as pessimistic; the bytes (seed egress) do not depend on it.`
  )
}

/** Where the fastest run's time went, from its samples (bench/lib/lab-run.js runTimeline); older results have none. */
function timelineSentence(x, hosts, R) {
  const t = x.timeline
  if (!t || t.seedFirst === undefined || t.seedLast === undefined) return ''
  return (
    ` Its timeline, sampled every 0.25 s: ` +
    (t.cpuBoundSeconds > 0 ? `all ${R.machine.cores} cores were ≥ 90 % busy for the first ${f(t.cpuBoundSeconds)} s (${hosts} pulls, their writer threads and the serves' first fetches starting at once on the shared cores; a host of a real fleet starts on its own); ` : 'the cores were never all busy at the start; ') +
    `the seed's link had carried 1 % of the unique bytes at ${f(t.seedFirst)} s and 99 % at ${f(t.seedLast)} s, ${f(t.seedBitsPerSecond / 1e6, 1)} Mbit/s in between (${f((100 * t.seedBitsPerSecond) / R.lab.seedRate, 0)} % of its rate); ` +
    `the last host was done ${f(x.wall - t.seedLast)} s after that (owners still forwarding the last chunks they had from the seed).`
  )
}

function explain(R) {
  const lines = []
  const img = R.image
  for (const p of R.fill) {
    const x = p.peers.reduce((a, b) => (a.wall <= b.wall ? a : b)) // the fastest run, for the split
    const starts = x.perHost.map((h) => h.wall - (h.seconds ?? h.wall))
    const startup = Math.max(...starts)
    lines.push(
      `- **${p.hosts} host(s)**: vmi with peers ${f(peersStat(p).median)} s against the limit ${f(R.limitSeconds)} s. ` +
        `In its fastest run the pulls' own timers ran ${f(Math.min(...x.perHost.map((h) => h.seconds ?? NaN)))}–${f(Math.max(...x.perHost.map((h) => h.seconds ?? NaN)))} s and start-up (node, CLI, manifest) took up to ${f(startup)} s of the wall. ` +
        `The machine was busy ${f(x.busyCores)} of ${R.machine.cores} cores on average (others: ${f(x.othersCores)}): ${x.busyCores >= R.machine.cores * 0.9 ? '**CPU-bound** — this run measures the shared cores, not the links' : 'below saturation, so the links set the pace'}. ` +
        `CPU: pulls ${f(x.clientCpu)} s, host serves ${f(x.hostServeCpu)} s (each chunk is fetched through, verified and stored by its owner, then sent to every host, its own pull included), seed ${f(x.seedCpu)} s.` +
        timelineSentence(x, p.hosts, R) +
        (p.curl ? ` curl moved N × ${bytesHuman(img.size)} through the seed's link: ${f(p.curl.wall)} s, ${f(p.curl.wall / ((p.hosts * img.size * 8) / R.lab.seedRate))}× its own limit.` : '') +
        (p.peers.some((y) => y.seedRatio > R.goals.seedEgress)
          ? ` The seed's counter said ${p.peers.map((y) => `${f(y.seedRatio, 3)}×`).join(', ')} the unique bytes, but its link carried ${p.peers.map((y) => `${f(y.seedWireBytes / img.uniqueBytes, 3)}×`).join(', ')} (headers included) and the owners fetched through ${p.peers.map((y) => `${f(y.fetchedThroughBytes / img.uniqueBytes, 3)}×`).join(', ')}: ` +
            `the difference is responses the seed queued for fetch-through batches the owners had abandoned (timeouts on a CPU-starved machine: ${p.peers.map((y) => int(y.sourceErrors)).join(', ')} source errors at the hosts) and asked again. vmi serve counted those as served when they were queued; it counts them when they are sent since ff7b9a7.`
          : ''),
    )
  }
  return lines
}

// ----------------------------------------------------------------- the boot storm (bench/fleet-boot.js)

export const BOOT_CONTENDERS = {
  peers: 'vmi mount with peers + owner hashing',
  peersLazy: 'vmi mount with peers + owner hashing, lazy (--prefetch none)',
  seedAlone: 'vmi mount from the seed alone',
  copy: 'copy then boot (curl the raw file, replay on it)',
}
const BOOT_KINDS = ['peers', 'peersLazy', 'seedAlone', 'copy']

/** A contender's name in a run: with a recorded boot profile the mounts prefetch it (mount's default); runs before had none and used --prefetch none. */
function bootContender(R, k) {
  if (!R.bootProfile || k === 'peersLazy' || k === 'copy') return BOOT_CONTENDERS[k]
  return `${BOOT_CONTENDERS[k]}, boot profile (default prefetch)`
}


/** The goals, judged at the largest N: [{goal, result, met}] (also used by bench/lib/perf-doc.js). */
export function bootGoals(R) {
  const onePoint = R.runs.find((p) => p.hosts === 1)
  const one = onePoint?.peers
  const big = R.runs.at(-1)
  if (!one || !big || big.hosts === 1) return []
  const single = one.p50
  return [
    {
      goal: `boot storm: N = ${big.hosts}, p99 time-to-boot-set ≤ ${R.goals.p99VsSingle}× the single-host replay`,
      result:
        `${f(big.peers.p99 / single, 3)}× (${f(big.peers.p99)} s vs ${f(single)} s)` +
        (R.bootProfile ? ', with the boot profile (mount\'s default)' : '') +
        (big.peersLazy && onePoint.peersLazy ? `; lazy, without it (--prefetch none): ${f(big.peersLazy.p99 / onePoint.peersLazy.p50)}× (${f(big.peersLazy.p99)} s vs ${f(onePoint.peersLazy.p50)} s)` : ''),
      met: big.peers.p99 <= R.goals.p99VsSingle * single,
    },
    {
      goal: `boot storm: N = ${big.hosts}, seed bytes ≤ ${R.goals.seedVsBootSet}× one host's boot set`,
      result: `${f(big.peers.seedBytes / R.trace.bootSetBytes, 3)}× (${bytesHuman(big.peers.seedBytes)} vs ${bytesHuman(R.trace.bootSetBytes)})`,
      met: big.peers.seedBytes <= R.goals.seedVsBootSet * R.trace.bootSetBytes,
    },
  ]
}

export function renderBootReport(R) {
  return renderReport(R, {title: 'vmi boot storm in the fleet lab', tools: SHARED, goals: bootGoals(R), body: bootBody, background: false})
}

/** @param {Record<string, any>} R @param {import('./report.js').BodyContext} ctx */
export function bootBody(R, {plot}) {
  const T = R.trace
  const out = [
    `Lab: a seed and ${R.lab.hosts} hosts in their own network namespaces, links ${f(R.lab.rate / 1e6, 0)} Mbit/s (seed ${f(R.lab.seedRate / 1e6, 0)}), tbf both ways, **no latency or loss emulated** (no netem).` +
      (R.image.compressedSeed ? ` **The seed's store holds the image compressed** (${bytesHuman(R.image.compressedSeed.storedBytes)} for ${bytesHuman(R.image.uniqueBytes)}: \`--compressed-seed\`).` : ''),
    '',
  ]
  out.push(
    `**This is a replay, not N real boots.** The trace (${T.file}, recorded ${T.recordedAt.slice(0, 10)} under ${T.accel}, the boot's marker at ${f(T.bootMarkerS)} s) holds the ${int(T.reads)} reads (${bytesHuman(T.bytes)}) of one real boot through \`vmi mount\` and the guest's think time before each (${f(T.thinkSeconds)} s in all). ` +
      `Each host replays them one at a time with \`bench/lib/replay-trace.py\` (libnbd), waiting each think time after the previous read completed${T.matchesImage ? '' : '; the trace was recorded on another build of the image, so the offsets are a boot pattern replayed on this one'}. ` +
      `The reads touch ${int(T.chunksTouched)} chunks, ${int(T.bootSetChunks)} of them non-zero: **one host's boot set is ${bytesHuman(T.bootSetBytes)}**. ` +
      `Time-to-boot-set = from the host's start (its \`vmi mount\`, or its curl) to its last replayed read answered. p99 of fewer than 100 hosts is the slowest host.`,
    '',
  )
  if (R.bootProfile)
    out.push(
      `**The image has a boot profile**, as a fleet's images would: ${int(R.bootProfile.chunks)} chunks, recorded on the seed's store by \`vmi mount --record-profile\` while the trace was replayed once without its think times. ` +
        `A cold \`vmi mount\` fetches it (from its peers, else the seed) and, by default, prefetches those chunks ${R.bootProfile.prefetchConcurrency} at a time in the background, the guest's reads first. ` +
        `The lazy contender (\`--prefetch none\`) fetches only what the guest reads, when it reads it: every host asks each chunk's owner at the same moment, and the owner's link sends it ${R.lab.hosts - 1} times at once.`,
      '',
    )
  else out.push('The mounts ran with `--prefetch none`: the image had no boot profile (runs before the bench recorded one).', '')
  out.push('## Time-to-boot-set and seed bytes', '')
  const rows = []
  for (const p of R.runs)
    for (const k of BOOT_KINDS) {
      const x = p[k]
      if (!x) continue
      rows.push([p.hosts, bootContender(R, k), f(x.p50), f(x.p99), bytesHuman(x.seedBytes), `${f(x.seedBytes / T.bootSetBytes, 2)}×`, x.failures.length ? `**${x.failures.length} failed**` : 'ok', f(x.clientCpu), f(x.serverCpu), `${f(x.busyCores)} (${f(x.othersCores)})`])
    }
  out.push(table(['hosts', 'contender', 'p50 s', 'p99 s', 'seed sent', '÷ one boot set', 'hosts', 'CPU s: clients', 'servers', 'busy cores (others)'], rows), '')
  const stormChart = () =>
    lineChart({
      title: 'Boot storm (replay): slowest host against hosts booting at once',
      subtitle: `measured ${R.startedAt.slice(0, 10)} in the fleet lab; ${f(R.lab.rate / 1e6, 0)} Mbit/s links; all hosts share ${R.machine.cores} cores`,
      xLabel: 'hosts booting at once',
      yLabel: 'p99 time-to-boot-set, seconds',
      xTicks: R.runs.map((p) => p.hosts),
      xLog: 2,
      series: BOOT_KINDS.map((k) => ({name: bootContender(R, k), points: R.runs.filter((p) => p[k]).map((p) => [p.hosts, p[k].p99])})).filter((sr) => sr.points.length > 0),
    })
  out.push(...plot('fleet-boot.svg', "Line chart: slowest host's time-to-boot-set in a replayed boot storm, for vmi with peers (prefetching the boot profile when the image has one, and lazy), vmi from the seed alone and copy-then-boot", stormChart))
  const copyMissing = R.runs.filter((p) => !p.copy).map((p) => p.hosts)
  if (copyMissing.length)
    out.push(
      `Copy-then-boot was not run at ${copyMissing.join(', ')} hosts (each copy moves the whole ${bytesHuman(R.image.size)} through the seed's link). Computed from the link alone, the copies would take ${copyMissing.map((n) => `${f((n * R.image.size * 8) / R.lab.seedRate, 0)} s at ${n}`).join(', ')} hosts before the replay even starts.`,
      '',
    )
  const real = R.runs.flatMap((p) => p.peers.perHost.filter((h) => h.realBoot).map((h) => ({...h, hosts: p.hosts, run: p.peers})))
  for (const h of real)
    out.push(
      `Real QEMU boot (the check) on ${h.host} of the ${h.hosts}-host run, through \`vmi mount\` with peers: ${h.realBoot.ok ? `reached its marker at ${f(h.realBoot.markerS)} s (${h.realBoot.accel}; the recorded boot alone: ${f(T.bootMarkerS)} s)` : '**failed**'}. ` +
        `It used ${f(h.cpu)} CPU-s of the ${R.machine.cores} shared cores during that run (the other hosts' mount and replay ${f((h.run.clientCpu - h.cpu) / (h.hosts - 1))} CPU-s each), so that run's times carry it; its reads are not the trace's, and what it fetched beyond the boot set counts in that run's seed bytes.`,
      '',
    )
  out.push('## What bounds it', '')
  for (const p of R.runs) {
    const a = p.peers
    const b = p.seedAlone
    out.push(
      `- **${p.hosts} host(s)**: the replay's think time alone is ${f(T.thinkSeconds)} s; with peers the slowest host took ${f(a.p99)} s, from the seed alone ${f(b.p99)} s. ` +
        `The seed's link needed ${f((b.seedBytes * 8) / R.lab.seedRate)} s to send the seed-alone run's ${bytesHuman(b.seedBytes)} (spread over the boot) and ${f((a.seedBytes * 8) / R.lab.seedRate)} s with peers. ` +
        `The machine was busy ${f(a.busyCores)} / ${f(b.busyCores)} of ${R.machine.cores} cores (others ${f(a.othersCores)} / ${f(b.othersCores)}); CPU: mounts and replays ${f(a.clientCpu)} / ${f(b.clientCpu)} s, servers (seed, and the hosts' vmi serve with peers) ${f(a.serverCpu)} / ${f(b.serverCpu)} s` +
        `${a.busyCores >= 0.9 * R.machine.cores || b.busyCores >= 0.9 * R.machine.cores ? ' — **CPU-bound**: the times measure the shared cores, and the peers run pays for N more serves on them' : ''}.`,
    )
  }
  return out
}
