// Each top-level command is one ES module holding the modules of dist/ it
// imports (scripts/bundle-commands.mjs), so that a command's start loads one
// file; the writer thread still loads the modules tsc wrote, by URL, and a job
// run on the caller's own thread runs the bundle's copy of its module.
import {test} from 'uvu'
import * as assert from 'uvu/assert'
import {spawnSync} from 'node:child_process'
import {mkdtempSync, readdirSync, rmSync, writeFileSync} from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {fileURLToPath, pathToFileURL} from 'node:url'
import {CallerThreadJobs} from '../../dist/store/job-runner.js'
import {LocalStore} from '../../dist/store/local-store.js'

const root = fileURLToPath(new URL('../..', import.meta.url))
const dist = path.join(root, 'dist')

/** The modules of dist/ that importing `file` resolves, as paths relative to dist/ (a child process with a resolve hook). */
function distModulesLoadedBy(file) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'vmi-bundle-test-'))
  try {
    const hooks = path.join(dir, 'hooks.mjs')
    writeFileSync(hooks, `export async function resolve(s, c, next) { const r = await next(s, c); if (r.url.startsWith('file:')) process.stderr.write('RESOLVED ' + r.url + '\\n'); return r }\n`)
    const script = `import {register} from 'node:module'; register(${JSON.stringify(pathToFileURL(hooks).href)}); await import(${JSON.stringify(pathToFileURL(file).href)})`
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], {cwd: root, encoding: 'utf8', stdio: ['ignore', 'ignore', 'pipe']})
    if (r.status !== 0) throw new Error(`importing ${file} failed: ${r.stderr}`)
    return r.stderr
      .split('\n')
      .filter((l) => l.startsWith('RESOLVED '))
      .map((l) => fileURLToPath(l.slice('RESOLVED '.length)))
      .filter((f) => f.startsWith(dist + path.sep))
      .map((f) => path.relative(dist, f))
  } finally {
    rmSync(dir, {recursive: true, force: true})
  }
}

test('every top-level command loads no module of dist/ but itself and the oclif bundle', () => {
  const commands = readdirSync(path.join(dist, 'commands'), {withFileTypes: true}).filter((e) => e.isFile() && e.name.endsWith('.js'))
  assert.ok(commands.length >= 15, `${commands.length} top-level commands`)
  for (const c of commands) {
    const own = path.join('commands', c.name)
    const loaded = distModulesLoadedBy(path.join(dist, own))
    assert.equal(loaded.filter((m) => m !== own && m !== path.join('vendor', 'oclif.js')).sort(), [], `vmi ${c.name.slice(0, -3)} loads other modules of dist/`)
  }
})

test('a job run on the caller thread runs its runner, without importing its module by URL', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'vmi-bundle-test-'))
  try {
    const store = await LocalStore.open(dir)
    const jobs = new CallerThreadJobs(store)
    // a module URL that cannot be imported: only the runner can answer
    const job = {module: pathToFileURL(path.join(dir, 'no-such-job.js')).href, runner: async (s, task, report) => (report(task + 1), {root: s.root, twice: task * 2})}
    jobs.preload(job)
    const reports = []
    const r = await jobs.job(job, 21, (p) => reports.push(p), 'a test job')
    assert.equal(r, {root: store.root, twice: 42})
    assert.equal(reports, [22])
    await jobs.close()
  } finally {
    rmSync(dir, {recursive: true, force: true})
  }
})

test.run()
