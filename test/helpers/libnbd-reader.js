// A long-lived libnbd client (Debian's python3-libnbd, for /usr/bin/python3)
// connected to one NBD export: read(offset, length) → {ok, ms, data} or
// {ok: false, ms, error, errno}, timed inside the client (the read alone, no
// process start-up). One connection for all reads: an error reply leaves it usable.
import {spawn, spawnSync} from 'node:child_process'
import readline from 'node:readline'

export const LIBNBD_PYTHON = '/usr/bin/python3'

export function haveLibnbd() {
  return spawnSync(LIBNBD_PYTHON, ['-c', 'import nbd'], {stdio: 'ignore'}).status === 0
}

const SCRIPT = `
import json, sys, time, nbd
h = nbd.NBD()
h.connect_uri(sys.argv[1])
print(json.dumps({"size": h.get_size()}), flush=True)
for line in sys.stdin:
    off, n = (int(x) for x in line.split())
    t = time.monotonic()
    try:
        out = {"ok": True, "hex": h.pread(n, off).hex()}
    except nbd.Error as e:
        out = {"ok": False, "error": str(e), "errno": e.errno}
    out["ms"] = (time.monotonic() - t) * 1000
    print(json.dumps(out), flush=True)
`

export async function startLibnbdReader(uri) {
  const child = spawn(LIBNBD_PYTHON, ['-c', SCRIPT, uri], {stdio: ['pipe', 'pipe', 'pipe']})
  let stderr = ''
  child.stderr.on('data', (d) => (stderr += d))
  const lines = readline.createInterface({input: child.stdout})[Symbol.asyncIterator]()
  const next = async () => {
    const r = await lines.next()
    if (r.done) throw new Error(`the libnbd client exited: ${stderr}`)
    return JSON.parse(r.value)
  }
  const {size} = await next()
  return {
    size,
    async read(offset, length) {
      child.stdin.write(`${offset} ${length}\n`)
      const r = await next()
      if (r.ok) r.data = Buffer.from(r.hex, 'hex')
      delete r.hex
      return r
    },
    close() {
      child.stdin.end()
      child.kill()
    },
  }
}
