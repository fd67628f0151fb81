/**
 * A mount keeps what it reads raw (docs/FORMAT.md "Compressed objects"): a
 * chunk whose local object is a zstd frame (a pulled image) is read decoded
 * at first, and its object rewritten raw later, while no guest read waits.
 * A read that misses the mount's chunk cache would otherwise decode a whole
 * chunk every time (about 3.5× the time of a raw read); rewriting at once
 * would put a file creation on the guest's first read of each chunk
 * (bench/results/2026-12-06-compressed-mount-reads.md).
 */
import type {LocalStore} from '../store/local-store.js'
import {openObject} from '../store/object-encoding.js'

/** A rewrite waits this long after it is queued at the soonest, and runs in slices of at most SLICE_MS of work while `idle()`. */
const DELAY_MS = 50
const SLICE_MS = 2

export class RawRewriter {
  private readonly queued: {id: string; length: number; done: () => void}[] = []
  private timer?: NodeJS.Timeout

  constructor(
    private readonly store: LocalStore,
    /** True while no guest read waits. */
    private readonly idle: () => boolean,
  ) {}

  /** Rewrite `id` (a chunk of `length` bytes) raw when idle; `done` once it is. */
  queue(id: string, length: number, done: () => void): void {
    this.queued.push({id, length, done})
    this.timer ??= setTimeout(() => this.drain(), DELAY_MS)
  }

  close(): void {
    clearTimeout(this.timer)
    this.timer = undefined
    this.queued.length = 0
  }

  private drain(): void {
    this.timer = undefined
    const until = performance.now() + SLICE_MS
    while (this.queued.length > 0 && this.idle() && performance.now() < until) this.rewrite(this.queued.shift()!)
    if (this.queued.length > 0) this.timer = setTimeout(() => this.drain(), this.idle() ? 1 : DELAY_MS)
  }

  /** One object rewritten raw, verified again first (read from its file, not from memory). */
  private rewrite(w: {id: string; length: number; done: () => void}): void {
    try {
      const stored = this.store.readObjectStored(w.id)
      const o = stored && openObject(w.id, stored, w.length)
      if (o && o.data && o.encoded && this.store.replaceWithRawSync(w.id, o.data)) w.done()
    } catch {
      /* gone or unreadable: it stays as it is, read decoded */
    }
  }
}
