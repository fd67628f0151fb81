// Start `vmi serve` as a child process and learn its URL from the first stdout line.
import {spawnCli} from './index.js'

/**
 * `opts.listen` (default 127.0.0.1:0) lets a restarted server take its old
 * port again; `opts.netns` runs it in a network namespace (then metrics()
 * cannot reach it from here: ask from inside, test/helpers/lab.js httpGet);
 * `opts.startTimeoutMs` (default 20 s) bounds the wait for its URL; `opts.bin`
 * runs another build's vmi (test/helpers/old-vmi.js).
 */
export async function startServe(store, args = [], opts = {}) {
  const child = spawnCli(['serve', '--listen', opts.listen ?? '127.0.0.1:0', ...args], {store, env: opts.env, netns: opts.netns, bin: opts.bin})
  let stderr = ''
  child.stderr.on('data', (d) => (stderr += d))
  const url = await new Promise((resolve, reject) => {
    let out = ''
    const timer = setTimeout(() => reject(new Error(`vmi serve did not start: ${stderr}`)), opts.startTimeoutMs ?? 20_000)
    child.stdout.on('data', (d) => {
      out += d
      const m = /(https?:\/\/[^\s"]+)/.exec(out)
      if (m) {
        clearTimeout(timer)
        resolve(m[1].replace(/\/$/, ''))
      }
    })
    child.on('exit', (code) => {
      clearTimeout(timer)
      reject(new Error(`vmi serve exited ${code}: ${stderr}`))
    })
  })
  child.removeAllListeners('exit')
  const exited = new Promise((r) => child.on('exit', (code, signal) => r({code, signal})))
  return {
    url,
    child,
    stderr: () => stderr,
    async metrics() {
      const res = await fetch(`${url}/metrics`)
      return res.text()
    },
    async stop(signal = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal)
      return exited
    },
  }
}

/** Sum of a Prometheus counter's samples whose labels match `labels`. */
export function metricSum(text, name, labels = {}) {
  let sum = 0
  for (const line of text.split('\n')) {
    if (!line.startsWith(name + '{') && !line.startsWith(name + ' ')) continue
    const m = /^([^{\s]+)(\{[^}]*\})?\s+([0-9.eE+-]+)/.exec(line)
    if (!m || m[1] !== name) continue
    const lab = Object.fromEntries([...(m[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]))
    if (Object.entries(labels).every(([k, v]) => lab[k] === v)) sum += Number(m[3])
  }
  return sum
}
