// @ts-check
// The distribution benchmark's results (bench/dist.js, latest-dist.json) in markdown, written once:
// its report and its part of docs/PERFORMANCE.md (with the charts) are the same body.
import {bytesHuman, f, GB, int, KiB, MB, MiB, mbps, pct, range, table} from './format.js'
import {distGoals, noteBusy, renderReport} from './report.js'
import {lineChart} from './svg-plot.js'

export function renderDistReport(R) {
  const m = R.machine
  const S = R.serveLoad
  const comparisons = [
    ...(R.push.repush ? [] : [{goal: 'distribution: vmi push vs cp of the file (no goal stated)', result: `${f(R.push.cp.wall / R.push.push.wall)}× cp speed`}]),
    {goal: `distribution: vmi serve vs nginx, ${R.load.concurrency} concurrent chunk GETs (no goal stated)`, result: `throughput ${f(S.vmi.bytesPerSecond.median / S.nginx.bytesPerSecond.median)}× nginx; p99 ${f(S.vmi.p99.median / S.nginx.p99.median)}× nginx's`},
  ]
  return renderReport(R, {title: 'vmi distribution benchmark', tools: `${m.curl?.split(' ').slice(0, 2).join(' ')}; ${m.nginx}; work dir on ${m.filesystem}`, goals: [...distGoals(R), ...comparisons], body: distBody})
}

