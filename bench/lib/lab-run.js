// @ts-check
// Running timed commands on the fleet lab's hosts (test/helpers/lab.js), for
// bench/fleet.js and bench/fleet-boot.js.
import {spawn} from 'node:child_process'
import {promises as fsp} from 'node:fs'
import path from 'node:path'
import {lastJson} from './common.js'
import {GNU_TIME} from './measure.js'

/**
 * `argv` in a host's namespace, timed: `done` resolves {host, status, wall,
 * startedAt, endedAt (s from `tStart`), user, sys (GNU time), json (the last
 * JSON document on stdout), stdout, stderr (its end)}. `child` is there at
 * once so a scenario can kill it.
 */
export function timedIn(host, argv, {env, tStart, scratch}) {
  const tmp = path.join(scratch, `.time-${host.name}-${Math.random().toString(36).slice(2)}`)
  const inner = ['ip', 'netns', 'exec', host.ns, ...argv]
  const [cmd, args] = GNU_TIME ? [GNU_TIME, ['-f', '%U %S', '-o', tmp, '--', ...inner]] : [inner[0], inner.slice(1)]
  const startedAt = (performance.now() - tStart) / 1000
  const child = spawn(cmd, args, {env, stdio: ['ignore', 'pipe', 'pipe']})
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (d) => (stdout += d))
  child.stderr.on('data', (d) => (stderr += d))
  const done = new Promise((resolve) =>
    child.on('close', async (code, signal) => {
      const endedAt = (performance.now() - tStart) / 1000
      let user
      let sys
      const t = await fsp.readFile(tmp, 'utf8').catch(() => '')
      await fsp.rm(tmp, {force: true})
      const m = /(\d+\.\d+) (\d+\.\d+)\s*$/.exec(t)
      if (m) [user, sys] = [Number(m[1]), Number(m[2])]
      resolve({host: host.name, status: code ?? `signal ${signal}`, wall: endedAt - startedAt, startedAt, endedAt, user, sys, json: lastJson(stdout), stdout, stderr: stderr.slice(-2000)})
    }),
  )
  return {child, done}
}
