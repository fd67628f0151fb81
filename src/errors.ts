/**
 * Every error vmi raises on purpose. Each has a stable `code`, the process
 * exit code the CLI uses for it, structured `data` and an optional `cause`.
 * Library messages name the objects and stores involved and never mention
 * CLI flags; the command layer adds suggestions.
 */

export const ExitCode = {
  OK: 0,
  FAILURE: 1, // generic failure, or fsck found problems
  USAGE: 2, // malformed arguments (bad name:tag, chunk size, flags)
  NOT_FOUND: 3, // unknown ref / id / file
  AMBIGUOUS: 4, // id prefix matches several images
  BAD_INPUT: 5, // input is not a usable image or bundle, or is corrupt
  STORE: 6, // store unusable: read-only, disk full, busy, damaged
  DEPENDENCY: 7, // an external tool (qemu-img, ...) is missing or failed
  INTEGRITY: 8, // content does not match its id
  REMOTE: 9, // a remote (peer or seed) failed, or none had what was needed
  AUTH: 10, // a remote refused our credentials, or a ref's signature is not trusted
  INTERRUPTED: 130,
} as const

export interface VmiErrorInit {
  cause?: unknown
  data?: Record<string, unknown>
}

export class VmiError extends Error {
  readonly code: string = 'VMI_ERROR'
  readonly exitCode: number = ExitCode.FAILURE
  readonly data: Record<string, unknown>
  /** What the user can do about it: set by the CLI only (library messages never name flags or commands). */
  hint?: string

  constructor(message: string, init: VmiErrorInit = {}) {
    super(message, init.cause === undefined ? undefined : {cause: init.cause})
    this.name = new.target.name
    this.data = init.data ?? {}
  }
}

export class UsageError extends VmiError {
  override readonly code = 'VMI_USAGE'
  override readonly exitCode = ExitCode.USAGE
}

export class InvalidRefError extends VmiError {
  override readonly code = 'VMI_INVALID_REF'
  override readonly exitCode = ExitCode.USAGE
}

export class RefNotFoundError extends VmiError {
  override readonly code = 'VMI_REF_NOT_FOUND'
  override readonly exitCode = ExitCode.NOT_FOUND
}

export class AmbiguousRefError extends VmiError {
  override readonly code = 'VMI_AMBIGUOUS_REF'
  override readonly exitCode = ExitCode.AMBIGUOUS
}

export class FileNotFoundError extends VmiError {
  override readonly code = 'VMI_FILE_NOT_FOUND'
  override readonly exitCode = ExitCode.NOT_FOUND
}

/** An output file that exists, where replacing it was not asked for. */
export class FileExistsError extends VmiError {
  override readonly code = 'VMI_FILE_EXISTS'
  override readonly exitCode = ExitCode.USAGE
}

/** A remote name that is not configured. */
export class UnknownRemoteError extends VmiError {
  override readonly code = 'VMI_UNKNOWN_REMOTE'
  override readonly exitCode = ExitCode.NOT_FOUND
}

export class BadInputError extends VmiError {
  override readonly code = 'VMI_BAD_INPUT'
  override readonly exitCode = ExitCode.BAD_INPUT
}

export class BadManifestError extends VmiError {
  override readonly code = 'VMI_BAD_MANIFEST'
  override readonly exitCode = ExitCode.BAD_INPUT
}

/** A manifest of a format version newer than this vmi reads: not damaged, only unreadable here ("upgrade vmi"). */
export class NewerManifestError extends BadManifestError {}

export class BadBundleError extends VmiError {
  override readonly code = 'VMI_BAD_BUNDLE'
  override readonly exitCode = ExitCode.BAD_INPUT
}

export class ChunkMissingError extends VmiError {
  override readonly code = 'VMI_CHUNK_MISSING'
  override readonly exitCode = ExitCode.INTEGRITY
}

export class IntegrityError extends VmiError {
  override readonly code = 'VMI_INTEGRITY'
  override readonly exitCode = ExitCode.INTEGRITY
}

