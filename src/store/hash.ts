/**
 * BLAKE3 behind one function. The native `@napi-rs/blake-hash` (several GB/s
 * per core) is used when it loads; `blake3-wasm` is the fallback. Both give
 * identical digests (tested against the official test vectors).
 */
import {createRequire} from 'node:module'

const require = createRequire(import.meta.url)

export type HashBackendName = 'native' | 'wasm'
export type HashFn = (data: Uint8Array) => Buffer

/**
 * The package names to try for the native backend: the platform's own
 * binary package first, then @napi-rs/blake-hash's loader. The loader picks
 * the same package, but on Linux it asks process.report for the C library
 * first, which costs ~5 ms of every command's start (and of every writer
 * thread's); loading the wrong C library's binary just fails, and the next
 * name is tried.
 */
export function nativeCandidates(platform: string = process.platform, arch: string = process.arch): string[] {
  const base = `@napi-rs/blake-hash-${platform}-${arch}`
  const direct =
    platform === 'linux' ? [`${base}-gnu`, `${base}-musl`] : platform === 'win32' ? [`${base}-msvc`] : platform === 'darwin' ? ['@napi-rs/blake-hash-darwin-universal', base] : [base]
  return [...direct, '@napi-rs/blake-hash']
}

function loadNative(): HashFn | undefined {
  for (const name of nativeCandidates()) {
    try {
      const mod = require(name) as {blake3(input: Uint8Array): Buffer}
      const probe = mod.blake3(Buffer.from('abc')).toString('hex')
      if (probe === '6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85') return (data) => mod.blake3(data)
    } catch {
      // not installed for this platform, or not loadable here: try the next
    }
  }
  return undefined
}

function loadWasm(): HashFn {
  const mod = require('blake3-wasm') as {hash(input: Uint8Array): Buffer}
  return (data) => mod.hash(data)
}

const backends = new Map<HashBackendName, HashFn | undefined>()

/** A specific backend, or undefined when it cannot load here. */
export function hashBackend(name: HashBackendName): HashFn | undefined {
  if (!backends.has(name)) backends.set(name, name === 'native' ? loadNative() : loadWasm())
  return backends.get(name)
}

let active: {name: HashBackendName; fn: HashFn} | undefined

function pick(): {name: HashBackendName; fn: HashFn} {
  if (!active) {
    const native = hashBackend('native')
    active = native ? {name: 'native', fn: native} : {name: 'wasm', fn: hashBackend('wasm')!}
  }
  return active
}

/** Name of the backend `hash()` uses. */
export function activeHashBackend(): HashBackendName {
  return pick().name
}

/** BLAKE3-256 of `data`, as 64 lowercase hex characters. */
export function hash(data: Uint8Array): string {
  return pick().fn(data).toString('hex')
}

/**
 * The one check that content matches its address: what `data` hashes to
 * when that is not `id`, else undefined. Every read from the network or a
 * bundle, every upload, and every verified local read goes through this or
 * verifyContent; callers keep their own error (IntegrityError,
 * RemoteIntegrityError, BadBundleError …) naming the store that was wrong.
 */
export function contentMismatch(id: string, data: Uint8Array): string | undefined {
  return digestMismatch(id, hash(data))
}

/** contentMismatch for a digest already computed (a manifest hashed as it streamed). */
export function digestMismatch(id: string, actual: string): string | undefined {
  return actual === id ? undefined : actual
}

/** Throws `fail(actual)` unless `data` hashes to `id`. */
export function verifyContent(id: string, data: Uint8Array, fail: (actual: string) => Error): void {
  const actual = contentMismatch(id, data)
  if (actual !== undefined) throw fail(actual)
}
