/**
 * How backend failures reach an NBD client: the NBD error value for an
 * errno (or Node error code) thrown by a BlockBackend.
 */
import {EINVAL, EIO, ENOMEM, ENOSPC, ENOTSUP, EOVERFLOW, EPERM, ESHUTDOWN} from './protocol.js'

/** Backend errno (or Node error code) → NBD error value; EIO by default. */
export function errnoToNbd(code: unknown): number {
  switch (code) {
    case 'EPERM':
    case 'EACCES':
    case 'EROFS':
      return EPERM
    case 'EINVAL':
      return EINVAL
    case 'ENOSPC':
    case 'EDQUOT':
    case 'EFBIG':
      return ENOSPC
    case 'ENOMEM':
      return ENOMEM
    case 'EOVERFLOW':
      return EOVERFLOW
    case 'ENOTSUP':
    case 'EOPNOTSUPP':
      return ENOTSUP
    case 'ESHUTDOWN':
      return ESHUTDOWN
    default:
      return EIO
  }
}

/** The NBD error value for an exception thrown by a backend. */
export function errorToNbd(err: unknown): number {
  if (err && typeof err === 'object') {
    const e = err as {errno?: unknown; code?: unknown}
    if (typeof e.errno === 'string') return errnoToNbd(e.errno)
    if (typeof e.code === 'string') return errnoToNbd(e.code)
  }
  return EIO
}

/** The client broke the protocol (bad magic, oversized option or payload): disconnect it. */
export class ProtocolError extends Error {}

/** The connection is closing or closed: nothing more is read from it. */
export class ConnClosed extends Error {}
