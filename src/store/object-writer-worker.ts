/**
 * The thread behind ObjectWriter: hash each chunk it is given and, when the
 * hash matches (unless the sender hashed it already), store it with
 * LocalStore.putObjectSync (tmp file, link), probing for an existing object
 * first only when asked.
 */
import {parentPort, workerData} from 'node:worker_threads'
import {hash} from './hash.js'
import {LocalStore} from './local-store.js'

const store = await LocalStore.open((workerData as {root: string}).root, {create: false})

parentPort!.on('message', (m: {seq: number; id: string; buffer: ArrayBuffer; length: number; verify: boolean; probe: boolean}) => {
  const data = Buffer.from(m.buffer, 0, m.length)
  // the memory goes back with the answer, for the next chunk
  const reply = (r: object) => parentPort!.postMessage({seq: m.seq, buffer: m.buffer, ...r}, [m.buffer])
  if (m.verify) {
    const actual = hash(data)
    if (actual !== m.id) return reply({mismatch: actual})
  }
  try {
    reply({ok: store.putObjectSync(m.id, data, {probe: m.probe}) ? 'stored' : 'present'})
  } catch (err) {
    const cause = ((err as {cause?: unknown}).cause ?? err) as NodeJS.ErrnoException
    reply({error: {message: cause.message, errno: cause.code}})
  }
})
