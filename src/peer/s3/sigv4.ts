/**
 * AWS Signature Version 4 for S3 requests (header auth), on node:crypto.
 * Chosen over @smithy/signature-v4 and @aws-sdk/client-s3 by measurement
 * (docs/PERFORMANCE.md, "S3 seed"): no load time, and a signature costs a
 * few HMACs. Held to AWS's published example by test/unit/s3-sigv4.test.js
 * and to a real server (radosgw enforces SigV4) by the S3 integration tests.
 */
import {createHash, createHmac} from 'node:crypto'

export interface S3Credentials {
  accessKeyId: string
  secretAccessKey: string
  /** Temporary credentials (STS, SSO) carry a session token. */
  sessionToken?: string
}

/** SHA-256 of an empty body, hex: the payload hash of GET, HEAD and DELETE. */
export const EMPTY_SHA256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'

export function sha256Hex(data: Buffer | string): string {
  return createHash('sha256').update(data).digest('hex')
}

/** RFC 3986 percent-encoding as SigV4 wants it (unreserved characters kept; `/` kept when `keepSlash`). */
export function uriEncode(s: string, keepSlash = false): string {
  const out = encodeURIComponent(s).replace(/[!'()*]/g, (c) => '%' + c.charCodeAt(0).toString(16).toUpperCase())
  return keepSlash ? out.replace(/%2F/g, '/') : out
}

export interface SignInput {
  method: string
  host: string
  /** Already encoded (uriEncode(key, true)), starting with `/`. */
  path: string
  query?: Record<string, string>
  /** Headers to send and sign besides host and the x-amz-* ones this adds (lowercase names). */
  headers?: Record<string, string>
  payloadHash: string
  region: string
  credentials: S3Credentials
  /** Signing time (default now). */
  date?: Date
}

/** The canonical query string: keys sorted, keys and values encoded. */
export function canonicalQuery(query: Record<string, string> = {}): string {
  return Object.keys(query)
    .sort()
    .map((k) => `${uriEncode(k)}=${uriEncode(query[k])}`)
    .join('&')
}

/** One signing key a day and region: the four chained HMACs are not repeated per request. */
const keyCache = new Map<string, Buffer>()

function signingKey(secret: string, day: string, region: string): Buffer {
  const k = `${secret}\0${day}\0${region}`
  let key = keyCache.get(k)
  if (!key) {
    const hmac = (key: Buffer | string, data: string) => createHmac('sha256', key).update(data).digest()
    key = hmac(hmac(hmac(hmac('AWS4' + secret, day), region), 's3'), 'aws4_request')
    if (keyCache.size > 16) keyCache.clear()
    keyCache.set(k, key)
  }
  return key
}

/** The headers to send: the caller's, x-amz-date, x-amz-content-sha256, the session token, and Authorization. */
export function signRequest(input: SignInput): Record<string, string> {
  const amzDate = (input.date ?? new Date()).toISOString().replace(/[-:]/g, '').replace(/\.\d{3}/, '')
  const day = amzDate.slice(0, 8)
  const headers: Record<string, string> = {...input.headers, host: input.host, 'x-amz-date': amzDate, 'x-amz-content-sha256': input.payloadHash}
  if (input.credentials.sessionToken) headers['x-amz-security-token'] = input.credentials.sessionToken
  const names = Object.keys(headers)
    .map((n) => n.toLowerCase())
    .sort()
  const lower = Object.fromEntries(Object.entries(headers).map(([k, v]) => [k.toLowerCase(), v]))
  const canonicalHeaders = names.map((n) => `${n}:${String(lower[n]).trim().replace(/\s+/g, ' ')}\n`).join('')
  const signedHeaders = names.join(';')
  const canonical = [input.method, input.path, canonicalQuery(input.query), canonicalHeaders, signedHeaders, input.payloadHash].join('\n')
  const scope = `${day}/${input.region}/s3/aws4_request`
  const toSign = ['AWS4-HMAC-SHA256', amzDate, scope, sha256Hex(canonical)].join('\n')
  const signature = createHmac('sha256', signingKey(input.credentials.secretAccessKey, day, input.region)).update(toSign).digest('hex')
  headers.authorization = `AWS4-HMAC-SHA256 Credential=${input.credentials.accessKeyId}/${scope}, SignedHeaders=${signedHeaders}, Signature=${signature}`
  return headers
}
