// A TCP port that never accepts a connection: a listener with a backlog of 0
// that never calls accept(), its queue filled by one connection, so Linux
// drops every later SYN — a connect there hangs until the client's timeout,
// like a host whose packets vanish. Node accepts every connection itself, so
// the listener is a small /usr/bin/python3 process.
import {spawn} from 'node:child_process'
import {existsSync} from 'node:fs'
import net from 'node:net'

export const PYTHON = '/usr/bin/python3'

export function haveBlackhole() {
  return existsSync(PYTHON)
}

export async function startBlackhole() {
  const script = 'import socket,time\ns=socket.socket();s.bind(("127.0.0.1",0));s.listen(0)\nprint(s.getsockname()[1],flush=True)\ntime.sleep(3600)'
  const child = spawn(PYTHON, ['-c', script], {stdio: ['ignore', 'pipe', 'inherit']})
  const port = await new Promise((resolve, reject) => {
    child.once('error', reject)
    child.stdout.once('data', (d) => resolve(Number(String(d).trim())))
  })
  // fill the queue (a second connection makes sure, whatever the kernel's rounding)
  const fillers = [0, 1].map(() => net.connect(port, '127.0.0.1').on('error', () => {}))
  await new Promise((r) => setTimeout(r, 100))
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    close() {
      for (const s of fillers) s.destroy()
      child.kill()
    },
  }
}
