/**
 * A circuit breaker for one remote source, and the wrappers that put a
 * source behind one. A source that cannot be reached costs a connection
 * attempt (and its timeout) once, not once per chunk: after that its
 * requests fail at once, and the chain asks the next source or gives up.
 *
 * - closed: requests go through. One that finds the source unreachable
 *   (refused, no route, a timeout: retry.ts's failureKind) opens the breaker
 *   at once; connections that break part-way (reset, truncated) open it only
 *   after `failureThreshold` in a row with no answer between them. Any HTTP
 *   answer — 404, 5xx, bytes that do not match their id — shows the source
 *   reachable: those are errors of that request (retried or reported where
 *   they happen), not a network that is down.
 * - open: requests fail at once with SourceDownError: no connection, no
 *   retry. A background probe (the source's ping) runs after `probeMinMs`,
 *   then at doubling intervals up to `probeMaxMs`, jittered.
 * - half-open: a probe is under way; requests still fail at once. Its answer
 *   closes the breaker; its failure opens it again with the next interval.
 *
 * Requests already under way when the breaker opens finish as they will;
 * their outcome does not close it (only a probe does), so the state follows
 * one rule. Timers are unref'd: a breaker never keeps a process alive, and
 * `close()` stops its probing.
 */
import {SourceDownError} from '../errors.js'
import type {PackSpan} from './packs.js'
import type {BulkOptions} from './pipelined-get.js'
import {failureKind} from './retry.js'
import type {ChunkSource, FetchOptions, RemoteSource, SourceKind} from './source.js'

export type BreakerState = 'closed' | 'open' | 'half-open'

export interface BreakerChange {
  source: string
  from: BreakerState
  to: BreakerState
  /** Why the source is (still) down; on closing, why it had been. */
  reason: string
  /** When it was first marked down (ms since the epoch); on closing, when it had been. */
  since: number
}

export interface CircuitBreakerInit {
  /** Resolves when the source answers at all; the signal stops it when the breaker is closed for good. */
  probe: (signal: AbortSignal) => Promise<void>
  /** Part-way failures in a row (no answer between them) that open the breaker (default 3). */
  failureThreshold?: number
  /** First wait before probing, ms (default 250). */
  probeMinMs?: number
  /** Longest wait between probes, ms (default 5000). */
  probeMaxMs?: number
  /** Every change of state. */
  onChange?: (c: BreakerChange) => void
}

export class CircuitBreaker {
  private current: BreakerState = 'closed'
  private why = ''
  private downSince = 0
  private failures = 0
  private wait: number
  private timer?: NodeJS.Timeout
  private readonly stop = new AbortController()

  constructor(
    /** The source's name, for messages. */
    readonly source: string,
    private readonly init: CircuitBreakerInit,
  ) {
    this.wait = init.probeMinMs ?? 250
  }

  get state(): BreakerState {
    return this.current
  }

  /** Why the source was marked down ('' while it never was). */
  get reason(): string {
    return this.why
  }

  /** When the source was last marked down (ms since the epoch; 0 while it never was). */
  get since(): number {
    return this.downSince
  }

  /** Run one request to the source, unless it is down; its outcome updates the state. */
  async run<T>(request: () => Promise<T>): Promise<T> {
    if (this.current !== 'closed') throw this.downError()
    let value: T
    try {
      value = await request()
    } catch (err) {
      this.failed(err)
      throw err
    }
    if (this.current === 'closed') this.failures = 0
    return value
  }

  /** The error a request gets while the source is down. */
  downError(): SourceDownError {
    return new SourceDownError(`${this.source} is down (${this.why}) since ${new Date(this.downSince).toISOString()}; not asked until it answers again`, {
      data: {source: this.source, reason: this.why, since: this.downSince},
    })
  }

  /** Stop probing (the breaker stays in its state). */
  close(): void {
    clearTimeout(this.timer)
    this.stop.abort()
  }

  private failed(err: unknown): void {
    const kind = failureKind(err)
    if (kind === 'answered') {
      if (this.current === 'closed') this.failures = 0
      return
    }
    if (this.current !== 'closed' || (kind !== 'unreachable' && kind !== 'broken')) return
    this.failures++
    if (kind === 'unreachable' || this.failures >= (this.init.failureThreshold ?? 3)) {
      this.why = describe(err)
      this.downSince = Date.now()
      this.wait = this.init.probeMinMs ?? 250
      this.become('open')
      this.schedule()
    }
  }

  private become(to: BreakerState): void {
    const from = this.current
    this.current = to
    if (to === 'closed') this.failures = 0
    this.init.onChange?.({source: this.source, from, to, reason: this.why, since: this.downSince})
  }

  private schedule(): void {
    if (this.stop.signal.aborted) return
    this.timer = setTimeout(() => void this.probe(), this.wait * (0.75 + Math.random() / 2))
    this.timer.unref()
    this.wait = Math.min(this.init.probeMaxMs ?? 5000, this.wait * 2)
  }

