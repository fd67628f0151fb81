/**
 * The library never prints: long operations report to an injected
 * ProgressReporter, whose default does nothing. The CLI supplies one that
 * draws a bar on stderr when stderr is a TTY.
 */
export interface ProgressReporter {
  /** A phase begins; `total` in the given unit when known. */
  start(label: string, total?: number, unit?: 'bytes' | 'items'): void
  /** Absolute progress within the phase. */
  update(done: number, info?: Record<string, string | number>): void
  stop(): void
}

export const silentProgress: ProgressReporter = {
  start() {},
  update() {},
  stop() {},
}
