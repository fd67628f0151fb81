// @ts-check
// The fleet lab (test/helpers/lab.js) as bench/fleet.js and bench/fleet-boot.js
// use it: its seed's servers, a host's serve, timed commands on its hosts.
import path from 'node:path'
import {labUnavailable} from '../../test/helpers/lab.js'
import {lastJson, prepSettings, startNginx, startServe} from './common.js'
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
export function startHostServe(host, store, seedUrl) {
  return startServe(store, ['--seed', seedUrl], {netns: host.ns, listen: `${host.ip}:${SERVE_PORT}`})
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
