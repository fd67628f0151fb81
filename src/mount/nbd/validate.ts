/**
 * Which transmission requests reach the backend. Every request passes these
 * checks first (command, flags, read-only, bounds, payload limit), so a
 * BlockBackend only ever sees requests inside the export.
 */
import type {BlockBackend} from './block-backend.js'
import {MAX_PAYLOAD} from './limits.js'
import * as P from './protocol.js'
import type {Session} from './session.js'

/** The NBD error for a request that must not reach the backend, or 0. */
export function requestError(
  type: number,
  flags: number,
  offset: number,
  length: number,
  device: Pick<BlockBackend, 'size' | 'readOnly'>,
  session: Pick<Session, 'structured' | 'metaContext'>,
): number {
  let allowed = P.CMD_FLAG_FUA
  switch (type) {
    case P.CMD_READ:
      if (session.structured) allowed |= P.CMD_FLAG_DF
      break
    case P.CMD_WRITE_ZEROES:
      allowed |= P.CMD_FLAG_NO_HOLE
      break
    case P.CMD_BLOCK_STATUS:
      allowed |= P.CMD_FLAG_REQ_ONE
      break
    case P.CMD_WRITE:
    case P.CMD_FLUSH:
    case P.CMD_TRIM:
    case P.CMD_CACHE:
      break
    default:
      return P.EINVAL
  }
  if (flags & ~allowed) return P.EINVAL
  if (type === P.CMD_FLUSH) return 0
  const writes = type === P.CMD_WRITE || type === P.CMD_WRITE_ZEROES || type === P.CMD_TRIM
  if (writes && device.readOnly) return P.EPERM
  if (offset < 0 || offset + length > device.size) {
    return type === P.CMD_WRITE || type === P.CMD_WRITE_ZEROES ? P.ENOSPC : P.EINVAL
  }
  if (type === P.CMD_READ && length > MAX_PAYLOAD) return P.EINVAL
  if (type === P.CMD_BLOCK_STATUS && (!session.metaContext || length === 0)) return P.EINVAL
  return 0
}
