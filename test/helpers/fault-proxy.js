// A fault-injecting TCP proxy between a client and an HTTP server on 127.0.0.1.
// Modes act on response bytes flowing back to the client:
//   pass      forward untouched
//   reset     forward the first `after` bytes of a response, then reset the connection
//   stall     forward the first `after` bytes, then hold the connection open silently
//   truncate  forward the first `after` bytes, then close cleanly (a short body)
//   flip      flip one byte at offset `after` of every response (content corrupted)
//   trickle   forward everything, `rate` bytes every 10 ms
//   http500   answer every request with HTTP 500 itself (a 5xx burst), `count` times, then pass
// `every` (default 1) applies the fault to every Nth connection only.
import net from 'node:net'

export async function startFaultProxy(target, opts = {}) {
  const t = new URL(target)
  let mode = opts.mode ?? 'pass'
  let after = opts.after ?? 1000
  let every = opts.every ?? 1
  let count = opts.count ?? Infinity
  let conns = 0
  const sockets = new Set()
  const server = net.createServer((client) => {
    sockets.add(client)
    client.on('close', () => sockets.delete(client))
    client.on('error', () => {})
    const n = ++conns
    // decided per response chunk, so set() also affects open keep-alive connections
    const isFaulty = () => mode !== 'pass' && n % every === 0
    if (isFaulty() && mode === 'http500' && count > 0) {
      count--
      client.once('data', () => {
        client.end('HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\nConnection: close\r\n\r\nboom')
      })
      return
    }
    const upstream = net.connect(Number(t.port), t.hostname)
    sockets.add(upstream)
    upstream.on('close', () => sockets.delete(upstream))
    upstream.on('error', () => client.destroy())
    client.on('error', () => upstream.destroy())
    client.pipe(upstream)
    let sent = 0
    upstream.on('data', (d) => {
      if (!isFaulty() || mode === 'http500') return client.write(d)
      if (mode === 'flip') {
        const b = Buffer.from(d)
        if (sent <= after && after < sent + b.length) b[after - sent] ^= 0xff
        sent += b.length
        return client.write(b)
      }
      if (mode === 'trickle') {
        upstream.pause()
        let off = 0
        const step = () => {
          if (client.destroyed) return
          client.write(d.subarray(off, off + (opts.rate ?? 2048)))
          off += opts.rate ?? 2048
          if (off < d.length) setTimeout(step, 10)
          else upstream.resume()
        }
        return step()
      }
      const room = Math.max(0, after - sent)
      if (room > 0) client.write(d.subarray(0, room))
      sent += d.length
      if (sent >= after) {
        upstream.unpipe?.()
        upstream.removeAllListeners('data')
        if (mode === 'reset') {
          client.resetAndDestroy?.() ?? client.destroy()
          upstream.destroy()
        } else if (mode === 'truncate') {
          client.end()
          upstream.destroy()
        } // stall: hold both open
      }
    })
    upstream.on('end', () => client.end())
  })
  await new Promise((r) => server.listen(0, '127.0.0.1', r))
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    connections: () => conns,
    set(o) {
      if (o.mode !== undefined) mode = o.mode
      if (o.after !== undefined) after = o.after
      if (o.every !== undefined) every = o.every
      if (o.count !== undefined) count = o.count
    },
    close: () =>
      new Promise((r) => {
        for (const s of sockets) s.destroy()
        server.close(r)
      }),
  }
}
