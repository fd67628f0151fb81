// How an s3:// remote's credentials, region and endpoint resolve (the AWS
// CLI's order), s3:// URLs, and S3 error codes as errors a user can act on.
import {test} from 'uvu'
import * as assert from 'uvu/assert'
import {mkdtempSync, mkdirSync, rmSync, writeFileSync} from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {parseIni, resolveS3Access} from '../../dist/cli/s3-settings.js'
import {parseS3Url} from '../../dist/peer/s3/s3-url.js'
import {s3Error} from '../../dist/peer/s3/s3-errors.js'

function home(files) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'vmi-aws-'))
  mkdirSync(path.join(dir, '.aws'))
  for (const [name, text] of Object.entries(files)) writeFileSync(path.join(dir, '.aws', name), text)
  return dir
}

const CREDS = `[default]
aws_access_key_id = DEFAULTKEY
aws_secret_access_key = defaultsecret

[ci]
aws_access_key_id=CIKEY
aws_secret_access_key=cisecret
aws_session_token=citoken
`
const CONFIG = `[default]
region = eu-west-1

[profile ci]
region = eu-central-1
endpoint_url = http://10.0.0.5:7480
`

test('parseIni: sections, keys lowercased, comments and continuation lines skipped', () => {
  const ini = parseIni('# c\n[a]\nKey = v = w\n; c\n  nested = x\n[b]\nk=1\n')
  assert.equal(ini.get('a'), {key: 'v = w'})
  assert.equal(ini.get('b'), {k: '1'})
})

test('credentials: the environment first, then the credentials file, for AWS_PROFILE', async () => {
  const h = home({credentials: CREDS, config: CONFIG})
  try {
    const env = await resolveS3Access({}, {AWS_ACCESS_KEY_ID: 'ENVKEY', AWS_SECRET_ACCESS_KEY: 'envsecret', AWS_SESSION_TOKEN: 'envtoken'}, h)
    assert.equal(env.credentials, {accessKeyId: 'ENVKEY', secretAccessKey: 'envsecret', sessionToken: 'envtoken'})
    assert.is(env.region, 'eu-west-1', 'region of the default profile')
    const def = await resolveS3Access({}, {}, h)
    assert.equal(def.credentials, {accessKeyId: 'DEFAULTKEY', secretAccessKey: 'defaultsecret', sessionToken: undefined})
    const ci = await resolveS3Access({}, {AWS_PROFILE: 'ci'}, h)
    assert.equal(ci.credentials, {accessKeyId: 'CIKEY', secretAccessKey: 'cisecret', sessionToken: 'citoken'})
    assert.is(ci.region, 'eu-central-1')
    assert.is(ci.endpoint, 'http://10.0.0.5:7480', "the profile's endpoint_url")
    await resolveS3Access({}, {AWS_PROFILE: 'nosuch'}, h).then(
      () => assert.unreachable('an unknown profile is an error'),
      (err) => assert.match(err.message, /AWS_PROFILE=nosuch: no such profile/),
    )
  } finally {
    rmSync(h, {recursive: true, force: true})
  }
})

test('region and endpoint: environment over the remote config over the profile; no credentials at all is anonymous', async () => {
  const h = home({config: CONFIG})
  try {
    const remote = {endpoint: 'http://remote:1', region: 'ap-south-1', pathStyle: true}
    const r = await resolveS3Access(remote, {}, h)
    assert.equal([r.endpoint, r.region, r.pathStyle, r.credentials], ['http://remote:1', 'ap-south-1', true, undefined])
    const e = await resolveS3Access(remote, {AWS_ENDPOINT_URL: 'http://generic:2', AWS_ENDPOINT_URL_S3: 'http://s3only:3', AWS_REGION: 'us-west-2', VMI_S3_PATH_STYLE: '0'}, h)
    assert.equal([e.endpoint, e.region, e.pathStyle], ['http://s3only:3', 'us-west-2', false])
    const d = await resolveS3Access({}, {AWS_CONFIG_FILE: '/nonexistent'}, h)
    assert.equal([d.endpoint, d.region], [undefined, 'us-east-1'])
    await resolveS3Access({}, {AWS_ENDPOINT_URL: 'ftp://x'}, h).then(
      () => assert.unreachable('a non-http endpoint is refused'),
      (err) => assert.is(err.exitCode, 2),
    )
  } finally {
    rmSync(h, {recursive: true, force: true})
  }
})

test('s3:// URLs: bucket and prefix; bad bucket names and dot segments refused', () => {
  assert.equal(parseS3Url('s3://vmi-images/prod/x/'), {bucket: 'vmi-images', prefix: 'prod/x'})
  assert.equal(parseS3Url('s3://vmi-images'), {bucket: 'vmi-images', prefix: ''})
  for (const bad of ['s3://', 's3://UPPER/x', 's3://a/x', 's3://ok-bucket/../x', 's3://ok-bucket/a//b', 'http://x/y']) assert.throws(() => parseS3Url(bad), undefined, bad)
})

test('S3 error codes: refused credentials exit 10, the rest exit 9, each named', () => {
  const ctx = {source: 'seed s3://b/p', bucket: 'b', endpoint: 'http://e', region: 'us-east-1', accessKeyId: 'AK', what: 'chunk x'}
  const doc = (code) => `<?xml version="1.0"?><Error><Code>${code}</Code><Message>m</Message></Error>`
  const cases = [
    [403, 'SignatureDoesNotMatch', 10, /secret key does not match access key AK/],
    [403, 'InvalidAccessKeyId', 10, /access key AK is unknown/],
    [403, 'AccessDenied', 10, /access denied/],
    [403, 'RequestTimeTooSkewed', 9, /clock differs/],
    [404, 'NoSuchBucket', 9, /bucket b does not exist at http:\/\/e/],
    [400, 'AuthorizationHeaderMalformed', 9, /wrong region or endpoint.*bucket is in eu-west-1/],
    [503, 'SlowDown', 9, /HTTP 503 SlowDown/],
  ]
  for (const [status, code, exit, re] of cases) {
    const err = s3Error({status, body: doc(code), bucketRegion: 'eu-west-1'}, ctx)
    assert.is(err.exitCode, exit, code)
    assert.match(err.message, re)
    assert.is(err.status, status, 'the status is kept (5xx are retried, 4xx not)')
  }
})

test.run()
