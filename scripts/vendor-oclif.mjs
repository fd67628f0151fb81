#!/usr/bin/env node
// vendor-oclif.mjs - bundle @oclif/core into one ES module, dist/vendor/oclif.js,
// which the CLI imports as `#oclif` (package.json "imports").
//
// Why: @oclif/core is ~250 CommonJS files that Node loads one by one on every
// command (~100 ms here, before any work starts); the bundle takes ~35 ms off
// every command (README.md, "Layout of this repository"). A CommonJS bundle is
// slower than no bundle: Node lexes a whole CommonJS file for named exports
// when an ES module imports it.
//
// Usage: node scripts/vendor-oclif.mjs [OUTFILE]   (run by `npm run build`)
import {createRequire} from 'node:module'
import {mkdirSync, writeFileSync, renameSync} from 'node:fs'
import path from 'node:path'
import {fileURLToPath} from 'node:url'
import {build} from 'esbuild'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const out = path.resolve(process.argv[2] ?? path.join(root, 'dist/vendor/oclif.js'))
const require = createRequire(path.join(root, 'package.json'))

// every named export of @oclif/core, so the bundle is a drop-in for it
const names = Object.keys(require('@oclif/core')).filter((n) => n !== 'default' && n !== '__esModule')
if (!names.includes('execute') || !names.includes('Command')) {
  console.error(`vendor-oclif: @oclif/core exports look wrong (${names.join(', ')})`)
  process.exit(1)
}
const entry = [`import * as core from '@oclif/core'`, `export const {${names.join(', ')}} = core`].join('\n')

const result = await build({
  stdin: {contents: entry, resolveDir: root, sourcefile: 'oclif-entry.js', loader: 'js'},
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  // oclif loads these only to run TypeScript sources in development, never in this CLI
  external: ['typescript', 'ts-node'],
  // CommonJS code inside the bundle calls require() for Node's built-ins, and
  // names __dirname as a fallback where no root is given (vmi always gives one)
  banner: {
    js: [
      `import {createRequire as __vmiCreateRequire} from 'node:module'`,
      `import {fileURLToPath as __vmiFileURLToPath} from 'node:url'`,
      `const require = __vmiCreateRequire(import.meta.url)`,
      `const __filename = __vmiFileURLToPath(import.meta.url)`,
      `const __dirname = __filename.slice(0, __filename.lastIndexOf('/'))`,
    ].join(';\n'),
  },
  minifyWhitespace: true,
  minifySyntax: true,
  legalComments: 'none',
  write: false,
  logLevel: 'warning',
})
const {version} = require('@oclif/core/package.json')
mkdirSync(path.dirname(out), {recursive: true})
const tmp = `${out}.${process.pid}.tmp`
writeFileSync(tmp, `// @oclif/core ${version} bundled by scripts/vendor-oclif.mjs (MIT, see node_modules/@oclif/core/LICENSE)\n` + result.outputFiles[0].text)
renameSync(tmp, out)
