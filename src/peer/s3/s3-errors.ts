/**
 * What an S3 error answer means to a user: each error a user can act on
 * (unknown bucket, refused credentials, wrong region or endpoint, clock
 * skew) gets its own message; refused credentials are RemoteAuthError
 * (exit 10), the rest RemoteError (exit 9). 5xx and SlowDown carry their
 * status, so withRetry retries them; no 4xx is retried.
 */
import {RemoteAuthError, RemoteError} from '../../errors.js'

export interface S3Answer {
  status: number
  /** The error body (S3 answers errors with a small XML document); empty for HEAD. */
  body: string
  /** x-amz-bucket-region, when the server named the bucket's region. */
  bucketRegion?: string
}

/** `<Code>` and `<Message>` of an S3 error document. */
export function parseS3Error(body: string): {code?: string; message?: string} {
  const tag = (t: string) => new RegExp(`<${t}>([^<]*)</${t}>`).exec(body)?.[1]
  return {code: tag('Code'), message: tag('Message')}
}

export interface S3ErrorContext {
  source: string
  bucket: string
  endpoint: string
  region: string
  accessKeyId?: string
  what: string
}

export function s3Error(a: S3Answer, ctx: S3ErrorContext): RemoteError {
  const {code, message} = parseS3Error(a.body)
  const data = {status: a.status, source: ctx.source, s3Code: code}
  const fail = (text: string) => new RemoteError(`${ctx.source} failed ${ctx.what}: ${text}`, {data})
  const refuse = (text: string) => new RemoteAuthError(`${ctx.source} refused ${ctx.what}: ${text}`, {data})
  switch (code) {
    case 'NoSuchBucket':
      return fail(`bucket ${ctx.bucket} does not exist at ${ctx.endpoint} (NoSuchBucket)`)
    case 'SignatureDoesNotMatch':
      return refuse(`the secret key does not match access key ${ctx.accessKeyId ?? '?'} (SignatureDoesNotMatch)`)
    case 'InvalidAccessKeyId':
      return refuse(`access key ${ctx.accessKeyId ?? '?'} is unknown to ${ctx.endpoint} (InvalidAccessKeyId)`)
    case 'AccessDenied':
      return refuse(ctx.accessKeyId ? `access denied to access key ${ctx.accessKeyId} (AccessDenied)` : 'access denied: no credentials were given (AccessDenied); set AWS_ACCESS_KEY_ID or a profile')
    case 'InvalidToken':
    case 'ExpiredToken':
    case 'TokenRefreshRequired':
      return refuse(`the session token is ${code === 'InvalidToken' ? 'invalid' : 'expired'} (${code})`)
    case 'RequestTimeTooSkewed':
      return fail(`this host's clock differs from the server's by more than 15 minutes (RequestTimeTooSkewed): fix the clock (NTP)`)
    case 'PermanentRedirect':
    case 'AuthorizationHeaderMalformed':
    case 'IllegalLocationConstraintException':
      return fail(`wrong region or endpoint: requests were signed for ${ctx.region} at ${ctx.endpoint}${a.bucketRegion ? `, the bucket is in ${a.bucketRegion}` : ''} (${code}); set AWS_REGION or the remote's endpoint`)
  }
  if (a.status === 301 || a.status === 307)
    return fail(`wrong region or endpoint: HTTP ${a.status}${a.bucketRegion ? `, the bucket is in ${a.bucketRegion}` : ''}; set AWS_REGION or the remote's endpoint`)
  if (a.status === 403) return refuse(`HTTP 403${code ? ` (${code})` : ''}`)
  return fail(`HTTP ${a.status}${code ? ` ${code}` : ''}${message ? `: ${message}` : ''}`)
}
