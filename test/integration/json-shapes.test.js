// Every --json output against docs/JSON.md: each command runs for real (one
// scenario: import, push to a seed, pull, mount, commit, …), and the keys of
// what it prints must be the keys the doc's example for it shows (nested
// objects and array elements too), with `"version": 1` in every document.
import {test} from 'uvu'
import * as assert from 'uvu/assert'
import {spawnSync} from 'node:child_process'
import {readFileSync, writeFileSync} from 'node:fs'
import path from 'node:path'
import {exec, makeImage, ROOT, tmpDir, tmpStore} from '../helpers/index.js'
import {startMount} from '../helpers/mount.js'
import {startServe} from '../helpers/serve.js'

const K = 1024

/** The doc's examples: label → {example, mayBeAbsent: Set of paths, maps: Set of paths}. */
function documented() {
  const doc = readFileSync(path.join(ROOT, 'docs', 'JSON.md'), 'utf8')
  const out = new Map()
  for (const part of doc.split(/^### /m).slice(1)) {
    const label = /^`([^`]+)`/.exec(part)?.[1]
    const block = /```json\n([\s\S]*?)```/.exec(part)?.[1]
    if (!label || !block) continue
    const paths = (what) => new Set([...(new RegExp(`^${what}: (.*)$`, 'm').exec(part)?.[1] ?? '').matchAll(/`([^`]+)`/g)].map((m) => m[1]))
    out.set(label, {example: JSON.parse(block), mayBeAbsent: paths('May be absent'), maps: paths('Maps')})
  }
  return out
}

/** Compare keys: every key of `actual` is documented, every documented one is there (unless it may be absent). */
function sameShape(label, actual, doc, spec, at = '') {
  if (Array.isArray(doc)) {
    assert.ok(Array.isArray(actual), `${label}: ${at || 'the document'} is an array`)
    // the doc's elements together show every key an element can have (an up and a down source)
    const element = doc.every((e) => e !== null && typeof e === 'object' && !Array.isArray(e)) ? Object.assign({}, ...doc) : doc[0]
    if (doc.length > 0) for (const a of actual) sameShape(label, a, element, spec, `${at}[]`)
    return
  }
  if (doc === null || typeof doc !== 'object') {
    if (actual !== null && doc !== null) assert.is(typeof actual, typeof doc, `${label}: ${at} is a ${typeof doc}`)
    return
  }
  assert.ok(actual !== null && typeof actual === 'object' && !Array.isArray(actual), `${label}: ${at || 'the document'} is an object`)
  if (spec.maps.has(at)) return
  const key = (k) => (at ? `${at}.${k}` : k)
  for (const k of Object.keys(actual)) assert.ok(k in doc, `${label}: key ${key(k)} is not in docs/JSON.md`)
  for (const k of Object.keys(doc)) {
    if (!(k in actual)) {
      assert.ok(spec.mayBeAbsent.has(key(k)), `${label}: documented key ${key(k)} is missing from the output`)
      continue
    }
    sameShape(label, actual[k], doc[k], spec, key(k))
  }
}

