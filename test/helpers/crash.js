// Helpers for crash tests: wait for a child, poll for a condition, kill -9 at a random point.
import {promises as fsp} from 'node:fs'
import path from 'node:path'
import {spawnCli} from './index.js'

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

/** Resolves when the child exits: {status, signal, stdout, stderr}. */
export function finished(child) {
  const out = []
  const err = []
  child.stdout?.on('data', (d) => out.push(d))
  child.stderr?.on('data', (d) => err.push(d))
  return new Promise((resolve, reject) => {
    child.on('error', reject)
    child.on('close', (status, signal) => resolve({status, signal, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString()}))
  })
}

/** Number of files under dir (recursively). */
export async function countFiles(dir) {
  let n = 0
  let entries
  try {
    entries = await fsp.readdir(dir, {withFileTypes: true})
  } catch {
    return 0
  }
  for (const e of entries) n += e.isDirectory() ? await countFiles(path.join(dir, e.name)) : 1
  return n
}

/** Poll `pred` every few ms until true; false when `exited` resolves first or on timeout. */
export async function until(pred, {exited, timeoutMs = 60_000, everyMs = 5} = {}) {
  let done = false
  exited?.then(() => (done = true))
  const deadline = Date.now() + timeoutMs
  while (!done && Date.now() < deadline) {
    if (await pred()) return true
    await sleep(everyMs)
  }
  return false
}

/**
 * Start `argv`, wait until `started()` says it has written something, sleep a
 * random delay up to `maxDelayMs`, then kill -9 (`opts.env`: the child's extra environment). Returns {killed, seen, result}.
 */
export async function killMidway(argv, store, started, maxDelayMs, opts = {}) {
  const child = spawnCli(argv, {store, env: opts.env})
  const exited = finished(child)
  const seen = await until(started, {exited})
  if (seen) await sleep(Math.floor(Math.random() * maxDelayMs))
  const killed = child.exitCode === null && child.signalCode === null && child.kill('SIGKILL')
  const result = await exited
  return {killed: killed && result.signal === 'SIGKILL', seen, result}
}
