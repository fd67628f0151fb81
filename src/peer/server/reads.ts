/**
 * The read routes: objects, manifests, profiles, refs, ref signatures and the ref list,
 * straight from the store. A file in objects/ that is not a regular file,
 * or larger than any chunk, is corrupt and never served.
 */
import {constants as fsConstants, promises as fsp} from 'node:fs'
import type {IncomingMessage, ServerResponse} from 'node:http'
import {pipeline} from 'node:stream/promises'
import {IntegrityError, isErrno} from '../../errors.js'
import {readFileOrUndefined} from '../../util/fs-util.js'
import {objectFileDefect} from '../../store/local-objects.js'
import {onResponseDone} from '../response-done.js'
import {isValidId} from '../../store/layout.js'
import {asksFetchThrough, CACHE_IMMUTABLE, CACHE_REVALIDATE, CONTENT_BINARY, CONTENT_JSON, CONTENT_TEXT, ENCODINGS_HEADER, FETCH_HEADER, IMAGE_HEADER, readsEncodings} from '../wire.js'
import {storedFormOf} from '../../store/object-encoding.js'
import type {ServerContext} from './context.js'
import type {FetchThrough} from './fetch-through.js'
import {HttpFailure, send, type Exchange} from './http-io.js'

/** Chunk bytes held in memory for replies being sent, at most; then chunks stream from their files. */
const MAX_HELD_BYTES = 64 * 1024 * 1024

type Headers = Record<string, string | number>

