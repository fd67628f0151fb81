// The ChunkSource contract (src/peer/source.ts) as a suite of uvu tests, run
// against every source (in the style of ipfs/js-stores' interface tests):
//
//   sourceContract('LocalSource', {
//     create: async (chunks) => ({source, cleanup}),  // holds exactly `chunks` ({id, body})
//     createLying: async (id, wrong) => ({source, cleanup}),  // asked for `id`, its backend answers `wrong`
//     createStalled: async () => ({source, cleanup}),  // a remote that accepts requests and never answers
//     createSlow: async (chunks) => ({source, cleanup}),  // holds `chunks`, answers each request after ~300 ms
//     createDown: async () => ({source, cleanup, downName}),  // a remote nothing listens at
//     createFailing: async () => ({source, cleanup, downName}),  // a remote answering 503 to every chunk request
//   })
//
// Only `create` is required; each other factory adds the tests it enables.
// `downName` is the name the error must carry when it is not source.name
// (a chain names the source that failed).
import {suite} from 'uvu'
import * as assert from 'uvu/assert'
import {randomBytes} from 'node:crypto'
import {hash} from '../../dist/store/hash.js'

/** Generous bound for "rejects promptly": far below any timeout of the sources (15 s idle). */
const PROMPT_MS = 5000

function makeChunks() {
  const bodies = [Buffer.alloc(0), randomBytes(1), randomBytes(4096), randomBytes(200_000), ...Array.from({length: 12}, (_, i) => randomBytes(1000 + i * 3000))]
  return bodies.map((body) => ({id: hash(body), body}))
}

/** Ids that are valid but held by no source. */
function absentIds(n) {
  return Array.from({length: n}, () => hash(randomBytes(32)))
}

const BAD_IDS = ['', 'abc', 'A'.repeat(64), 'g'.repeat(64), 'a'.repeat(63), 'a'.repeat(65), '../' + 'a'.repeat(61), 'ab/' + 'c'.repeat(61), undefined, null, 42]

/** The promise's rejection, or a failure when it resolves or takes longer than `ms`. */
async function rejection(p, what, ms = PROMPT_MS) {
  let timer
  const t0 = performance.now()
  const out = await Promise.race([
    p.then(
      (v) => ({resolved: v}),
      (err) => ({err}),
    ),
    new Promise((r) => (timer = setTimeout(() => r({late: true}), ms))),
  ])
  clearTimeout(timer)
  if (out.late) assert.unreachable(`${what}: neither resolved nor rejected within ${ms} ms`)
  if (!out.err) assert.unreachable(`${what}: resolved (${describe(out.resolved)}) instead of rejecting`)
  return {err: out.err, ms: performance.now() - t0}
}

function describe(v) {
  return Buffer.isBuffer(v) ? `${v.length} bytes` : String(v)
}

async function withSource(factory, ...args) {
  const made = await factory(...args)
  return {made, done: () => made.cleanup?.()}
}

