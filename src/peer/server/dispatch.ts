/**
 * From a request to its handler: the route parsed (wire.ts), the method
 * checked against the route's, and any failure turned into its answer.
 */
import {isErrno, StoreBusyError, StoreFullError, StoreReadOnlyError} from '../../errors.js'
import {ALLOWED_METHODS, CACHE_NONE, parseTarget, ROUTE_LABEL} from '../wire.js'
import {logSafe} from './access-log.js'
import type {ServerContext} from './context.js'
import {drainBody, HttpFailure, send, sendFailure, type Exchange} from './http-io.js'
import type {ReadAccess} from './read-access.js'
import type {ReadHandlers} from './reads.js'
import type {PutRoute, UploadHandlers} from './uploads.js'

export class Dispatcher {
  constructor(
    private readonly sc: ServerContext,
    private readonly reads: ReadHandlers,
    private readonly uploads: UploadHandlers,
    /** Read authorization: checked before anything else, for every route (none: anyone may read). */
    private readonly access?: ReadAccess,
  ) {}

  /** `healthOnly`: the separate health listener, which answers /healthz and /metrics to anyone and nothing else. */
  async dispatch(x: Exchange, healthOnly = false): Promise<void> {
    const method = x.req.method ?? ''
    if (!healthOnly) this.access?.check(x.req)
    const parsed = parseTarget(x.req.url ?? '')
    if ('status' in parsed) throw new HttpFailure(parsed.status, parsed.reason)
    const {route} = parsed
    x.ctx.route = ROUTE_LABEL[route.kind]
    if (healthOnly && route.kind !== 'healthz' && route.kind !== 'metrics') throw new HttpFailure(404, 'this listener answers /healthz and /metrics only')
    const methods = ALLOWED_METHODS[route.kind]
    const allow = methods[this.uploads.enabled ? 'write' : 'read']
    if (method === 'PUT' && methods.write.includes('PUT')) {
      if (!this.uploads.enabled) throw new HttpFailure(405, 'this server is read-only (started without a push token)', {Allow: allow})
      return this.uploads.put(x, route as PutRoute)
    }
    if (route.kind === 'batch' && method === 'POST') {
      if (!this.uploads.enabled) throw new HttpFailure(405, 'this server is read-only (started without a push token)', {Allow: allow})
      return this.uploads.postBatch(x)
    }
    if (!allow.split(', ').includes(method)) throw new HttpFailure(405, 'method not allowed', {Allow: allow})
    switch (route.kind) {
      case 'object':
        return this.reads.getObject(x, route.id)
      case 'manifest':
        return this.reads.getManifest(x, route.id)
      case 'profile':
        return this.reads.getProfile(x, route.id)
      case 'ref':
        return this.reads.getRef(x, route.name, route.tag)
      case 'signature':
        return this.reads.getRefSignature(x, route.name, route.tag)
      case 'missing':
        return this.uploads.postMissing(x)
      case 'batch':
        throw new HttpFailure(405, 'method not allowed', {Allow: allow})
      case 'refs':
        return this.reads.getRefList(x)
      case 'healthz':
        return send(x, 200, 'ok\n', {'Cache-Control': CACHE_NONE})
      case 'metrics': {
        const {registry} = this.sc.metrics
        return send(x, 200, await registry.metrics(), {'Content-Type': registry.contentType, 'Cache-Control': CACHE_NONE})
      }
    }
  }

  /**
   * The answer to a request whose handler failed: its HttpFailure, 503 for
   * a busy store, else a generic 500 with the details in the log. Nothing
   * once the answer has started, or the client has gone.
   */
  async answerError(x: Exchange, err: unknown): Promise<void> {
    const {req, res} = x
    const {logger} = this.sc
    if (res.headersSent || res.destroyed) {
      if (!res.destroyed) logger.error(`error after the answer to ${describe(x)} started: ${(err as Error)?.message ?? err}`)
      res.destroy()
      return
    }
    // (req.destroyed is also true once a body was read to its end)
    if (isErrno(err, 'ECONNRESET') || req.socket.destroyed) return void res.destroy()
    let failure: HttpFailure
    if (err instanceof HttpFailure) failure = err
    else if (err instanceof StoreBusyError) failure = new HttpFailure(503, 'store busy (gc running), retry later', {'Retry-After': '5'})
    else if (err instanceof StoreReadOnlyError || err instanceof StoreFullError) {
      // the operator's to fix, and said in words: no stack
      logger.error(`cannot store for ${describe(x)}: ${(err as Error).message}`)
      failure = new HttpFailure(507, `the server's store cannot be written: ${err instanceof StoreFullError ? 'it is full' : 'it is read-only'}`)
    } else {
      logger.error(`internal error on ${describe(x)}: ${(err as Error)?.stack ?? String(err)}`)
      failure = new HttpFailure(500, 'internal error')
    }
    if (!(await drainBody(req))) res.setHeader('Connection', 'close')
    if (!res.destroyed) sendFailure(x, failure)
  }
}

/** Method and target of a request, for a log line. */
export function describe({req}: Exchange): string {
  return `${logSafe(req.method ?? '')} ${logSafe(req.url ?? '')}`
}
