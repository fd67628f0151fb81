// Shell completion (@oclif/plugin-autocomplete) and the man pages
// scripts/man.mjs writes from the commands' help, through the real CLI,
// bash, groff and man.
import {test} from 'uvu'
import * as assert from 'uvu/assert'
import {spawnSync} from 'node:child_process'
import {existsSync, readFileSync} from 'node:fs'
import path from 'node:path'
import {exec, ROOT, tmpDir} from '../helpers/index.js'

const manifest = JSON.parse(readFileSync(path.join(ROOT, 'oclif.manifest.json'), 'utf8'))
const ids = Object.keys(manifest.commands).filter((id) => !manifest.commands[id].hidden)

test('`vmi autocomplete script bash` prints a script bash sources, and it completes commands, subcommands and flags', () => {
  const d = tmpDir()
  try {
    const env = {XDG_CACHE_HOME: d.dir}
    const refresh = exec(['autocomplete', '--refresh-cache'], {env})
    assert.is(refresh.status, 0, refresh.stderr)
    const script = exec(['autocomplete', 'script', 'bash'], {env})
    assert.is(script.status, 0, script.stderr)
    assert.match(script.stdout, /source/)
    const complete = (line) => {
      const words = line.split(' ')
      const sh = `eval "$VMI_SCRIPT" || exit 9
COMP_WORDS=(${words.map((w) => `'${w}'`).join(' ')}); COMP_CWORD=${words.length - 1}; COMP_LINE='${line}'; COMP_POINT=${line.length}
_vmi_autocomplete; printf '%s\\n' "\${COMPREPLY[@]}" | sort -u`
      const r = spawnSync('bash', ['-c', sh], {env: {...process.env, VMI_SCRIPT: script.stdout}, encoding: 'utf8'})
      assert.is(r.status, 0, `bash: ${r.stderr}`)
      return r.stdout.trim().split('\n')
    }
    assert.equal(complete('vmi con'), ['config'])
    assert.equal(complete('vmi config s'), ['set'])
    assert.equal(complete('vmi status --pr'), ['--probe-timeout'])
    assert.ok(complete('vmi ').includes('status'), 'every command is offered')
  } finally {
    d.cleanup()
  }
})

test('the build wrote man/vmi.1 and one page per command', () => {
  assert.ok(existsSync(path.join(ROOT, 'man', 'man1', 'vmi.1')))
  for (const id of ids) assert.ok(existsSync(path.join(ROOT, 'man', 'man1', `vmi-${id.replaceAll(':', '-')}.1`)), id)
})

test('groff renders every page without a warning, and man shows each command its flags', () => {
  const pages = ['vmi', ...ids.map((id) => `vmi-${id.replaceAll(':', '-')}`)]
  for (const p of pages) {
    const file = path.join(ROOT, 'man', 'man1', `${p}.1`)
    const g = spawnSync('groff', ['-man', '-Tutf8', '-ww', '-z', file], {encoding: 'utf8'})
    assert.is(g.status, 0, `${p}: ${g.stderr}`)
    assert.is(g.stderr, '', `${p}: ${g.stderr}`)
  }
  const man = (file) => {
    const r = spawnSync('man', ['-l', file], {encoding: 'utf8', env: {...process.env, MANWIDTH: '200', MAN_KEEP_FORMATTING: '', PAGER: 'cat'}})
    assert.is(r.status, 0, r.stderr)
    return r.stdout
  }
  for (const id of ids) {
    const text = man(path.join(ROOT, 'man', 'man1', `vmi-${id.replaceAll(':', '-')}.1`))
    const c = manifest.commands[id]
    for (const h of ['NAME', 'SYNOPSIS', 'DESCRIPTION', 'EXIT STATUS']) assert.match(text, new RegExp(`^${h}$`, 'm'), `${id}: ${h}`)
    assert.ok(text.replace(/\s+/g, ' ').includes(c.summary.replace(/\s+/g, ' ')), `${id}: its summary`)
    for (const f of Object.values(c.flags).filter((f) => !f.hidden)) assert.ok(text.includes(`--${f.name}`), `${id}: --${f.name}`)
  }
  const main = man(path.join(ROOT, 'man', 'man1', 'vmi.1')).replace(/\s+/g, ' ')
  for (const id of ids) assert.ok(main.includes(`vmi ${id.replaceAll(':', ' ')}`), `vmi(1) lists ${id}`)
  assert.match(main, /EXIT STATUS 0 success/)
  assert.match(main, / 10 push without a token or S3 credentials \(it stops before its first request\), or a remote refused the token/)
  assert.match(main, /VMI_PUSH_TOKEN/)
})

test.run()
