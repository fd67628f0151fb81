// vmi serve's log through the real CLI: --log-format json writes one JSON
// object per line (requests with the client address, problems as
// {level, msg}); text, the default, is one line per request as before.
import {test} from 'uvu'
import * as assert from 'uvu/assert'
import {mkdirSync, writeFileSync} from 'node:fs'
import path from 'node:path'
import {exec, makeImage, tmpStore} from '../helpers/index.js'
import {startServe} from '../helpers/serve.js'

const M = 1024 * 1024
const MISSING = 'ab' + '0'.repeat(62)
const OVERSIZED = 'cd' + '1'.repeat(62)

/** A store with an image, and an object file larger than any chunk (corrupt: not served, and logged). */
async function fixture() {
  const t = tmpStore()
  const src = path.join(t.dir, 'src.raw')
  await makeImage(src, [{kind: 'random', size: 2 * M, seed: 'serve-log'}])
  const imp = exec(['import', src, 'x:1'], {store: t.store})
  assert.is(imp.status, 0, imp.stderr)
  mkdirSync(path.join(t.store, 'objects', 'cd'), {recursive: true})
  writeFileSync(path.join(t.store, 'objects', 'cd', OVERSIZED.slice(2)), Buffer.alloc(4 * M + 4096 + 1, 1)) // over any object: a 4 MiB chunk or its frame
  return t
}

async function requests(url) {
  assert.is((await fetch(`${url}/healthz`)).status, 200)
  assert.is((await fetch(`${url}/objects/ab/${MISSING.slice(2)}`)).status, 404)
  assert.is((await fetch(`${url}/objects/cd/${OVERSIZED.slice(2)}`)).status, 404)
  assert.is((await fetch(`${url}/refs/x/1`, {method: 'DELETE'})).status, 405)
}

test('--log-format json: one JSON object per line, requests with client, method, path, status, bytes, ms; problems as {level, msg}', async () => {
  const t = await fixture()
  let serve
  try {
    serve = await startServe(t.store, ['--log', '--log-format', 'json'])
    await requests(serve.url)
    const {code} = await serve.stop()
    assert.is(code, 0)
    const lines = serve.stderr().split('\n').filter((l) => l.startsWith('{'))
    const records = lines.map((l) => JSON.parse(l))
    const reqs = records.filter((r) => r.method !== undefined)
    for (const r of reqs) {
      assert.is(r.level, 'info')
      assert.ok(!Number.isNaN(Date.parse(r.time)), `time ${r.time}`)
      assert.is(r.client, '127.0.0.1')
      assert.type(r.status, 'number')
      assert.type(r.bytes, 'number')
      assert.type(r.ms, 'number')
    }
    const find = (method, p) => reqs.find((r) => r.method === method && r.path === p)
    assert.is(find('GET', '/healthz')?.status, 200, JSON.stringify(records))
    assert.is(find('GET', '/healthz')?.bytes, 3)
    assert.is(find('GET', `/objects/ab/${MISSING.slice(2)}`)?.status, 404)
    assert.is(find('DELETE', '/refs/x/1')?.status, 405)
    const warn = records.find((r) => r.level === 'warn')
    assert.ok(warn, `a warning record: ${JSON.stringify(records)}`)
    assert.equal(Object.keys(warn).sort(), ['level', 'msg', 'time'])
    assert.match(warn.msg, `not serving chunk ${OVERSIZED}`)
    // nothing but JSON objects on stderr's log lines
    const other = serve.stderr().split('\n').filter((l) => l.trim() && !l.startsWith('{'))
    assert.not.ok(other.some((l) => /^\S+ (GET|DELETE) \//.test(l)), `text request lines in json mode: ${other.join(' | ')}`)
  } finally {
    await serve?.stop()
    t.cleanup()
  }
})

test('text (the default): one line per request, ending with the client address', async () => {
  const t = await fixture()
  let serve
  try {
    serve = await startServe(t.store, ['--log'])
    await requests(serve.url)
    await serve.stop()
    const err = serve.stderr()
    assert.match(err, /^\S+Z GET \/healthz 200 3 [\d.]+ms 127\.0\.0\.1$/m)
    assert.match(err, /^\S+Z DELETE \/refs\/x\/1 405 \d+ [\d.]+ms 127\.0\.0\.1$/m)
    assert.match(err, `not serving chunk ${OVERSIZED}`)
    assert.not.ok(err.split('\n').some((l) => l.startsWith('{')), 'no JSON in text mode')
  } finally {
    await serve?.stop()
    t.cleanup()
  }
})

test('--log-format with a value other than text or json is a usage error (exit 2)', () => {
  const r = exec(['serve', '--log-format', 'xml', '--listen', '127.0.0.1:0'])
  assert.is(r.status, 2, r.stderr)
  assert.match(r.stderr, /log-format/)
  assert.is(r.stdout, '')
})

test.run()
