/**
 * Young-generation collections on demand, for code that receives a stream
 * of large bodies.
 *
 * node:http hands each piece of a request body over in an ArrayBuffer of its
 * own, and V8 counts those bytes as external memory until a collection frees
 * them. Pieces that are copied and dropped at once die young, but in a
 * process whose heap is small and near its old-generation limit (vmi serve:
 * its code alone fills most of it) V8 meets the growing external memory with
 * full collections instead: one every few tens of MiB received, each marking
 * the whole heap on the main thread and the platform's helper threads. A
 * young collection frees the same dead pieces for a fraction of that, and
 * when it comes often enough the full ones are not started.
 *
 * V8 offers no way to ask for one without --expose-gc; the flag is set when
 * first needed, and the collector is taken from a context of its own, so no
 * global `gc` appears in the program's context. Where that fails, nothing is
 * collected here and V8 goes on as it would.
 */
import v8 from 'node:v8'
import vm from 'node:vm'

type Collector = (options: {type: 'minor'}) => void

let collector: Collector | null | undefined

function young(): Collector | null {
  if (collector !== undefined) return collector
  try {
    v8.setFlagsFromString('--expose-gc')
    const gc: unknown = vm.runInNewContext('gc')
    collector = typeof gc === 'function' ? (gc as Collector) : null
  } catch {
    collector = null
  }
  return collector
}

/**
 * Counts bytes received and runs a young collection after every `every`
 * bytes. Requests that share one pacer share its count (uploads.ts keeps one
 * for the process, so bodies received at once count together).
 */
export class YoungGcPacer {
  private since = 0

  constructor(private readonly every: number) {}

  received(bytes: number): void {
    if ((this.since += bytes) < this.every) return
    this.since = 0
    young()?.({type: 'minor'})
  }
}
