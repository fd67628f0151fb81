/**
 * An NBD server exporting one BlockBackend over a unix socket or TCP: the
 * listening socket, the set of connections, and shutdown. Written from the
 * NBD protocol specification (doc/proto.md of the NBD project).
 *
 * The layers below, each in its own module: connection.ts (one client from
 * handshake to close), handshake.ts and options.ts (fixed newstyle only),
 * transmission.ts and reads.ts (requests and replies), socket-reader.ts and
 * reply-writer.ts (the socket's two directions), and the wire format in
 * protocol.ts, wire-handshake.ts and wire-transmission.ts. A client breaking
 * the protocol is disconnected; bad requests get error replies; nothing a
 * client sends can throw out of this module.
 */
import fs from 'node:fs'
import net from 'node:net'
import {dirname} from 'node:path'
import {InUseError, UsageError} from '../../errors.js'
import type {BlockBackend} from './block-backend.js'
import {Connection, safeLog, type ConnectionOptions} from './connection.js'
import type {ExportInfo} from './session.js'
import type {NbdTls} from './tls.js'
import type {NbdRequestEvent} from './transmission.js'

export type {NbdRequestEvent, NbdTls}

export interface NbdServerInit {
  socketPath?: string
  host?: string
  port?: number
  /** Export name (default ''); the empty name always selects this export too. */
  exportName?: string
  description?: string
  /** Connections open at once (default 16); more are closed at once. Memory per connection is bounded by maxPendingBytes + 2 MiB. */
  maxConnections?: number
  log?: (line: string) => void
  onRequest?: (ev: NbdRequestEvent) => void
  /** A client must reach transmission within this (default 10 s). */
  handshakeTimeoutMs?: number
  /** Requests processed at once per connection (default 16). */
  maxInFlight?: number
  /** Bytes of write payloads + read replies held per connection (default 64 MiB, at least MAX_PAYLOAD). */
  maxPendingBytes?: number
  /**
   * Adaptive polling, the longest wait in microseconds (default 50; 0 = off).
   * After answering READs synchronously, the connection keeps reading its socket
   * without sleeping for up to this long while requests have been arriving
   * back to back (see SocketReader.poll).
   */
  pollUs?: number
  /**
   * TCP only: require TLS (NBD_OPT_STARTTLS, tls.ts) before any other
   * option; with `clientCa`, also a client certificate signed by it. The
   * address becomes nbds://.
   */
  tls?: NbdTls
}

/** Default for NbdServerInit.pollUs. */
export const DEFAULT_POLL_US = 50

/** In-flight requests get this long to finish at close before their connections are destroyed. */
const CLOSE_TIMEOUT_MS = 5000

export interface NbdServer {
  /** nbd+unix:///NAME?socket=PATH, nbd://HOST:PORT/NAME, or nbds://HOST:PORT/NAME with TLS */
  address: string
  port?: number
  socketPath?: string
  /** Open connections right now. */
  connectionCount(): number
  /** Stop accepting, let in-flight requests finish (≤ 5 s), close every connection. */
  close(): Promise<void>
}

function connectionOptions(init: NbdServerInit): ConnectionOptions {
  return {
    handshakeTimeoutMs: init.handshakeTimeoutMs ?? 10_000,
    maxInFlight: Math.max(1, init.maxInFlight ?? 16),
    pollUs: Math.max(0, Math.min(10_000, init.pollUs ?? DEFAULT_POLL_US)),
    maxPendingBytes: init.maxPendingBytes ?? 64 << 20,
    log: init.log,
    onRequest: init.onRequest,
    tls: init.tls,
  }
}

async function removeStaleSocket(path: string): Promise<void> {
  let st: fs.Stats
  try {
    st = fs.statSync(path)
  } catch {
    // bind() would say EACCES (or ENOENT) for a directory that is missing
    if (!fs.existsSync(dirname(path))) throw new UsageError(`cannot make the socket ${path}: its directory does not exist`)
    return
  }
  if (!st.isSocket()) throw new UsageError(`${path} exists and is not a socket; give another path`)
  const live = await new Promise<boolean>((resolve) => {
    const s = net.connect(path)
    s.once('connect', () => {
      s.destroy()
      resolve(true)
    })
    s.once('error', () => resolve(false))
  })
  if (live) throw new InUseError(`${path} is in use by a running server`)
  fs.rmSync(path, {force: true})
}

