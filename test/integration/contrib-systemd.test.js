// contrib/vmi-serve.service and vmi-serve.env: the unit's ExecStart, with
// the example environment file substituted the way systemd does it, starts a
// real `vmi serve`; its ExecStartPost readiness loop succeeds once /healthz
// answers (and fails when nothing does); SIGTERM stops it with exit 0; and
// `systemd-analyze verify` accepts the unit.
import {test} from 'uvu'
import * as assert from 'uvu/assert'
import {spawn, spawnSync} from 'node:child_process'
import {chmodSync, readFileSync, writeFileSync} from 'node:fs'
import path from 'node:path'
import {BIN, freePort, ROOT, skip, tmpDir, tmpStore} from '../helpers/index.js'

const UNIT = readFileSync(path.join(ROOT, 'contrib', 'vmi-serve.service'), 'utf8')
const ENV_FILE = readFileSync(path.join(ROOT, 'contrib', 'vmi-serve.env'), 'utf8')

/** The value of a [Service] directive (the last one, as systemd keeps it). */
function directive(name) {
  const lines = UNIT.split('\n').filter((l) => l.startsWith(`${name}=`))
  assert.ok(lines.length > 0, `the unit has ${name}=`)
  return lines.at(-1).slice(name.length + 1)
}

/** VAR=value lines of an environment file (comments and blank lines skipped). */
function parseEnvFile(text) {
  const env = {}
  for (const line of text.split('\n')) {
    const m = /^([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(line.trim())
    if (m) env[m[1]] = m[2]
  }
  return env
}

/**
 * A command line as systemd splits it (systemd.service, "Command lines"):
 * words separated by spaces, '…' and "…" quoting, "$$" for "$", ${VAR} as
 * one word, $VAR alone as a word split on whitespace (none when empty).
 */
function systemdArgv(line, env) {
  const words = []
  let i = 0
  while (i < line.length) {
    while (line[i] === ' ') i++
    if (i >= line.length) break
    let word = ''
    let quoted = false
    const start = i
    while (i < line.length && line[i] !== ' ') {
      const q = line[i]
      if (q === "'" || q === '"') {
        const end = line.indexOf(q, i + 1)
        assert.ok(end > 0, `unterminated quote in ${line}`)
        word += line.slice(i + 1, end)
        quoted = true
        i = end + 1
      } else word += line[i++]
    }
    const raw = line.slice(start, i)
    const bare = /^\$([A-Za-z_][A-Za-z0-9_]*)$/.exec(raw)
    if (bare && !quoted) {
      words.push(...(env[bare[1]] ?? '').split(/\s+/).filter(Boolean))
      continue
    }
    words.push(word.replace(/\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (m, v) => (m === '$$' ? '$' : (env[v] ?? ''))))
  }
  return words
}

/** The unit's environment: Environment= lines, then the environment file over them (as systemd orders them). */
function unitEnv(overrides) {
  const env = {}
  for (const l of UNIT.split('\n')) {
    const m = /^Environment=([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(l)
    if (m) env[m[1]] = m[2]
  }
  return {...env, ...parseEnvFile(ENV_FILE), ...overrides}
}

function runPost(env) {
  const argv = systemdArgv(directive('ExecStartPost'), env)
  assert.is(argv[0], '/bin/sh')
  return spawnSync(argv[0], argv.slice(1), {env: {PATH: process.env.PATH, ...env}, encoding: 'utf8', timeout: 60_000})
}

test('the example environment file sets what the command lines use', () => {
  const env = parseEnvFile(ENV_FILE)
  for (const v of ['VMI_LISTEN', 'VMI_HEALTH_URL']) assert.ok(env[v], `${v} is set`)
  assert.ok('VMI_SERVE_ARGS' in env)
  const argv = systemdArgv(directive('ExecStart'), unitEnv({}))
  assert.equal(argv, ['/usr/local/bin/vmi', 'serve', '--listen', '0.0.0.0:7070', '--allow-anonymous-read'])
  assert.equal(systemdArgv(directive('ExecStart'), unitEnv({VMI_SERVE_ARGS: '--seed  http://s:1 --log'})).slice(4), ['--seed', 'http://s:1', '--log'])
})

test("ExecStart starts vmi serve with the environment file; ExecStartPost waits for /healthz; SIGTERM exits 0", async () => {
  const t = tmpStore()
  const port = await freePort()
  const env = unitEnv({VMI_LISTEN: `127.0.0.1:${port}`, VMI_HEALTH_URL: `http://127.0.0.1:${port}/healthz`, VMI_HOME: t.store, VMI_SERVE_ARGS: '--log'})
  const argv = systemdArgv(directive('ExecStart'), env)
  assert.is(argv[0], '/usr/local/bin/vmi')
  const child = spawn(process.execPath, [BIN, ...argv.slice(1)], {env: {PATH: process.env.PATH, ...env}, stdio: ['ignore', 'pipe', 'pipe']})
  let stderr = ''
  child.stderr.on('data', (d) => (stderr += d))
  const exited = new Promise((r) => child.on('exit', (code, signal) => r({code, signal})))
  try {
    const post = runPost(env)
    assert.is(post.status, 0, `ExecStartPost: ${post.stderr} / serve: ${stderr}`)
    const res = await fetch(`http://127.0.0.1:${port}/healthz`)
    assert.is(res.status, 200)
    assert.is(await res.text(), 'ok\n')
    assert.match(stderr, /GET \/healthz 200/, '--log from VMI_SERVE_ARGS reached vmi serve')
    child.kill('SIGTERM')
    assert.equal(await exited, {code: 0, signal: null})
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL')
    t.cleanup()
  }
})

test('ExecStartPost fails when nothing answers (the unit then fails to start)', async () => {
  const port = await freePort()
  const post = runPost(unitEnv({VMI_HEALTH_URL: `http://127.0.0.1:${port}/healthz`}))
  assert.is.not(post.status, 0)
})

test('systemd-analyze verify accepts the unit', () => {
  if (spawnSync('systemd-analyze', ['--version']).status !== 0) return skip('systemd-analyze is not installed')
  const d = tmpDir()
  try {
    // the installed paths, here: a vmi on PATH and the generated man pages
    const shim = path.join(d.dir, 'vmi')
    writeFileSync(shim, `#!/bin/sh\nexec ${JSON.stringify(process.execPath)} ${JSON.stringify(BIN)} "$@"\n`)
    chmodSync(shim, 0o755)
    const unit = path.join(d.dir, 'vmi-serve.service')
    writeFileSync(unit, UNIT.replaceAll('/usr/local/bin/vmi', shim))
    const r = spawnSync('systemd-analyze', ['verify', unit], {encoding: 'utf8', env: {...process.env, MANPATH: path.join(ROOT, 'man')}})
    assert.is(r.status, 0, r.stderr)
    assert.is(r.stderr.trim(), '', r.stderr)
  } finally {
    d.cleanup()
  }
})

test.run()
