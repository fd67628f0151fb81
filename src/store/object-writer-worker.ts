/**
 * The thread behind ObjectWriter: hash each chunk it is given and, when the
 * hash matches (unless the sender hashed it already), store it with
 * LocalStore.putObjectSync (tmp file, link); or import a whole segment of a raw file; or fetch,
 * verify and store a share of a pull's chunks (peer/bulk-receive.ts).
 */
import {parentPort, workerData} from 'node:worker_threads'
import {runBulkTask, type BulkTask} from '../peer/bulk-receive.js'
import {contentMismatch} from './hash.js'
import {processSegment, SegmentReadError, type SegmentRequest} from './import-segment.js'
import {LocalStore} from './local-store.js'

const {root, stagingDir} = workerData as {root: string; stagingDir: string}
const store = await LocalStore.open(root, {create: false})
store.stageObjectsIn(stagingDir)

let scratch = Buffer.alloc(0)

type PutMessage = {seq: number; id: string; buffer: ArrayBuffer; length: number; verify: boolean}
type SegmentMessage = {seq: number; op: 'segment'; req: SegmentRequest}
type BulkMessage = {seq: number; op: 'bulk'; task: BulkTask}
type AbortMessage = {seq: number; op: 'abort'}

/** Bulk tasks running, to abort by their seq. */
const bulks = new Map<number, AbortController>()

parentPort!.on('message', (m: PutMessage | SegmentMessage | BulkMessage | AbortMessage) => {
  if ('op' in m) {
    if (m.op === 'segment') return segment(m)
    if (m.op === 'bulk') return void bulk(m)
    return bulks.get(m.seq)?.abort()
  }
  const data = Buffer.from(m.buffer, 0, m.length)
  // the memory goes back with the answer, for the next chunk
  const reply = (r: object) => parentPort!.postMessage({seq: m.seq, buffer: m.buffer, ...r}, [m.buffer])
  if (m.verify) {
    const actual = contentMismatch(m.id, data)
    if (actual !== undefined) return reply({mismatch: actual})
  }
  try {
    reply({ok: store.putObjectSync(m.id, data, {probe: false}) ? 'stored' : 'present'})
  } catch (err) {
    reply({error: errorData(err)})
  }
})

/** A whole segment of an import (import-segment.ts), on this thread. */
function segment(m: SegmentMessage): void {
  if (scratch.length < m.req.chunkSize) scratch = Buffer.allocUnsafeSlow(m.req.chunkSize)
  try {
    parentPort!.postMessage({seq: m.seq, segment: processSegment(store, m.req, scratch)})
  } catch (err) {
    parentPort!.postMessage({seq: m.seq, error: errorData(err)})
  }
}

/** A bulk task (peer/bulk-receive.ts): outcomes go back in batches, then the end. */
async function bulk(m: BulkMessage): Promise<void> {
  const ctl = new AbortController()
  bulks.set(m.seq, ctl)
  try {
    const end = await runBulkTask(store, m.task, (progress) => parentPort!.postMessage({seq: m.seq, progress}), ctl.signal)
    parentPort!.postMessage({seq: m.seq, bulk: end})
  } catch (err) {
    parentPort!.postMessage({seq: m.seq, error: errorData(err)})
  } finally {
    bulks.delete(m.seq)
  }
}

/** A failure as data that crosses to the other thread: a read error as it is, a store error by its cause (the errno). */
function errorData(err: unknown): {message: string; errno?: string; read: boolean} {
  const read = err instanceof SegmentReadError
  const cause = (read ? err : ((err as {cause?: unknown}).cause ?? err)) as NodeJS.ErrnoException
  return {message: cause.message, errno: cause.code, read}
}
