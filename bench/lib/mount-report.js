// @ts-check
// The mount benchmark's results (bench/mount.js, latest-mount.json) in markdown, written once:
// its report and its part of docs/PERFORMANCE.md (with the charts) are the same body.
import {bytesHuman, f, GB, int, KiB, MB, MiB, pct, range, table} from './format.js'
import {mountGoals, noteBusy, rawBootAnchor, renderReport} from './report.js'
import {barChart, lineChart} from './svg-plot.js'

export function renderMountReport(R) {
  const m = R.machine
  const B = R.boots
  const rawAnchor = rawBootAnchor(R)
  const warm = B?.runs.warm?.boot?.markerS
  const comparisons = B ? [{goal: 'mount: warm boot, all local: boot time vs the local raw file (no goal stated)', result: `${f(warm / rawAnchor)}× (${f(warm)} s vs ${f(rawAnchor)} s)`}] : []
  const tools = `${m.qemuImg}; ${m.nbdkit}; guests run under **${m.kvmUsable ? 'KVM' : 'TCG (software emulation: no usable KVM here)'}**`
  return renderReport(R, {title: 'vmi mount benchmark', tools, goals: [...mountGoals(R), ...comparisons], body: mountBody})
}

/** The chunk sizes of the run, its main one (the code's default) and the key of each cold boot. */
const chunkSizes = (R) => Object.keys(R.image.seeds).map(Number).sort((a, b) => a - b)
const mainChunkSize = (R) => R.mainChunkSize ?? 256 * KiB
const coldKey = (R, cs) => (cs === mainChunkSize(R) ? 'cold' : `cold${cs / KiB}k`)
/** µs per request of contender `k` ('nbdkit', 'vmi') in a read pattern's summary. */
const us = (p, k) => (1e6 * p[k].seconds.median) / p.count
const f3 = (v) => f(v, 3)

