// The CLI imports @oclif/core through `#oclif`, a one-file ES module bundle
// written by scripts/vendor-oclif.mjs at build time (faster start-up; see
// README.md, "Layout of this repository"). It must be a drop-in: the same exports, the
// same version, and commands built on it must be the classes oclif runs.
import {test} from 'uvu'
import * as assert from 'uvu/assert'
import {createRequire} from 'node:module'
import {readFileSync} from 'node:fs'
import {fileURLToPath} from 'node:url'
import {execFileSync} from 'node:child_process'
import os from 'node:os'
import path from 'node:path'

const root = fileURLToPath(new URL('../..', import.meta.url))
const require = createRequire(path.join(root, 'package.json'))

test('#oclif resolves to the vendored bundle, not to node_modules', () => {
  const resolved = fileURLToPath(import.meta.resolve('#oclif'))
  assert.is(resolved, path.join(root, 'dist/vendor/oclif.js'))
  const head = readFileSync(resolved, 'utf8').slice(0, 200)
  const {version} = require('@oclif/core/package.json')
  assert.ok(head.includes(`@oclif/core ${version} bundled`), `bundle header: ${head.split('\n')[0]}`)
})

test('the bundle exports every name @oclif/core exports', async () => {
  const original = require('@oclif/core')
  const bundled = await import('#oclif')
  const want = Object.keys(original).filter((n) => n !== 'default' && n !== '__esModule').sort()
  assert.ok(want.length > 10, `@oclif/core exports ${want.length} names`)
  assert.equal(Object.keys(bundled).sort(), want)
  for (const n of ['Command', 'Flags', 'Args', 'execute', 'Errors']) assert.type(bundled[n], typeof original[n], n)
})

test('commands extend the bundled Command, and it loads no @oclif/core file from node_modules', () => {
  // a child process, so this test's own require of @oclif/core does not count
  const script = `
    const {Command} = await import('#oclif')
    const {default: Pull} = await import('./dist/commands/pull.js')
    const {createRequire} = await import('node:module')
    const loaded = Object.keys(createRequire(import.meta.url).cache).filter((f) => f.includes('@oclif/core'))
    console.log(JSON.stringify({extends: Pull.prototype instanceof Command, loaded}))`
  const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], {cwd: root, encoding: 'utf8'})
  const r = JSON.parse(out)
  assert.ok(r.extends, 'vmi pull extends the bundled Command')
  assert.equal(r.loaded, [])
})

test('vmi --version and --help run on the bundle', () => {
  const env = {...process.env, FORCE_COLOR: '0', NO_COLOR: '1', VMI_STORE: path.join(os.tmpdir(), 'vmi-vendor-test-none')}
  const version = execFileSync(process.execPath, [path.join(root, 'bin/run.js'), '--version'], {env, encoding: 'utf8'})
  assert.match(version, /^vmi\/\d+\.\d+\.\d+ /)
  const help = execFileSync(process.execPath, [path.join(root, 'bin/run.js'), 'pull', '--help'], {env, encoding: 'utf8'})
  assert.match(help, /USAGE\s+\$ vmi pull IMAGE/)
  assert.match(help, /EXAMPLES/)
})

test.run()