/** @param {Record<string, any>} R @param {import('./report.js').BodyContext} ctx */
export function distBody(R, {plot, bg}) {
  const img = R.image
  const U = img.uniqueBytes
  const imgLine =
    img.kind === 'debian'
      ? `\`${img.file}\` — the Debian boot image: ${bytesHuman(img.size)} virtual, ${bytesHuman(img.allocated)} allocated` + (img.info ? ` (Debian ${img.info.suite} ${img.info.variant}, ${img.info.package_count} packages)` : '')
      : `\`${img.file}\` — synthetic, ${bytesHuman(img.size)} (${img.whyNotDebian}); composition ${JSON.stringify(img.composition)}`
  const j = img.importJson
  const out = [
    `Image: ${imgLine}. At ${j.chunkSize / KiB} KiB chunks: ${int(j.chunks)} chunks, ${int(j.zeroChunks)} all-zero, ${int(j.newChunks)} distinct non-zero = **${bytesHuman(U)} unique non-zero bytes** (${pct(U, img.size)} of the image).`,
    '',
    `Method: ${Object.values(R.method).join('; ')}. Repetitions: ${R.reps} per row (median wall; min–max shown), except the N-host pulls (one run each).`,
    '',
  ]
  const p = R.pull
  const S = R.serveLoad
  const row = (label, s, bytesMoved, anchor) => {
    noteBusy(bg, label, s.othersCores, s.busyStarts, s.runs.length)
    return [
      label,
      `${f(s.wall)} (${f(s.wallMin)}–${f(s.wallMax)})`,
      s.reported !== undefined ? f(s.reported) : '',
      f(mbps(img.size, s.wall), 0),
      bytesMoved !== undefined ? f(mbps(bytesMoved, s.wall), 0) : '',
      anchor ? f(anchor / s.wall) : '',
      `${f(s.cpu)} / ${f(s.serverCpu)}`,
      f(s.rssBytes / MB, 0),
      f(s.irqCores),
      f(s.othersCores),
    ]
  }
  out.push(`## Pull vs curl (one host, loopback)`, '')
  out.push(
    `The seed store is served by nginx (${R.machine.nginx?.replace('nginx version: ', '')}, one worker, sendfile, access log off); the raw image is published by the same nginx at \`/raw/\`. ` +
      `Each vmi pull goes into an empty store; curl → file writes the whole raw file (zeros included) next to it.`,
    '',
  )
  out.push(
    table(
      ['operation', 'wall s, median (min–max)', 'vmi-reported s', 'MB/s of image', 'MB/s on the wire', '× curl → file speed', 'CPU s: client / server', 'client peak RSS MB', 'irq+softirq, cores', 'others\' CPU, cores'],
      [
        row('curl → file (anchor)', p.curlFile, img.size, p.curlFile.wall),
        row('curl → /dev/null (transfer only)', p.curlNull, img.size, p.curlFile.wall),
        row('vmi pull ← nginx seed', p.pullNginx, U, p.curlFile.wall),
        row('vmi pull ← vmi serve seed', p.pullServe, U, p.curlFile.wall),
      ],
    ),
    '',
  )
  out.push(
    `"MB/s of image" = ${bytesHuman(img.size)} / wall (the same for every row); "on the wire" = bytes actually transferred / wall (curl: the whole file; vmi: the ${bytesHuman(U)} of unique non-zero chunks). MB = 10^6 bytes. ` +
      `Against the transfer alone (curl → /dev/null) the pull from nginx is ${f(p.curlNull.wall / p.pullNginx.wall)}× faster.`,
    '',
  )

  // fleet
  out.push(`## N hosts pulling at once (seed = vmi serve)`, '')
  out.push(
    `Each host: its own store, \`vmi serve --seed SEED\`, and \`vmi pull ID SEED --peer <every host's URL>\`; all pulls start together; wall = first start to last exit. ` +
      `Seed bytes = the seed's \`vmi_served_bytes_total{kind="objects"}\` delta. Anchors (computed, not run): every host copying the raw file (curl from nginx, as above) makes the seed send N × ${bytesHuman(img.size)}; every host pulling from the seed without peers, N × ${bytesHuman(U)}. ` +
      `All hosts share this ${R.machine.cores}-core machine, so wall time grows with N here because CPU is shared, not because of the seed.`,
    '',
  )
  out.push(
    table(
      ['hosts', 'wall s', 'per-host pull s (min–max)', 'seed sent', 'seed bytes / unique non-zero bytes', 'anchor: N × raw file', 'seed sent ÷ anchor', 'owners fetched through', 'chunks from peers / seed (sum over hosts)', 'CPU s: pulls / host serves / seed', 'aggregate MB/s delivered', 'others\' CPU, cores'],
      R.fleet.map((x) => {
        noteBusy(bg, `${x.hosts} hosts`, x.othersCores, x.startedQuiet === false ? 1 : 0)
        const walls = x.perHost.map((h) => h.wall)
        const sumChunks = (k) => x.perHost.reduce((a, h) => a + (h.fromChunks?.[k] ?? 0), 0)
        return [
          x.hosts,
          f(x.wall),
          `${f(Math.min(...walls))}–${f(Math.max(...walls))}`,
          bytesHuman(x.seedBytes),
          f(x.seedRatio, 3),
          bytesHuman(x.hosts * img.size),
          f(x.seedBytes / (x.hosts * img.size), 3),
          bytesHuman(x.fetchedThroughBytes),
          `${int(sumChunks('peer'))} / ${int(sumChunks('seed'))}`,
          `${f(x.pullCpu)} / ${f(x.hostServeCpu)} / ${f(x.seedServeCpu)}`,
          f(mbps(U * x.hosts, x.wall), 0),
          f(x.othersCores),
        ]
      }),
    ),
    '',
  )

  const hosts = R.fleet.map((y) => y.hosts)
  const ends = [hosts[0], hosts.at(-1)]
  const egress = () =>
    lineChart({
      title: 'Seed egress against hosts pulling at once',
      subtitle: `measured ${R.startedAt.slice(0, 10)} (one machine, loopback); dashed lines computed`,
      xLabel: 'hosts pulling the image at once',
      yLabel: `seed egress ÷ unique bytes (${bytesHuman(U)})`,
      xTicks: hosts,
      series: [
        {name: 'vmi, owner hashing (measured)', points: R.fleet.map((y) => [y.hosts, y.seedRatio])},
        {name: `every host copies the raw file (N × ${bytesHuman(img.size)})`, dashed: true, points: hosts.map((n) => [n, (n * img.size) / U])},
        {name: `every host pulls from the seed, no peers (N × ${bytesHuman(U)})`, dashed: true, points: hosts.map((n) => [n, n])},
      ],
    })
  const wall = () =>
    lineChart({
      title: 'Wall time of a fleet pull on one 2-core machine',
      subtitle: `measured ${R.startedAt.slice(0, 10)}; every host's pull and serve share the same ${R.machine.cores} cores`,
      xLabel: 'hosts pulling the image at once',
      yLabel: 'seconds',
      xTicks: hosts,
      series: [
        {name: 'vmi, all hosts done (measured)', points: R.fleet.map((y) => [y.hosts, y.wall])},
        {name: 'one vmi pull straight from the seed', dashed: true, marker: false, points: ends.map((n) => [n, p.pullServe.wall])},
        {name: 'curl → file (one host, anchor)', dashed: true, marker: false, points: ends.map((n) => [n, p.curlFile.wall])},
      ],
    })
  out.push(
    ...plot('dist-seed-egress.svg', 'Line chart: seed egress stays at one copy of the unique bytes as hosts grow, against N copies', egress),
    ...plot('dist-wall.svg', 'Line chart: wall time of the fleet pull against the number of hosts', wall),
  )

  // push
  out.push(`## Push vs cp`, '')
  out.push(
    `\`vmi push ID URL\` from the seed store into an empty \`vmi serve\` (push token; every upload re-hashed by the server${img.pushCompressed ? '; the chunks compressed as they go, so "on the wire" counts the frames sent' : R.push.pushCompress ? '; the chunks sent as the store holds them, raw, the default to a vmi serve on the same machine' : ''}), against \`cp\` of the raw file on the same filesystem (GNU cp skips holes)` +
      (R.push.repush ? `; then, to the same server, a push of the image with ${bytesHuman(R.targets.repushChanged)} of it rewritten (${bytesHuman(img.changedNewBytes)} of new chunks)` : '') +
      (R.push.pushCompress ? `; then \`vmi push --compress\` of the image to another empty vmi serve: every chunk compressed here (what the default does for a seed across a link), "on the wire" counting the frames sent.` : '.'),
    '',
  )
  out.push(
    table(
      ['operation', 'wall s, median (min–max)', 'vmi-reported s', 'MB/s of image', 'MB/s on the wire', '× cp speed', 'CPU s: client / server', 'client peak RSS MB', 'irq+softirq, cores', 'others\' CPU, cores'],
      [
        row('cp (anchor)', R.push.cp, img.allocated, R.push.cp.wall),
        row('vmi push → empty vmi serve', R.push.push, img.pushSentBytes ?? U, R.push.cp.wall),
        ...(R.push.repush ? [row('vmi push of the changed image (re-push)', R.push.repush, img.repushSentBytes ?? img.changedNewBytes, R.push.cp.wall)] : []),
        ...(R.push.pushCompress ? [row('vmi push --compress → empty vmi serve', R.push.pushCompress, img.pushCompressSentBytes ?? U, R.push.cp.wall)] : []),
      ],
    ),
    '',
  )

  // serve load
  out.push(`## Serving chunks: ${R.load.concurrency} concurrent GETs`, '')
  out.push(
    `\`node bench/lib/dist-load.js\`: ${R.load.concurrency} workers, one keep-alive connection each (one http.Agent), GET every distinct chunk of the image in a seeded random order (wrapping), ` +
      `≤ ${int(R.load.maxRequests)} requests or ≤ ${R.load.maxSeconds} s per run after a ${R.load.warmupSeconds} s warm-up; bodies read to the end; latency = request start to last byte. ` +
      `Both servers read the same store files from a warm page cache; nginx has one worker (vmi serve is one Node process). The generator runs on the same ${R.machine.cores} cores.`,
    '',
  )
  const lrow = (label, s) => {
    noteBusy(bg, `serve load, ${label}`, s.othersCores.median, s.busyStarts, s.runs.length)
    return [
      label,
      range(s.rps, int),
      `${f(s.bytesPerSecond.median / MB, 0)} (${f(s.bytesPerSecond.min / MB, 0)}–${f(s.bytesPerSecond.max / MB, 0)})`,
      f(s.p50.median),
      range(s.p99),
      f(s.max.median),
      f(s.serverCores.median),
      f(s.generatorCores.median),
      s.nonOk,
      f(s.othersCores.median),
    ]
  }
  out.push(
    table(
      ['server', 'requests/s, median (min–max)', 'MB/s', 'p50 ms', 'p99 ms, median (min–max)', 'max ms', 'server CPU, cores', 'generator CPU, cores', 'non-200 / errors', 'others\' CPU, cores'],
      [lrow('nginx (anchor)', S.nginx), lrow('vmi serve', S.vmi)],
    ),
    '',
  )
  out.push(
    `vmi serve: ${f(S.vmi.bytesPerSecond.median / S.nginx.bytesPerSecond.median)}× nginx's throughput, p99 ${f(S.vmi.p99.median / S.nginx.p99.median)}× nginx's; ` +
      `CPU per GB served: vmi serve ${f(S.vmi.serverCores.median / (S.vmi.bytesPerSecond.median / GB))} core-s, nginx ${f(S.nginx.serverCores.median / (S.nginx.bytesPerSecond.median / GB))} core-s.`,
    '',
  )

  // compression
  if (R.compression) out.push(...renderCompression(R), '')

  out.push(`## What bounds it`, '', ...explain(R), '')

  return out
}

