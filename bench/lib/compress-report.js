// @ts-check
// The compression benchmark's report (bench/compress.js): its goals and the body that
// docs/PERFORMANCE.md shows too.
import {bytesHuman, f, table} from './format.js'
import {renderReport} from './report.js'

/** @typedef {import('./report.js').Goal} Goal */

/** min–median–max of `key` over runs. @param {Record<string, any>[]} runs @param {string} key */
function mmm(runs, key = 'wall') {
  const xs = runs.map((r) => r[key]).filter((v) => Number.isFinite(v)).sort((a, b) => a - b)
  if (!xs.length) return {min: NaN, median: NaN, max: NaN}
  const mid = xs.length >> 1
  return {min: xs[0], median: xs.length % 2 ? xs[mid] : (xs[mid - 1] + xs[mid]) / 2, max: xs.at(-1)}
}
const span = (s, d = 2) => `${f(s.min, d)}–${f(s.median, d)}–${f(s.max, d)}`
const med = (runs, key = 'wall') => mmm(runs, key).median

/** @returns {Goal[]} */
export function compressGoals(R) {
  const G = R.goals
  const out = []
  const first = R.lab?.rates?.[0]
  if (first) {
    const vsRaw = med(first.raw) / med(first.compressed)
    const vsCurl = first.curl.wall / med(first.compressed)
    const mbit = f(first.rateBits / 1e6, 0)
    out.push(
      {goal: `compression: on a ${mbit} Mbit/s lab link, a pull of the Debian image ≥ ${G.labVsRaw}× faster than an uncompressed pull`, result: `${f(vsRaw)}× (${f(med(first.compressed))} s vs ${f(med(first.raw))} s)`, met: vsRaw >= G.labVsRaw},
      {goal: `compression: on a ${mbit} Mbit/s lab link, a pull ≥ ${G.labVsCurl}× faster than curl of the raw file`, result: `${f(vsCurl)}× (${f(med(first.compressed))} s vs ${f(first.curl.wall)} s)`, met: vsCurl >= G.labVsCurl},
    )
  }
  const slow = med(R.loop.pull.compressed) / med(R.loop.pull.raw)
  out.push({goal: `compression: on loopback, a pull from the compressed seed no more than ${Math.round((G.loopbackSlowdown - 1) * 100)} % slower than from the raw seed`, result: `${f(slow)}× the time (${f(med(R.loop.pull.compressed))} s vs ${f(med(R.loop.pull.raw))} s)`, met: slow <= G.loopbackSlowdown})
  const pslow = med(R.loop.push.compressed) / med(R.loop.push.raw)
  out.push({goal: `compression: on loopback, push --compress against --no-compress (no goal stated: a push to a vmi serve on its own machine compresses nothing unless told to)`, result: `${f(pslow)}× the time (${f(med(R.loop.push.compressed))} s vs ${f(med(R.loop.push.raw))} s)`})
  return out
}

export function renderCompressReport(R) {
  return renderReport(R, {title: 'Compressed objects: loopback and the fleet lab', tools: 'curl, nginx, cp', goals: compressGoals(R), body: compressBody, background: false})
}

