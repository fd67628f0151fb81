#!/usr/bin/env node
// bundle-entries.mjs - replace each entry module that tsc wrote with one ES
// module holding it and every module of dist/ it imports, so that a start
// loads one file instead of some sixty (Node 20's ES module loader resolves,
// reads and links each one). The entries:
//   - each top-level command, dist/commands/<name>.js;
//   - each writer thread's entry: the store's own, store/object-writer-worker.js,
//     and the pull's and push's, peer/writer-thread.js, which holds their jobs
//     (store/writer-thread.ts), so that such a thread imports no job module.
//
// What stays outside a bundle: packages (node_modules, and `#oclif`, itself a
// bundle: scripts/vendor-oclif.mjs), and a module a thread imports by URL
// (a job the thread's entry does not hold). Those URLs, and the thread
// entries' own, are written relative to a directory one level below dist/,
// which every entry here lies in, so they still name the files tsc wrote.
// Commands of a topic (dist/commands/remote/*.js, config/*.js) lie two levels
// below and are left as tsc wrote them.
//
// The rest of dist/ stays as tsc wrote it too: the tests and the benchmarks
// import those modules, and a job module imported by URL loads them.
//
// Usage: node scripts/bundle-entries.mjs   (run by `npm run build`, after tsc)
import {existsSync, readdirSync, renameSync, rmSync, writeFileSync} from 'node:fs'
import path from 'node:path'
import {fileURLToPath} from 'node:url'
import {build} from 'esbuild'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const dir = path.join(root, 'dist', 'commands')
const commands = readdirSync(dir, {withFileTypes: true})
  .filter((e) => e.isFile() && e.name.endsWith('.js'))
  .map((e) => path.join(dir, e.name))
const threads = ['store/object-writer-worker.js', 'peer/writer-thread.js'].map((f) => path.join(root, 'dist', f))
const missing = threads.filter((f) => !existsSync(f))
if (commands.length === 0 || missing.length > 0) {
  console.error(`bundle-entries: ${commands.length === 0 ? `no command modules in ${dir}` : `missing ${missing.join(', ')}`} (run tsc first)`)
  process.exit(1)
}
const entries = [...commands, ...threads]

for (const file of entries) {
  const result = await build({
    entryPoints: [file],
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    packages: 'external',
    external: ['#oclif'],
    // class and function names as written: error kinds and messages use them
    keepNames: true,
    legalComments: 'none',
    write: false,
    logLevel: 'warning',
  })
  const tmp = `${file}.${process.pid}.tmp`
  writeFileSync(tmp, `// vmi: ${path.relative(root, file)} and the modules of dist/ it imports, bundled by scripts/bundle-entries.mjs\n` + result.outputFiles[0].text)
  renameSync(tmp, file)
  // tsc's source map describes the module it wrote, not the bundle
  rmSync(`${file}.map`, {force: true})
}
