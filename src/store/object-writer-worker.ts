/**
 * The thread behind ObjectWriter: hash each chunk it is given and, when the
 * hash matches, store it with LocalStore.putObjectSync (tmp file, link).
 */
import {parentPort, workerData} from 'node:worker_threads'
import {hash} from './hash.js'
import {LocalStore} from './local-store.js'

const store = await LocalStore.open((workerData as {root: string}).root, {create: false})

parentPort!.on('message', (m: {seq: number; id: string; data: Uint8Array}) => {
  const data = Buffer.from(m.data.buffer, m.data.byteOffset, m.data.byteLength)
  const actual = hash(data)
  if (actual !== m.id) {
    parentPort!.postMessage({seq: m.seq, mismatch: actual})
    return
  }
  try {
    parentPort!.postMessage({seq: m.seq, ok: store.putObjectSync(m.id, data) ? 'stored' : 'present'})
  } catch (err) {
    const cause = ((err as {cause?: unknown}).cause ?? err) as NodeJS.ErrnoException
    parentPort!.postMessage({seq: m.seq, error: {message: cause.message, errno: cause.code}})
  }
})
