// Flags and commands as an operator types them: one meaning per short flag,
// one --listen syntax for serve and mount, "did you mean" for a mistyped
// command in vmi's own error format, and topic summaries that describe the topic.
import {test} from 'uvu'
import * as assert from 'uvu/assert'
import {readdirSync} from 'node:fs'
import path from 'node:path'
import {pathToFileURL} from 'node:url'
import {exec, makeImage, ROOT, tmpStore} from '../helpers/index.js'

async function commandClasses() {
  const base = path.join(ROOT, 'dist', 'commands')
  const out = []
  for (const rel of readdirSync(base, {recursive: true}))
    if (rel.endsWith('.js')) out.push([rel.replace(/\.js$/, '').split(path.sep).join(' '), (await import(pathToFileURL(path.join(base, rel)).href)).default])
  return out
}

test('each short flag means one long flag in every command', async () => {
  const meaning = new Map()
  for (const [id, cls] of await commandClasses())
    for (const [name, flag] of Object.entries({...cls.baseFlags, ...cls.flags})) {
      if (!flag.char) continue
      if (!meaning.has(flag.char)) meaning.set(flag.char, new Map())
      meaning.get(flag.char).set(name, [...(meaning.get(flag.char).get(name) ?? []), id])
    }
  assert.ok(meaning.size > 0, 'some short flags exist')
  for (const [char, names] of meaning)
    assert.is(names.size, 1, `-${char} means ${[...names].map(([n, ids]) => `--${n} (${ids.join(', ')})`).join(' and ')}`)
})

test('mount --listen takes :PORT, HOST:PORT and [v6]:PORT like serve; a bare port gets the suggestion :PORT', async () => {
  const t = tmpStore()
  try {
    const src = path.join(t.dir, 'src.raw')
    await makeImage(src, [{kind: 'random', size: 256 * 1024, seed: 'listen'}])
    assert.is(exec(['import', src, 'img:1', '--chunk-size', '64K'], {store: t.store}).status, 0)
    for (const [spec, uri] of [
      [':0', /^nbd:\/\/0\.0\.0\.0:\d+\/$/m],
      ['127.0.0.1:0', /^nbd:\/\/127\.0\.0\.1:\d+\/$/m],
      ['[::1]:0', /^nbd:\/\/\[::1\]:\d+\/$/m],
    ]) {
      // all interfaces is not loopback: plain NBD there needs the explicit flag (nbd-tls.test.js)
      const plain = spec === ':0' ? ['--allow-plain-nbd'] : []
      const r = exec(['mount', 'img:1', '--read-only', '--prefetch', 'none', '--listen', spec, ...plain, '--exec', 'echo {nbd}'], {store: t.store})
      assert.is(r.status, 0, `--listen ${spec}: ${r.stderr}`)
      assert.match(r.stdout, uri, `--listen ${spec}`)
    }
    for (const argv of [
      ['serve', '--listen', '7070'],
      ['mount', 'img:1', '--listen', '10809'],
    ]) {
      const r = exec(argv, {store: t.store})
      const port = argv.at(-1)
      assert.is(r.status, 2, `${argv.join(' ')}: ${r.stderr}`)
      assert.is(r.stderr, `vmi: error: --listen "${port}" is not HOST:PORT: did you mean ":${port}" (all interfaces) or "127.0.0.1:${port}"?\n`)
    }
  } finally {
    t.cleanup()
  }
})

test('a mistyped command: exit 2, vmi\'s error format, and the command meant', () => {
  const t = tmpStore()
  try {
    for (const [argv, meant] of [
      [['imprt', 'disk.raw'], 'import'],
      [['remote', 'rmm', 'x'], 'remote rm'],
      [['pul', 'web:1'], 'pull'],
    ]) {
      const r = exec(argv, {store: t.store})
      assert.is(r.status, 2, r.stderr)
      assert.is(r.stdout, '')
      assert.is(r.stderr, `vmi: error: unknown command "${argv[0] === 'remote' ? 'remote rmm' : argv[0]}": did you mean "${meant}"? ('vmi --help' lists the commands)\n`)
    }
    const none = exec(['xyzzy'], {store: t.store})
    assert.is(none.status, 2)
    assert.is(none.stderr, `vmi: error: unknown command "xyzzy" ('vmi --help' lists the commands)\n`)
    const json = exec(['imprt', '--json'], {store: t.store})
    assert.is(json.status, 2)
    assert.equal(JSON.parse(json.stderr).error, {code: 'VMI_USAGE', message: `unknown command "imprt": did you mean "import"? ('vmi --help' lists the commands)`, exitCode: 2})
  } finally {
    t.cleanup()
  }
})

test('the remote topic is described as a topic, not by one of its commands', () => {
  const help = exec(['--help'])
  assert.is(help.status, 0)
  const line = help.stdout.split('\n').find((l) => /^\s+remote\s/.test(l))
  assert.ok(line, help.stdout)
  assert.match(line, /Named seeds/)
  const topic = exec(['remote', '--help'])
  assert.match(topic.stdout, /^Named seeds .* add, ls, rm\./m)
  for (const sub of ['add', 'ls', 'rm']) assert.match(topic.stdout, new RegExp(`remote ${sub}\\s`))
})

test.run()
