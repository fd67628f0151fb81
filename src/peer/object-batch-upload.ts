/**
 * The client side of object batches (docs/PROTOCOL.md, "Object batches"):
 * many chunks in one POST to vmi serve. The first use asks with an empty
 * batch whether the server has the route at all, so that a whole batch is
 * never sent to a server that will not take it (a vmi serve from before
 * batches answers 404), and progress is never counted twice. The same
 * answer says which object encodings the server stores as sent.
 */
import {RemoteError} from '../errors.js'
import type {HttpAnswer, HttpClient} from './http-client.js'
import {withRetry, type RetryPolicy} from './retry.js'
import type {FetchOptions} from './source.js'
import {batchFrameHead, CONTENT_OBJECT_BATCH, MAX_BATCH_ANSWER_BYTES, OBJECT_BATCH_ROUTE, type BatchAnswer} from './wire.js'

/** Statuses that say the server has no batch route. */
const NO_ROUTE = [404, 405, 501]

export class ObjectBatchUpload {
  /** The server's answer to an empty batch (undefined: it has no batch route); not asked until needed. */
  private probe?: Promise<BatchAnswer | undefined>

  constructor(
    private readonly http: HttpClient,
    private readonly name: string,
    private readonly authorization: string,
    private readonly retry: RetryPolicy,
    /** The error for a failed request (HttpStore's, so that a refused token reads the same everywhere). */
    private readonly fail: (what: string, res: HttpAnswer | undefined, err?: unknown) => RemoteError,
  ) {}

  /**
   * Store `objects` in one batch; undefined when the server has no batch
   * route. Retried like any upload (a batch is idempotent). Rejects naming
   * the first chunk the server refused (data.refused: how many).
   * `onSent(i)` as objects[i] has gone out, once each.
   */
  async put(objects: {id: string; data: Buffer}[], opts: FetchOptions & {onSent?: (index: number) => void} = {}): Promise<{stored: number; present: number} | undefined> {
    if ((await this.probed(opts)) === undefined) return undefined
    const what = `an upload of ${objects.length} chunks`
    const answer = await this.post(objects, what, opts)
    if (!answer) throw new RemoteError(`${this.name} stopped taking object batches during ${what}`, {data: {source: this.name}})
    const [first] = answer.refused
    if (first)
      throw new RemoteError(`${this.name} refused ${answer.refused.length} of ${objects.length} chunks, first ${String(first.id).slice(0, 64)}: ${String(first.reason).slice(0, 200)}`, {
        data: {source: this.name, refused: answer.refused.length},
      })
    return {stored: answer.stored, present: answer.present}
  }

  /**
   * The object encodings the server stores as sent (its answer to the
   * empty batch; none from a server before them, or without batches).
   */
  async encodings(opts: FetchOptions = {}): Promise<string[]> {
    const a = await this.probed(opts)
    return Array.isArray(a?.encodings) ? a.encodings.filter((e) => typeof e === 'string') : []
  }

  private probed(opts: FetchOptions): Promise<BatchAnswer | undefined> {
    this.probe ??= this.post([], 'a probe for object batches', opts)
    return this.probe
  }

  /** One batch, retried; undefined when the server has no such route. */
  private async post(objects: {id: string; data: Buffer}[], what: string, opts: FetchOptions & {onSent?: (index: number) => void}): Promise<BatchAnswer | undefined> {
    const body = objects.flatMap(({id, data}) => [batchFrameHead(id, data.length), data])
    // a retried batch is not reported twice
    const reported = new Set<number>()
    const onSent = opts.onSent && ((k: number) => void (reported.has(k) || (reported.add(k), opts.onSent!(k))))
    const res = await withRetry(
      async () => {
        let res: HttpAnswer
        try {
          res = await this.http.request(OBJECT_BATCH_ROUTE, {
            method: 'POST',
            body,
            headers: {authorization: this.authorization, 'content-type': CONTENT_OBJECT_BATCH},
            signal: opts.signal,
            maxBytes: MAX_BATCH_ANSWER_BYTES,
            // parts are frame heads and chunks in turn
            onPartWritten: onSent && ((i) => i % 2 === 1 && onSent((i - 1) / 2)),
          })
        } catch (err) {
          throw this.fail(what, undefined, err)
        }
        if (res.status === 200 || NO_ROUTE.includes(res.status)) return res
        throw this.fail(what, res)
      },
      this.retry,
      opts.signal,
    )
    if (res.status !== 200) return undefined
    try {
      const answer = JSON.parse(res.body.toString('utf8')) as BatchAnswer
      if (!Number.isInteger(answer.stored) || !Number.isInteger(answer.present) || !Array.isArray(answer.refused)) throw new Error('fields missing')
      return answer
    } catch (err) {
      throw new RemoteError(`${this.name} answered ${what} with malformed JSON`, {cause: err, data: {source: this.name}})
    }
  }
}