export function sourceContract(label, impl) {
  const test = suite(`ChunkSource contract: ${label}`)

  test('get returns exactly the bytes of each chunk held (a zero-length chunk is an empty Buffer); has says true', async () => {
    const chunks = makeChunks()
    const {made, done} = await withSource(impl.create, chunks)
    try {
      for (const c of chunks) {
        const got = await made.source.get(c.id)
        assert.ok(Buffer.isBuffer(got), `${made.source.name}: chunk of ${c.body.length} bytes: got ${describe(got)}`)
        assert.ok(got.equals(c.body), `${made.source.name}: chunk of ${c.body.length} bytes: wrong bytes (${got.length})`)
        assert.is(await made.source.has(c.id), true, `has(${c.id}) of a chunk held`)
      }
      assert.type(made.source.name, 'string')
      assert.ok(made.source.name.length > 0, 'a source has a name')
    } finally {
      await done()
    }
  })

  test('get of an absent valid id is undefined (no error); has agrees', async () => {
    const chunks = makeChunks().slice(0, 3)
    const {made, done} = await withSource(impl.create, chunks)
    try {
      for (const id of absentIds(3)) {
        assert.is(await made.source.get(id), undefined, `get(${id}) of an absent chunk`)
        assert.is(await made.source.has(id), false, `has(${id}) of an absent chunk`)
      }
      // a chunk held is still served after the misses (a miss leaves no state behind)
      assert.ok((await made.source.get(chunks[2].id)).equals(chunks[2].body))
    } finally {
      await done()
    }
  })

  test('an id that is not 64 lowercase hex digits rejects with a TypeError (get and has)', async () => {
    const {made, done} = await withSource(impl.create, makeChunks().slice(0, 1))
    try {
      for (const id of BAD_IDS) {
        for (const op of ['get', 'has']) {
          let p
          try {
            p = made.source[op](id)
          } catch (err) {
            p = Promise.reject(err) // a synchronous throw is a rejection to the caller of an async method
          }
          const {err} = await rejection(p, `${op}(${JSON.stringify(id)})`)
          assert.instance(err, TypeError, `${op}(${JSON.stringify(id)}): ${err?.message}`)
        }
      }
    } finally {
      await done()
    }
  })

  test('a signal aborted before the call rejects it promptly, for a chunk held and for one absent', async () => {
    const chunks = makeChunks().slice(2, 4)
    const {made, done} = await withSource(impl.create, chunks)
    try {
      const ac = new AbortController()
      ac.abort()
      for (const id of [chunks[0].id, absentIds(1)[0]]) {
        for (const op of ['get', 'has']) await rejection(made.source[op](id, {signal: ac.signal}), `${op} with an aborted signal`)
      }
      // the source is still usable afterwards
      assert.ok((await made.source.get(chunks[1].id)).equals(chunks[1].body))
    } finally {
      await done()
    }
  })

  test('concurrent gets of the same id and of different ids (absent ones among them) each get their own answer', async () => {
    const chunks = makeChunks()
    const absent = absentIds(4)
    const {made, done} = await withSource(impl.create, chunks)
    try {
      const same = chunks[3]
      const asks = [...Array(16).fill(same.id), ...chunks.map((c) => c.id), ...absent, ...chunks.map((c) => c.id).reverse()]
      const want = new Map(chunks.map((c) => [c.id, c.body]))
      const got = await Promise.all(asks.map((id) => made.source.get(id)))
      asks.forEach((id, i) => {
        const w = want.get(id)
        if (!w) assert.is(got[i], undefined, `absent ${id}`)
        else assert.ok(got[i]?.equals(w), `ask ${i} (${id}): ${describe(got[i])}, want ${w.length} bytes`)
      })
      const has = await Promise.all(asks.map((id) => made.source.has(id)))
      asks.forEach((id, i) => assert.is(has[i], want.has(id), `has ${id}`))
    } finally {
      await done()
    }
  })

  if (impl.createLying)
    test('bytes that do not hash to the id are an integrity error, never returned', async () => {
      const [c, other] = makeChunks().slice(2, 4)
      for (const wrong of [other.body, Buffer.concat([c.body, Buffer.from('x')]), c.body.subarray(1)]) {
        const {made, done} = await withSource(impl.createLying, c.id, wrong)
        try {
          const {err} = await rejection(made.source.get(c.id), `get of a chunk served with wrong bytes by ${made.source.name}`)
          // a single source says integrity; a chain names every source it tried and what each did
          const integrity = /INTEGRITY/.test(err.code ?? '') || /wrong bytes/.test(err.message)
          assert.ok(integrity, `not an integrity error: ${err.code} ${err.message}`)
          assert.ok(err.message.includes(c.id), `the error names the chunk: ${err.message}`)
        } finally {
          await done()
        }
      }
    })

  if (impl.createStalled)
    test('a signal aborted while the source does not answer rejects get and has promptly', async () => {
      const {made, done} = await withSource(impl.createStalled)
      try {
        for (const op of ['get', 'has']) {
          const ac = new AbortController()
          setTimeout(() => ac.abort(), 100)
          await rejection(made.source[op](absentIds(1)[0], {signal: ac.signal}), `${op} aborted while waiting`)
          assert.ok(ac.signal.aborted)
        }
      } finally {
        await done()
      }
    })

  if (impl.createSlow)
    test('a get aborted while waiting does not fail other gets of the same chunk', async () => {
      const [c] = makeChunks().slice(3, 4)
      const {made, done} = await withSource(impl.createSlow, [c])
      try {
        const ac = new AbortController()
        // the aborted get first: a source that shares one fetch among the gets of an id must not let its signal end the others'
        const first = made.source.get(c.id, {signal: ac.signal})
        const others = [made.source.get(c.id), made.source.get(c.id, {signal: new AbortController().signal})]
        setTimeout(() => ac.abort(), 50)
        await rejection(first, 'the aborted get')
        for (const got of await Promise.all(others)) assert.ok(got?.equals(c.body), `the other gets: ${describe(got)}`)
      } finally {
        await done()
      }
    })

  const unreachable = (what, factory, rounds) =>
    test(`${what} rejects get and has with an error naming it (not undefined, not false)`, async () => {
      const {made, done} = await withSource(factory)
      try {
        const name = made.downName ?? made.source.name
        // a source that is down twice: the first call finds it down, the second may be refused by its breaker at once
        for (let round = 0; round < rounds; round++) {
          for (const op of ['get', 'has']) {
            const {err} = await rejection(made.source[op](absentIds(1)[0]), `${op} from ${what}`, 15_000)
            assert.ok(err instanceof Error, `an Error: ${err}`)
            assert.ok(err.message.includes(name), `the error names ${name}: ${err.message}`)
          }
        }
      } finally {
        await done()
      }
    })
  if (impl.createDown) unreachable('a source that cannot be reached', impl.createDown, 2)
  if (impl.createFailing) unreachable('a source answering 503', impl.createFailing, 1)

  test.run()
}