export class StoreError extends VmiError {
  override readonly code: string = 'VMI_STORE'
  override readonly exitCode: number = ExitCode.STORE
}

export class StoreReadOnlyError extends StoreError {
  override readonly code = 'VMI_STORE_READ_ONLY'
}

export class StoreFullError extends StoreError {
  override readonly code = 'VMI_STORE_FULL'
}

export class StoreBusyError extends StoreError {
  override readonly code = 'VMI_STORE_BUSY'
}

/** An overlay, a --file path or a socket already has an owner (another live process). */
export class InUseError extends StoreError {
  override readonly code = 'VMI_IN_USE'
}

export class DependencyError extends VmiError {
  override readonly code = 'VMI_DEPENDENCY'
  override readonly exitCode = ExitCode.DEPENDENCY
}

export class InterruptedError extends VmiError {
  override readonly code = 'VMI_INTERRUPTED'
  override readonly exitCode = ExitCode.INTERRUPTED
}

/** A peer or seed failed (network error, 5xx, bad bytes, refused). */
export class RemoteError extends VmiError {
  override readonly code: string = 'VMI_REMOTE'
  override readonly exitCode: number = ExitCode.REMOTE
  /** HTTP status when there was one. */
  get status(): number | undefined {
    return this.data.status as number | undefined
  }
}

/** A remote answers HTTP, but is not a vmi store at all (any web server answering 404). */
export class NotAStoreError extends RemoteError {
  override readonly code = 'VMI_NOT_A_STORE'
}

export class RemoteAuthError extends RemoteError {
  override readonly code = 'VMI_REMOTE_AUTH'
  override readonly exitCode = ExitCode.AUTH
}

/** A remote's TLS certificate is not trusted (self-signed, unknown CA, expired, wrong name). */
export class RemoteTlsError extends RemoteError {
  override readonly code = 'VMI_REMOTE_TLS'
}

/** Bytes from a remote did not hash to the id asked for. */
export class RemoteIntegrityError extends RemoteError {
  override readonly code = 'VMI_REMOTE_INTEGRITY'
}

/**
 * A remote found unreachable is not asked until a probe finds it back (its
 * circuit breaker is open): the request failed at once, without a
 * connection. `data.reason` says why it was marked down, `data.since` when.
 */
export class SourceDownError extends RemoteError {
  override readonly code = 'VMI_SOURCE_DOWN'
}

/** Map a filesystem error met while writing the store to a VmiError. */
export function storeWriteError(err: unknown, what: string): VmiError {
  const code = (err as NodeJS.ErrnoException)?.code
  if (err instanceof VmiError) return err
  if (code === 'ENOSPC' || code === 'EDQUOT')
    return new StoreFullError(`no space left on the store's filesystem while writing ${what}`, {cause: err})
  if (code === 'EROFS' || code === 'EACCES' || code === 'EPERM')
    return new StoreReadOnlyError(`store is not writable (${code}) while writing ${what}`, {cause: err})
  return new StoreError(`could not write ${what}: ${(err as Error)?.message ?? String(err)}`, {cause: err})
}

export function isErrno(err: unknown, ...codes: string[]): boolean {
  const c = (err as NodeJS.ErrnoException | undefined)?.code
  return typeof c === 'string' && codes.includes(c)
}

/** A known setting that the store config does not hold (`vmi config get`). */
export class SettingNotSetError extends VmiError {
  override readonly code = 'VMI_SETTING_NOT_SET'
  override readonly exitCode = ExitCode.NOT_FOUND
}

/**
 * A ref's signature is missing, malformed, wrong, or made by a key the
 * allowed signers do not accept for that ref name: the ref is not trusted.
 * `data.reason` is one of missing, malformed, mismatch, bad, not-allowed.
 */
export class SignatureError extends VmiError {
  override readonly code = 'VMI_SIGNATURE'
  override readonly exitCode = ExitCode.AUTH
}
