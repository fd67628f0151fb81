/**
 * The thread behind ObjectWriter: hash each chunk it is given and, when the
 * hash matches, store it with LocalStore.putObjectSync (tmp file, link). The
 * caller sends chunks it found absent, so no existence check first.
 */
import {parentPort, workerData} from 'node:worker_threads'
import {hash} from './hash.js'
import {LocalStore} from './local-store.js'

const store = await LocalStore.open((workerData as {root: string}).root, {create: false})

parentPort!.on('message', (m: {seq: number; id: string; buffer: ArrayBuffer; length: number}) => {
  const data = Buffer.from(m.buffer, 0, m.length)
  // the memory goes back with the answer, for the next chunk
  const reply = (r: object) => parentPort!.postMessage({seq: m.seq, buffer: m.buffer, ...r}, [m.buffer])
  const actual = hash(data)
  if (actual !== m.id) return reply({mismatch: actual})
  try {
    reply({ok: store.putObjectSync(m.id, data, {probe: false}) ? 'stored' : 'present'})
  } catch (err) {
    const cause = ((err as {cause?: unknown}).cause ?? err) as NodeJS.ErrnoException
    reply({error: {message: cause.message, errno: cause.code}})
  }
})
