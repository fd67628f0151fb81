/**
 * The push side: the batch missing-check and the uploads (PUT of objects,
 * manifests, profiles, refs and ref signatures, and object batches), which
 * need the push token.
 *
 * Uploads are bounded (wire.ts limits), re-hashed and refused on mismatch.
 * Each write holds a short `write` lock so gc cannot run while it writes;
 * objects uploaded by a push stay unreferenced until their manifest and ref
 * arrive, so a gc run on this store *between* the requests of a push can
 * still remove them: the manifest PUT then answers 409 and the pusher has to
 * upload them again.
 *
 * An object batch is verified and stored on writer threads (started at the
 * first batch): the request is read into slabs (batch-slabs.ts) while the
 * threads hash and write, one write lock for the whole batch.
 */
import {timingSafeEqual} from 'node:crypto'
import type {IncomingMessage} from 'node:http'
import os from 'node:os'
import {BadManifestError} from '../../errors.js'
import {admitObject, OBJECT_ENCODINGS} from '../../store/object-encoding.js'
import {isValidId} from '../../store/layout.js'
import {withLock} from '../../store/lock.js'
import {ObjectWriter} from '../../store/object-writer.js'
import {decodeManifest, uniqueChunkIds} from '../../store/manifest.js'
import {mapLimit} from '../../util/map-limit.js'
import {YoungGcPacer} from '../../util/young-gc.js'
import {decodeProfile} from '../../store/profile.js'
import {parseRefSignature} from '../../store/ref-signature.js'
import {formatRef} from '../../store/ref.js'
import {
  BatchFormatError,
  BatchParser,
  BEARER_CHALLENGE,
  CACHE_NONE,
  CONTENT_JSON,
  MAX_OBJECT_BATCH_BYTES,
  type BatchAnswer,
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
import {BodyTooLarge, HttpFailure, readBody, readPieces, send, type Exchange} from './http-io.js'
import {SlabDealer} from './batch-slabs.js'
import {tokenDigest} from './read-access.js'

/** Longest an upload waits for a gc to let go of the store before answering 503. */
const LOCK_WAIT_MS = 30_000
const ZERO_REASON = 'an all-zero chunk (a manifest marks those as zero runs)'
/**
 * Writer threads for object batches: one per core beyond the main thread,
 * which is itself busy reading each body into slabs; at least one, at most
 * two. On two cores a second writer only contended with the main thread and
 * with a pusher on the same machine (bench/results/2026-12-07-upload-writers.md).
 */
const UPLOAD_WRITERS = Math.max(1, Math.min(2, os.availableParallelism() - 1))
/** Bytes of a batch handed to a writer thread and not yet written, before the server reads on. */
const BATCH_BACKLOG = 8 << 20
/**
 * Object batches received, paced with young collections (util/young-gc.ts):
 * one per 4 MiB of bodies kept every push of the Debian image in an A/B to
 * one or two full collections; one per 8 MiB let some pushes run a dozen or
 * more (bench/results/2026-12-07-push-young-gc.md).
 */
const youngGc = new YoungGcPacer(4 << 20)

export type PutRoute = Extract<Route, {kind: 'object' | 'manifest' | 'profile' | 'ref' | 'signature'}>

export class UploadHandlers {
  private readonly tokenDigest?: Buffer
  private writers?: ObjectWriter[]

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

  /** Stop the writer threads (the server is closing). */
  async close(): Promise<void> {
    const writers = this.writers ?? []
    this.writers = undefined
    await Promise.all(writers.map((w) => w.close().catch(() => {})))
  }

  /** The token checked; a refusal counted in vmi_uploads_total. */
  private admit(x: Exchange): void {
    try {
      this.checkToken(x.req)
    } catch (err) {
      this.sc.metrics.uploads.inc({result: 'denied'})
      throw err
    }
  }

  /** A PUT, token checked; the outcome counted in vmi_uploads_total. */
  async put(x: Exchange, route: PutRoute): Promise<void> {
    const {uploads} = this.sc.metrics
    this.admit(x)
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

  /**
   * POST of an object batch (wire.ts): each object verified and stored on a
   * writer thread; one that does not hash to its id, or is all zeros, is
   * refused and named in the answer, and the others are still stored. A
   * malformed body is a 400 (what came before it is stored: each object was
   * verified on its own).
   */
  async postBatch(x: Exchange): Promise<void> {
    this.admit(x)
    const {uploads, verificationFailures} = this.sc.metrics
    if (Number(x.req.headers['content-length']) > MAX_OBJECT_BATCH_BYTES) throw new BodyTooLarge(MAX_OBJECT_BATCH_BYTES)
    // `encodings`: what this server stores as sent (PROTOCOL.md "Compressed objects")
    const answer: BatchAnswer = {stored: 0, present: 0, refused: [], encodings: [...OBJECT_ENCODINGS]}
    const writers = (this.writers ??= Array.from({length: UPLOAD_WRITERS}, () => new ObjectWriter(this.sc.store.root)))
    await this.writeLock(async () => {
      const puts: Promise<void>[] = []
      // each object is checked on its own on a thread, decoded first (a frame may hold zeros): wrong bytes, all zeros
      const slabs = new SlabDealer(writers, (ids, outcomes) => {
        puts.push(
          outcomes.then((all) =>
            all.forEach((o, i) => {
              if (o === 'stored') answer.stored++
              else if (o === 'present') answer.present++
              else if ('zero' in o) answer.refused.push({id: ids[i], reason: ZERO_REASON})
              else {
                verificationFailures.inc({source: 'upload'})
                answer.refused.push({id: ids[i], reason: 'its bytes do not hash to its id'})
              }
            }),
          ),
        )
      })
      const parser = new BatchParser(
        (id, data) => slabs.frame(id, data),
        (n) => slabs.alloc(n),
      )
      try {
        let seen = 0
        // a refusal mid-body leaves the request readable: answerError drains it, so the client reads the answer
        await readPieces(x.req, (piece) => {
          if ((seen += piece.length) > MAX_OBJECT_BATCH_BYTES) throw new BodyTooLarge(MAX_OBJECT_BATCH_BYTES)
          parser.push(piece)
          youngGc.received(piece.length)
          const full = writers.find((w) => w.backlogBytes > BATCH_BACKLOG)
          return full?.whenBelow(BATCH_BACKLOG)
        })
        parser.end()
      } catch (err) {
        if (err instanceof BatchFormatError) throw new HttpFailure(400, `malformed object batch: ${err.message}`)
        throw err
      } finally {
        // the whole frames read are stored, also those before a malformed part
        slabs.flush()
        // every put settles before the lock is let go (a failed write fails the batch below)
        const settled = await Promise.allSettled(puts)
        const failed = settled.find((r) => r.status === 'rejected')
        if (failed) throw (failed as PromiseRejectedResult).reason
      }
    })
    uploads.inc({result: 'stored'}, answer.stored)
    uploads.inc({result: 'exists'}, answer.present)
    uploads.inc({result: 'invalid'}, answer.refused.length)
    send(x, 200, JSON.stringify(answer) + '\n', {'Content-Type': CONTENT_JSON, 'Cache-Control': CACHE_NONE})
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
    // decoded when a frame, then hashed; stored as sent
    const a = admitObject(id, data)
    if (a.mismatch !== undefined) {
      this.sc.metrics.verificationFailures.inc({source: 'upload'})
      throw new HttpFailure(400, 'body does not hash to the id')
    }
    if (a.zero) throw new HttpFailure(400, 'all-zero chunks are never stored (a manifest marks them as zero runs)')
    this.stored(x, await this.writeLock(() => this.sc.store.putObject(id, a.store)))
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
