// Each top-level command and each writer thread's entry is one ES module
// holding the modules of dist/ it imports (scripts/bundle-entries.mjs), so
// that a start loads one file; a pull's or push's thread holds its jobs, and
// a job run on the caller's own thread runs the bundle's copy of its module.
import {test} from 'uvu'
import * as assert from 'uvu/assert'
import {spawnSync} from 'node:child_process'
import {mkdtempSync, readdirSync, rmSync, writeFileSync} from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {fileURLToPath, pathToFileURL} from 'node:url'
import {CallerThreadJobs} from '../../dist/store/job-runner.js'
import {LocalStore} from '../../dist/store/local-store.js'
import {hash} from '../../dist/store/hash.js'
import {BULK_RECEIVE} from '../../dist/peer/bulk-receive.js'
import {PUSH_ENCODE} from '../../dist/peer/push-encode.js'

const root = fileURLToPath(new URL('../..', import.meta.url))
const dist = path.join(root, 'dist')

/**
 * Run `script` (an ES module's text; `dir` names a scratch directory) in a
 * child process with a resolve hook: the modules of dist/ it resolves, on
 * any of its threads, as paths relative to dist/, and what it reported on
 * stderr in a line "REPORT <json>".
 */
function runWithResolveHook(script) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'vmi-bundle-test-'))
  try {
    const hooks = path.join(dir, 'hooks.mjs')
    writeFileSync(hooks, `export async function resolve(s, c, next) { const r = await next(s, c); if (r.url.startsWith('file:')) process.stderr.write('RESOLVED ' + r.url + '\\n'); return r }\n`)
    const register = path.join(dir, 'register.mjs')
    writeFileSync(register, `import {register} from 'node:module'; register(${JSON.stringify(pathToFileURL(hooks).href)})\n`)
    const main = path.join(dir, 'main.mjs')
    writeFileSync(main, `const dir = ${JSON.stringify(dir)}\n${script}`)
    // --import: the hook applies to worker threads too
    const r = spawnSync(process.execPath, ['--import', pathToFileURL(register).href, main], {cwd: root, encoding: 'utf8', stdio: ['ignore', 'ignore', 'pipe']})
    if (r.status !== 0) throw new Error(`the script failed: ${r.stderr}`)
    const lines = r.stderr.split('\n')
    const modules = lines
      .filter((l) => l.startsWith('RESOLVED '))
      .map((l) => fileURLToPath(l.slice('RESOLVED '.length)))
      .filter((f) => f.startsWith(dist + path.sep))
      .map((f) => path.relative(dist, f))
    // what the script reported: a line "REPORT <json>"
    const report = lines.find((l) => l.startsWith('REPORT '))
    return {modules, report: report && JSON.parse(report.slice('REPORT '.length))}
  } finally {
    rmSync(dir, {recursive: true, force: true})
  }
}

/** The modules of dist/ that importing `file` resolves. */
function distModulesLoadedBy(file) {
  return runWithResolveHook(`await import(${JSON.stringify(pathToFileURL(file).href)})`).modules
}

/**
 * A writer thread started from `entry` (relative to dist/) over the store at
 * `storeRoot`, sent `messages` (ObjectWriter's; each answered before the next
 * goes; a put's chunk given as `text`): the modules of dist/ resolved, all
 * by the thread (the main thread loads nothing of dist/), and the answers.
 */
function writerThreadRun(entry, storeRoot, messages) {
  const {modules, report} = runWithResolveHook(`
    import {Worker} from 'node:worker_threads'
    const w = new Worker(new URL(${JSON.stringify(pathToFileURL(path.join(dist, entry)).href)}), {workerData: {root: ${JSON.stringify(storeRoot)}, stagingDir: dir}})
    w.on('error', (e) => { console.error(e); process.exit(1) })
    const answers = []
    for (const m of ${JSON.stringify(messages)}) {
      // a put's chunk: given as text, sent as memory
      if (m.text !== undefined) Object.assign(m, {buffer: new TextEncoder().encode(m.text).buffer, length: m.text.length, text: undefined})
      w.postMessage(m, m.buffer ? [m.buffer] : [])
      answers.push(await new Promise((resolve) => w.on('message', function on(r) { if (r.seq === m.seq && !('progress' in r)) { w.off('message', on); resolve(r) } })))
    }
    process.stderr.write('REPORT ' + JSON.stringify(answers) + '\\n')
    await w.terminate()
  `)
  return {modules, answers: report}
}

/** Run `fn` with a new store in a scratch directory, removed afterwards. */
async function withStore(fn) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'vmi-bundle-test-'))
  try {
    return await fn(await LocalStore.open(dir), dir)
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

test('a job run on the caller thread runs its runner, without importing its module by URL', () =>
  withStore(async (store, dir) => {
    const jobs = new CallerThreadJobs(store)
    // a module URL that cannot be imported: only the runner can answer
    const job = {module: pathToFileURL(path.join(dir, 'no-such-job.js')).href, runner: async (s, task, report) => (report(task + 1), {root: s.root, twice: task * 2})}
    jobs.preload(job)
    const reports = []
    const r = await jobs.job(job, 21, (p) => reports.push(p), 'a test job')
    assert.equal(r, {root: store.root, twice: 42})
    assert.equal(reports, [22])
    await jobs.close()
  }),
)

test("the store's writer thread loads its entry alone, and stores a chunk", () =>
  withStore(async (store) => {
    const text = 'a chunk for the writer thread\n'.repeat(100)
    const id = hash(Buffer.from(text))
    const {modules, answers} = writerThreadRun('store/object-writer-worker.js', store.root, [{seq: 1, id, text, verify: true}])
    assert.equal(answers.map((a) => a.ok), ['stored'])
    assert.equal((await store.getObject(id)).toString(), text)
    assert.equal(modules.sort(), ['store/object-writer-worker.js'])
  }),
)

test("a pull's and a push's writer thread loads its entry alone, and runs both jobs by their URLs", () =>
  withStore(async (store) => {
    const chunk = Buffer.from('a chunk to push\n'.repeat(300))
    const id = hash(chunk)
    await store.putObject(id, chunk)
    const {modules, answers} = writerThreadRun('peer/writer-thread.js', store.root, [
      // nothing to fetch: the job answers without connecting
      {seq: 1, op: 'job', module: BULK_RECEIVE.module, task: {url: 'http://127.0.0.1:9/', items: [], options: {}, probe: false}},
      {seq: 2, op: 'job', module: PUSH_ENCODE.module, task: {ids: [id], verify: true, encoding: 'raw'}},
    ])
    assert.equal(answers[0].done, {unanswered: []})
    assert.equal(answers[1].done.objects.map((o) => [Buffer.from(Object.values(o.data)).equals(chunk), o.chunkBytes]), [[true, chunk.length]])
    assert.equal(modules.sort(), ['peer/writer-thread.js'])
  }),
)

test.run()
