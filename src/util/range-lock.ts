/**
 * Exclusive locks on ranges of block indexes [first, end).
 *
 * Two holders never overlap. A request waits while it overlaps a holder or
 * an earlier waiter, so overlapping requests are granted in arrival order
 * (no starvation) while requests on unrelated blocks never wait for each
 * other. Holders and waiters are bounded by the requests in flight on the
 * export, so linear scans are enough.
 */
interface Range {
  readonly first: number
  readonly end: number
}

interface Waiter {
  range: Range
  grant: () => void
}

const overlaps = (a: Range, b: Range): boolean => a.first < b.end && b.first < a.end

export class RangeLock {
  private readonly held: Range[] = []
  private waiting: Waiter[] = []

  /** Resolves with a release function once [first, end) is held; release is idempotent. */
  acquire(first: number, end: number): Promise<() => void> {
    const range: Range = {first, end}
    const release = () => this.release(range)
    if (!this.held.some((h) => overlaps(h, range)) && !this.waiting.some((w) => overlaps(w.range, range))) {
      this.held.push(range)
      return Promise.resolve(release)
    }
    return new Promise((resolve) => this.waiting.push({range, grant: () => resolve(release)}))
  }

  /** Ranges held and requests waiting (for tests and diagnostics). */
  get state(): {held: number; waiting: number} {
    return {held: this.held.length, waiting: this.waiting.length}
  }

  private release(range: Range): void {
    const i = this.held.indexOf(range)
    if (i < 0) return
    this.held.splice(i, 1)
    // grant, in arrival order, every waiter that overlaps neither a holder nor an earlier waiter still waiting
    const still: Waiter[] = []
    for (const w of this.waiting) {
      if (this.held.some((h) => overlaps(h, w.range)) || still.some((s) => overlaps(s.range, w.range))) still.push(w)
      else {
        this.held.push(w.range)
        w.grant()
      }
    }
    this.waiting = still
  }
}