function renderCompression(R) {
  const C = R.compression
  const img = R.image
  const out = [`## Compressing chunks on the wire: what each codec costs`, '']
  out.push(
    `In-process on this machine, one core, over the image's ${int(C.chunks)} distinct non-zero chunks (${bytesHuman(C.bytes)}), each compressed on its own as a server would send it ` +
      `(a chunk that does not shrink is counted at its raw size):`,
    '',
  )
  const pullRate = R.image.uniqueBytes / R.pull.pullNginx.wall
  const rows = Object.entries(C.codecs).map(([name, c]) => {
    // serial per chunk: compressed wins on a link of L bytes/s when (1−r)/L > 1/C + 1/D
    const serialBreakEven = (1 - c.ratio) / (1 / c.compressBytesPerSecond + 1 / c.decompressBytesPerSecond)
    // compressed once at import/push and stored: only the receiver's decompression is added
    const storedBreakEven = (1 - c.ratio) * c.decompressBytesPerSecond
    c.serialBreakEvenBytesPerSecond = serialBreakEven
    c.storedBreakEvenBytesPerSecond = storedBreakEven
    return [
      name,
      `${f(c.coverage * 100, 0)} %`,
      pct(c.outBytes, c.inBytes),
      f(c.compressBytesPerSecond / MB, 0),
      f(c.decompressBytesPerSecond / MB, 0),
      f(serialBreakEven / MB, 0),
      f(storedBreakEven / MB, 0),
      f((c.inBytes / c.decompressBytesPerSecond) * (C.bytes / c.inBytes), 2),
    ]
  })
  out.push(
    table(
      ['codec', 'chunks covered', 'compressed size', 'compress MB/s (1 core)', 'decompress MB/s (1 core)', 'helps below link MB/s (compress per request)', 'helps below link MB/s (stored compressed)', 'decompress all, s (1 core)'],
      rows,
    ),
    '',
  )
  const best = Object.values(C.codecs).reduce((a, b) => (a.ratio < b.ratio ? a : b))
  const bestD = Object.values(C.codecs).reduce((a, b) => (a.decompressBytesPerSecond > b.decompressBytesPerSecond ? a : b))
  const linkRate = R.image.size / R.pull.curlNull.wall
  const below = Object.entries(C.codecs).filter(([, c]) => c.storedBreakEvenBytesPerSecond > linkRate).map(([k]) => k)
  out.push(
    `Break-even: sending a chunk compressed is faster than sending it raw over a link of L bytes/s when (1 − ratio)/L > 1/compress + 1/decompress (compressing per request, on the critical path), ` +
      `or (1 − ratio)/L > 1/decompress (chunks compressed once at push and stored so; what a static seed like nginx serves). ` +
      `On loopback the link carried ${f(linkRate / MB, 0)} MB/s (curl → /dev/null), ${below.length ? `**below** the break-even of ${below.join(', ')}` : 'above every break-even here'}, and the pull is CPU-bound (${f(pullRate / MB, 0)} MB/s of chunks with ${f(R.pull.pullNginx.cpu / R.pull.pullNginx.wall)} cores busy in the client alone): ` +
      `fewer bytes would save little and decompression would add ≈ ${f(C.bytes / bestD.decompressBytesPerSecond)} CPU-s (fastest decompressor here) to a client that is already the bottleneck — ` +
      `${below.length ? '**it might help on loopback only with a codec as fast as the ones named, and only once the client is no longer CPU-bound**' : '**it would not help on loopback**'}. ` +
      `It would on real links slower than those break-evens: the chunks compress to ${pct(best.outBytes, best.inBytes)} at best (${f(1 / best.ratio)}× fewer bytes), so on 1 Gbit/s (125 MB/s) a seed storing chunks compressed would cut transfer time roughly by that factor, ` +
      `and even compressing per request pays there with ${Object.entries(C.codecs).filter(([, c]) => c.serialBreakEvenBytesPerSecond > 125e6).map(([k]) => k).join(', ') || 'none of these codecs'}. ` +
      `vmi does both, with zstd: a push across a link stores chunks compressed on the seed, and vmi serve compresses chunks resting raw on send to clients on other machines (docs/PROTOCOL.md "Compressing on send"); the compression benchmark measures them on the fleet lab's links.`,
  )
  return out
}