/** @param {Record<string, any>} R @param {import('./report.js').BodyContext} ctx */
export function mountBody(R, {plot, bg}) {
  const MAIN_CS = mainChunkSize(R)
  const CHUNK_SIZES = chunkSizes(R)
  const sMain = R.image.seeds[MAIN_CS].importJson
  const out = [
    `Image: \`${R.image.file}\` — the Debian boot image, ${bytesHuman(R.image.size)}` +
      (R.image.info ? ` (Debian ${R.image.info.suite} ${R.image.info.variant}, kernel ${R.image.info.kernel_release})` : '') +
      `; at ${bytesHuman(MAIN_CS)} chunks ${int(sMain.chunks)} chunks, ${int(sMain.zeroChunks)} all-zero, ${int(sMain.newChunks)} distinct non-zero (${bytesHuman(sMain.newBytes)}).`,
    '',
    `Method: ${Object.values(R.method).join('; ')}.`,
    '',
  ]
  const B = R.boots
  const rawAnchor = rawBootAnchor(R)
  const guest = B?.runs.nbdkitLog?.footprint
  if (R.reads) {
    out.push(`## Cached reads through the export`, '')
    out.push(
      `\`qemu-img bench -f raw -t none -c COUNT -d DEPTH -s SIZE [-S STEP] nbd+unix:///?socket=…\` (reads; qemu's NBD client) against two read-only exports of the same bytes: ` +
        `\`vmi mount IMAGE --read-only --prefetch none\` on a store holding every chunk (objects in the page cache), and \`nbdkit -r file file=disk.raw\` (file in the page cache). ` +
        `Before the timed runs each export was read once end to end (vmi verifies each chunk against its id on its first read: that pass took ${f(R.reads.firstPass.vmi.seconds)} s vs nbdkit's ${f(R.reads.firstPass.nbdkit.seconds)} s and is not counted). ` +
        `"Scattered" 4 KiB reads: qemu-img bench has no random mode, so the offset advances by a stride of ${int(R.reads.patterns.find((p) => p.step).step / (4 * KiB))} × 4 KiB (a prime number of blocks, wrapping modulo the image size): every 4 KiB block is visited once in a scattered order before any repeats, ` +
        `and consecutive reads land in different chunks. The whole image is read, so about ${pct(sMain.zeroChunks, sMain.chunks)} of the reads fall in all-zero chunks (holes in the raw file). ` +
        `${R.reps} runs per row, contenders alternating; median. Ratio = nbdkit time / vmi time (≥ 1 means vmi is at least as fast). ` +
        (R.reads.placements
          ? `This table: ${R.reads.placements.find((pl) => pl.patterns === R.reads.patterns || pl.key === 'split')?.label ?? ''} (each server's threads pinned with taskset, qemu-img started under taskset); the next table gives every placement.`
          : ''),
      '',
    )
    out.push(
      table(
        ['pattern', 'requests', 'nbdkit s, median (min–max)', 'nbdkit MB/s', 'nbdkit IOPS', 'vmi s, median (min–max)', 'vmi MB/s', 'vmi IOPS', 'vmi / nbdkit speed', 'µs/request: nbdkit / vmi / vmi backend alone', 'server CPU, cores: nbdkit / vmi', 'qemu-img CPU, cores: nbdkit / vmi'],
        R.reads.patterns.map((p) => {
          for (const k of ['nbdkit', 'vmi']) noteBusy(bg, `${p.label}, ${k}`, p[k].othersCores, p[k].busyStarts, p[k].runs.length)
          return [
            p.label,
            int(p.count),
            range(p.nbdkit.seconds, f3),
            f(p.nbdkit.bytesPerSecond / MB, 0),
            int(p.nbdkit.iops),
            range(p.vmi.seconds, f3),
            f(p.vmi.bytesPerSecond / MB, 0),
            int(p.vmi.iops),
            `**${f(p.ratio)}×**`,
            `${f((1e6 * p.nbdkit.seconds.median) / p.count, 1)} / ${f((1e6 * p.vmi.seconds.median) / p.count, 1)} / ${f(R.reads.backend?.patterns[p.key]?.usPerRequest, 1)}`,
            `${f(p.nbdkit.serverCores)} / ${f(p.vmi.serverCores)}`,
            `${f(p.nbdkit.clientCores)} / ${f(p.vmi.clientCores)}`,
          ]
        }),
      ),
      '',
    )
    const P = R.reads.patterns
    const readsChart = () =>
      barChart({
        title: 'Cached reads: vmi mount against nbdkit',
        subtitle: `measured ${R.startedAt.slice(0, 10)}, qemu-img bench, median of ${R.reps} runs (log scale)`,
        yLabel: 'MB/s (10^6 bytes/s)',
        yLog: true,
        categories: P.map((p) => p.label.replace(', ', ',\n')),
        series: [
          {name: 'nbdkit file plugin (anchor)', values: P.map((p) => p.nbdkit.bytesPerSecond / MB)},
          {name: 'vmi mount, every chunk local', values: P.map((p) => p.vmi.bytesPerSecond / MB)},
        ],
        valueFormat: (v) => f(v, 0),
      })
    out.push(...plot('mount-reads.svg', 'Bar chart: MB/s of sequential and scattered reads, nbdkit against vmi mount', readsChart))
    if (R.reads.placements) {
      out.push(
        `### By CPU placement`,
        '',
        `The same runs for each placement of the two processes on this machine's ${R.machine.cores} cores: µs per request, nbdkit / vmi (ratio = nbdkit time / vmi time). ` +
          `On this VM a reply sent to a process sleeping on the other core wakes it through the hypervisor (the guest's cpuidle driver is ${R.machine.cpuidle ?? 'unknown'}, halt polling ${R.machine.haltPollNs === 0 ? 'off' : R.machine.haltPollNs === undefined ? 'unknown' : `up to ${R.machine.haltPollNs} ns`}), ` +
          `and a depth-1 ping-pong pays that twice per request unless the server polls (vmi does, see "What bounds it"); on one core the two processes hand over without it. "Unpinned" lands on either case run by run.`,
        '',
        table(
          ['pattern', ...R.reads.placements.map((pl) => pl.label)],
          R.reads.patterns.map(({key}) => [
            R.reads.placements[0].patterns.find((p) => p.key === key).label,
            ...R.reads.placements.map((pl) => {
              const p = pl.patterns.find((x) => x.key === key)
              return `${f(us(p, 'nbdkit'), 1)} / ${f(us(p, 'vmi'), 1)} µs (**${f(p.ratio)}×**)`
            }),
          ]),
        ),
        '',
      )
    }
  }

  if (B) {
    const r = B.runs
    out.push(`## Boots`, '')
    out.push(
      `\`scripts/boot-vm.sh\` boots the image under QEMU (${r.rawFirst?.boot?.accel ?? '?'}, 1 vCPU, 512 MiB, virtio disk with snapshot=on so writes go to a throw-away overlay) until the guest prints its multi-user marker; ` +
        `boot time = \`marker_s\` (QEMU start → marker). vmi boots run \`vmi mount ID SEED … --read-only --json --exec 'bash scripts/boot-vm.sh -d DIR {nbd}'\` on a host store; the seed is \`vmi serve\` over a store holding the image ` +
        `(objects in the page cache); "seed sent" = the seed's \`vmi_served_bytes_total{kind="objects"}\` delta. **One boot per configuration** (each takes ~20 s under TCG; the raw-file anchor boots first and last, and its median is the anchor). ` +
        (r.rawFirst?.boot?.ok && r.rawLast?.boot?.ok
          ? `The two anchor boots took ${f(r.rawFirst.boot.markerS)} and ${f(r.rawLast.boot.markerS)} s (${f((100 * Math.abs(r.rawFirst.boot.markerS - r.rawLast.boot.markerS)) / rawAnchor, 0)} % apart): that is the run-to-run noise of a single boot here, so smaller differences between rows mean nothing.`
          : ''),
      '',
    )
    const rows = [
      ['rawFirst', 'local raw file (anchor, first)'],
      ['rawLast', 'local raw file (anchor, last)'],
      ['nbdkitLog', 'nbdkit file plugin + log filter over NBD (counts guest reads)'],
      ['cold', 'vmi, cold host, no profile (--prefetch none; recording the profile)'],
      ['coldProfile', 'vmi, cold host, with the boot profile (default --prefetch profile)'],
      ['warm', 'vmi, warm host (every chunk local, no seed)'],
    ]
    out.push(
      table(
        ['boot', 'boot s (marker)', '× raw file', 'seed sent', 'seed sent / guest read (unique)', 'seed sent / guest read (unique non-zero)', 'mount-reported fetched (seed)', 'prefetched chunks', 'wall s (incl. vmi start/stop)', 'CPU s (QEMU + vmi)', 'seed CPU s', 'others\' CPU, cores'],
        rows
          .filter(([k]) => r[k])
          .map(([k, label]) => {
            const x = r[k]
            noteBusy(bg, `boot "${label}"`, x.othersCores, x.startedQuiet === false ? 1 : 0)
            return [
              label,
              x.boot?.ok ? f(x.boot.markerS) : '**failed**',
              x.boot?.ok ? f(x.boot.markerS / rawAnchor) : '',
              x.seedBytes !== undefined ? bytesHuman(x.seedBytes) : '',
              x.seedBytes !== undefined && guest ? f(x.seedBytes / guest.uniqueBytes) : '',
              x.seedBytes !== undefined && guest ? f(x.seedBytes / guest.uniqueNonZeroBytes) : '',
              x.mount?.fetchedBytes ? `${bytesHuman(x.mount.fetchedBytes.seed)} (${int(x.mount.fetched.seed)} chunks)` : '',
              x.mount ? int(x.mount.prefetched) : '',
              f(x.wall),
              f(x.cpu),
              f(x.seedCpu),
              f(x.othersCores),
            ]
          }),
      ),
      '',
    )
    const booted = ['nbdkitLog', 'cold', 'coldProfile', 'warm', ...CHUNK_SIZES.map((c) => coldKey(R, c)).filter((k) => k !== 'cold')].filter((k) => r[k]?.boot?.ok)
    const short = {nbdkitLog: 'nbdkit\n(logging)', cold: 'vmi cold', coldProfile: 'vmi cold +\nprofile', warm: 'vmi warm', cold64k: 'vmi cold\n64 KiB', cold128k: 'vmi cold\n128 KiB', cold256k: 'vmi cold\n256 KiB', cold1024k: 'vmi cold\n1 MiB'}
    const bootChart = () =>
      barChart({
        title: 'Boot time: lazy mount against the local raw file',
        subtitle: `measured ${R.startedAt.slice(0, 10)}, one boot each, QEMU ${r.rawFirst?.boot?.accel ?? ''}`,
        yLabel: 'seconds to the multi-user marker',
        categories: ['local raw\nfile (anchor)', ...booted.map((k) => short[k] ?? k)],
        series: [{name: 'boot time', values: [rawAnchor, ...booted.map((k) => r[k].boot.markerS)]}],
        valueFormat: (v) => f(v),
        refLines: [{y: rawAnchor * R.targets.coldBootVsLocal, label: `goal for cold boots: ${R.targets.coldBootVsLocal}× the local raw file`, color: '#888'}],
      })
    out.push(...plot('mount-boot.svg', 'Bar chart: boot time from the local raw file, nbdkit, and vmi mount cold, with profile, warm and at other chunk sizes', bootChart))
    if (guest) {
      out.push(
        `**What the guest read** (the nbdkit-log boot, at the NBD layer, i.e. what QEMU asked the disk for, including its copy-on-write reads for the snapshot overlay): ` +
          `${int(guest.requests)} read requests, ${bytesHuman(guest.totalBytes)} requested, **${bytesHuman(guest.uniqueBytes)} unique** (${int(guest.extents)} extents), of which ${bytesHuman(guest.uniqueNonZeroBytes)} lie in non-zero 4 KiB blocks. ` +
          `A lazy mount with no prefetch must fetch every non-zero chunk these reads touch: ` +
          CHUNK_SIZES.map((cs) => `${cs / KiB} KiB chunks → ${int(guest.perChunkSize[cs].nonZero)} chunks = ${bytesHuman(guest.perChunkSize[cs].bytes)} (${f(guest.perChunkSize[cs].bytes / guest.uniqueBytes)}× the unique bytes)`).join('; ') +
          '. The two boots differ a little (timers, udev ordering), so a single vmi boot can fetch slightly more or less than this prediction.',
        '',
      )
    }
    if (B.profile)
      out.push(
        `Boot profile: recorded by the cold boot (${B.profile.chunks ?? '?'} chunks = ${B.profile.bytes ? bytesHuman(B.profile.bytes) : '?'}), published by completing host A with \`vmi pull\` (${f(B.profile.pullSeconds)} s) and \`vmi push\` to the seed (exit ${B.profile.pushStatus}; only the manifest, profile and ref travel: every chunk was already there). ` +
          `The profile boot ran on a new empty host with the default \`--prefetch profile\`: the mount fetches the profile's chunks in the background (${B.profile.prefetchConcurrency ?? 4} at a time${B.profile.prefetchConcurrency ? '' : ': the default of the builds before --prefetch-concurrency'}) while serving the guest's reads first.`,
        '',
      )
    // mount-reported vs seed metrics
    const mism = ['coldProfile', ...CHUNK_SIZES.map((c) => coldKey(R, c))]
      .filter((k) => r[k]?.mount?.fetchedBytes && r[k].seedBytes !== undefined && r[k].mount.fetchedBytes.seed !== r[k].seedBytes)
      .map((k) => `${k}: mount says ${bytesHuman(r[k].mount.fetchedBytes.seed)} (${r[k].mount.fetched.seed} chunks), the seed served ${bytesHuman(r[k].seedBytes)}`)
    if (mism.length) out.push(`**Note:** the mount's own \`fetched\`/\`fetchedBytes\` disagree with the seed's egress counter (${mism.join('; ')}); the tables use the seed's counter.`, '')

    out.push(`## Chunk size`, '')
    out.push(
      `The same image imported at each chunk size into its own seed store (\`vmi import --chunk-size\`, one run, warm page cache), served, and cold-booted through \`vmi mount ID SEED --prefetch none --read-only\` on an empty host store (one boot each).` +
        (R.storeBench ? ` The last column is the store benchmark's import sweep (${R.storeBench.image}, ${R.storeBench.startedAt.slice(0, 10)}, median of its runs) from bench/results/latest-store.json.` : ' (No bench/results/latest-store.json chunk-size sweep found.)'),
      '',
    )
    out.push(
      table(
        ['chunk size', 'distinct non-zero chunks (bytes)', 'import s (GB/s), peak RSS, Debian, 1 run', 'boot s (marker)', '× raw file', 'seed sent', 'seed sent / guest read', 'predicted from the read log', 'store bench import GB/s (synthetic)'],
        CHUNK_SIZES.map((cs) => {
          const x = r[coldKey(R, cs)]
          const sd = R.image.seeds[cs]
          const sb = R.storeBench?.sweep.find((s) => s.chunkSize === cs)
          return [
            `${cs / KiB} KiB`,
            `${int(sd.importJson.newChunks)} (${bytesHuman(sd.importJson.newBytes)})`,
            `${f(sd.importWall)} (${f(R.image.size / sd.importWall / GB)}), ${f(sd.importRssBytes / MB, 0)} MB`,
            x?.boot?.ok ? f(x.boot.markerS) : '**failed**',
            x?.boot?.ok ? f(x.boot.markerS / rawAnchor) : '',
            x ? bytesHuman(x.seedBytes) : '',
            x && guest ? f(x.seedBytes / guest.uniqueBytes) : '',
            guest ? bytesHuman(guest.perChunkSize[cs].bytes) : '',
            sb ? f(sb.bytesPerSecond / GB) : '–',
          ]
        }),
      ),
      '',
    )
    const ends = [CHUNK_SIZES[0], CHUNK_SIZES.at(-1)]
    const chunkChart = () =>
      lineChart({
        title: 'Bytes a cold boot fetches against chunk size',
        subtitle: `measured ${R.startedAt.slice(0, 10)}: each first touch fetches a whole chunk`,
        xLabel: 'chunk size (KiB)',
        yLabel: 'MiB',
        xLog: 2,
        xTicks: CHUNK_SIZES.map((c) => c / KiB),
        xFormat: String,
        series: [
          {name: 'seed sent, cold boot (measured)', points: CHUNK_SIZES.filter((c) => r[coldKey(R, c)]).map((c) => [c / KiB, r[coldKey(R, c)].seedBytes / MiB])},
          {name: 'predicted from the guest read log', points: CHUNK_SIZES.filter((c) => guest.perChunkSize[c]).map((c) => [c / KiB, guest.perChunkSize[c].bytes / MiB])},
          {name: 'bytes the guest read (anchor)', dashed: true, marker: false, points: ends.map((c) => [c / KiB, guest.uniqueBytes / MiB])},
          {name: `goal: ${R.targets.fetchedVsRead}× the bytes read`, dashed: true, marker: false, color: '#888', points: ends.map((c) => [c / KiB, (R.targets.fetchedVsRead * guest.uniqueBytes) / MiB])},
        ],
      })
    if (guest) out.push(...plot('mount-chunk-size.svg', 'Line chart: MiB fetched by a cold boot at 64 KiB, 256 KiB and 1 MiB chunks, against the bytes the guest read', chunkChart))
  }

  out.push(`## What bounds it`, '', ...explain(R, rawAnchor, guest), '')
  return out
}

