// Random sequences of import / tag / rm / gc against a model of what the store
// should hold: after every step the refs match the model; after gc the
// objects are exactly the live chunks; fsck is clean and every export equals
// the model's bytes. Runs in-process on the library for speed (many steps).
import {test} from 'uvu'
import * as assert from 'uvu/assert'
import {promises as fsp} from 'node:fs'
import path from 'node:path'
import {exportImage} from '../../dist/store/export.js'
import {fsck} from '../../dist/store/fsck.js'
import {gc} from '../../dist/store/gc.js'
import {hash} from '../../dist/store/hash.js'
import {removeImages, tagImage} from '../../dist/store/images.js'
import {importImage} from '../../dist/store/import.js'
import {LocalStore} from '../../dist/store/local-store.js'
import {seededBytes, tmpStore} from '../helpers/index.js'

const CHUNK = 64 * 1024

function prng(seed) {
  let s = seed >>> 0
  return () => {
    s = (s + 0x6d2b79f5) >>> 0
    let t = s
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

// 8 blocks; an image is a sequence of block numbers (-1 = zeros), so images share chunks.
const BLOCKS = Array.from({length: 8}, (_, i) => seededBytes(`blk${i}`, CHUNK))
function contentOf(seq) {
  return Buffer.concat(seq.map((b) => (b < 0 ? Buffer.alloc(CHUNK) : BLOCKS[b])))
}

for (const seed of [1, 2, 3, 4]) {
  test(`model-based sequence, seed ${seed}`, async () => {
    const rnd = prng(seed)
    const pick = (arr) => arr[Math.floor(rnd() * arr.length)]
    const t = tmpStore()
    try {
      const store = await LocalStore.open(t.store)
      const model = new Map() // ref → Buffer
      const names = ['a:1', 'a:2', 'b:1', 'c:latest', 'd:x']
      const check = async (afterGc) => {
        const refs = (await store.listRefs()).map((r) => `${r.name}:${r.tag}`).sort()
        assert.equal(refs, [...model.keys()].sort(), 'refs match the model')
        for (const [ref, data] of model) {
          const out = path.join(t.dir, 'out.raw')
          await fsp.rm(out, {force: true})
          await exportImage(store, ref, out)
          assert.ok((await fsp.readFile(out)).equals(data), `export of ${ref} equals the model`)
        }
        if (afterGc) {
          const live = new Set()
          for (const data of model.values())
            for (let o = 0; o < data.length; o += CHUNK) {
              const c = data.subarray(o, o + CHUNK)
              if (c.some((x) => x !== 0)) live.add(hash(c))
            }
          const objects = []
          for await (const id of store.listObjectIds()) objects.push(id)
          assert.equal(objects.sort(), [...live].sort(), 'after gc the objects are exactly the live chunks')
        }
        const f = await fsck(store)
        assert.ok(f.ok, `fsck: ${f.problems.map((p) => p.message).join('; ')}`)
      }
      for (let step = 0; step < 40; step++) {
        const op = rnd()
        if (op < 0.4 || model.size === 0) {
          const seq = Array.from({length: 1 + Math.floor(rnd() * 6)}, () => (rnd() < 0.25 ? -1 : Math.floor(rnd() * 8)))
          const data = contentOf(seq)
          const file = path.join(t.dir, 'in.raw')
          await fsp.writeFile(file, data)
          const ref = pick(names)
          await importImage(store, file, {ref, chunkSize: CHUNK})
          model.set(ref, data)
        } else if (op < 0.6) {
          const src = pick([...model.keys()])
          const dst = pick(names)
          await tagImage(store, src, dst)
          model.set(dst, model.get(src))
        } else if (op < 0.8) {
          const ref = pick([...model.keys()])
          await removeImages(store, [ref])
          model.delete(ref)
        } else {
          await gc(store)
          await check(true)
          continue
        }
        await check(false)
      }
      await gc(store)
      await check(true)
    } finally {
      t.cleanup()
    }
  })
}

test.run()
