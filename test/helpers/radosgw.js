// A throwaway S3 server for tests: Ceph radosgw (scripts/radosgw.sh) with one
// user of known keys, and the aws CLI (Debian's awscli) to make buckets.
import {spawn, spawnSync} from 'node:child_process'
import {existsSync} from 'node:fs'
import path from 'node:path'
import {hasCommand, isRoot, ROOT} from './index.js'

const SCRIPT = path.join(ROOT, 'scripts', 'radosgw.sh')
/** Debian's awscli (not a pip-installed one earlier on PATH). */
const AWS = existsSync('/usr/bin/aws') ? '/usr/bin/aws' : 'aws'

/** Why radosgw cannot run here, or undefined when it can. */
export function radosgwUnavailable() {
  if (!isRoot) return 'radosgw needs root (ceph daemons)'
  for (const c of ['ceph-mon', 'ceph-osd', 'radosgw', 'aws']) if (!hasCommand(c)) return `${c} is not installed (scripts/install-deps.sh)`
  return undefined
}

function run(cmd, args, env) {
  return new Promise((resolve) => {
    const c = spawn(cmd, args, {env})
    let out = ''
    let err = ''
    c.stdout.on('data', (d) => (out += d))
    c.stderr.on('data', (d) => (err += d))
    c.on('close', (status) => resolve({status, out, err}))
  })
}

/**
 * Start radosgw; returns {endpoint, accessKey, secretKey, region, env, aws(), mkBucket(), stop()}.
 * `env` is what the CLI needs to reach it (credentials, region, endpoint).
 * `opts.usage` turns on radosgw's usage log.
 */
export async function startRadosgw(opts = {}) {
  const r = await run(SCRIPT, ['start'], {...process.env, RGW_USAGE: opts.usage ? '1' : '0'})
  if (r.status !== 0) throw new Error(`radosgw did not start: ${r.err}`)
  const vars = Object.fromEntries(r.out.trim().split('\n').map((l) => l.split(/=(.*)/s).slice(0, 2)))
  const env = {
    AWS_ACCESS_KEY_ID: vars.S3_ACCESS_KEY,
    AWS_SECRET_ACCESS_KEY: vars.S3_SECRET_KEY,
    AWS_REGION: vars.S3_REGION,
    AWS_ENDPOINT_URL: vars.S3_ENDPOINT,
    // nothing from the user's own ~/.aws
    AWS_SHARED_CREDENTIALS_FILE: '/nonexistent',
    AWS_CONFIG_FILE: '/nonexistent',
  }
  // Debian's awscli 2.9 does not read AWS_ENDPOINT_URL (2.13 and later do)
  const aws = (args) => run(AWS, ['--endpoint-url', vars.S3_ENDPOINT, ...args], {...process.env, ...env, AWS_PAGER: ''})
  return {
    dir: vars.RGW_DIR,
    endpoint: vars.S3_ENDPOINT,
    accessKey: vars.S3_ACCESS_KEY,
    secretKey: vars.S3_SECRET_KEY,
    region: vars.S3_REGION,
    env,
    aws,
    async mkBucket(name) {
      const b = await aws(['s3api', 'create-bucket', '--bucket', name])
      if (b.status !== 0) throw new Error(`create-bucket ${name}: ${b.err}`)
    },
    /** Anyone may read and list the bucket (a public seed). */
    async makePublic(name) {
      const policy = JSON.stringify({
        Version: '2012-10-17',
        Statement: [{Effect: 'Allow', Principal: '*', Action: ['s3:GetObject', 's3:ListBucket'], Resource: [`arn:aws:s3:::${name}`, `arn:aws:s3:::${name}/*`]}],
      })
      const p = await aws(['s3api', 'put-bucket-policy', '--bucket', name, '--policy', policy])
      if (p.status !== 0) throw new Error(`put-bucket-policy ${name}: ${p.err}`)
    },
    stop() {
      spawnSync(SCRIPT, ['stop', vars.RGW_DIR], {stdio: 'ignore'})
    },
  }
}