function notModified(req: IncomingMessage, id: string): boolean {
  const inm = req.headers['if-none-match']
  return typeof inm === 'string' && inm.split(',').some((t) => t.trim().replace(/^W\//, '') === `"${id}"`)
}

function immutableHeaders(id: string, type: string): Record<string, string> {
  return {'Content-Type': type, ETag: `"${id}"`, 'Cache-Control': CACHE_IMMUTABLE}
}

export class ReadHandlers {
  /** Bytes of chunks read into memory for replies still being sent (see getObject). */
  private heldBytes = 0

  constructor(
    private readonly sc: ServerContext,
    private readonly fetchThrough?: FetchThrough,
  ) {}

  async getObject(x: Exchange, id: string): Promise<void> {
    const {store, metrics} = this.sc
    const {req, res} = x
    // the body is the object as stored for a client that reads compressed objects, the chunk for one that does not
    const headers = {...immutableHeaders(id, CONTENT_BINARY), Vary: ENCODINGS_HEADER}
    const asStored = readsEncodings(req.headers[ENCODINGS_HEADER])
    if (notModified(req, id) && (await store.hasObject(id))) {
      metrics.objectRequests.inc({result: 'hit'})
      res.writeHead(304, headers).end()
      return
    }
    // streamed from the file only when it is sent as it is (see sendHeld)
    if (this.heldBytes < MAX_HELD_BYTES || (!asStored && store.objectIsFrameSync(id))) {
      if (this.sendHeld(x, id, headers, asStored)) return
    } else if (await this.serveFile(x, store.layout.objectPath(id), 'objects', headers, () => metrics.objectRequests.inc({result: 'hit'}))) return
    metrics.objectRequests.inc({result: 'miss'})
    if (req.method !== 'GET' || !asksFetchThrough(req.headers[FETCH_HEADER]) || !this.fetchThrough) throw new HttpFailure(404, 'not found')
    const image = req.headers[IMAGE_HEADER]
    const chunk = await this.fetchThrough.serve(id, typeof image === 'string' && isValidId(image) ? image : undefined)
    const data = asStored ? this.sc.sendCompression.outgoing(req, id, storedFormOf(chunk)) : chunk
    this.countWhenSent(res, data.length)
    send(x, 200, data, headers)
  }

  /**
   * A chunk is at most MAX_CHUNK_SIZE: read in synchronous calls and sent
   * in one piece (a file stream costs five thread-pool round trips and
   * stream machinery per chunk). Bytes held this way for clients that do
   * not read are bounded: the HTTP server runs the handler of every request
   * a client pipelines, read or not (serve.test.js has such clients), so
   * past MAX_HELD_BYTES chunks stream from their files again, with
   * backpressure. Not a regular file, or larger than any chunk: corrupt,
   * not served. False when there is no chunk to send. A compressed object
   * asked for by a client that does not read compressed objects is decoded
   * and sent this way whatever is held (it cannot be streamed as it is).
   */
  private sendHeld(x: Exchange, id: string, headers: Headers, asStored: boolean): boolean {
    const {req, res} = x
    let here: Buffer | undefined
    try {
      here = asStored ? this.sc.store.readObjectStored(id) : this.sc.store.readObject(id)
    } catch (err) {
      if (!(err instanceof IntegrityError)) throw err
      this.sc.logger.warn(`not serving chunk ${id}: ${err.message}`)
    }
    if (!here) return false
    if (asStored) here = this.sc.sendCompression.outgoing(req, id, here)
    const held = here.length
    this.heldBytes += held
    onResponseDone(req, res, () => (this.heldBytes -= held))
    this.sc.metrics.objectRequests.inc({result: 'hit'})
    if (req.method !== 'HEAD') this.countWhenSent(res, held)
    send(x, 200, here, headers)
    return true
  }

  /**
   * Count a chunk held in memory as served once the response has gone to the
   * kernel ('finish'), not when it is queued: the server runs the handler of
   * every request a client pipelines, and a client that gives up (a timeout,
   * a reset) leaves responses that are never sent.
   */
  private countWhenSent(res: ServerResponse, bytes: number): void {
    res.once('finish', () => this.sc.metrics.servedBytes.inc({kind: 'objects'}, bytes))
  }

  async getManifest(x: Exchange, id: string): Promise<void> {
    const headers = immutableHeaders(id, CONTENT_JSON)
    if (notModified(x.req, id) && (await this.sc.store.hasManifest(id))) {
      x.res.writeHead(304, headers).end()
      return
    }
    if (!(await this.serveFile(x, this.sc.store.layout.manifestPath(id), 'manifests', headers))) throw new HttpFailure(404, 'not found')
  }

  async getProfile(x: Exchange, id: string): Promise<void> {
    const data = await readFileOrUndefined(this.sc.store.layout.profilePath(id))
    if (data === undefined) throw new HttpFailure(404, 'not found')
    send(x, 200, data, {'Content-Type': CONTENT_JSON, 'Cache-Control': CACHE_REVALIDATE})
  }

  async getRef(x: Exchange, name: string, tag: string): Promise<void> {
    const id = await this.sc.store.readRef({name, tag})
    if (id === undefined) throw new HttpFailure(404, 'not found')
    send(x, 200, id + '\n', {'Content-Type': CONTENT_TEXT, 'Cache-Control': CACHE_REVALIDATE})
  }

  async getRefSignature(x: Exchange, name: string, tag: string): Promise<void> {
    const data = await this.sc.store.readRefSignature({name, tag})
    if (data === undefined) throw new HttpFailure(404, 'not found')
    send(x, 200, data, {'Content-Type': CONTENT_TEXT, 'Cache-Control': CACHE_REVALIDATE})
  }

  async getRefList(x: Exchange): Promise<void> {
    const refs = await this.sc.store.listRefs()
    send(x, 200, JSON.stringify({refs: refs.map((r) => ({name: r.name, tag: r.tag, id: r.id}))}) + '\n', {
      'Content-Type': CONTENT_JSON,
      'Cache-Control': CACHE_REVALIDATE,
    })
  }

  /**
   * A stored file streamed with backpressure: manifests (they can be large),
   * and chunks while many are held for slow clients (see sendHeld).
   * Returns false when absent.
   */
  private async serveFile(x: Exchange, file: string, kind: 'objects' | 'manifests', headers: Headers, onFound?: () => void): Promise<boolean> {
    let fh: fsp.FileHandle
    try {
      // non-blocking: opening a FIFO planted in the store must not wait for a writer
      fh = await fsp.open(file, fsConstants.O_RDONLY | fsConstants.O_NONBLOCK)
    } catch (err) {
      if (isErrno(err, 'ENOENT', 'ENOTDIR')) return false
      throw err
    }
    try {
      const st = await fh.stat()
      // as the store's own reads: an object file that cannot hold a chunk is corrupt, not served
      const defect = kind === 'objects' ? objectFileDefect(file, st) : st.isFile() ? undefined : `${file} is not a regular file`
      if (defect) {
        this.sc.logger.warn(`not serving ${kind === 'objects' ? 'chunk' : 'manifest'} file ${file}: ${defect}`)
        return false
      }
      onFound?.()
      await this.streamFile(x, fh, st.size, kind, headers)
      return true
    } finally {
      await fh.close().catch(() => {})
    }
  }

  private async streamFile(x: Exchange, fh: fsp.FileHandle, size: number, kind: 'objects' | 'manifests', headers: Headers): Promise<void> {
    const {req, res, ctx} = x
    res.statusCode = 200
    for (const [k, v] of Object.entries(headers)) res.setHeader(k, v)
    res.setHeader('Content-Length', size)
    if (req.method === 'HEAD' || size === 0) {
      res.end()
      return
    }
    const stream = fh.createReadStream({start: 0, end: size - 1, highWaterMark: 256 * 1024, autoClose: false})
    // a reply whose connection went away ends the pipeline, so the file is closed
    onResponseDone(req, res, () => {
      if (!res.writableFinished) stream.destroy()
    })
    // counted as it goes, so /metrics is current as soon as a client has the bytes
    stream.on('data', (b: Buffer | string) => {
      ctx.bytes += b.length
      this.sc.metrics.servedBytes.inc({kind}, b.length)
    })
    try {
      await pipeline(stream, res)
    } catch (err) {
      // the client went away mid-body: nothing to answer
      if (!res.destroyed) res.destroy(err as Error)
    }
  }
}
