// A scripted store server on 127.0.0.1 port 0 that serves what it is told,
// right or wrong: for the contract tests of remote sources (a seed that
// lies, or one that accepts requests and never answers).
//
//   const h = await startHostileStore({bodies: new Map([[id, wrongBytes]])})
//   ... new HttpStore(h.url) ...
//   await h.close()
//
// GET and HEAD of /objects/xx/yyy (below any prefix) answer 200 with the body the map holds for
// that id (whatever it hashes to), else 404, after `delayMs` (default 0).
// `stall: true` accepts every object request and never answers it;
// `status: 503` answers every object request with that status. Anything else (the base URL, which a
// ping asks) is 200 with an empty body.
import http from 'node:http'

export async function startHostileStore({bodies = new Map(), stall = false, delayMs = 0, status} = {}) {
  const requests = []
  const server = http.createServer((req, res) => {
    // any prefix before objects/ (an S3 client asks /BUCKET/PREFIX/objects/…)
    const m = /^(?:\/[^?#]*)?\/objects\/([0-9a-f]{2})\/([0-9a-f]{62})$/.exec(req.url)
    requests.push(`${req.method} ${req.url}`)
    if (!m) return res.writeHead(200, {'content-length': '0'}).end()
    if (stall) return // held until close()
    if (status) return res.writeHead(status, {'content-length': '0'}).end()
    const body = bodies.get(m[1] + m[2])
    setTimeout(() => {
      if (!body) return res.writeHead(404, {'content-length': '0'}).end()
      res.writeHead(200, {'content-length': String(body.length)})
      res.end(req.method === 'HEAD' ? undefined : body)
    }, delayMs)
  })
  await new Promise((r) => server.listen(0, '127.0.0.1', r))
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    requests,
    close: () =>
      new Promise((r) => {
        server.closeAllConnections()
        server.close(r)
      }),
  }
}