/** Run the scenario: label → the parsed JSON documents vmi printed. */
async function collect() {
  const seed = tmpStore()
  const host = tmpStore()
  const work = tmpDir()
  const got = {}
  const run = (label, argv, store, opts = {}) => {
    const r = exec([...argv, '--json'], {store, ...opts})
    assert.is(r.status, opts.status ?? 0, `${argv.join(' ')}: ${r.stderr}`)
    const text = opts.stderr ? r.stderr.trim().split('\n').at(-1) : r.stdout
    try {
      if (label) got[label] = JSON.parse(text)
    } catch (err) {
      assert.unreachable(`${argv.join(' ')} --json printed more than one JSON document: ${text}`)
    }
    return r
  }
  let serve, mount
  try {
    const a = path.join(work.dir, 'a.raw')
    const b = path.join(work.dir, 'b.raw')
    await makeImage(a, [{kind: 'random', size: 256 * K, seed: 'json-a'}, {kind: 'zero', size: 256 * K}])
    await makeImage(b, [{kind: 'random', size: 256 * K, seed: 'json-a'}, {kind: 'random', size: 256 * K, seed: 'json-b'}])
    run('import', ['import', a, 'web:1', '--chunk-size', '64K', '-a', 'commit=abc'], host.store)
    run(null, ['import', b, 'web:2', '--chunk-size', '64K', '--parent', 'web:1'], host.store)
    run('inspect', ['inspect', 'web:2'], host.store)
    run('ls', ['ls', '--all'], host.store)
    run('log', ['log', 'web:2'], host.store)
    run('diff', ['diff', 'web:1', 'web:2'], host.store)
    run('tag', ['tag', 'web:2', 'web:latest'], host.store)
    run('pin', ['pin', 'web:1'], host.store)
    run('fsck', ['fsck'], host.store)
    run('export', ['export', 'web:1', path.join(work.dir, 'out.raw')], host.store)
    run('save', ['save', 'web:2', '-o', path.join(work.dir, 'b.tar')], host.store)
    run('load', ['load', path.join(work.dir, 'b.tar')], seed.store)
    run('rm', ['rm', 'web:latest'], host.store)
    run('gc', ['gc', '--dry-run', '--max-cache', '64K'], host.store)

    serve = await startServe(seed.store, ['--json'], {env: {VMI_PUSH_TOKEN: 'tok'}})
    run('remote add', ['remote', 'add', 'origin', serve.url], host.store)
    run('remote ls', ['remote', 'ls'], host.store)
    // web:1 signed: push, pull and verify show their signature keys
    const key = path.join(work.dir, 'sign-key')
    assert.is(spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', key]).status, 0, 'ssh-keygen makes a key')
    const allowed = path.join(work.dir, 'allowed_signers')
    writeFileSync(allowed, `web:* ${readFileSync(`${key}.pub`, 'utf8')}`)
    run('push', ['push', 'web:1', '--token', 'tok', '--sign', key], host.store)
    const pulled = tmpStore()
    try {
      run('pull', ['pull', 'web:1', serve.url, '--no-owner-hashing', '--verify-signers', allowed], pulled.store)
      run('verify', ['verify', 'web:1', '--verify-signers', allowed], pulled.store)
    } finally {
      pulled.cleanup()
    }
    run('config set', ['config', 'set', 'maxCache', '1G'], host.store)
    run('config get', ['config', 'get', 'maxCache'], host.store)
    run('config list', ['config', 'list'], host.store)
    run('config unset', ['config', 'unset', 'maxCache'], host.store)

    const overlay = path.join(work.dir, 'overlay')
    mount = await startMount(host.store, ['web:2', '--overlay', overlay, '--prefetch', 'none'])
    // the helper returns the first line's keys beside its own (child, stop, …)
    got['mount (addresses)'] = Object.fromEntries(Object.entries(mount).filter(([k, v]) => typeof v !== 'function' && k !== 'child' && k !== 'exited'))
    const w = spawnSync('qemu-io', ['-f', 'raw', '-c', 'write -P 0x5a 0 4k', mount.nbd], {encoding: 'utf8'})
    assert.is(w.status, 0, w.stderr)
    run('status', ['status'], host.store)
    const stopped = await mount.stop('SIGTERM')
    mount = undefined
    assert.is(stopped.code, 0)
    got['mount (at exit)'] = JSON.parse(stopped.stdout.trim().split('\n').slice(1).join('\n'))
    run('commit', ['commit', overlay, 'web:3'], host.store)
    run('remote rm', ['remote', 'rm', 'origin'], host.store)

    // serve's line, printed by a fresh one (the helper reads the first)
    const s2 = spawnSync(process.execPath, [path.join(ROOT, 'bin', 'run.js'), 'serve', '--listen', '127.0.0.1:0', '--json', '--store', seed.store], {timeout: 3000, killSignal: 'SIGTERM', encoding: 'utf8'})
    got['serve (listening)'] = JSON.parse(s2.stdout.trim().split('\n')[0])

    run('error', ['inspect', 'nope:1'], host.store, {status: 3, stderr: true})
    run('warning', ['status', '--no-probe', '--peers-file', path.join(work.dir, 'missing')], host.store, {stderr: true})
    return got
  } finally {
    await mount?.stop()
    await serve?.stop()
    for (const t of [seed, host, work]) t.cleanup()
  }
}

test('every --json output has the shape docs/JSON.md documents, and "version": 1', async () => {
  const got = await collect()
  if (process.env.DUMP_JSON) writeFileSync(process.env.DUMP_JSON, JSON.stringify(got, null, 2))
  const doc = documented()
  for (const [label, actual] of Object.entries(got)) {
    const spec = doc.get(label)
    assert.ok(spec, `docs/JSON.md documents "${label}"`)
    assert.is(actual.version, 1, `${label}: "version": 1`)
    sameShape(label, actual, spec.example, spec)
  }
  for (const label of doc.keys()) assert.ok(label in got, `docs/JSON.md documents "${label}", which the test does not run`)
})

test('every command with --json is in docs/JSON.md', () => {
  const manifest = JSON.parse(readFileSync(path.join(ROOT, 'oclif.manifest.json'), 'utf8'))
  const labels = [...documented().keys()].map((l) => l.replace(/ \(.*\)$/, ''))
  for (const [id, c] of Object.entries(manifest.commands)) if (c.flags.json) assert.ok(labels.includes(id.replaceAll(':', ' ')), `vmi ${id.replaceAll(':', ' ')} --json is documented`)
})

test.run()
