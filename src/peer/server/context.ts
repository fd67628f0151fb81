/** What every part of the server shares: the store, its metrics and its log. */
import type {LocalStore} from '../../store/local-store.js'
import type {ServerLogger} from './access-log.js'
import type {ServerMetrics} from './metrics.js'
import type {SendCompression} from './send-compression.js'

export interface ServerContext {
  store: LocalStore
  metrics: ServerMetrics
  logger: ServerLogger
  /** Which objects that rest raw go out as frames (send-compression.ts). */
  sendCompression: SendCompression
}