/** "What bounds it": the measured wall times split by measured component speeds. */
function explain(R) {
  const img = R.image
  const U = img.uniqueBytes
  const p = R.pull
  const lines = []
  const linkRate = img.size / p.curlNull.wall
  const n = img.importJson.newChunks
  const transferS = U / linkRate
  const need = p.curlFile.wall / R.targets.pullVsCurl
  const ip = R.inproc.pull
  const split = ip
    ? ` In-process (dist/ modules, one process, from the same nginx): the ${int(ip.chunks)} chunks through HttpStore.get one request at a time per connection (the general HTTP client + BLAKE3 verification, as \`pull --no-bulk\` does, 8 in flight) took ${f(ip.httpStore.wall)} s and ${f(ip.httpStore.cpu)} s of CPU (${f(ip.httpStore.perChunkCpuUs, 0)} µs/chunk), ` +
      `bare node:http ${f(ip.bareHttp.wall)} s / ${f(ip.bareHttp.cpu)} s CPU (${f(ip.bareHttp.perChunkCpuUs, 0)} µs/chunk); ` +
      (ip.pipelined
        ? `pipelined (bulkGet, what pull does, bodies dropped) ${f(ip.pipelined.wall)} s / ${f(ip.pipelined.cpu)} s CPU (${f(ip.pipelined.perChunkCpuUs, 0)} µs/chunk). ` +
          `Hashing them all took ${f(ip.hash.cpu)} CPU-s and writing them with LocalStore.putObjectSync ${f(ip.putObject.wall)} s / ${f(ip.putObject.cpu)} s CPU (${f(ip.putObject.perChunkCpuUs, 0)} µs/chunk): ` +
          `receive + hash + store ≈ ${f(ip.pipelined.cpu + ip.hash.cpu + ip.putObject.cpu)} CPU-s against the pull's ${f(p.pullNginx.cpu)} s (the rest is start-up, the manifest, the lock and the writer threads' start). ` +
          `The pull receives, hashes and writes on ${Math.max(2, Math.min(4, R.machine.cores))} threads, one connection each, so its wall time is bounded by the CPU the threads, nginx and the kernel need on the ${R.machine.cores} cores, plus start-up.`
        : '')
    : ''
  lines.push(
    `- **Pull vs curl** (${f(p.pullNginx.wall)} s vs ${f(p.curlFile.wall)} s): curl moves ${bytesHuman(img.size)} at ${f(linkRate / GB)} GB/s over loopback (→ /dev/null: ${f(p.curlNull.wall)} s), and writing it to a file adds ${f(p.curlFile.wall - p.curlNull.wall)} s. ` +
      `vmi pull moves ${pct(U, img.size)} of those bytes (moving them at curl's rate would take ≈ ${f(transferS)} s) as ${int(n)} chunks, and verifies and stores each as its own file: ` +
      `the client used ${f(p.pullNginx.cpu)} s of CPU (${f(p.pullNginx.cpu / p.pullNginx.wall)} cores of ${R.machine.cores}) and nginx ${f(p.pullNginx.serverCpu)} s.` +
      split +
      ` CLI start-up is ${f(R.inproc.startup)} s. The vmi-reported time (${f(p.pullNginx.reported)} s) excludes start-up and exit. To reach ${R.targets.pullVsCurl}× curl the pull must take ≤ ${f(need)} s — ${need >= p.pullNginx.wall ? 'it does' : `${f(p.pullNginx.wall - need)} s less than now`}.`,
  )
  lines.push(
    `- **vmi serve vs nginx as the seed for one pull**: ${f(p.pullServe.wall)} s vs ${f(p.pullNginx.wall)} s (server CPU ${f(p.pullServe.serverCpu)} s vs ${f(p.pullNginx.serverCpu)} s).`,
  )
  const last = R.fleet.at(-1)
  const first = R.fleet[0]
  if (last && first) {
    lines.push(
      `- **N hosts**: the seed sent ${R.fleet.map((x) => `${f(x.seedRatio, 3)}×`).join(', ')} the unique bytes for ${R.fleet.map((x) => x.hosts).join(', ')} hosts: each chunk leaves the seed about once whatever N (its owner fetches it through; the other hosts take it from the owner). ` +
        `The seed's own CPU stays flat (${R.fleet.map((x) => f(x.seedServeCpu)).join(', ')} s). ` +
        `Wall time grows from ${f(first.wall)} s to ${f(last.wall)} s because all ${last.hosts} hosts share ${R.machine.cores} cores here: the ${last.hosts}-host run used ${f(last.pullCpu)} s of pull CPU and ${f(last.hostServeCpu)} s of host-serve CPU = ${f((last.pullCpu + last.hostServeCpu + last.seedServeCpu) / last.wall)} cores on average with the seed; ` +
        `per host that is ${f((last.pullCpu + last.hostServeCpu) / last.hosts)} CPU-s for ${bytesHuman(U)}. ` +
        `Even 1 host through its own serve (${f(first.wall)} s; pull ${f(first.pullCpu)} + host serve ${f(first.hostServeCpu)} CPU-s) is slower than a plain pull from the seed (${f(p.pullServe.wall)} s; ${f(p.pullServe.cpu)} CPU-s): ` +
        `every chunk is fetched, verified and stored by the owner's serve, then sent over HTTP again, verified and offered to the store by the pull. On separate machines, this per-host CPU is spread over the hosts and the seed link is what N shares.`,
    )
  }
  lines.push(
    R.push.repush
      ? `- **Push** (${f(R.push.push.wall)} s vs cp ${f(R.push.cp.wall)} s, vs a pull from the same vmi serve ${f(R.pull.pullServe.wall)} s): the client reads each object (${bytesHuman(U)}; not hashed again: the server hashes every upload)${img.pushCompressed ? `, compresses it on two writer threads (${bytesHuman(img.pushSentBytes)} sent)` : ''} and sends them in 16 MiB object batches, two at a time; the server ${img.pushCompressed ? 'decodes and ' : ''}hashes each chunk and writes one file per chunk (${int(n)}) on its writer threads, as a pull writes them. ` +
        `Client CPU ${f(R.push.push.cpu)} s + server ${f(R.push.push.serverCpu)} s on ${R.machine.cores} cores; cp copies ${bytesHuman(img.allocated)} of allocated data into one file with no hashing, so against cp the push pays for ${int(n)} file creations, as the pull does. ` +
        `The re-push of the changed image (${f(R.push.repush.wall)} s) is start-up, the missing-check of every chunk id, and ${bytesHuman(img.changedNewBytes)} of new chunks.` +
        (R.push.pushCompress
          ? ` With \`--compress\` (${f(R.push.pushCompress.wall)} s; ${bytesHuman(img.pushCompressSentBytes)} sent) the client compresses every chunk on two writer threads and the server decodes each one to check it: client CPU ${f(R.push.pushCompress.cpu)} s + server ${f(R.push.pushCompress.serverCpu)} s on the same cores, which is why a push to a vmi serve on its own machine sends the chunks as they rest and leaves compressing to that server's sends across a link.`
          : '')
      : `- **Push** (${f(R.push.push.wall)} s vs cp ${f(R.push.cp.wall)} s): the client reads and re-verifies each object (${bytesHuman(U)} hashed), the server hashes every upload again and writes one file per chunk (${int(n)}); ` +
        `client CPU ${f(R.push.push.cpu)} s + server ${f(R.push.push.serverCpu)} s on ${R.machine.cores} cores; cp copies ${bytesHuman(img.allocated)} of allocated data in one file with no hashing.`,
  )
  const S = R.serveLoad
  lines.push(
    `- **Serve under load**: vmi serve used ${f(S.vmi.serverCores.median)} cores for ${f(S.vmi.bytesPerSecond.median / MB, 0)} MB/s, nginx ${f(S.nginx.serverCores.median)} cores for ${f(S.nginx.bytesPerSecond.median / MB, 0)} MB/s, while the generator itself used ${f(S.vmi.generatorCores.median)}–${f(S.nginx.generatorCores.median)} cores of the ${R.machine.cores}: ` +
      `per GB served that is ${f(S.vmi.serverCores.median / (S.vmi.bytesPerSecond.median / GB))} core-s for vmi serve and ${f(S.nginx.serverCores.median / (S.nginx.bytesPerSecond.median / GB))} for nginx (sendfile, no copy through user space). ` +
      `Which one moves more here (${S.vmi.bytesPerSecond.median >= S.nginx.bytesPerSecond.median ? 'vmi serve' : 'nginx'}) also depends on the generator, which shares the ${R.machine.cores} cores with the server: the absolute numbers are bounded by the cores both ends share, and on a machine of its own the server that needs less CPU per byte has more headroom.`,
  )
  return lines
}