  private async probe(): Promise<void> {
    this.become('half-open')
    try {
      await this.init.probe(this.stop.signal)
    } catch (err) {
      if (this.stop.signal.aborted) return
      this.why = describe(err)
      this.become('open')
      this.schedule()
      return
    }
    if (!this.stop.signal.aborted) this.become('closed')
  }
}

/** A short reason: the error code of a network failure when there is one, else the message. */
function describe(err: unknown): string {
  let e = err as {code?: string; name?: string; event?: string; message?: string; cause?: unknown} | undefined
  // RemoteError wraps the client's error; the client's error may wrap the socket's
  for (let depth = 0; e && depth < 3; depth++) {
    if (e.name === 'TimeoutError') return e.event ? `timed out (${e.event})` : 'timed out'
    if (typeof e.code === 'string' && !e.code.startsWith('VMI_')) return e.code
    e = e.cause as typeof e
  }
  return (err as Error)?.message ?? String(err)
}

/** A chunk source whose requests go through a breaker (e.g. `vmi serve --seed`'s upstream). */
export class GuardedSource<S extends ChunkSource = ChunkSource> implements ChunkSource {
  constructor(
    readonly inner: S,
    readonly breaker: CircuitBreaker,
  ) {}

  get name(): string {
    return this.inner.name
  }

  get kind(): SourceKind {
    return this.inner.kind
  }

  /** While the breaker is not closed: since when the source is down. */
  get downSince(): number | undefined {
    return this.breaker.state === 'closed' ? undefined : this.breaker.since
  }

  /** While the breaker is not closed: why the source is down. */
  get downReason(): string | undefined {
    return this.breaker.state === 'closed' ? undefined : this.breaker.reason
  }

  get(id: string, opts?: FetchOptions): Promise<Buffer | undefined> {
    return this.breaker.run(() => this.inner.get(id, opts))
  }

  has(id: string, opts?: FetchOptions): Promise<boolean> {
    return this.breaker.run(() => this.inner.has(id, opts))
  }

  /**
   * Where the upstream packs an image's chunks (RemoteSource.usePacks), when
   * it may keep packs. Refused at once while the source is down; otherwise
   * not counted by the breaker: a pack list that is slow to come (a new
   * connection to a seed whose link is full) must not mark the seed down.
   */
  usePacks(manifestId: string, opts?: FetchOptions): Promise<number> {
    const inner = this.inner as ChunkSource & {usePacks?: RemoteSource['usePacks']}
    if (!inner.usePacks) return Promise.resolve(0)
    return this.breaker.state === 'closed' ? inner.usePacks(manifestId, opts) : this.breaker.run(() => inner.usePacks!(manifestId, opts))
  }
}

/** A remote (peer or seed) behind a breaker: every request of the chain, pull and mount to it. */
export class GuardedRemote extends GuardedSource<RemoteSource> implements RemoteSource {
  get url(): string {
    return this.inner.url
  }

  override get(id: string, opts?: FetchOptions & {fetchThrough?: boolean}): Promise<Buffer | undefined> {
    return this.breaker.run(() => this.inner.get(id, opts))
  }

  getManifestBytes(id: string, opts?: FetchOptions): Promise<Buffer | undefined> {
    return this.breaker.run(() => this.inner.getManifestBytes(id, opts))
  }

  getRef(name: string, tag: string, opts?: FetchOptions): Promise<string | undefined> {
    return this.breaker.run(() => this.inner.getRef(name, tag, opts))
  }

  getProfileBytes(id: string, opts?: FetchOptions & {maxBytes?: number}): Promise<Buffer | undefined> {
    return this.breaker.run(() => this.inner.getProfileBytes(id, opts))
  }

  getRefSignature(name: string, tag: string, opts?: FetchOptions): Promise<Buffer | undefined> {
    return this.breaker.run(() => this.inner.getRefSignature(name, tag, opts))
  }

  looksLikeStore(opts?: FetchOptions): Promise<boolean> {
    return this.breaker.run(() => this.inner.looksLikeStore(opts))
  }

  bulkOptions(fetchThrough: boolean): BulkOptions | undefined {
    return this.inner.bulkOptions(fetchThrough)
  }

  forImage(manifestId: string): void {
    this.inner.forImage?.(manifestId)
  }

  packPlan(items: readonly {id: string}[]): {spans: PackSpan[]; loose: number[]} | undefined {
    return this.inner.packPlan?.(items)
  }

  ping(opts?: FetchOptions): Promise<void> {
    return this.inner.ping(opts)
  }
}

export type BreakerInit = Omit<CircuitBreakerInit, 'probe'>

/** Put a remote behind a new breaker that probes it with its own ping. */
export function guardRemote(remote: RemoteSource, init: BreakerInit = {}): GuardedRemote {
  return new GuardedRemote(remote, new CircuitBreaker(remote.name, {...init, probe: (signal) => remote.ping({signal})}))
}
