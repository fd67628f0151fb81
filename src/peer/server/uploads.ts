/**
 * The push side: the batch missing-check and the uploads (PUT of objects,
 * manifests, profiles, refs and ref signatures), which need the push token.
 *
 * Uploads are bounded (wire.ts limits), re-hashed and refused on mismatch.
 * Each write holds a short `write` lock so gc cannot run while it writes;
 * objects uploaded by a push stay unreferenced until their manifest and ref
 * arrive, so a gc run on this store *between* the requests of a push can
 * still remove them: the manifest PUT then answers 409 and the pusher has to
 * upload them again.
 */
import {timingSafeEqual} from 'node:crypto'
import type {IncomingMessage} from 'node:http'
import {BadManifestError} from '../../errors.js'
import {isAllZero} from '../../store/chunker.js'
import {contentMismatch} from '../../store/hash.js'
import {isValidId} from '../../store/layout.js'
import {withLock} from '../../store/lock.js'
import {decodeManifest, uniqueChunkIds} from '../../store/manifest.js'
import {mapLimit} from '../../util/map-limit.js'
import {decodeProfile} from '../../store/profile.js'
import {parseRefSignature} from '../../store/ref-signature.js'
import {formatRef} from '../../store/ref.js'
import {
  BEARER_CHALLENGE,
  CACHE_NONE,
  CONTENT_JSON,
  MAX_MANIFEST_BYTES,
  MAX_MISSING_BODY,
  MAX_MISSING_IDS,
  MAX_OBJECT_BYTES,
  MAX_PROFILE_BYTES,
  MAX_REF_BYTES,
  MAX_REF_SIGNATURE_BYTES,
  parseBearer,
  type Route,
} from '../wire.js'
import type {ServerContext} from './context.js'
import {HttpFailure, readBody, send, type Exchange} from './http-io.js'
import {tokenDigest} from './read-access.js'

/** Longest an upload waits for a gc to let go of the store before answering 503. */
const LOCK_WAIT_MS = 30_000

export type PutRoute = Extract<Route, {kind: 'object' | 'manifest' | 'profile' | 'ref' | 'signature'}>

export class UploadHandlers {
  private readonly tokenDigest?: Buffer

  constructor(
    private readonly sc: ServerContext,
    pushToken: string | undefined,
  ) {
    if (pushToken !== undefined && pushToken.length === 0) throw new TypeError('the push token is empty')
    this.tokenDigest = pushToken === undefined ? undefined : tokenDigest(pushToken)
  }

  /** Whether uploads are accepted at all (a push token was given). */
  get enabled(): boolean {
    return this.tokenDigest !== undefined
  }

  /** A PUT, token checked; the outcome counted in vmi_uploads_total. */
  async put(x: Exchange, route: PutRoute): Promise<void> {
    const {uploads} = this.sc.metrics
    try {
      this.checkToken(x.req)
    } catch (err) {
      uploads.inc({result: 'denied'})
      throw err
    }
    try {
      if (route.kind === 'object') return await this.putObject(x, route.id)
      if (route.kind === 'manifest') return await this.putManifest(x, route.id)
      if (route.kind === 'profile') return await this.putProfile(x, route.id)
      if (route.kind === 'signature') return await this.putRefSignature(x, route.name, route.tag)
      return await this.putRef(x, route.name, route.tag)
    } catch (err) {
      const status = err instanceof HttpFailure ? err.status : 0
      uploads.inc({result: status === 413 ? 'too_large' : status === 409 ? 'conflict' : status === 400 ? 'invalid' : 'error'})
      throw err
    }
  }

  /** POST of the missing-check: which of the ids this store lacks. */
  async postMissing(x: Exchange): Promise<void> {
    const body = await readBody(x.req, MAX_MISSING_BODY)
    let ids: unknown
    try {
      ids = (JSON.parse(body.toString('utf8')) as {ids?: unknown})?.ids
    } catch {
      throw new HttpFailure(400, 'body is not JSON')
    }
    if (!Array.isArray(ids)) throw new HttpFailure(400, 'body must be {"ids":[...]}')
    if (ids.length > MAX_MISSING_IDS) throw new HttpFailure(413, `at most ${MAX_MISSING_IDS} ids per request`)
    if (!ids.every(isValidId)) throw new HttpFailure(400, 'ids must be 64 lowercase hex')
    const flags = await mapLimit(ids as string[], 32, (id) => this.sc.store.hasObject(id))
    const missing = (ids as string[]).filter((_, i) => !flags[i])
    send(x, 200, JSON.stringify({missing}) + '\n', {'Content-Type': CONTENT_JSON, 'Cache-Control': CACHE_NONE})
  }

