#!/usr/bin/env node
// @ts-check
// A small HTTP load generator for chunk GETs: CONCURRENCY workers, each with
// one keep-alive connection (one http.Agent, maxSockets = CONCURRENCY), loop
// over a list of paths (shared cursor, wrapping) until MAX_REQUESTS requests
// were issued or MAX_SECONDS passed. Every response body is read to the end
// and counted; latency is request start to the last body byte.
//
// usage: node bench/lib/dist-load.js BASE_URL PATHS_FILE [--concurrency 64]
//          [--max-requests 20000] [--max-seconds 8] [--warmup-seconds 1]
//
// PATHS_FILE: one request path a line (e.g. /objects/ab/cdef…). Prints one
// JSON document on stdout: requests, bytes, seconds, rps, bytesPerSecond,
// latencyMs {mean,p50,p90,p99,p999,max}, statuses, errors, and this
// process's CPU seconds (user, system) during the measured phase. A warm-up
// phase (not counted) opens the connections first.
import {readFileSync} from 'node:fs'
import http from 'node:http'
import {fileURLToPath} from 'node:url'

/** Run the load; resolves the summary. */
export async function runLoad({baseUrl, paths, concurrency = 64, maxRequests = 20000, maxSeconds = 8, warmupSeconds = 1}) {
  const u = new URL(baseUrl)
  const agent = new http.Agent({keepAlive: true, maxSockets: concurrency, maxFreeSockets: concurrency, scheduling: 'fifo'})
  let cursor = 0
  const get = (p) =>
    new Promise((resolve) => {
      const t0 = process.hrtime.bigint()
      const req = http.request({host: u.hostname, port: u.port, path: p, method: 'GET', agent}, (res) => {
        let n = 0
        res.on('data', (d) => (n += d.length))
        res.on('end', () => resolve({status: res.statusCode, bytes: n, ms: Number(process.hrtime.bigint() - t0) / 1e6}))
        res.on('error', (/** @type {NodeJS.ErrnoException} */ err) => resolve({error: err.code ?? err.message, ms: Number(process.hrtime.bigint() - t0) / 1e6}))
      })
      req.on('error', (/** @type {NodeJS.ErrnoException} */ err) => resolve({error: err.code ?? err.message, ms: Number(process.hrtime.bigint() - t0) / 1e6}))
      req.end()
    })

  const phase = async (limitRequests, limitSeconds, record) => {
    let issued = 0
    const lat = new Float64Array(limitRequests)
    let done = 0
    let bytes = 0
    const statuses = {}
    const errors = {}
    const deadline = performance.now() + limitSeconds * 1000
    const cpu0 = process.cpuUsage()
    const t0 = performance.now()
    const worker = async () => {
      while (issued < limitRequests && performance.now() < deadline) {
        issued++
        const p = paths[cursor++ % paths.length]
        const r = await get(p)
        if (!record) continue
        if (r.error) errors[r.error] = (errors[r.error] ?? 0) + 1
        else {
          statuses[r.status] = (statuses[r.status] ?? 0) + 1
          bytes += r.bytes
        }
        lat[done++] = r.ms
      }
    }
    await Promise.all(Array.from({length: concurrency}, worker))
    const seconds = (performance.now() - t0) / 1000
    const cpu = process.cpuUsage(cpu0)
    if (!record) return undefined
    const l = Array.from(lat.subarray(0, done)).sort((a, b) => a - b)
    const q = (p) => (l.length ? l[Math.min(l.length - 1, Math.ceil(p * l.length) - 1)] : undefined)
    return {
      requests: done,
      bytes,
      seconds,
      rps: done / seconds,
      bytesPerSecond: bytes / seconds,
      latencyMs: {mean: l.reduce((a, b) => a + b, 0) / (l.length || 1), p50: q(0.5), p90: q(0.9), p99: q(0.99), p999: q(0.999), max: l.at(-1)},
      statuses,
      errors,
      cpu: {user: cpu.user / 1e6, system: cpu.system / 1e6},
    }
  }
  // warm-up: open the connections, warm the JIT (not counted)
  if (warmupSeconds > 0) await phase(Math.max(concurrency * 4, 1000), warmupSeconds, false)
  const out = await phase(maxRequests, maxSeconds, true)
  agent.destroy()
  return {baseUrl, concurrency, maxRequests, maxSeconds, distinctPaths: paths.length, ...out}
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const [baseUrl, pathsFile, ...rest] = process.argv.slice(2)
  if (!baseUrl || !pathsFile) {
    console.error('usage: dist-load.js BASE_URL PATHS_FILE [--concurrency N] [--max-requests N] [--max-seconds S] [--warmup-seconds S]')
    process.exit(2)
  }
  const o = {}
  for (let i = 0; i < rest.length; i += 2) {
    const k = rest[i].replace(/^--/, '').replace(/-(\w)/g, (_, c) => c.toUpperCase())
    o[k] = Number(rest[i + 1])
  }
  const paths = readFileSync(pathsFile, 'utf8').split('\n').filter(Boolean)
  const r = await runLoad({baseUrl, paths, ...o})
  process.stdout.write(JSON.stringify(r) + '\n')
}
