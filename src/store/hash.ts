/**
 * BLAKE3 behind one function. The native `@napi-rs/blake-hash` (several GB/s
 * per core) is used when it loads; `blake3-wasm` is the fallback. Both give
 * identical digests (tested against the official test vectors).
 */
import {createRequire} from 'node:module'

const require = createRequire(import.meta.url)

export type HashBackendName = 'native' | 'wasm'
export type HashFn = (data: Uint8Array) => Buffer

function loadNative(): HashFn | undefined {
  try {
    const mod = require('@napi-rs/blake-hash') as {blake3(input: Uint8Array): Buffer}
    const probe = mod.blake3(Buffer.from('abc')).toString('hex')
    if (probe !== '6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85') return undefined
    return (data) => mod.blake3(data)
  } catch {
    return undefined
  }
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
