// The benchmarks (bench/) are type-checked against vmi's public API: every
// file carries `// @ts-check`, imports vmi only from dist/index.js (never a
// module path inside dist/), and `tsc -p bench/tsconfig.json` passes; so a
// rename in src/ fails the suite, not a benchmark run hours later.
import {test} from 'uvu'
import * as assert from 'uvu/assert'
import {spawnSync} from 'node:child_process'
import {promises as fsp, readdirSync, readFileSync} from 'node:fs'
import path from 'node:path'
import {ROOT, tmpDir} from '../helpers/index.js'

const TSC = path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc')
const benchFiles = ['bench', 'bench/lib'].flatMap((d) =>
  readdirSync(path.join(ROOT, d))
    .filter((f) => f.endsWith('.js'))
    .map((f) => `${d}/${f}`),
)

const tsc = (project) => spawnSync(process.execPath, [TSC, '-p', project], {cwd: ROOT, encoding: 'utf8'})

test('every bench file is checked and reaches vmi only through dist/index.js', () => {
  assert.ok(benchFiles.length > 10, `bench files found: ${benchFiles.length}`)
  for (const f of benchFiles) {
    const text = readFileSync(path.join(ROOT, f), 'utf8')
    const first = text.split('\n').find((l) => !l.startsWith('#!'))
    assert.is(first, '// @ts-check', `${f} starts with // @ts-check`)
    // a module specifier or path.join(…, 'dist', …) naming anything in dist/ but index.js
    const inner = text.match(/['"`][^'"`\n]*\bdist\/(?!index\.js['"`])[\w-]+\/?[\w./-]*\.js['"`]|path\.join\([^)]*'dist',\s*'(?!index\.js')[^']+'/)
    assert.is(inner, null, `${f} names a module inside dist/: ${inner?.[0]}`)
  }
})

test('tsc -p bench/tsconfig.json passes', () => {
  const r = tsc('bench/tsconfig.json')
  assert.is(r.status, 0, r.stdout + r.stderr)
})

test('the check fails when bench uses a name the public API does not export', async () => {
  const {dir, cleanup} = tmpDir()
  try {
    const probe = path.join(dir, 'probe.js')
    const entry = path.relative(dir, path.join(ROOT, 'dist', 'index.js')).split(path.sep).join('/')
    await fsp.writeFile(probe, `// @ts-check\nimport {LocalStore, noSuchExport} from '${entry}'\nexport const x = [LocalStore, noSuchExport]\n`)
    const project = path.join(dir, 'tsconfig.json')
    await fsp.writeFile(project, JSON.stringify({extends: path.join(ROOT, 'bench', 'tsconfig.json'), include: [], files: [probe]}))
    const r = tsc(project)
    assert.is.not(r.status, 0, 'tsc passed a missing export')
    assert.match(r.stdout, /noSuchExport/)
    assert.not.match(r.stdout, /'LocalStore'/)
  } finally {
    cleanup()
  }
})

test.run()
