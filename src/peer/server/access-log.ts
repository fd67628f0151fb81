/**
 * The server's log: one line per request answered, and error details
 * (clients only ever see a generic 500). Lines go to the sink ServeInit.log
 * gives; the server itself never prints.
 */

/** One request, as its log line reports it. */
export interface RequestRecord {
  method: string
  /** The raw request target. */
  path: string
  /** 0 when the client went away before an answer started. */
  status: number
  /** Body bytes sent. */
  bytes: number
  ms: number
}

export interface ServerLogger {
  request(r: RequestRecord): void
  /** Something served differently than asked (a corrupt file not served). */
  warn(msg: string): void
  error(msg: string): void
}

/** Printable, bounded form of a client-sent string (method, request target) for the log. */
export function logSafe(s: string): string {
  const t = s.length > 200 ? s.slice(0, 200) + '…' : s
  return t.replace(/[^\x21-\x7e]/g, (c) => '\\x' + c.charCodeAt(0).toString(16).padStart(2, '0'))
}

/** A logger writing text lines to `sink`. */
export function createLogger(sink: (line: string) => void): ServerLogger {
  return {
    request: (r) => sink(`${logSafe(r.method)} ${logSafe(r.path)} ${r.status || 'aborted'} ${r.bytes} ${r.ms.toFixed(1)}ms`),
    warn: sink,
    error: sink,
  }
}
