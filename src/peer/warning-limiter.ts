/**
 * A chain's per-chunk warnings, kept readable: per source and kind, the
 * first `burst` print as they come; later ones are counted, and summed up in
 * one line `intervalMs` after the last line printed for that source and kind
 * (a timer that does not keep the process alive), and by flush() (a
 * command's end). A peer that fails every chunk of a 5,000-chunk image then costs a
 * few lines instead of thousands, and a mount running for days prints at
 * most one line per interval for it. State changes (a source down, up
 * again) and warnings about anything but a chunk always print.
 */
import type {ChainEvent} from './chain.js'

/** Warnings about one chunk each: limited (chunk-unavailable has its own grouping: unavailable-report.ts). */
const PER_CHUNK: ReadonlySet<ChainEvent['type']> = new Set(['source-error', 'verification-failure', 'local-repair'])

/** What a summary line calls the warnings it stands for: one, several. */
const NOUN: Partial<Record<ChainEvent['type'], [string, string]>> = {
  'source-error': ['failure', 'failures'],
  'verification-failure': ['chunk with wrong bytes', 'chunks with wrong bytes'],
  'local-repair': ['local repair', 'local repairs'],
}

export type WarningSink = (message: string, data: object) => void

interface Tally {
  printed: number
  lastPrintedAt: number
  held: number
  last?: ChainEvent
  /** Sums up what is held once the interval is over. */
  timer?: NodeJS.Timeout
}

export class WarningLimiter {
  private readonly tallies = new Map<string, Tally>()
  private readonly burst: number
  private readonly intervalMs: number
  private readonly now: () => number

  constructor(
    private readonly out: WarningSink,
    init: {burst?: number; intervalMs?: number; now?: () => number} = {},
  ) {
    this.burst = init.burst ?? 3
    this.intervalMs = init.intervalMs ?? 10_000
    this.now = init.now ?? Date.now
  }

  warn(event: ChainEvent): void {
    if (!PER_CHUNK.has(event.type)) {
      this.out(event.message, event)
      return
    }
    const key = `${event.type}\n${event.source}`
    let t = this.tallies.get(key)
    if (!t) this.tallies.set(key, (t = {printed: 0, lastPrintedAt: 0, held: 0}))
    const now = this.now()
    if (t.printed < this.burst) {
      t.printed++
      t.lastPrintedAt = now
      this.out(event.message, event)
      return
    }
    t.held++
    t.last = event
    if (now - t.lastPrintedAt >= this.intervalMs) this.summarize(t, now)
    else if (!t.timer) {
      // a mount may run for days after a burst of failures: the sum comes without waiting for the next one
      t.timer = setTimeout(() => this.summarize(t, this.now()), t.lastPrintedAt + this.intervalMs - now)
      t.timer.unref()
    }
  }

  /** Sum up whatever is held back (at the end of a command). */
  flush(): void {
    const now = this.now()
    for (const t of this.tallies.values()) this.summarize(t, now)
  }

  private summarize(t: Tally, now: number): void {
    clearTimeout(t.timer)
    t.timer = undefined
    if (t.held === 0) return
    const last = t.last!
    const what = (NOUN[last.type] ?? ['warning', 'warnings'])[t.held === 1 ? 0 : 1]
    this.out(`${t.held} more ${what} from ${last.source} not shown (the last: ${last.message})`, {...last, suppressed: t.held})
    t.held = 0
    t.lastPrintedAt = now
  }
}
