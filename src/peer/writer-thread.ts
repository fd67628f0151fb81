/**
 * The entry of this layer's writer threads (PEER_WRITER_THREAD: a pull's
 * receivers, a push's encoders): the store's writer thread with this layer's
 * jobs built in, so that the thread runs them without importing their
 * modules by URL, and the build bundles the whole thread into this one file
 * (scripts/bundle-entries.mjs).
 */
import type {WriterJob} from '../store/object-writer.js'
import {runWriterThread} from '../store/writer-thread.js'
import {BULK_RECEIVE} from './bulk-receive.js'
import {PUSH_ENCODE} from './push-encode.js'

await runWriterThread([BULK_RECEIVE, PUSH_ENCODE] as WriterJob<unknown, unknown, unknown>[])
