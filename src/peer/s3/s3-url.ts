/**
 * `s3://BUCKET/PREFIX` URLs: what a bucket name and a key prefix may be, and
 * which endpoints take path-style requests.
 */
import {RemoteError} from '../../errors.js'

export interface S3Location {
  bucket: string
  /** Key prefix without leading or trailing slash; '' for the bucket's root. */
  prefix: string
}

const BUCKET_RE = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/

/** `s3://BUCKET[/PREFIX]`: a bucket name as S3 allows it, a prefix without empty or dot segments. */
export function parseS3Url(url: string): S3Location {
  const m = /^s3:\/\/([^/]*)(?:\/(.*))?$/i.exec(url)
  if (!m) throw new RemoteError(`${url} is not an s3:// URL`)
  const bucket = m[1]
  if (!BUCKET_RE.test(bucket)) throw new RemoteError(`${url}: ${JSON.stringify(bucket)} is not a valid bucket name (3-63 lowercase letters, digits, dots and hyphens)`)
  const prefix = (m[2] ?? '').replace(/^\/+|\/+$/g, '')
  if (prefix.split('/').some((s, _, all) => (all.length > 1 || s !== '') && (s === '' || s === '.' || s === '..')))
    throw new RemoteError(`${url}: the key prefix may not have empty or dot segments`)
  return {bucket, prefix}
}

export function isS3Url(url: string): boolean {
  return /^s3:\/\//i.test(url)
}

/** IP addresses and localhost take path-style requests (no DNS name per bucket). */
export function needsPathStyle(host: string): boolean {
  return host === 'localhost' || /^\d+\.\d+\.\d+\.\d+$/.test(host) || host.startsWith('[')
}