function explain(R, rawAnchor, guest) {
  const MAIN_CS = mainChunkSize(R)
  const lines = []
  if (R.reads) {
    const p = Object.fromEntries(R.reads.patterns.map((x) => [x.key, x]))
    const be = (k) => R.reads.backend?.patterns[k]?.usPerRequest
    const sameList = R.reads.placements?.find((pl) => pl.key === 'same')?.patterns
    const same = sameList ? Object.fromEntries(sameList.map((x) => [x.key, x])) : undefined
    lines.push(
      `- **Cached reads**: a scattered 4 KiB read at depth 1 takes ${f(us(p.rand4k_d1, 'vmi'), 0)} µs through vmi vs ${f(us(p.rand4k_d1, 'nbdkit'), 0)} µs through nbdkit with server and client on different cores` +
        (same ? `, and ${f(us(same.rand4k_d1, 'vmi'), 0)} vs ${f(us(same.rand4k_d1, 'nbdkit'), 0)} µs with both on one core` : '') +
        `; the block backend alone (ImageBackend, in-process, no NBD) takes ${f(be('rand4k_d1'), 0)} µs of it. ` +
        `A small read of a verified chunk is answered synchronously, inside the socket's data callback, from the raw request header: the reply is built in one reusable per-connection buffer with the object file read straight into it (descriptors kept open), or is a single hole reply for an all-zero chunk, and is written to the socket's descriptor at once (the stream only queues what the kernel does not take); no promise, no allocation and no batching per request. ` +
        `On one core the comparison is the two servers' own work per request. Across cores, each request and each reply wakes a sleeping process on the other core, which on this VM goes through the hypervisor; nbdkit's threads sleep in recv() and pay it on every request. vmi polls instead (adaptive polling, \`--poll-us\`, default 50 µs): after answering a burst of reads in the data callback it keeps reading the socket without sleeping while requests arrive back to back, so a depth-1 client's next request is picked up without a wake-up; a poll that runs out, or during which the thread was off its core (measured per thread by the clock: the client shares the core and cannot send while vmi spins), backs polling off exponentially, and a request already waiting at the first read earns no credit (on one core the client sends it while the reply is being written), so with both on one core polling stays mostly off. Polling costs CPU: at depth 1 across cores vmi's server was busy ${f(p.rand4k_d1.vmi.serverCores)} cores for ${f(us(p.rand4k_d1, 'vmi'), 0)} µs a request (${f(p.rand4k_d1.vmi.serverCores * us(p.rand4k_d1, 'vmi'), 0)} µs of CPU), nbdkit's ${f(p.rand4k_d1.nbdkit.serverCores)} cores for ${f(us(p.rand4k_d1, 'nbdkit'), 0)} µs (${f(p.rand4k_d1.nbdkit.serverCores * us(p.rand4k_d1, 'nbdkit'), 0)} µs); \`--poll-us 0\` turns it off. ` +
        `At depth 16: ${f(p.rand4k_d16.vmi.iops / 1000, 1)}k vs ${f(p.rand4k_d16.nbdkit.iops / 1000, 1)}k IOPS across cores${same ? `, ${f(same.rand4k_d16.vmi.iops / 1000, 1)}k vs ${f(same.rand4k_d16.nbdkit.iops / 1000, 1)}k on one core` : ''}; vmi's server at ${f(p.rand4k_d16.vmi.serverCores)} cores vs nbdkit's ${f(p.rand4k_d16.nbdkit.serverCores)}. ` +
        `Sequential 1 MiB: ${f(p.seq1m_d1.vmi.bytesPerSecond / MB, 0)} vs ${f(p.seq1m_d1.nbdkit.bytesPerSecond / MB, 0)} MB/s at depth 1 (backend alone ${f(be('seq1m_d1'), 0)} of ${f(us(p.seq1m_d1, 'vmi'), 0)} µs per request): each request spans ${int(MiB / MAIN_CS)} chunks at ${bytesHuman(MAIN_CS)}. ` +
        `The first pass, which verifies every chunk, took ${f(R.reads.firstPass.vmi.seconds)} s through NBD and ${f(R.reads.backend?.firstPassSeconds)} s in the backend alone.`,
    )
  }
  const B = R.boots
  if (B && guest) {
    const r = B.runs
    const c = r.cold
    lines.push(
      `- **Cold boot time** (${f(c.boot?.markerS)} s vs ${f(rawAnchor)} s from the local file; through nbdkit over NBD ${f(r.nbdkitLog.boot?.markerS)} s): under TCG the guest's CPU emulation dominates a boot (~${f(rawAnchor)} s for reading only ${bytesHuman(guest.uniqueBytes)}), so the ${int((c.seedBytes ?? 0) / MAIN_CS)} chunk fetches from the seed (${bytesHuman(c.seedBytes ?? 0)}) on loopback add little; ` +
        `QEMU's emulation thread and vmi/the seed share ${R.machine.cores} cores (CPU during the cold boot: ${f(c.cpu)} s QEMU+vmi, ${f(c.seedCpu)} s seed). ` +
        (r.warm?.boot?.ok ? `Split (single boots; the two anchor boots differ by ${f(Math.abs(r.rawFirst.boot.markerS - r.rawLast.boot.markerS))} s in this run; one boot is noisy — other runs saw up to ~10 %): serving through vmi with everything local (warm − raw) ≈ ${f(r.warm.boot.markerS - rawAnchor)} s, fetching on first touch (cold − warm) ≈ ${f(c.boot.markerS - r.warm.boot.markerS)} s. ` : '') +
        `With KVM a boot is a few seconds and the same fetch latency weighs more; with a real network each first touch of a chunk costs a round trip plus ${bytesHuman(MAIN_CS)} at link speed.`,
    )
    lines.push(
      `- **Bytes fetched vs read**: the guest's reads are small and scattered (${int(guest.extents)} extents, ${bytesHuman(guest.uniqueBytes)} unique), and each first touch fetches a whole chunk, so the fetched bytes are the read bytes rounded up to chunks: ` +
        chunkSizes(R).map((cs) => `${f(guest.perChunkSize[cs].bytes / guest.uniqueBytes)}× at ${cs / KiB} KiB`).join(', ') +
        ` (predicted from the read log). Smaller chunks fetch less but mean more objects and requests per byte (import and pull cost per object; see the chunk-size table and bench/results/*-store.md).` +
        (r.coldProfile ? ` The profile boot fetched ${bytesHuman(r.coldProfile.seedBytes)}: the profile lists the chunks the recording boot read, so its prefetch adds no more than what that boot touched, plus whatever this boot reads outside it.` : ''),
    )
    if (r.warm)
      lines.push(
        `- **Warm boot** (${f(r.warm.boot?.markerS)} s, ${f(r.warm.boot?.markerS / rawAnchor)}× the raw file): nothing is fetched; each chunk is verified on its first read, and every read crosses the NBD socket and the Node process — the same path as the cached reads above.`,
      )
  }
  return lines
}