  private checkToken(req: IncomingMessage): void {
    const token = parseBearer(req.headers.authorization)
    if (token === undefined) throw new HttpFailure(401, 'push token required', {'WWW-Authenticate': BEARER_CHALLENGE})
    // equal-length digests: the comparison time does not depend on the token
    if (!timingSafeEqual(tokenDigest(token), this.tokenDigest!)) throw new HttpFailure(403, 'wrong push token')
  }

  private writeLock<T>(fn: () => Promise<T>): Promise<T> {
    return withLock(this.sc.store.layout, {op: 'serve-upload', kind: 'write', waitMs: LOCK_WAIT_MS}, fn)
  }

  private stored(x: Exchange, created: boolean): void {
    this.sc.metrics.uploads.inc({result: created ? 'stored' : 'exists'})
    send(x, created ? 201 : 200, created ? 'stored\n' : 'exists\n')
  }

  private async putObject(x: Exchange, id: string): Promise<void> {
    const data = await readBody(x.req, MAX_OBJECT_BYTES)
    if (contentMismatch(id, data) !== undefined) {
      this.sc.metrics.verificationFailures.inc({source: 'upload'})
      throw new HttpFailure(400, 'body does not hash to the id')
    }
    if (data.length === 0 || isAllZero(data)) throw new HttpFailure(400, 'all-zero chunks are never stored (a manifest marks them as zero runs)')
    this.stored(x, await this.writeLock(() => this.sc.store.putObject(id, data)))
  }

  private async putManifest(x: Exchange, id: string): Promise<void> {
    const {store} = this.sc
    const bytes = await readBody(x.req, MAX_MANIFEST_BYTES)
    let manifest
    try {
      manifest = decodeManifest(bytes, id)
    } catch (err) {
      if (err instanceof BadManifestError) throw new HttpFailure(400, err.message)
      throw err
    }
    const chunks = [...uniqueChunkIds(manifest)]
    const created = await this.writeLock(async () => {
      // under the lock: gc cannot remove a chunk between this check and the write
      const present = await mapLimit(chunks, 32, (c) => store.hasObject(c))
      const missing = present.filter((p) => !p).length
      if (missing > 0) throw new HttpFailure(409, `${missing} chunks missing`, {}, {missing})
      if (await store.hasManifest(id)) return false
      await store.putManifestBytes(id, bytes)
      return true
    })
    this.stored(x, created)
  }

  private async putProfile(x: Exchange, id: string): Promise<void> {
    const {store} = this.sc
    const bytes = await readBody(x.req, MAX_PROFILE_BYTES)
    await this.writeLock(async () => {
      const manifest = await store.getManifest(id).catch(() => undefined)
      if (!manifest) throw new HttpFailure(409, `manifest ${id} is not on this server`)
      let profile
      try {
        profile = decodeProfile(bytes, Math.ceil(manifest.virtualSize / manifest.chunkSize))
      } catch (err) {
        throw new HttpFailure(400, (err as Error).message)
      }
      await store.putProfile(id, profile)
    })
    this.sc.metrics.uploads.inc({result: 'stored'})
    send(x, 200, 'ok\n')
  }

  private async putRef(x: Exchange, name: string, tag: string): Promise<void> {
    const {store} = this.sc
    const id = (await readBody(x.req, MAX_REF_BYTES)).toString('utf8').trim()
    if (!isValidId(id)) throw new HttpFailure(400, 'body must be a 64-hex manifest id')
    await this.writeLock(async () => {
      if (!(await store.hasManifest(id))) throw new HttpFailure(409, `manifest ${id} is not on this server`)
      await store.writeRef({name, tag}, id)
    })
    this.sc.metrics.uploads.inc({result: 'stored'})
    send(x, 200, 'ok\n')
  }

  /**
   * A ref's signature. The server cannot tell a trusted key from another
   * (clients check that against their allowed signers); it checks that the
   * file is well-formed and signs this ref as it is now: 400 otherwise, 409
   * when the ref is absent or points elsewhere.
   */
  private async putRefSignature(x: Exchange, name: string, tag: string): Promise<void> {
    const {store} = this.sc
    const body = await readBody(x.req, MAX_REF_SIGNATURE_BYTES)
    let sig
    try {
      sig = parseRefSignature(body)
    } catch (err) {
      throw new HttpFailure(400, `not a ref signature: ${(err as Error).message}`)
    }
    const ref = {name, tag}
    if (formatRef(sig.ref) !== formatRef(ref)) throw new HttpFailure(400, `the signature is for ref ${formatRef(sig.ref)}, not ${formatRef(ref)}`)
    await this.writeLock(async () => {
      const id = await store.readRef(ref)
      if (id !== sig.id) throw new HttpFailure(409, id === undefined ? `ref ${formatRef(ref)} is not on this server` : `ref ${formatRef(ref)} points at ${id}, the signature at ${sig.id}`)
      await store.writeRefSignature(ref, body)
    })
    this.sc.metrics.uploads.inc({result: 'stored'})
    send(x, 200, 'ok\n')
  }
}