function formatAddress(init: NbdServerInit, exportName: string, port?: number): string {
  const name = exportName ? encodeURIComponent(exportName) : ''
  if (init.socketPath) return `nbd+unix:///${name}?socket=${encodeURIComponent(init.socketPath).replace(/%2F/g, '/')}`
  let host = init.host ?? '127.0.0.1'
  if (host.includes(':')) host = `[${host}]`
  return `${init.tls ? 'nbds' : 'nbd'}://${host}:${port}/${name}`
}

function listen(server: net.Server, init: NbdServerInit): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const onError = (e: Error) => reject(e)
    server.once('error', onError)
    const ready = () => {
      server.off('error', onError)
      resolve()
    }
    if (init.socketPath) server.listen(init.socketPath, ready)
    else server.listen({host: init.host ?? '127.0.0.1', port: init.port ?? 0}, ready)
  })
}

/** Stop accepting, let the connections finish their in-flight requests (for a while), then close them all. */
async function closeAll(server: net.Server, all: Connection[], log: (line: string) => void): Promise<void> {
  const stopped = new Promise<void>((resolve) => server.close(() => resolve()))
  for (const c of all) c.shutdown()
  const finished = Promise.all(all.map((c) => c.done))
  let timer: NodeJS.Timeout | undefined
  const timedOut = await Promise.race([
    finished.then(() => false),
    new Promise<boolean>((r) => (timer = setTimeout(() => r(true), CLOSE_TIMEOUT_MS))),
  ])
  clearTimeout(timer)
  if (timedOut) {
    log('nbd: in-flight requests did not finish in 5 s; closing connections')
    for (const c of all) c.destroy()
  }
  await stopped
}

export async function startNbdServer(backend: BlockBackend, init: NbdServerInit = {}): Promise<NbdServer> {
  if (init.tls && init.socketPath) throw new TypeError('NBD over TLS is for TCP (a unix socket is protected by its file permissions)')
  const exp: ExportInfo = {name: init.exportName ?? '', description: init.description ?? ''}
  const maxConnections = init.maxConnections ?? 16
  const connOpts = connectionOptions(init)
  const log = safeLog(init.log)
  const conns = new Set<Connection>()
  let closing = false
  const openCount = () => {
    let n = 0
    for (const c of conns) if (c.open) n++
    return n
  }
  const server = net.createServer({allowHalfOpen: true}, (sock) => {
    const n = openCount()
    if (closing || n >= maxConnections) {
      log(`nbd: refusing connection (${closing ? 'shutting down' : `${n} open, limit ${maxConnections}`})`)
      sock.on('error', () => {})
      sock.destroy()
      return
    }
    const c = new Connection(sock, backend, exp, connOpts)
    conns.add(c)
    void c.done.finally(() => conns.delete(c))
  })
  server.on('error', (e) => log(`nbd: server error: ${e.message}`))

  if (init.socketPath) await removeStaleSocket(init.socketPath)
  await listen(server, init)
  // only this user may connect: whoever can connect reads (and writes) the disk.
  // The umask decides for the moment between listen and this chmod.
  if (init.socketPath) fs.chmodSync(init.socketPath, 0o600)
  const addr = server.address()
  const port = addr && typeof addr === 'object' ? addr.port : undefined
  const address = formatAddress(init, exp.name, port)
  log(`nbd: serving ${backend.size} bytes${backend.readOnly ? ' read-only' : ''} at ${address}`)

  let closed: Promise<void> | undefined
  return {
    address,
    port: init.socketPath ? undefined : port,
    socketPath: init.socketPath,
    connectionCount: openCount,
    close() {
      closed ??= (async () => {
        closing = true
        await closeAll(server, [...conns], log)
        if (init.socketPath) fs.rmSync(init.socketPath, {force: true})
      })()
      return closed
    },
  }
}