// ----------------------------------------------------------------- sub-block writes (bench/writes.js)

export function renderWritesReport(R) {
  return renderReport(R, {title: 'Sub-block writes through vmi mount', tools: `${R.machine.qemuImg}; ${R.machine.nbdkit}`, body: writesBody, background: false})
}

/** @param {Record<string, any>} R */
export function writesBody(R) {
  const keys = Object.keys(R.patterns[0].seconds) // nbdkit, vmi and, with --old, old
  return [
    `Image ${R.image.size / MiB} MiB (half random, half zeros), every chunk local. \`qemu-img bench -w -t none\` over NBD on a unix socket, one request every ${R.patterns[0].step / KiB} KiB (wrapping), ` +
      `a fresh server and overlay per run; ${R.reps} runs per row, contenders alternating; seconds as median (min–max). ` +
      `Ratio = anchor time / vmi time (≥ 1: vmi at least as fast).`,
    '',
    table(
      ['pattern', 'requests', ...keys.map((k) => `${k} s`), ...keys.map((k) => `${k} IOPS`), 'vmi / nbdkit speed', ...(R.old ? ['vmi / old build speed'] : [])],
      R.patterns.map((r) => [
        r.label,
        int(r.count),
        ...keys.map((k) => range(r.seconds[k], f3)),
        ...keys.map((k) => int(r.count / r.seconds[k].median)),
        `**${f(r.ratio)}×**`,
        ...(R.old ? [`${f(r.ratioOld)}×`] : []),
      ]),
    ),
    '',
    'Every 1 KiB write covers part of one 4 KiB overlay block, so vmi reads the rest of the block (base chunk or overlay) and writes the whole block back, holding that block (and only it) against other changes meanwhile; nbdkit\'s cow filter does the same read-modify-write in its own 64 KiB blocks under a lock.',
    '',
  ]
}