// ----------------------------------------------------------------- an S3 bucket as the seed (bench/s3.js)

export function renderS3Report(R) {
  return renderReport(R, {title: 'S3 bucket as the seed (radosgw)', tools: 'shared with other jobs', goals: s3Goals(R), body: s3Body, background: false})
}

/**
 * The bucket's goals (issue "Seeds in object storage"), from runs that stated them (a run before
 * packs has no `goals`, and no goal rows). @param {Record<string, any>} R
 * @returns {import('./report.js').Goal[]}
 */
export function s3Goals(R) {
  const G = R.goals
  if (!G) return []
  const x = (/** @type {any} */ s) => `${f(s.median)}× (min ${f(s.min)})`
  return [
    {goal: `S3: a push to the bucket ≥ ${G.vsAws}× faster than \`aws s3 cp\` of the raw file`, result: `${x(R.ratios.push)}; ${f(R.seconds.push.median)} s vs ${f(R.seconds.awsUp.median)} s`, met: R.ratios.push.median >= G.vsAws},
    {goal: `S3: a pull from the bucket ≥ ${G.vsAws}× faster than \`aws s3 cp\` of the raw file`, result: `${x(R.ratios.pull)}; ${f(R.seconds.pullS3.median)} s vs ${f(R.seconds.awsDown.median)} s`, met: R.ratios.pull.median >= G.vsAws},
    {
      goal: `S3: a pull from the bucket within ${G.vsNginx}× of a pull from nginx serving the same layout`,
      result: `${f(R.ratios.s3VsNginx.median)}× the time (max ${f(R.ratios.s3VsNginx.max)}); ${f(R.seconds.pullS3.median)} s vs ${f(R.seconds.pullNginx.median)} s`,
      met: R.ratios.s3VsNginx.median <= G.vsNginx,
    },
  ]
}

