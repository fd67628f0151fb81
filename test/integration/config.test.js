// `vmi config get|set|unset|list` through the real CLI, the precedence
// flag → env → config → default, and the README's settings table against
// the settings the code knows (and those against the VMI_* variables the
// source reads), so none of them can drift.
import {test} from 'uvu'
import * as assert from 'uvu/assert'
import {readFileSync, readdirSync, writeFileSync} from 'node:fs'
import path from 'node:path'
import {exec, makeImage, ROOT, tmpStore} from '../helpers/index.js'

const {SETTINGS} = await import(path.join(ROOT, 'dist', 'cli', 'config-keys.js'))

test('set, get, list, unset: values are parsed and stored normalized', () => {
  const t = tmpStore()
  try {
    const cli = (...argv) => exec(argv, {store: t.store})
    assert.is(cli('config', 'set', 'maxCache', '20G').stdout, 'maxCache=21474836480\n')
    assert.is(cli('config', 'set', 'peers', 'http://10.0.0.2:7070/, http://10.0.0.3:7070').status, 0)
    const peersFile = path.join(t.dir, 'peers')
    writeFileSync(peersFile, 'http://10.0.0.4:7070\n')
    assert.is(exec(['config', 'set', 'peersFile', 'peers'], {store: t.store, cwd: t.dir}).status, 0)
    assert.is(cli('config', 'get', 'maxCache').stdout, '21474836480\n')
    assert.is(cli('config', 'get', 'peers').stdout, 'http://10.0.0.2:7070,http://10.0.0.3:7070\n')
    const got = JSON.parse(cli('config', 'get', 'peersFile', '--json').stdout)
    assert.is(got.key, 'peersFile')
    assert.is(got.value, peersFile, 'a relative path is stored absolute')
    const list = JSON.parse(cli('config', 'list', '--json').stdout)
    assert.equal(list.config, {maxCache: 21474836480, peers: ['http://10.0.0.2:7070', 'http://10.0.0.3:7070'], peersFile})
    assert.is(cli('config', 'list').stdout, `maxCache=21474836480\npeers=http://10.0.0.2:7070,http://10.0.0.3:7070\npeersFile=${peersFile}\n`)
    // the other commands read what config wrote
    assert.match(cli('remote', 'ls').stdout, /peer\thttp:\/\/10\.0\.0\.2:7070/)
    const unset = cli('config', 'unset', 'maxCache', '--json')
    assert.is(JSON.parse(unset.stdout).removed, true)
    const again = cli('config', 'get', 'maxCache')
    assert.is(again.status, 3, again.stderr)
    assert.match(again.stderr, /maxCache is not set/)
    assert.is(again.stdout, '')
    assert.is(JSON.parse(cli('config', 'unset', 'maxCache', '--json').stdout).removed, false)
  } finally {
    t.cleanup()
  }
})

test('a bad key or value exits 2 (a missing peers file 3) and leaves config.json byte for byte', () => {
  const t = tmpStore()
  try {
    assert.is(exec(['config', 'set', 'chunkSize', '256K'], {store: t.store}).status, 0)
    const file = path.join(t.store, 'config.json')
    const before = readFileSync(file)
    // files the commands would refuse: a tar instead of allowed signers, a peers file with a line that is not a URL
    const notSigners = path.join(t.dir, 'some.tar')
    writeFileSync(notSigners, 'ustar garbage\n')
    const badPeers = path.join(t.dir, 'notes.txt')
    writeFileSync(badPeers, 'http://10.0.0.2:7070\nremember the milk\n')
    for (const [argv, code, msg] of [
      [['config', 'set', 'allowedSigners', notSigners], 2, /allowed signers|not a/],
      [['config', 'set', 'allowedSigners', path.join(t.dir, 'nope')], 3, /no such file/],
      [['config', 'set', 'peersFile', badPeers], 2, /notes\.txt:2: "remember" is not an http\(s\) URL/],
      [['config', 'set', 'chunkSize', '3K'], 2, /power of two/],
      [['config', 'set', 'chunkSize', 'lots'], 2, /invalid chunk size/],
      [['config', 'set', 'maxCache', '-1'], 2, /invalid cache budget/],
      [['config', 'set', 'peers', 'http://ok:1,ftp://x'], 2, /"ftp:\/\/x" is not an http\(s\) URL/],
      [['config', 'set', 'peersFile', path.join(t.dir, 'nope')], 3, /no such file/],
      [['config', 'set', 'remotes', '{}'], 2, /vmi remote add/],
      [['config', 'unset', 'remotes'], 2, /vmi remote add/],
      [['config', 'set', 'colour', 'red'], 2, /unknown setting "colour": the settings are chunkSize, maxCache/],
      [['config', 'get', 'colour'], 2, /unknown setting/],
      [['config', 'set', 'maxCache'], 2, /value/],
    ]) {
      const r = exec(argv, {store: t.store})
      assert.is(r.status, code, `${argv.join(' ')}: ${r.stderr}`)
      assert.match(r.stderr, msg, argv.join(' '))
      assert.is(r.stdout, '', argv.join(' '))
      assert.equal(readFileSync(file), before, `${argv.join(' ')} left config.json as it was`)
    }
    assert.equal(readdirSync(path.join(t.store, 'tmp')), [], 'no temporary file left')
    assert.is(exec(['fsck'], {store: t.store}).status, 0)
  } finally {
    t.cleanup()
  }
})

