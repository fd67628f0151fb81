// LocalStore.presentObjectsSync: which of many ids the store holds, with one
// listing of objects/ so that ids in shards that do not exist cost no stat.
import {test} from 'uvu'
import * as assert from 'uvu/assert'
import {randomBytes} from 'node:crypto'
import {mkdtempSync, rmSync, mkdirSync, writeFileSync} from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {LocalStore} from '../../dist/store/local-store.js'
import {hash} from '../../dist/store/hash.js'

/** A fresh store in a temporary directory, removed afterwards. */
async function withStore(fn) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'vmi-present-'))
  try {
    await fn(await LocalStore.open(path.join(dir, 'store')))
  } finally {
    rmSync(dir, {recursive: true, force: true})
  }
}

/** Counts the store's single-object lookups from now on. */
function countLookups(store) {
  let n = 0
  const has = store.hasObjectSync.bind(store)
  store.hasObjectSync = (id) => (n++, has(id))
  return () => n
}

test('an empty store holds none of them, with or without objects/', () =>
  withStore(async (store) => {
    const ids = Array.from({length: 50}, () => hash(randomBytes(64)))
    const lookups = countLookups(store)
    assert.is(store.presentObjectsSync(ids).size, 0)
    assert.is(lookups(), 0, 'no shard exists, so no id is looked up')
    rmSync(store.layout.objectsDir, {recursive: true, force: true})
    assert.is(store.presentObjectsSync(ids).size, 0)
  }),
)

test('finds stored objects, not their shard neighbours nor ids in other shards', () =>
  withStore(async (store) => {
    const stored = []
    for (let i = 0; i < 20; i++) {
      const data = randomBytes(100)
      const id = hash(data)
      await store.putObject(id, data)
      stored.push(id)
    }
    // same shard as a stored object, but absent
    const neighbour = stored[0].slice(0, 2) + 'f'.repeat(62)
    const shards = new Set(stored.map((id) => id.slice(0, 2)))
    // a shard directory that exists but is empty, and an id in it
    const emptyShard = Array.from({length: 256}, (_, i) => i.toString(16).padStart(2, '0')).find((s) => !shards.has(s))
    mkdirSync(path.join(store.layout.objectsDir, emptyShard), {recursive: true})
    shards.add(emptyShard)
    const inEmpty = emptyShard + 'e'.repeat(62)
    const others = Array.from({length: 30}, () => hash(randomBytes(64))).filter((id) => !stored.includes(id))
    const lookups = countLookups(store)
    const asked = [...others, neighbour, inEmpty, ...stored]
    const got = store.presentObjectsSync(asked)
    assert.is(lookups(), asked.filter((id) => shards.has(id.slice(0, 2))).length, 'only ids in existing shards are looked up')
    assert.equal([...got].sort(), [...stored].sort())
    for (const id of [...others, neighbour, inEmpty]) assert.is(got.has(id), store.hasObjectSync(id))
  }),
)

test('a store whose objects/ is not a directory fails loudly', () =>
  withStore(async (store) => {
    rmSync(store.layout.objectsDir, {recursive: true, force: true})
    writeFileSync(store.layout.objectsDir, 'not a directory')
    assert.throws(() => store.presentObjectsSync([hash(Buffer.from('x'))]), /ENOTDIR/)
  }),
)

test.run()
