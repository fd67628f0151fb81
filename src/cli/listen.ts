/** The --listen address of serve and mount: one wording for an address that cannot be listened on. */
import {UsageError} from '../errors.js'

const REASONS: Record<string, string> = {
  EADDRINUSE: 'the address is in use',
  EADDRNOTAVAIL: 'the address is not on this host',
  EACCES: 'permission denied (ports below 1024 need root)',
}

/** The error for a failed listen on `spec` (exit 2, like any unusable flag value); undefined for other errors. */
export function listenError(err: unknown, spec: string): UsageError | undefined {
  const e = err as NodeJS.ErrnoException | undefined
  if (!e?.code || !(e.code in REASONS) || (e.syscall !== 'listen' && e.syscall !== 'bind')) return undefined
  return new UsageError(`cannot listen on ${spec}: ${REASONS[e.code]} (${e.code})`, {cause: err, data: {listen: spec, errno: e.code}})
}
