import {Args, Flags} from '#oclif'
import path from 'node:path'
import {BaseCommand} from '../../cli/base-command.js'
import {readCaFile, readClientCertFiles, readTokenFile} from '../../cli/credential-files.js'
import {UsageError} from '../../errors.js'
import {isValidRefPart} from '../../store/ref.js'
import {withLock} from '../../store/lock.js'
import {parseRemoteUrl, type RemoteConfig, type RemoteEntry} from '../../cli/settings.js'
import {checkEndpoint} from '../../cli/s3-settings.js'
import {parseS3Url} from '../../peer/s3/s3-url.js'

export default class RemoteAdd extends BaseCommand<typeof RemoteAdd> {
  static override summary = 'Add (or change) a named remote seed.'
  static override description = `Stored in the store's config.json. --token-file, --read-token-file, --ca-cert and --tls-client-cert/--tls-client-key are checked now (the file must exist and hold a token, PEM certificates, or a certificate and its key) and stored as absolute paths; their contents are read again at each use. An s3://BUCKET/PREFIX remote is a bucket (S3, or an S3-compatible store with --endpoint); its credentials are never stored here: they come from the environment or ~/.aws like the AWS CLI's.

Exit codes: 0 ok, 2 a bad name or URL, or an empty or unreadable file, 3 a --token-file, --read-token-file, --ca-cert or --tls-client-* file that does not exist. On failure the config is unchanged.`
  static override examples = [
    '<%= config.bin %> remote add origin https://seed.example:7070',
    '<%= config.bin %> remote add origin http://10.0.0.1:7070 --token-file /etc/vmi/token',
    '<%= config.bin %> remote add origin https://seed.internal:7070 --ca-cert /etc/vmi/ca.pem',
    '<%= config.bin %> remote add origin https://seed.internal:7443 --ca-cert /etc/vmi/ca.pem --tls-client-cert /etc/vmi/host.pem --tls-client-key /etc/vmi/host.key',
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
    'read-token-file': Flags.string({summary: 'File holding the read token for this remote (first line), sent on every request.'}),
    'tls-client-cert': Flags.string({summary: 'PEM client certificate shown to this remote (serve --client-ca); needs --tls-client-key.', dependsOn: ['tls-client-key']}),
    'tls-client-key': Flags.string({summary: 'PEM private key of --tls-client-cert.', dependsOn: ['tls-client-cert']}),
  }

  async run(): Promise<{name: string; url: string}> {
    const {name, url} = this.args
    if (!isValidRefPart(name)) throw new UsageError(`invalid remote name ${JSON.stringify(name)}`)
    const u = parseRemoteUrl(url)
    const s3 = u.protocol === 's3:'
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
    const abs = (f: string | undefined) => (f === undefined ? undefined : path.resolve(f))
    const caCert = abs(this.flags['ca-cert'])
    const readTokenPath = abs(this.flags['read-token-file'])
    const tlsClientCert = abs(this.flags['tls-client-cert'])
    const tlsClientKey = abs(this.flags['tls-client-key'])
    if (tokenFile) await readTokenFile(tokenFile)
    if (readTokenPath) await readTokenFile(readTokenPath, 'read token')
    if (caCert) await readCaFile(caCert)
    if (tlsClientCert && tlsClientKey) await readClientCertFiles(tlsClientCert, tlsClientKey)
    const store = await this.openStore()
    await withLock(store.layout, {op: 'config'}, async () => {
      const config = await store.readConfig()
      const remotes = {...((config as RemoteConfig).remotes ?? {})}
      const entry: RemoteEntry = {url: s3 ? url.replace(/\/+$/, '') : u.href.replace(/\/+$/, ''), tokenFile, caCert, readTokenFile: readTokenPath, tlsClientCert, tlsClientKey, ...s3Fields}
      // only the keys that are set
      remotes[name] = Object.fromEntries(Object.entries(entry).filter(([, v]) => v !== undefined)) as RemoteEntry
      await store.writeConfig({...config, remotes})
    })
    this.log(`${name} ${url}`)
    return {name, url}
  }
}
