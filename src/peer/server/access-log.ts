/**
 * The server's log: one record per request answered, and problems (error
 * details, which clients never see beyond a generic 500; chunk files not
 * served). Records go as lines to the sink ServeInit.log gives, in text or
 * JSON (one object a line); the server itself never prints.
 */

export type LogLevel = 'info' | 'warn' | 'error'
export type LogFormat = 'text' | 'json'
export const LOG_FORMATS: readonly LogFormat[] = ['text', 'json']

/** One request, as its log record reports it. */
export interface RequestRecord {
  /** The peer's address. */
  client: string
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

/**
 * A logger writing lines to `sink`. Text: `METHOD PATH STATUS BYTES MSms
 * CLIENT` per request (STATUS is `aborted` when no answer started), the
 * message as it is for a problem. JSON: {time, level, client, method, path,
 * status, bytes, ms} per request, {time, level, msg} for a problem.
 */
export function createLogger(sink: (line: string, level: LogLevel) => void, format: LogFormat = 'text'): ServerLogger {
  if (format === 'json') {
    const emit = (level: LogLevel, fields: object) => sink(JSON.stringify({time: new Date().toISOString(), level, ...fields}), level)
    return {
      request: (r) =>
        emit('info', {client: r.client, method: logSafe(r.method), path: logSafe(r.path), status: r.status, bytes: r.bytes, ms: Math.round(r.ms * 10) / 10}),
      warn: (msg) => emit('warn', {msg}),
      error: (msg) => emit('error', {msg}),
    }
  }
  return {
    request: (r) => sink(`${logSafe(r.method)} ${logSafe(r.path)} ${r.status || 'aborted'} ${r.bytes} ${r.ms.toFixed(1)}ms ${r.client}`, 'info'),
    warn: (msg) => sink(msg, 'warn'),
    error: (msg) => sink(msg, 'error'),
  }
}
