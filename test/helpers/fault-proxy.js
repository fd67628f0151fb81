// A fault-injecting TCP proxy between a client and an HTTP server on 127.0.0.1.
// Modes act on response bytes flowing back to the client:
//   pass      forward untouched
//   reset     forward the first `after` bytes of a response, then reset the connection
//   stall     forward the first `after` bytes, then hold the connection open silently
//   truncate  forward the first `after` bytes, then close cleanly (a short body)
//   flip      flip one byte at offset `after` of every response, counted from its status line
//             (content corrupted; a response shorter than that passes untouched)
//   trickle   forward everything, `rate` bytes every 10 ms
//   http500   answer every request with HTTP 500 itself (a 5xx burst), `count` times, then pass
// `every` (default 1) applies the fault to every Nth connection only.
import net from 'node:net'

/**
 * Follows the responses on one connection (HTTP/1.1 keep-alive, bodies
 * framed by Content-Length; none for the answer to a HEAD, whose requests it
 * reads from `client`): `walk(bytes, at, hit)` calls hit(i) for the byte i of
 * `bytes` that is `at` bytes into its response.
 */
function responseWalker(client) {
  const methods = []
  let req = ''
  client.on('data', (d) => {
    req += d.toString('latin1')
    let m
    // only a line that starts a request counts (an upload's body may hold anything)
    while ((m = /(?:^|\r\n)(GET|HEAD|PUT|POST|DELETE) \S+ HTTP\/1\.1\r\n/.exec(req))) {
      methods.push(m[1])
      req = req.slice(m.index + m[0].length)
    }
    if (req.length > 65536) req = req.slice(-1024)
  })
  let inHead = true
  let head = ''
  let pos = 0 // bytes into the current response
  let bodyLeft = 0
  return (buf, at = -1, hit = () => {}) => {
    let i = 0
    while (i < buf.length) {
      if (!inHead && bodyLeft === 0) {
        inHead = true
        head = ''
        pos = 0
      }
      let seg
      if (inHead) {
        const joined = head + buf.toString('latin1', i, Math.min(buf.length, i + 16384))
        const end = joined.indexOf('\r\n\r\n')
        if (end < 0) {
          seg = buf.length - i
          head = joined
        } else {
          seg = end + 4 - head.length
          const cl = /\r\ncontent-length: *(\d+)/i.exec(joined.slice(0, end))
          bodyLeft = methods.shift() === 'HEAD' || !cl ? 0 : Number(cl[1])
          inHead = false
        }
      } else {
        seg = Math.min(bodyLeft, buf.length - i)
        bodyLeft -= seg
      }
      if (pos <= at && at < pos + seg) hit(i + at - pos)
      pos += seg
      i += seg
    }
  }
}

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
    const walk = responseWalker(client)
    let sent = 0
    upstream.on('data', (d) => {
      if (!isFaulty() || mode === 'http500') {
        walk(d)
        return client.write(d)
      }
      if (mode === 'flip') {
        const b = Buffer.from(d)
        walk(b, after, (i) => (b[i] ^= 0xff))
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
