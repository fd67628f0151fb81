/**
 * Where an s3:// remote is and as whom to reach it, resolved the way the AWS
 * CLI and SDKs do: credentials from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY
 * / AWS_SESSION_TOKEN, else the shared credentials file, else the shared
 * config file, for the profile AWS_PROFILE names (default "default"); region
 * from AWS_REGION / AWS_DEFAULT_REGION, the remote's config, the profile;
 * endpoint from AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL, the remote's
 * config, the profile's endpoint_url. Without any credentials requests are
 * anonymous (a public-read bucket). Instance and container credentials
 * (IMDS, ECS) are not read: see README, "Seeds in S3".
 *
 * The secret is never printed: errors name the access key id only.
 */
import {promises as fsp} from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {isErrno, UsageError} from '../errors.js'
import type {S3Access} from '../peer/s3/s3-store.js'
import type {Env} from './settings.js'

/** What `vmi remote add NAME s3://… --endpoint --region --path-style` keeps for a bucket. */
export interface S3RemoteConfig {
  endpoint?: string
  region?: string
  pathStyle?: boolean
}

/** Sections of an INI file (~/.aws/credentials, ~/.aws/config): `[name]` then `key = value` lines. */
export function parseIni(text: string): Map<string, Record<string, string>> {
  const out = new Map<string, Record<string, string>>()
  let section: Record<string, string> | undefined
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim()
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue
    const head = /^\[\s*([^\]]+?)\s*\]$/.exec(line)
    if (head) {
      section = out.get(head[1]) ?? {}
      out.set(head[1], section)
      continue
    }
    const kv = /^([^=]+?)\s*=\s*(.*)$/.exec(line)
    if (kv && section && !raw.startsWith(' ') && !raw.startsWith('\t')) section[kv[1].toLowerCase()] = kv[2]
  }
  return out
}

async function readIni(file: string): Promise<Map<string, Record<string, string>>> {
  try {
    return parseIni(await fsp.readFile(file, 'utf8'))
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return new Map()
    throw new UsageError(`cannot read ${file}: ${(err as Error).message}`, {cause: err})
  }
}

/** The access settings of an s3:// remote. `home` is the user's home directory (for ~/.aws). */
export async function resolveS3Access(remote: S3RemoteConfig, env: Env, home: string): Promise<S3Access & {credentialsFrom?: string}> {
  const profile = env.AWS_PROFILE || 'default'
  const credFile = env.AWS_SHARED_CREDENTIALS_FILE || path.join(home, '.aws', 'credentials')
  const confFile = env.AWS_CONFIG_FILE || path.join(home, '.aws', 'config')
  const creds = (await readIni(credFile)).get(profile)
  const conf = (await readIni(confFile)).get(profile === 'default' ? 'default' : `profile ${profile}`)
  let credentials: S3Access['credentials']
  let credentialsFrom: string | undefined
  if (env.AWS_ACCESS_KEY_ID && env.AWS_SECRET_ACCESS_KEY) {
    credentials = {accessKeyId: env.AWS_ACCESS_KEY_ID, secretAccessKey: env.AWS_SECRET_ACCESS_KEY, sessionToken: env.AWS_SESSION_TOKEN || undefined}
    credentialsFrom = 'AWS_ACCESS_KEY_ID'
  } else
    for (const [section, file] of [
      [creds, credFile],
      [conf, confFile],
    ] as const) {
      if (!section?.aws_access_key_id) continue
      if (!section.aws_secret_access_key) throw new UsageError(`${file}: profile ${profile} has aws_access_key_id but no aws_secret_access_key`)
      credentials = {accessKeyId: section.aws_access_key_id, secretAccessKey: section.aws_secret_access_key, sessionToken: section.aws_session_token || undefined}
      credentialsFrom = `${file} [${profile}]`
      break
    }
  if (env.AWS_PROFILE && !creds && !conf) throw new UsageError(`AWS_PROFILE=${env.AWS_PROFILE}: no such profile in ${credFile} or ${confFile}`)
  const endpoint = env.AWS_ENDPOINT_URL_S3 || env.AWS_ENDPOINT_URL || remote.endpoint || conf?.endpoint_url
  if (endpoint !== undefined) checkEndpoint(endpoint)
  const region = env.AWS_REGION || env.AWS_DEFAULT_REGION || remote.region || conf?.region || 'us-east-1'
  const pathStyle = env.VMI_S3_PATH_STYLE ? env.VMI_S3_PATH_STYLE !== '0' : remote.pathStyle
  return {region, endpoint, pathStyle, credentials, credentialsFrom}
}

/** An endpoint must be an http(s) URL with nothing past its origin. */
export function checkEndpoint(endpoint: string): void {
  let u: URL
  try {
    u = new URL(endpoint)
  } catch {
    throw new UsageError(`S3 endpoint ${JSON.stringify(endpoint)} is not a URL`)
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new UsageError(`S3 endpoint ${endpoint}: use http:// or https://`)
}

/** The access settings for a remote URL when it is s3://, else undefined (the process's environment and home). */
export async function s3AccessFor(url: string | undefined, remote: S3RemoteConfig = {}): Promise<S3Access | undefined> {
  if (url === undefined || !/^s3:\/\//i.test(url)) return undefined
  return resolveS3Access(remote, process.env, os.homedir())
}
