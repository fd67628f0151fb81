// ls, ls --all and inspect give an image the same "unique" bytes: one
// function counts them, against every manifest in the store.
import {test} from 'uvu'
import * as assert from 'uvu/assert'
import path from 'node:path'
import {exec, makeImage, tmpStore} from '../helpers/index.js'

const M = 1024 * 1024

function json(argv, store) {
  const r = exec([...argv, '--json'], {store})
  assert.is(r.status, 0, `${argv.join(' ')}: ${r.stderr}`)
  return JSON.parse(r.stdout)
}

test('ls, ls --all and inspect agree on unique bytes when an untagged image shares chunks', async () => {
  const t = tmpStore()
  try {
    const a = path.join(t.dir, 'a.raw')
    const b = path.join(t.dir, 'b.raw')
    await makeImage(a, [{kind: 'random', size: M, seed: 'ls-a'}])
    // b: the first half of a, then its own half
    await makeImage(b, [
      {kind: 'random', size: M / 2, seed: 'ls-a'},
      {kind: 'random', size: M / 2, seed: 'ls-b'},
    ])
    for (const args of [['import', a, 'a:1', '--chunk-size', '64K'], ['import', b, '--chunk-size', '64K']]) assert.is(exec(args, {store: t.store}).status, 0)
    const ls = json(['ls'], t.store).images
    assert.is(ls.length, 1, 'the untagged image is not listed without --all')
    const all = json(['ls', '--all'], t.store).images
    assert.is(all.length, 2)
    const inspected = json(['inspect', 'a:1'], t.store)
    const fromAll = all.find((i) => i.id === inspected.id)
    assert.is(ls[0].uniqueBytes, M / 2, 'half of a:1 is shared with the untagged image')
    assert.is(ls[0].uniqueBytes, inspected.uniqueBytes)
    assert.is(fromAll.uniqueBytes, inspected.uniqueBytes)
    assert.match(exec(['inspect', 'a:1'], {store: t.store}).stdout, /unique:\s+524288 /)
  } finally {
    t.cleanup()
  }
})

test.run()
