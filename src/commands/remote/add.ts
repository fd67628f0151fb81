import {Args, Flags} from '#oclif'
import path from 'node:path'
import {BaseCommand} from '../../cli/base-command.js'
import {readCaFile, readTokenFile} from '../../cli/credential-files.js'
import {UsageError} from '../../errors.js'
import {isValidRefPart} from '../../store/ref.js'
import {withLock} from '../../store/lock.js'
import type {RemoteConfig} from '../../cli/settings.js'
import {checkEndpoint} from '../../cli/s3-settings.js'
import {parseS3Url} from '../../peer/s3/s3-store.js'

export default class RemoteAdd extends BaseCommand<typeof RemoteAdd> {
  static override summary = 'Add (or change) a named remote seed.'
  static override description = `Stored in the store's config.json. --token-file and --ca-cert are checked now (the file must exist and hold a token, or PEM certificates) and stored as absolute paths; their contents are read again at each use. An s3://BUCKET/PREFIX remote is a bucket (S3, or an S3-compatible store with --endpoint); its credentials are never stored here: they come from the environment or ~/.aws like the AWS CLI's.

Exit codes: 0 ok, 2 a bad name or URL, or an empty or unreadable file, 3 a --token-file or --ca-cert file that does not exist. On failure the config is unchanged.`
  static override examples = [
    '<%= config.bin %> remote add origin https://seed.example:7070',
    '<%= config.bin %> remote add origin http://10.0.0.1:7070 --token-file /etc/vmi/token',
    '<%= config.bin %> remote add origin https://seed.internal:7070 --ca-cert /etc/vmi/ca.pem',
    '<%= config.bin %> remote add origin s3://vmi-images/prod --region eu-central-1',
    '<%= config.bin %> remote add origin s3://vmi-images/prod --endpoint http://10.0.0.5:7480',
  ]
  static override args = {
    name: Args.string({description: 'Remote name (origin is the default remote).', required: true}),
    url: Args.string({description: 'http(s) URL of the seed, or s3://BUCKET/PREFIX.', required: true}),
  }
  static override flags = {
    'token-file': Flags.string({summary: 'File holding the push token for this remote (first line), read at each push.'}),
    'ca-cert': Flags.string({summary: "PEM file of CA certificates to trust for this remote's TLS certificate (a private CA)."}),
    endpoint: Flags.string({summary: 'S3 endpoint URL of an S3-compatible store (s3:// remotes; $AWS_ENDPOINT_URL_S3 overrides it).'}),
    region: Flags.string({summary: 'S3 region (s3:// remotes; $AWS_REGION overrides it).'}),
    'path-style': Flags.boolean({summary: 'Path-style S3 requests (ENDPOINT/BUCKET/KEY), for stores without a DNS name per bucket (s3:// remotes).'}),
  }

  async run(): Promise<{name: string; url: string}> {
    const {name, url} = this.args
    if (!isValidRefPart(name)) throw new UsageError(`invalid remote name ${JSON.stringify(name)}`)
    let u: URL
    try {
      u = new URL(url)
    } catch {
      throw new UsageError(`${url} is not a URL`)
    }
    const s3 = u.protocol === 's3:'
    if (u.protocol !== 'http:' && u.protocol !== 'https:' && !s3) throw new UsageError(`${url}: only http://, https:// and s3:// remotes are supported`)
    if (s3) {
      try {
        parseS3Url(url)
      } catch (err) {
        throw new UsageError((err as Error).message)
      }
    } else if (this.flags.endpoint || this.flags.region || this.flags['path-style']) throw new UsageError('--endpoint, --region and --path-style are for s3:// remotes')
    if (this.flags.endpoint) checkEndpoint(this.flags.endpoint)
    const s3Fields = {
      ...(this.flags.endpoint ? {endpoint: new URL(this.flags.endpoint).origin} : {}),
      ...(this.flags.region ? {region: this.flags.region} : {}),
      ...(this.flags['path-style'] ? {pathStyle: true} : {}),
    }
    // checked before anything is stored: a typo is an error now, not at the first push
    const tokenFile = this.flags['token-file'] === undefined ? undefined : path.resolve(this.flags['token-file'])
    const caCert = this.flags['ca-cert'] === undefined ? undefined : path.resolve(this.flags['ca-cert'])
    if (tokenFile) await readTokenFile(tokenFile)
    if (caCert) await readCaFile(caCert)
    const store = await this.openStore()
    await withLock(store.layout, {op: 'config'}, async () => {
      const config = await store.readConfig()
      const remotes = {...((config as RemoteConfig).remotes ?? {})}
      remotes[name] = {url: s3 ? url.replace(/\/+$/, '') : u.href.replace(/\/+$/, ''), ...(tokenFile ? {tokenFile} : {}), ...(caCert ? {caCert} : {}), ...s3Fields}
      await store.writeConfig({...config, remotes})
    })
    this.log(`${name} ${url}`)
    return {name, url}
  }
}
