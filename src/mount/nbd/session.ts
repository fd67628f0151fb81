/** The export a connection serves, and what its handshake settled for transmission. */

export interface ExportInfo {
  name: string
  description: string
}

export interface Session {
  /** Structured replies negotiated. */
  structured: boolean
  /** base:allocation selected (BLOCK_STATUS allowed). */
  metaContext: boolean
  /** The client asked for no 124 zero bytes after NBD_OPT_EXPORT_NAME's reply. */
  noZeroes: boolean
}
