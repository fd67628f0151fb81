// The layers of docs/ARCHITECTURE.md: every import in src/ points to the same
// layer or one below it.
import {test} from 'uvu'
import * as assert from 'uvu/assert'
import {readFileSync, readdirSync} from 'node:fs'
import path from 'node:path'
import {fileURLToPath} from 'node:url'

const SRC = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'src')

// lower = deeper; a file may import its own layer or a lower one
const RANK = [
  ['errors.ts', 0],
  ['progress.ts', 0],
  ['util/', 1],
  ['security/', 1],
  ['store/', 2],
  ['peer/', 3],
  ['mount/nbd/', 3],
  ['mount/', 4],
  ['cli/', 5],
  ['hooks/', 6],
  ['commands/', 6],
  ['index.ts', 7],
]

function layer(rel) {
  const hit = RANK.find(([prefix]) => rel === prefix || rel.startsWith(prefix))
  assert.ok(hit, `${rel} belongs to no layer of docs/ARCHITECTURE.md`)
  return hit
}

function imports(file) {
  const text = readFileSync(file, 'utf8')
  return [...text.matchAll(/^\s*(?:import|export)\b[^'"]*?from\s+'(\.[^']+)'/gm)].map((m) => m[1])
}

test('every import in src/ points to its own layer or a lower one', () => {
  const wrong = []
  let count = 0
  for (const rel of readdirSync(SRC, {recursive: true})) {
    if (!rel.endsWith('.ts')) continue
    const [fromLayer, fromRank] = layer(rel)
    for (const spec of imports(path.join(SRC, rel))) {
      count++
      const target = path.relative(SRC, path.resolve(SRC, path.dirname(rel), spec)).replace(/\.js$/, '.ts')
      const [toLayer, toRank] = layer(target)
      // the NBD server knows block devices, not images: nothing of mount/ above it, nor of peer/ beside it
      const nbdReachesOut = fromLayer === 'mount/nbd/' && toLayer !== 'mount/nbd/' && toRank >= 2
      if (toRank > fromRank || nbdReachesOut || (fromLayer === 'peer/' && toLayer === 'mount/nbd/')) wrong.push(`${rel} imports ${target}`)
    }
  }
  assert.ok(count > 100, `the scan finds the imports (${count})`)
  assert.equal(wrong, [], wrong.join('\n'))
})

test.run()
