/**
 * The store's own writer-thread entry (ObjectWriter's default): no job is
 * built in; a job's module is imported by its URL when first asked for.
 */
import {runWriterThread} from './writer-thread.js'

await runWriterThread()
