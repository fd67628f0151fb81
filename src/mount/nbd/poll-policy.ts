/**
 * When the NBD server polls its socket instead of sleeping, and when it backs
 * off (see SocketReader.poll in socket-reader.ts). Pure: the caller reports what
 * each poll found; this decides whether the next burst polls.
 *
 * Outcomes of one poll, as the caller classifies them:
 * - `hit`: a request arrived after at least one empty read, with this thread
 *   on its core the whole time: polling saved a sleep and a wake-up.
 * - `ready`: a request was there at the first read: the client sent it while
 *   the reply was being written (on one core, the reply's wake-up hands the
 *   core over at once). The event loop would have found it as soon: no credit,
 *   no blame.
 * - `preempted`: this thread was off its core during the poll: it shares the
 *   core, and spinning keeps the client from running.
 * - `miss`: the poll ran out without a request.
 * A miss or a preemption backs off exponentially (1, 3, 7 … 2^MAX - 1 bursts
 * without polling); a hit resets that.
 */
export type PollOutcome = 'hit' | 'ready' | 'preempted' | 'miss'

/** A poll loop turn longer than this (ms) means the thread was descheduled. */
export const PREEMPT_GAP_MS = 0.025
/** Backoff cap: after this many wasted polls in a row, one poll every 2^N - 1 bursts. */
export const MAX_MISS_STREAK = 6

export class PollPolicy {
  /** Outcomes so far (for tests and the log). */
  readonly stats: Record<PollOutcome, number> = {hit: 0, ready: 0, preempted: 0, miss: 0}
  private missStreak = 0
  private cooldown = 0
  /** When the last burst was answered (ms), or -1. */
  private idleSince = -1

  /** @param maxMs the longest poll, ms */
  constructor(readonly maxMs: number) {}

  /** A burst of requests was answered at `now`: poll after it? */
  afterBurst(now: number): boolean {
    // poll only when bursts come back to back (a client at depth 1)
    const recent = this.idleSince >= 0 && now - this.idleSince <= 4 * this.maxMs
    this.idleSince = now
    if (this.cooldown > 0) {
      this.cooldown--
      return false
    }
    return recent
  }

  /** A poll after the burst ended at `now` (the idle clock restarts there). */
  burstEnd(now: number): void {
    this.idleSince = now
  }

  /** Something other than a direct burst arrived: the next burst is not back to back. */
  interrupted(): void {
    this.idleSince = -1
  }

  record(outcome: PollOutcome): void {
    this.stats[outcome]++
    if (outcome === 'hit') this.missStreak = 0
    else if (outcome === 'miss' || outcome === 'preempted') {
      this.missStreak = Math.min(this.missStreak + 1, MAX_MISS_STREAK)
      this.cooldown = 2 ** this.missStreak - 1
    }
  }
}
