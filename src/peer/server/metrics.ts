/** The server's Prometheus series (docs/PROTOCOL.md, "Metrics"), every documented one present from start-up. */
import {Counter, Gauge, Registry} from 'prom-client'

export type ServerMetrics = ReturnType<typeof createSeries>

function createSeries() {
  const registry = new Registry()
  const registers = [registry]
  return {
    registry,
    requests: new Counter({name: 'vmi_http_requests_total', help: 'HTTP requests answered', labelNames: ['route', 'method', 'status'] as const, registers}),
    servedBytes: new Counter({name: 'vmi_served_bytes_total', help: 'Body bytes served, by kind', labelNames: ['kind'] as const, registers}),
    objectRequests: new Counter({
      name: 'vmi_object_requests_total',
      help: 'Object GET/HEAD requests: hit (present locally) or miss (absent locally, whether or not fetched through)',
      labelNames: ['result'] as const,
      registers,
    }),
    fetchedBytes: new Counter({
      name: 'vmi_fetched_bytes_total',
      help: 'Chunk bytes fetched through from the upstream, by source kind',
      labelNames: ['source'] as const,
      registers,
    }),
    verificationFailures: new Counter({
      name: 'vmi_verification_failures_total',
      help: 'Bytes that did not hash to their id: uploads (source="upload") or the upstream (its kind)',
      labelNames: ['source'] as const,
      registers,
    }),
    upstreamErrors: new Counter({name: 'vmi_upstream_errors_total', help: 'Fetch-through failures other than "missing"', registers}),
    uploads: new Counter({
      name: 'vmi_uploads_total',
      help: 'PUT requests by result: stored, exists, invalid, too_large, conflict, denied, error',
      labelNames: ['result'] as const,
      registers,
    }),
    sendCompressions: new Counter({
      name: 'vmi_send_compressions_total',
      help: 'Objects resting raw asked for by a client that reads frames, under the send-compression policy: compressed (now), cached (a frame made before), incompressible (sent raw)',
      labelNames: ['result'] as const,
      registers,
    }),
    inFlight: new Gauge({name: 'vmi_http_requests_in_flight', help: 'Requests being answered', registers}),
  }
}

/** The series, with zero values for the documented labels so they show before the first event. */
export function createMetrics(upstreamKind: string | undefined): ServerMetrics {
  const m = createSeries()
  for (const kind of ['objects', 'manifests']) m.servedBytes.inc({kind}, 0)
  for (const result of ['hit', 'miss']) m.objectRequests.inc({result}, 0)
  for (const result of ['stored', 'exists', 'invalid', 'too_large', 'conflict', 'denied', 'error']) m.uploads.inc({result}, 0)
  m.verificationFailures.inc({source: 'upload'}, 0)
  for (const result of ['compressed', 'cached', 'incompressible']) m.sendCompressions.inc({result}, 0)
  if (upstreamKind) {
    m.fetchedBytes.inc({source: upstreamKind}, 0)
    m.verificationFailures.inc({source: upstreamKind}, 0)
  }
  return m
}
