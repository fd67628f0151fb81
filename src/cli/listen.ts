/** The --listen address of serve and mount: one syntax, and one wording for an address that cannot be listened on. */
import {UsageError} from '../errors.js'

export {isLoopbackHost} from '../util/loopback.js'

export interface ListenAddress {
  host: string
  port: number
}

/** `HOST:PORT`, `[v6]:PORT`, or `:PORT` (all interfaces). A bare port is refused with the spelling that works. */
export function parseListen(spec: string): ListenAddress {
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(spec)
  const port = m ? Number(m[3]) : NaN
  if (!m || port > 65535) {
    const hint = /^\d{1,5}$/.test(spec) && Number(spec) <= 65535 ? `: did you mean ":${spec}" (all interfaces) or "127.0.0.1:${spec}"?` : ' (port 0-65535; :PORT for all interfaces; [v6addr]:PORT for IPv6)'
    throw new UsageError(`--listen ${JSON.stringify(spec)} is not HOST:PORT${hint}`)
  }
  return {host: m[1] ?? (m[2] === '' ? '0.0.0.0' : m[2]), port}
}

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

