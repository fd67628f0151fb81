import {test} from 'uvu'
import * as assert from 'uvu/assert'
import {activeHashBackend, contentMismatch, digestMismatch, hash, hashBackend, nativeCandidates, verifyContent} from '../../dist/store/hash.js'
import {execFileSync} from 'node:child_process'
import {skip} from '../helpers/index.js'

// Official BLAKE3 test vectors (BLAKE3-team/BLAKE3 test_vectors.json): input
// is the repeating byte sequence 0..250; the default hash is the first 32
// bytes of the extended output given there.
const VECTORS = {
  0: 'af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262',
  1: '2d3adedff11b61f14c886e35afa036736dcd87a74d27b5c1510225d0f592e213',
  1023: '10108970eeda3eb932baac1428c7a2163b0e924c9a9e25b35bba72b28f70bd11',
  1024: '42214739f095a406f3fc83deb889744ac00df831c10daa55189b5d121c855af7',
  1025: 'd00278ae47eb27b34faecf67b4fe263f82d5412916c1ffd97c8cb7fb814b8444',
  2048: 'e776b6028c7cd22a4d0ba182a8bf62205d2ef576467e838ed6f2529b85fba24a',
  3072: 'b98cb0ff3623be03326b373de6b9095218513e64f1ee2edd2525c7ad1e5cffd2',
  4096: '015094013f57a5277b59d8475c0501042c0b642e531b0a1c8f58d2163229e969',
  5121: '628bd2cb2004694adaab7bbd778a25df25c47b9d4155a55f8fbd79f2fe154cff',
  7169: 'a003fc7a51754a9b3c7fae0367ab3d782dccf28855a03d435f8cfe74605e7817',
  8193: 'bab6c09cb8ce8cf459261398d2e7aef35700bf488116ceb94a36d0f5f1b7bc3b',
  16384: 'f875d6646de28985646f34ee13be9a576fd515f76b5b0a26bb324735041ddde4',
  31744: '62b6960e1a44bcc1eb1a611a8d6235b6b4b78f32e7abc4fb4c6cdcce94895c47',
  102400: 'bc3e3d41a1146b069abffad3c0d44860cf664390afce4d9661f7902e7943e085',
}

function input(len) {
  const b = Buffer.alloc(len)
  for (let i = 0; i < len; i++) b[i] = i % 251
  return b
}

const backends = ['native', 'wasm'].filter((n) => hashBackend(n) !== undefined)

test('the wasm fallback always loads', () => {
  assert.ok(hashBackend('wasm'), 'blake3-wasm must load')
})

for (const name of backends) {
  test(`${name} backend matches the official BLAKE3 test vectors`, () => {
    const fn = hashBackend(name)
    for (const [len, want] of Object.entries(VECTORS)) {
      assert.is(fn(input(Number(len))).toString('hex'), want, `input_len ${len}`)
    }
  })
}

test('native and wasm agree on random inputs of many sizes', () => {
  const native = hashBackend('native')
  if (!native) {
    skip('@napi-rs/blake-hash does not load here; only wasm tested')
    return
  }
  const wasm = hashBackend('wasm')
  for (const len of [0, 7, 64, 65, 1000, 4096, 65536, 262144 + 3, 1 << 20]) {
    const data = Buffer.alloc(len)
    for (let i = 0; i < len; i++) data[i] = (i * 2654435761) >>> 24
    assert.is(native(data).toString('hex'), wasm(data).toString('hex'), `len ${len}`)
  }
})

test('hash() uses the native backend when it loads and returns 64 hex', () => {
  assert.is(activeHashBackend(), hashBackend('native') ? 'native' : 'wasm')
  assert.match(hash(Buffer.from('abc')), /^[0-9a-f]{64}$/)
  assert.is(hash(input(1024)), VECTORS[1024])
})

test('the native backend is looked for by platform package first, the generic loader last', () => {
  assert.equal(nativeCandidates('linux', 'x64'), ['@napi-rs/blake-hash-linux-x64-gnu', '@napi-rs/blake-hash-linux-x64-musl', '@napi-rs/blake-hash'])
  assert.equal(nativeCandidates('win32', 'x64'), ['@napi-rs/blake-hash-win32-x64-msvc', '@napi-rs/blake-hash'])
  assert.equal(nativeCandidates('darwin', 'arm64'), ['@napi-rs/blake-hash-darwin-universal', '@napi-rs/blake-hash-darwin-arm64', '@napi-rs/blake-hash'])
  assert.equal(nativeCandidates('freebsd', 'x64'), ['@napi-rs/blake-hash-freebsd-x64', '@napi-rs/blake-hash'])
})

test('loading the native backend does not ask process.report for the C library (it costs ~5 ms)', () => {
  if (!hashBackend('native')) {
    skip('the native backend does not load here')
    return
  }
  const script = `
    let asked = 0
    const real = process.report.getReport
    process.report.getReport = (...a) => (asked++, real.apply(process.report, a))
    const {activeHashBackend} = await import(${JSON.stringify(new URL('../../dist/store/hash.js', import.meta.url).href)})
    console.log(JSON.stringify({backend: activeHashBackend(), asked}))`
  const r = JSON.parse(execFileSync(process.execPath, ['--input-type=module', '-e', script], {encoding: 'utf8'}))
  assert.equal(r, {backend: 'native', asked: 0})
})

test('verifyContent: content matching its id passes, a mismatch throws the error of the caller, with what it hashes to', () => {
  const data = Buffer.from('chunk bytes')
  const id = hash(data)
  const other = Buffer.from('other bytes')
  assert.is(contentMismatch(id, data), undefined)
  assert.is(contentMismatch(id, other), hash(other))
  assert.is(digestMismatch(id, id), undefined)
  assert.is(digestMismatch(id, hash(other)), hash(other))
  verifyContent(id, data, () => assert.unreachable('no error for matching content'))
  class MyError extends Error {}
  try {
    verifyContent(id, other, (actual) => new MyError(`hashes to ${actual}`))
    assert.unreachable('a mismatch must throw')
  } catch (err) {
    assert.instance(err, MyError)
    assert.is(err.message, `hashes to ${hash(other)}`)
  }
})

test.run()
