#!/usr/bin/env node
// bundle-commands.mjs - replace each top-level command module that tsc wrote,
// dist/commands/<name>.js, with one ES module holding it and every module of
// dist/ it imports, so that a command's start loads one file instead of some
// sixty (Node 20's ES module loader resolves, reads and links each one).
//
// What stays outside a bundle: packages (node_modules, and `#oclif`, itself a
// bundle: scripts/vendor-oclif.mjs), and the modules a writer thread loads by
// URL (store/object-writer-worker.js and the job modules): those URLs are
// written relative to a directory one level below dist/, which a bundle in
// dist/commands/ is, so they still name the files tsc wrote. Commands of a
// topic (dist/commands/remote/*.js, config/*.js) lie two levels below and are
// left as tsc wrote them.
//
// The rest of dist/ stays as tsc wrote it too: the writer thread, the tests
// and the benchmarks import those modules.
//
// Usage: node scripts/bundle-commands.mjs   (run by `npm run build`, after tsc)
import {readdirSync, renameSync, rmSync, writeFileSync} from 'node:fs'
import path from 'node:path'
import {fileURLToPath} from 'node:url'
import {build} from 'esbuild'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const dir = path.join(root, 'dist', 'commands')
const entries = readdirSync(dir, {withFileTypes: true})
  .filter((e) => e.isFile() && e.name.endsWith('.js'))
  .map((e) => path.join(dir, e.name))
if (entries.length === 0) {
  console.error(`bundle-commands: no command modules in ${dir} (run tsc first)`)
  process.exit(1)
}

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
  writeFileSync(tmp, `// vmi: ${path.relative(root, file)} and the modules of dist/ it imports, bundled by scripts/bundle-commands.mjs\n` + result.outputFiles[0].text)
  renameSync(tmp, file)
  // tsc's source map describes the module it wrote, not the bundle
  rmSync(`${file}.map`, {force: true})
}
