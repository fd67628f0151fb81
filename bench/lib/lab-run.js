// @ts-check
// The fleet lab (test/helpers/lab.js) as bench/fleet.js and bench/fleet-boot.js
// use it: its seed's servers, a host's serve, timed commands on its hosts.
import path from 'node:path'
import {labUnavailable} from '../../test/helpers/lab.js'
import {lastJson, prepSettings, sleep, startNginx, startServe} from './common.js'
import {cpuTimes} from './machine.js'
import {runTimed} from './measure.js'

/** Where every node's `vmi serve` listens (on its own address); nginx on the seed listens on NGINX_PORT. */
export const SERVE_PORT = 7070
const NGINX_PORT = 8080

/** Without the lab (or when `also()` names another missing need): print SKIP and exit 0. @param {string} what @param {() => string | undefined} [also] */
export function skipWithoutLab(what, also) {
  const why = labUnavailable() ?? also?.()
  if (why) {
    console.log(`SKIP: the ${what} benchmark needs: ${why}`)
    process.exit(0)
  }
}

/**
 * prepare()'s settings in the lab. The machine is shared and never idle for long; the runs
 * are network-bound by design, so a run waits at most 15 s for quiet (the report shows the
 * CPU others used during each run).
 */
export function labSettings() {
  const s = prepSettings()
  return {...s, quietWaitMs: Math.min(s.quietWaitMs, 15_000)}
}

/** The seed: `vmi serve` and nginx over `store` in the seed's namespace; nginx also serves `rawFile` at rawUrl. */
export async function startLabSeed(lab, store, rawFile) {
  const serve = await startServe(store, [], {netns: lab.seed.ns, listen: `${lab.seed.ip}:${SERVE_PORT}`})
  const nginx = await startNginx(store, {rawFile, netns: lab.seed.ns, host: lab.seed.ip, port: NGINX_PORT})
  return {serve, nginx, rawUrl: `${nginx.url}/raw/${path.basename(rawFile)}`}
}

/** `vmi serve --seed SEED` on a lab host, over `store`. */
export function startHostServe(host, store, seedUrl, extra = []) {
  return startServe(store, ['--seed', seedUrl, ...extra], {netns: host.ns, listen: `${host.ip}:${SERVE_PORT}`})
}

/**
 * `argv` in a host's namespace, timed (runTimed): `done` resolves {host, status, wall,
 * startedAt, endedAt (s from `tStart`), user, sys, json (the last JSON document on
 * stdout), stdout, stderr (its end)}. `child` is there at once so a scenario can kill it.
 */
export function timedIn(host, argv, {env, tStart, scratch}) {
  let child
  const startedAt = (performance.now() - tStart) / 1000
  const done = runTimed('ip', ['netns', 'exec', host.ns, ...argv], {env, scratch, allowFail: true, onSpawn: (c) => (child = c)}).then((r) => {
    const endedAt = (performance.now() - tStart) / 1000
    return {...r, host: host.name, wall: endedAt - startedAt, startedAt, endedAt, json: lastJson(r.stdout), stderr: r.stderr.slice(-2000)}
  })
  return {child, done}
}

/**
 * Sample a fill while it runs, every `everyMs`: the bytes the seed's link has
 * sent (read at the switch) and the machine's busy CPU. stop() ends the
 * sampling and returns runTimeline() of the samples.
 * @param {any} lab @param {number} tStart performance.now() at the run's start
 * @param {{uniqueBytes: number, cores: number, everyMs?: number}} o
 */
export function sampleRun(lab, tStart, {uniqueBytes, cores, everyMs = 250}) {
  const samples = []
  let on = true
  const loop = (async () => {
    while (on) {
      const links = await lab.linkBytes().catch(() => undefined)
      const c = cpuTimes()
      if (links?.seed && c) samples.push({t: (performance.now() - tStart) / 1000, seedSent: links.seed.sent, busy: c.busy})
      await sleep(everyMs)
    }
  })()
  return {
    async stop() {
      on = false
      await loop
      return runTimeline(samples, {uniqueBytes, cores})
    },
  }
}

/**
 * Where a fill's time went, from sampleRun's samples ({t, seedSent, busy}):
 * cpuBoundSeconds, the opening span in which the machine's cores were all
 * (≥ 90 %) busy; seedFirst and seedLast, when the seed's link had carried
 * 1 % and 99 % of the unique bytes (interpolated between samples; the link's
 * bytes include headers); seedBitsPerSecond, its rate between the two.
 */
export function runTimeline(samples, {uniqueBytes, cores}) {
  if (samples.length < 2) return undefined
  let cpuBoundSeconds = 0
  for (let i = 1; i < samples.length; i++) {
    const [a, b] = [samples[i - 1], samples[i]]
    if ((b.busy - a.busy) / (b.t - a.t) < 0.9 * cores) break
    cpuBoundSeconds = b.t
  }
  const at = (share) => {
    const goal = samples[0].seedSent + share * uniqueBytes
    for (let i = 1; i < samples.length; i++) {
      const [a, b] = [samples[i - 1], samples[i]]
      if (b.seedSent >= goal) return a.t + ((goal - a.seedSent) / (b.seedSent - a.seedSent)) * (b.t - a.t)
    }
    return undefined
  }
  const seedFirst = at(0.01)
  const seedLast = at(0.99)
  return {
    cpuBoundSeconds,
    seedFirst,
    seedLast,
    seedBitsPerSecond: seedFirst !== undefined && seedLast !== undefined && seedLast > seedFirst ? (0.98 * uniqueBytes * 8) / (seedLast - seedFirst) : undefined,
    samples: samples.length,
  }
}
