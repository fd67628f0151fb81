/**
 * What this server accepts and promises: the block sizes it advertises, the
 * largest payload, bounds on the handshake, and the per-connection bounds on
 * buffered bytes.
 */

/** Advertised in NBD_INFO_BLOCK_SIZE: any alignment works, 4 KiB is best. */
export const MIN_BLOCK_SIZE = 1
export const PREFERRED_BLOCK_SIZE = 4096
/** Largest READ or WRITE payload (the advertised maximum block size). */
export const MAX_PAYLOAD = 32 << 20
/** Longest option data, and most options, before a client is dropped. */
export const MAX_OPTION_LENGTH = 64 << 10
export const MAX_OPTIONS = 128
/** The id given to base:allocation, the one metadata context. */
export const META_CONTEXT_ID = 1
/** The socket reader buffers at most this much ahead of the request being parsed. */
export const READ_HIGH_WATER = 2 << 20
/** Largest READ answered on the synchronous read path (ReadPath.now). */
export const READ_NOW_MAX = 128 * 1024
/** Most extents in one BLOCK_STATUS reply (spec: SHOULD NOT exceed 2^20). */
export const MAX_EXTENTS = 1 << 16
/** Read replies send all-zero runs of whole blocks of this size, aligned, as holes. */
export const HOLE_BLOCK = 4096
