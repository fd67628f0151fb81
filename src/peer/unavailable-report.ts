/**
 * The rate limit of a fetch chain's chunk-unavailable events. One event for
 * the first chunk that fails for a set of reasons; later ones for reasons
 * already reported are counted into the next event. A source going down or
 * coming back (a new set of sources down) starts afresh. Errors other than
 * "down" may differ from chunk to chunk (the owner peer's fetch-through
 * fails, the others say missing): each set is reported once, and again only
 * after a state change or 64 other sets.
 */
export class UnavailableReport {
  /** The sources down (and since when) at the last event. */
  private downAtReport = ''
  /** The sets of other errors reported while that lasts. */
  private readonly reportedErrors = new Set<string>()
  /** Failures left unreported since the last event. */
  private unreported = 0

  /** The message of the event to send for chunk `id`, or undefined when its reasons were reported already. */
  message(id: string, where: string, down: string, errors: string): string | undefined {
    if (down !== this.downAtReport || this.reportedErrors.size >= 64) {
      this.downAtReport = down
      this.reportedErrors.clear()
    }
    if (this.reportedErrors.has(errors)) {
      this.unreported++
      return undefined
    }
    this.reportedErrors.add(errors)
    const more = this.unreported > 0 ? ` (since the last such report, ${this.unreported} more chunk fetch${this.unreported === 1 ? '' : 'es'} failed, for reasons already reported)` : ''
    this.unreported = 0
    return `chunk ${id} is unavailable: tried ${where}${more}; further chunks failing for the same reasons are not reported until a source goes down or comes back`
  }
}
