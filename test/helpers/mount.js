// Start `vmi mount` as a child process and learn its addresses from stdout (--json).
import {spawnCli} from './index.js'

export async function startMount(store, args, opts = {}) {
  const child = spawnCli(['mount', ...args, '--json'], {store, env: opts.env})
  let stderr = ''
  let stdout = ''
  child.stderr.on('data', (d) => (stderr += d))
  const info = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`vmi mount did not start: ${stderr}`)), opts.timeoutMs ?? 60_000)
    child.stdout.on('data', (d) => {
      stdout += d
      const line = stdout.split('\n').find((l) => /^\{("version":\d+,)?"mounted"/.test(l))
      if (line) {
        clearTimeout(timer)
        resolve(JSON.parse(line))
      }
    })
    child.on('exit', (code) => {
      clearTimeout(timer)
      reject(new Error(`vmi mount exited ${code}: ${stderr}`))
    })
  })
  child.removeAllListeners('exit')
  // from here on one listener appends (the start-up one would append every chunk twice)
  child.stdout.removeAllListeners('data')
  const exited = new Promise((r) => child.on('exit', (code, signal) => r({code, signal, stdout, stderr})))
  child.stdout.on('data', (d) => (stdout += d))
  return {
    ...info,
    child,
    stderr: () => stderr,
    async stop(signal = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal)
      return exited
    },
    exited,
  }
}