/** @param {Record<string, any>} R */
export function s3Body(R) {
  const span = (/** @type {any} */ s, d = 2) => `${f(s.min, d)}–${f(s.median, d)}–${f(s.max, d)}`
  return [
    `radosgw (Ceph, Debian 12 packages; memstore OSD) on 127.0.0.1; ${R.aws}. Image: ${R.image.label}; ${f(R.image.uniqueBytes / MiB, 1)} MiB of distinct non-zero chunks. ` +
      `${R.reps} runs, contenders alternating; seconds min–median–max; ratio = other time / vmi time (> 1: vmi faster), per run.` +
      (R.storesMovedAside ? ' Each pull writes a fresh store, moved aside afterwards and deleted only at the end (mass deletes slow the file creations that follow them).' : '') +
      (R.method ? ` Before every job: ${Object.values(R.method).join('; ')}.` : ''),
    '',
    table(
      ['job', 'vmi s', 'other', 'other s', 'ratio (min–median–max)', 'goal'],
      [
        ['push to the bucket', span(R.seconds.push), '`aws s3 cp` raw file up', span(R.seconds.awsUp), `**${span(R.ratios.push)}×**`, '≥ 2×'],
        ['pull from the bucket', span(R.seconds.pullS3), '`aws s3 cp` raw file down', span(R.seconds.awsDown), `**${span(R.ratios.pull)}×**`, '≥ 2×'],
        ['pull from the bucket', span(R.seconds.pullS3), 'vmi pull from nginx, same layout', span(R.seconds.pullNginx), `**${span(R.ratios.s3VsNginx)}×** (bucket time / nginx time)`, '≤ 1.5×'],
        ...(R.seconds.pushLoose
          ? [
              ['push, one object per chunk (`--no-pack`)', span(R.seconds.pushLoose), '`aws s3 cp` raw file up', span(R.seconds.awsUp), `${span(R.ratios.pushLoose)}×`, ''],
              ['pull, one object per chunk', span(R.seconds.pullS3Loose), '`aws s3 cp` raw file down', span(R.seconds.awsDown), `${span(R.ratios.pullLoose)}×`, ''],
            ]
          : []),
      ],
    ),
    ...(R.seconds.pushLoose
      ? [
          '',
          `Packs against one object per chunk, same run (time with packs / time without, per run): push ${span(R.ratios.pushPackedVsLoose)}×, pull ${span(R.ratios.pullPackedVsLoose)}×. ` +
            'nginx serves a copy of a pushed prefix (`aws s3 sync` of it: packs, compressed objects), read with the same ranged GETs as the bucket.',
        ]
      : []),
    '',
    ...(R.cpu ? s3Cpu(R) : []),
    `S3 clients: load time (import of the signer and the HTTP client in a fresh node, ms, min–median–max of 5) and ${R.gets} GETs of chunks, 16 in flight, one process:`,
    '',
    table(
      ['client', 'load ms', 'GETs/s'],
      R.clients.map((/** @type {any} */ c) => [c.client, c.loadMs ? span(c.loadMs, 1) : '—', c.getsPerSecond ? int(c.getsPerSecond) : c.note ?? '—']),
    ),
    '',
  ]
}