/** @param {Record<string, any>} R */
export function compressBody(R) {
  const I = R.image
  const L = R.loop
  const out = [
    `The Debian boot image: ${bytesHuman(I.size)} raw file, ${I.chunks} distinct non-zero chunks of ${I.chunkSize / 1024} KiB = ${bytesHuman(I.uniqueBytes)}. ` +
      `Pushed to a vmi serve, they rest in ${bytesHuman(I.storedBytes)} (${f((100 * I.storedBytes) / I.uniqueBytes, 1)} %; ${I.compressedObjects} of them as zstd frames, the rest raw: docs/FORMAT.md "Compressed objects"). ` +
      `The raw seed is the same image imported, every chunk raw. Each A/B pair ran alternately, ${R.reps} times, the order flipped each time; seconds as min–median–max.`,
    '',
    '## Loopback',
    '',
    table(
      ['job', 'seconds', 'bytes on the wire', 'client CPU s', 'server CPU s', 'vs anchor'],
      [
        ['push --compress to an empty vmi serve', span(mmm(L.push.compressed)), bytesHuman(med(L.push.compressed, 'sentBytes')), f(med(L.push.compressed, 'clientCpu')), f(med(L.push.compressed, 'serverCpu')), `${f(med(L.push.cp) / med(L.push.compressed))}× cp`],
        ['push, --no-compress', span(mmm(L.push.raw)), bytesHuman(med(L.push.raw, 'sentBytes')), f(med(L.push.raw, 'clientCpu')), f(med(L.push.raw, 'serverCpu')), `${f(med(L.push.cp) / med(L.push.raw))}× cp`],
        ['cp of the raw file (anchor)', span(mmm(L.push.cp)), '–', '–', '–', ''],
        ['pull from the compressed seed (vmi serve)', span(mmm(L.pull.compressed)), bytesHuman(med(L.pull.compressed, 'servedBytes')), f(med(L.pull.compressed, 'clientCpu')), f(med(L.pull.compressed, 'serverCpu')), `${f(med(L.pull.curl) / med(L.pull.compressed))}× curl`],
        ['pull from the raw seed (vmi serve)', span(mmm(L.pull.raw)), bytesHuman(med(L.pull.raw, 'servedBytes')), f(med(L.pull.raw, 'clientCpu')), f(med(L.pull.raw, 'serverCpu')), `${f(med(L.pull.curl) / med(L.pull.raw))}× curl`],
        ['curl of the raw file from nginx (anchor)', span(mmm(L.pull.curl)), bytesHuman(I.size), '–', '–', ''],
      ],
    ),
    '',
  ]
  if (R.lab.skipped) {
    out.push(`The lab was skipped: ${R.lab.skipped}.`, '')
    return out
  }
  out.push(
    '## Fleet lab: one host pulls over a shaped link',
    '',
    'The seed and the host in their own network namespaces, the link shaped with tbf in both directions (no latency or loss emulated). The limit is the bytes that must cross the link at its rate: the unique chunk bytes raw, or as stored compressed. ' +
      '"Compressed seed": the image pushed to a vmi serve, its chunks resting as frames. "Raw seed": the image imported, every chunk raw; served with `--compress-sends never` (each chunk as it rests), and with the default `--compress-sends auto`, which compresses each chunk on send for a client on another machine ("compressed on send").',
    '',
    table(
      ['link', 'compressed seed s', 'limit s', 'raw seed, compressed on send s', 'raw seed s', 'limit s', 'curl of the raw file s', 'compressed vs raw', 'compressed on send vs raw', 'compressed vs curl', 'client CPU s (compressed / on send / raw)', 'seed CPU s (on send / raw)'],
      R.lab.rates.map((p) => {
        const bps = p.rateBits / 8
        const sent = p.sent?.length ? p.sent : undefined
        return [
          `${f(p.rateBits / 1e6, 0)} Mbit/s`,
          span(mmm(p.compressed)),
          f(I.storedBytes / bps),
          sent ? span(mmm(sent)) : '–',
          span(mmm(p.raw)),
          f(I.uniqueBytes / bps),
          f(p.curl.wall),
          `**${f(med(p.raw) / med(p.compressed))}×**`,
          sent ? `**${f(med(p.raw) / med(sent))}×**` : '–',
          `**${f(p.curl.wall / med(p.compressed))}×**`,
          `${f(med(p.compressed, 'clientCpu'))} / ${sent ? f(med(sent, 'clientCpu')) : '–'} / ${f(med(p.raw, 'clientCpu'))}`,
          `${sent ? f(med(sent, 'serverCpu')) : '–'} / ${f(med(p.raw, 'serverCpu'))}`,
        ]
      }),
    ),
    '',
  )
  const bound = R.lab.rates.map((p) => {
    const bps = p.rateBits / 8
    const z = med(p.compressed) / (I.storedBytes / bps)
    const raw = med(p.raw) / (I.uniqueBytes / bps)
    return `at ${f(p.rateBits / 1e6, 0)} Mbit/s the compressed pull took ${f(z)}× its link limit and the raw one ${f(raw)}×`
  })
  out.push(
    `What bounds it: ${bound.join('; ')}. Near 1× the link is the bound; well above it, CPU on this ${R.machine.cores}-core machine, where the seed, the host and the link shaping share the cores (the client decodes and hashes every chunk and its writer threads create one file per chunk). ` +
      `A push across a link compresses each raw chunk once, and the seed then holds ${f((100 * I.storedBytes) / I.uniqueBytes, 0)} % of the bytes for every later pull over every link. On loopback, where client and server share the cores, compressing cost ${f(med(L.push.compressed, 'clientCpu') - med(L.push.raw, 'clientCpu'))} client CPU-s more and ${f(med(L.push.compressed) / med(L.push.raw))}× the time, so a push to a vmi serve on its own machine sends the chunks as they rest (\`--compress\` to compress anyway), and that server compresses raw chunks on send to clients across a link.`,
    '',
  )
  // runs before fills at every rate kept one, at the first rate, as `fill`
  for (const F of R.lab.fills ?? (R.lab.fill ? [R.lab.fill] : [])) {
    out.push(
      `## Fleet lab: ${F.compressed[0].hosts} hosts fill at once at ${f(F.rateBits / 1e6, 0)} Mbit/s (peers and owners)`,
      '',
      `Every host runs \`vmi serve --seed\` and pulls with every host as a peer, at ${f(F.rateBits / 1e6, 0)} Mbit/s per link. Seed egress: what the seed's vmi serve counted as object bytes sent.`,
      '',
      table(
        ['seed', 'all done s', 'seed egress', 'of the raw unique bytes', 'CPU s: clients / serves'],
        [
          ['compressed', F.compressed],
          ['raw, compressed on send (serves with --compress-sends auto)', F.sent],
          ['raw (serves with --compress-sends never)', F.raw],
        ]
          .filter(([, runs]) => runs?.length)
          .map(([label, runs]) => [label, span(mmm(runs)), bytesHuman(med(runs, 'seedServed')), `${f(med(runs, 'seedServed') / I.uniqueBytes, 3)}×`, `${f(med(runs, 'clientCpu'))} / ${f(med(runs, 'serverCpu'))}`]),
      ),
      '',
      `Compressed ÷ raw fill time: **${f(med(F.compressed) / med(F.raw))}×**${F.sent?.length ? `; compressed on send ÷ raw: **${f(med(F.sent) / med(F.raw))}×**` : ''}; the compressed fill took ${f(med(F.compressed) / (I.storedBytes / (F.rateBits / 8)))}× the time the stored bytes need on one link, with ${F.compressed[0].hosts} clients and ${F.compressed[0].hosts} serves on the ${R.machine.cores} cores (CPU-bound: ${f(med(F.compressed, 'clientCpu') + med(F.compressed, 'serverCpu'))} CPU-s in ${f(med(F.compressed))} s).${[...F.compressed, ...(F.sent ?? []), ...F.raw].some((x) => x.failures.length) ? ' FAILURES: ' + [...F.compressed, ...(F.sent ?? []), ...F.raw].flatMap((x) => x.failures).join('; ') : ''}`,
      '',
    )
  }
  return out
}
