// @ts-check
// In-process cost of the mount's block backend alone (ImageBackend over
// a LocalStore holding every chunk): the same read patterns as the qemu-img
// runs, without NBD or a socket, so the report can split a request's time
// into backend and protocol/transport.
import {loadVmi} from './common.js'

/**
 * patterns: [{key, size, depth, count, step?}] (step defaults to size; offsets
 * wrap modulo the image size, as qemu-img bench 7.2 does). Returns
 * {firstPassSeconds, patterns: {key: {seconds, usPerRequest, cpuSeconds}}}.
 */
export async function backendReadCost(storeDir, imageId, patterns) {
  const {LocalStore, buildChain, ImageBackend} = await loadVmi()
  const store = await LocalStore.open(storeDir)
  const {manifest} = await store.resolve(imageId)
  const {chain, close} = await buildChain(store, {})
  let be
  try {
    be = new ImageBackend(store, chain, imageId, manifest, {readOnly: true})
    const size = be.size
    // first pass: every chunk read and verified once (as the NBD runs had)
    let t0 = performance.now()
    for (let off = 0; off < size; off += 1 << 20) await be.read(off, Math.min(1 << 20, size - off))
    const firstPassSeconds = (performance.now() - t0) / 1000
    const out = {}
    for (const p of patterns) {
      const step = p.step ?? p.size
      let next = 0
      let issued = 0
      const c0 = process.cpuUsage()
      t0 = performance.now()
      await Promise.all(
        Array.from({length: p.depth}, async () => {
          while (issued < p.count) {
            issued++
            const off = next
            next = (next + step) % size
            await be.read(off, p.size)
          }
        }),
      )
      const seconds = (performance.now() - t0) / 1000
      const cpu = process.cpuUsage(c0)
      out[p.key] = {seconds, usPerRequest: (seconds / p.count) * 1e6, cpuSeconds: (cpu.user + cpu.system) / 1e6}
    }
    return {firstPassSeconds, patterns: out}
  } finally {
    await be?.close?.() // releases the open object files, when this build keeps them
    close()
  }
}
