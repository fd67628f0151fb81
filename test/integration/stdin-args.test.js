// Piped standard input is never taken for an omitted positional argument
// (oclif does that when stdin is not a TTY): every command with arguments,
// enumerated from the command classes, behaves the same with data on stdin
// as without. vmi reads stdin only where the user wrote `-`.
import {test} from 'uvu'
import * as assert from 'uvu/assert'
import {cpSync, readdirSync, readFileSync, rmSync} from 'node:fs'
import path from 'node:path'
import {pathToFileURL} from 'node:url'
import {exec, makeImage, ROOT, tmpDir} from '../helpers/index.js'

const CREATED = '2024-01-01T00:00:00Z'
const PAYLOADS = ['b\nc\n', 'img:1\n']

/** Every command class under dist/commands: [id, class]. */
async function commandClasses() {
  const base = path.join(ROOT, 'dist', 'commands')
  const out = []
  for (const rel of readdirSync(base, {recursive: true})) {
    if (!rel.endsWith('.js')) continue
    const mod = await import(pathToFileURL(path.join(base, rel)).href)
    out.push([rel.replace(/\.js$/, '').split(path.sep).join(' '), mod.default])
  }
  return out.sort(([a], [b]) => a.localeCompare(b))
}

/**
 * The command line that leaves an argument out: required arguments up to the
 * first optional one are given; a command whose arguments are all required
 * loses its last one. Values come from the argument's name; `extra` keeps a
 * run finite and its output free of times and process ids.
 */
function argvFor(id, cls, work) {
  const image = path.join(work, 'img.raw')
  const value = {
    image: 'img:1',
    file: {import: image, export: path.join(work, 'out.raw'), load: path.join(work, 'bundle.tar')}[id],
    ref: 'new:1',
    overlay: path.join(work, 'overlay'),
    a: 'img:1',
    b: 'img:1',
    source: 'img:1',
    target: 'new:1',
    name: 'origin',
    url: 'http://127.0.0.1:9',
    key: 'maxCache',
    value: '1G',
  }
  const extra = {
    import: ['--created', CREATED, '--chunk-size', '64K'],
    mount: ['--read-only', '--socket', path.join(work, 'nbd.sock'), '--prefetch', 'none', '--exec', 'true'],
    save: ['-o', path.join(work, 'bundle.tar')],
  }
  const entries = Object.entries(cls.args ?? {})
  const firstOptional = entries.findIndex(([, a]) => !a.required)
  const given = firstOptional === -1 ? entries.slice(0, -1) : entries.slice(0, firstOptional)
  const argv = [...id.split(' ')]
  for (const [name] of given) {
    assert.ok(value[name] !== undefined, `no test value for argument "${name}" of vmi ${id}: add one`)
    argv.push(value[name])
  }
  return [...argv, ...(extra[id] ?? []), '-q']
}

test('no command takes piped stdin for an argument left out', async () => {
  const t = tmpDir('vmi-stdin-')
  try {
    const work = path.join(t.dir, 'work')
    const template = path.join(t.dir, 'template')
    const store = path.join(work, 'store')
    await makeImage(path.join(t.dir, 'img.raw'), [{kind: 'random', size: 256 * 1024, seed: 'stdin'}])
    const imp = exec(['import', path.join(t.dir, 'img.raw'), 'img:1', '--created', CREATED, '--chunk-size', '64K'], {store: template})
    assert.is(imp.status, 0, imp.stderr)
    const commands = (await commandClasses()).filter(([, cls]) => Object.keys(cls.args ?? {}).length > 0)
    const ids = commands.map(([id]) => id)
    // the commands the issue names must be among those enumerated
    for (const id of ['import', 'pull', 'push', 'mount', 'commit', 'pin']) assert.ok(ids.includes(id), `${id} not found among ${ids}`)
    // every run starts from the same store at the same path, so messages compare equal
    const run = (argv, input) => {
      rmSync(work, {recursive: true, force: true})
      cpSync(template, store, {recursive: true})
      cpSync(path.join(t.dir, 'img.raw'), path.join(work, 'img.raw'))
      // in the work dir: a file named after stdin data (the bug) must not land in the repository
      const r = exec(argv, {store, input, cwd: work, timeout: 60_000})
      return {status: r.status, stdout: r.stdout, stderr: r.stderr, store: listFilesSync(store)}
    }
    const failures = []
    for (const [id, cls] of commands) {
      const argv = argvFor(id, cls, work)
      const without = run(argv, undefined)
      for (const input of PAYLOADS) {
        const withData = run(argv, input)
        if (JSON.stringify(withData) !== JSON.stringify(without))
          failures.push(`vmi ${argv.join(' ')} with ${JSON.stringify(input)} on stdin: exit ${withData.status} ${JSON.stringify(withData.stderr.trim())}; without: exit ${without.status} ${JSON.stringify(without.stderr.trim())}`)
      }
    }
    assert.ok(failures.length === 0, failures.join('\n'))
  } finally {
    t.cleanup()
  }
})

test('import - still reads the image from stdin, and takes no name from it', async () => {
  const t = tmpDir('vmi-stdin-')
  try {
    const src = path.join(t.dir, 'img.raw')
    await makeImage(src, [{kind: 'random', size: 4 * 1024 * 1024, seed: 'stdin-import'}])
    const store = path.join(t.dir, 'store')
    const byFile = exec(['import', src, '--created', CREATED, '-q'], {store})
    assert.is(byFile.status, 0, byFile.stderr)
    const bytes = readFileSync(src)
    for (let i = 0; i < 3; i++) {
      const r = exec(['import', '-', '--created', CREATED, '-q'], {store: path.join(t.dir, `s${i}`), input: bytes, cwd: t.dir})
      assert.is(r.status, 0, r.stderr.slice(0, 500))
      assert.is(r.stdout, byFile.stdout, 'same id from stdin as from the file')
      const ls = JSON.parse(exec(['ls', '--all', '--json'], {store: path.join(t.dir, `s${i}`)}).stdout)
      assert.equal(ls.images.map((x) => x.refs), [[]], 'no ref was made up from stdin')
    }
  } finally {
    t.cleanup()
  }
})

function listFilesSync(dir) {
  // the store's files except staging and locks, which carry process ids
  return readdirSync(dir, {recursive: true})
    .map(String)
    .filter((p) => !/^(tmp|locks?)(\/|$)/.test(p) && !p.endsWith('.lock'))
    .sort()
}

test.run()
