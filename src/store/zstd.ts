/**
 * zstd behind two functions. The native `zstd-napi` (an optional dependency
 * that compiles its bundled zstd sources when installed) compresses and
 * decompresses; the pure-JS `fzstd` is the fallback, a decoder only: without
 * the native module vmi still reads compressed objects, and writes chunks raw.
 * Why these two: bench/results/2026-12-06-zstd-choice.md.
 *
 * `VMI_ZSTD=js` forces the fallback (tests use it to run the reader without
 * the native module).
 */
import {createRequire} from 'node:module'

const require = createRequire(import.meta.url)

/** The level every compressed object is written at (zstd's default; see FORMAT.md "Compressed objects"). */
export const ZSTD_LEVEL = 3

export type ZstdBackendName = 'native' | 'js'

interface Binding {
  CCtx: new () => {setParameter(p: number, v: number): void; compress2(dst: Uint8Array, src: Uint8Array): number}
  DCtx: new () => {decompress(dst: Uint8Array, src: Uint8Array): number}
  CParameter: {compressionLevel: number}
  compressBound(n: number): number
  getFrameContentSize(frame: Uint8Array): number | null
}

interface Backend {
  name: ZstdBackendName
  compress?: (raw: Uint8Array) => Buffer
  /** The frame's bytes decoded into a new buffer of exactly `size` bytes; throws when they are not that many. */
  decompress: (frame: Uint8Array, size: number) => Buffer
}

function loadNative(): Backend | undefined {
  if (process.env.VMI_ZSTD === 'js') return undefined
  let b: Binding
  try {
    b = require('zstd-napi/binding') as Binding
  } catch {
    return undefined // not built here (no compiler at install time): the fallback reads, nothing compresses
  }
  // contexts are kept: creating one per call costs more than compressing a small chunk
  const cctx = new b.CCtx()
  cctx.setParameter(b.CParameter.compressionLevel, ZSTD_LEVEL)
  const dctx = new b.DCtx()
  let scratch = Buffer.alloc(0)
  return {
    name: 'native',
    compress(raw) {
      const bound = b.compressBound(raw.length)
      if (scratch.length < bound) scratch = Buffer.allocUnsafe(bound)
      const n = cctx.compress2(scratch, raw)
      return Buffer.from(scratch.subarray(0, n))
    },
    decompress(frame, size) {
      const out = Buffer.allocUnsafe(size)
      const n = dctx.decompress(out, frame) // throws when the output would not fit
      if (n !== size) throw new Error(`decodes to ${n} bytes, not ${size}`)
      return out
    },
  }
}

function loadJs(): Backend {
  const f = require('fzstd') as {decompress(dat: Uint8Array, buf?: Uint8Array): Uint8Array}
  return {
    name: 'js',
    decompress(frame, size) {
      const out = Buffer.allocUnsafe(size)
      const got = f.decompress(frame, out) // writes into `out`; throws when the frame needs more room
      if (got.length !== size) throw new Error(`decodes to ${got.length} bytes, not ${size}`)
      return got.buffer === out.buffer && got.byteOffset === out.byteOffset ? out : Buffer.from(got)
    },
  }
}

let active: Backend | undefined

function pick(): Backend {
  active ??= loadNative() ?? loadJs()
  return active
}

/** Which implementation decodes (and, when native, encodes) here. */
export function zstdBackend(): ZstdBackendName {
  return pick().name
}

/** Whether this process can write compressed objects (the native module loaded). */
export function canCompress(): boolean {
  return pick().compress !== undefined
}

/** One zstd frame of `raw` at ZSTD_LEVEL, with its content size in the header. Only when canCompress(). */
export function zstdCompress(raw: Uint8Array): Buffer {
  const c = pick().compress
  if (!c) throw new Error('zstd compression is not available here (the native zstd-napi module did not load)')
  return c(raw)
}

/**
 * The content size a frame's header states, or undefined when the header
 * is cut, malformed, or does not state one (RFC 8878, 3.1.1.1). Read here,
 * not by the library, so that no decoder is ever asked to allocate more
 * than the caller allows. (The native decoder also refuses a frame whose
 * blocks hold more than the stated size; fzstd stops at the end of the
 * buffer it is given. Either way the bytes are then verified against the id.)
 */
export function frameContentSize(frame: Uint8Array): number | undefined {
  if (frame.length < 6 || frame[0] !== 0x28 || frame[1] !== 0xb5 || frame[2] !== 0x2f || frame[3] !== 0xfd) return undefined
  const fhd = frame[4]
  const fcsFlag = fhd >> 6
  const singleSegment = (fhd >> 5) & 1
  const dictFlag = fhd & 3
  if ((fhd >> 3) & 1) return undefined // reserved bit
  if (fcsFlag === 0 && !singleSegment) return undefined // no content size
  const dictBytes = [0, 1, 2, 4][dictFlag]
  const fcsBytes = [singleSegment ? 1 : 0, 2, 4, 8][fcsFlag]
  const at = 5 + (singleSegment ? 0 : 1) + dictBytes
  if (frame.length < at + fcsBytes) return undefined
  switch (fcsBytes) {
    case 1:
      return frame[at]
    case 2:
      return frame[at] + (frame[at + 1] << 8) + 256
    case 4:
      return (frame[at] | (frame[at + 1] << 8) | (frame[at + 2] << 16)) + frame[at + 3] * 2 ** 24
    default: {
      const lo = (frame[at] | (frame[at + 1] << 8) | (frame[at + 2] << 16)) + frame[at + 3] * 2 ** 24
      const hi = (frame[at + 4] | (frame[at + 5] << 8) | (frame[at + 6] << 16)) + frame[at + 7] * 2 ** 24
      return hi === 0 ? lo : Number.MAX_SAFE_INTEGER
    }
  }
}

/**
 * The bytes of one frame, which must state a content size of at most
 * `maxSize` and decode to exactly that many bytes; throws otherwise
 * (corrupt, cut, a dictionary it does not have, trailing data).
 */
export function zstdDecompress(frame: Uint8Array, maxSize: number): Buffer {
  const size = frameContentSize(frame)
  if (size === undefined) throw new Error('not a zstd frame with its content size')
  if (size > maxSize || size === 0) throw new Error(`a frame of ${size} bytes (1 to ${maxSize} allowed)`)
  return pick().decompress(frame, size)
}