test('precedence: flag over VMI_* over config over default (chunk size of an import)', async () => {
  const t = tmpStore()
  try {
    const src = path.join(t.dir, 'src.raw')
    await makeImage(src, [{kind: 'random', size: 1024 * 1024, seed: 'precedence'}])
    const chunkSizeOf = (ref, argv = [], env = {}) => {
      const r = exec(['import', src, ref, ...argv], {store: t.store, env: {VMI_CHUNK_SIZE: '', ...env}})
      assert.is(r.status, 0, r.stderr)
      return JSON.parse(exec(['inspect', ref, '--json'], {store: t.store}).stdout).chunkSize
    }
    assert.is(chunkSizeOf('p:default'), 128 * 1024)
    assert.is(exec(['config', 'set', 'chunkSize', '64K'], {store: t.store}).status, 0)
    assert.is(chunkSizeOf('p:config'), 64 * 1024)
    assert.is(chunkSizeOf('p:env', [], {VMI_CHUNK_SIZE: '512K'}), 512 * 1024)
    assert.is(chunkSizeOf('p:flag', ['--chunk-size', '1M'], {VMI_CHUNK_SIZE: '512K'}), 1024 * 1024)
  } finally {
    t.cleanup()
  }
})

/** The README's settings table: [{name, key, env, flags}] with backticks stripped. */
function readmeSettings() {
  const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8')
  const section = readme.split(/^### Settings$/m)[1]?.split(/^#/m)[0]
  assert.ok(section, 'README has a "### Settings" section')
  const rows = section.split('\n').filter((l) => l.startsWith('| ') && !l.startsWith('| setting') && !l.startsWith('| ---'))
  return rows.map((l) => {
    const [name, key, env, flags] = l.split(' | ').map((c) => c.replace(/^\| /, '').replaceAll('`', '').trim())
    const none = (c) => (c === '—' ? [] : c)
    return {name, key: key === '—' ? undefined : key, env: [none(env)].flat().flatMap((e) => e.split(', ')).filter(Boolean), flags: none(flags) === flags ? flags.split('; ') : []}
  })
}

test('the README settings table lists exactly the settings the code knows', () => {
  const readme = readmeSettings()
  const code = SETTINGS.map((s) => ({name: s.name, key: s.key, env: s.env, flags: s.flags}))
  assert.equal(readme, code)
})

test('every VMI_* (and AWS_*) variable the source reads is a known setting', () => {
  const known = new Set(SETTINGS.flatMap((s) => s.env))
  const read = new Set()
  const src = path.join(ROOT, 'src')
  for (const rel of readdirSync(src, {recursive: true})) {
    if (!rel.endsWith('.ts')) continue
    const text = readFileSync(path.join(src, rel), 'utf8')
    for (const m of text.matchAll(/(?:env\.|env: ')(VMI_[A-Z0-9_]+|XDG_[A-Z_]+|AWS_[A-Z0-9_]+)/g)) read.add(m[1])
  }
  assert.ok(read.has('VMI_HOME') && read.has('VMI_PEER_TIMEOUT_MS'), `the scan finds env reads: ${[...read]}`)
  for (const v of read) assert.ok(known.has(v), `${v} is read in src/ but missing from SETTINGS (and so from the README)`)
  for (const v of known) assert.ok(read.has(v), `${v} is in SETTINGS but nothing in src/ reads it`)
})

test('every flag and command a setting names exists', () => {
  const manifest = JSON.parse(readFileSync(path.join(ROOT, 'oclif.manifest.json'), 'utf8'))
  for (const s of SETTINGS)
    for (const spec of s.flags) {
      const m = /^(.*) \((.*)\)$/.exec(spec)
      assert.ok(m, spec)
      const ids = m[2] === 'every command' ? Object.keys(manifest.commands) : m[2].split(', ')
      for (const id of ids) {
        const cmd = manifest.commands[id]
        assert.ok(cmd, `${s.name}: no command ${id}`)
        if (m[1] === 'REMOTE argument') assert.ok(cmd.args.remote, `${id} has a REMOTE argument`)
        else for (const f of m[1].split(', ')) assert.ok(cmd.flags[f.replace(/^--/, '')], `${s.name}: ${id} has no ${f}`)
      }
    }
})

test.run()
