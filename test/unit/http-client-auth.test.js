// The general HTTP client carries a read token (HttpClientInit.headers) on
// every request to its server, and never along a redirect to another
// origin: a seed that redirects to a mirror does not hand the mirror its
// token. Real servers on 127.0.0.1 (two ports are two origins).
import {test} from 'uvu'
import * as assert from 'uvu/assert'
import http from 'node:http'
import {HttpClient} from '../../dist/peer/http-client.js'

function server(handler) {
  const seen = []
  const s = http.createServer((req, res) => {
    seen.push({url: req.url, authorization: req.headers.authorization})
    handler(req, res)
  })
  return new Promise((resolve) => s.listen(0, '127.0.0.1', () => resolve({url: `http://127.0.0.1:${s.address().port}`, seen, close: () => new Promise((r) => s.close(r))})))
}

test('the read token goes to the server and along a same-origin redirect, not to another origin', async () => {
  const mirror = await server((req, res) => res.end('mirror'))
  const seed = await server((req, res) => {
    if (req.url === '/here') return res.writeHead(302, {location: '/there'}).end()
    if (req.url === '/away') return res.writeHead(302, {location: `${mirror.url}/x`}).end()
    res.end('seed')
  })
  try {
    const c = new HttpClient(seed.url, {headers: {authorization: 'Bearer read-tok'}})
    assert.is((await c.request('here', {method: 'GET'})).body.toString(), 'seed')
    assert.equal(seed.seen.map((s) => s.authorization), ['Bearer read-tok', 'Bearer read-tok'])
    assert.is((await c.request('away', {method: 'GET'})).body.toString(), 'mirror')
    assert.is(seed.seen[2].authorization, 'Bearer read-tok')
    assert.equal(mirror.seen, [{url: '/x', authorization: undefined}])
    // a request's own header (a push token) overrides the default, and is dropped across origins too
    await c.request('away', {method: 'GET', headers: {authorization: 'Bearer push-tok'}})
    assert.is(seed.seen[3].authorization, 'Bearer push-tok')
    assert.is(mirror.seen[1].authorization, undefined)
  } finally {
    await seed.close()
    await mirror.close()
  }
})

test.run()