/** Where the CPU of each S3 job went: the client, and the server on the same 2 cores (radosgw with its OSD, or nginx). */
function s3Cpu(/** @type {any} */ R) {
  const C = R.cpu
  const row = (/** @type {string} */ label, /** @type {string} */ k, /** @type {string} */ server) => [label, f(R.seconds[k].median), f(C[k].client.median), `${f(C[k].server.median)} (${server})`]
  return [
    'CPU seconds of each job (medians): the client, and the server it talked to on the same cores.',
    '',
    table(
      ['job', 'wall s', 'client CPU s', 'server CPU s'],
      [
        row('vmi push to the bucket', 'push', 'radosgw + OSD'),
        ...(C.pushLoose ? [row('vmi push, one object per chunk', 'pushLoose', 'radosgw + OSD')] : []),
        row('`aws s3 cp` up', 'awsUp', 'radosgw + OSD'),
        row('vmi pull from the bucket', 'pullS3', 'radosgw + OSD'),
        ...(C.pullS3Loose ? [row('vmi pull, one object per chunk', 'pullS3Loose', 'radosgw + OSD')] : []),
        row('`aws s3 cp` down', 'awsDown', 'radosgw + OSD'),
        row('vmi pull from nginx', 'pullNginx', 'nginx'),
      ],
    ),
    '',
  ]
}
