// A test PKI made with openssl: a CA, a server certificate for 127.0.0.1
// (and localhost, and 10.78.0.1: the tests' network namespaces), client certificates from that CA (one valid, one that
// expired), and a client certificate from another CA. The expired one is
// issued by `openssl ca` with an explicit -startdate/-enddate in the past
// (OpenSSL 3.0 has no -not_after for x509/req). File names follow the ones
// qemu and libnbd look for in a tls-certificates directory (ca-cert.pem,
// server-cert.pem, server-key.pem, client-cert.pem, client-key.pem).
import {spawnSync} from 'node:child_process'
import {mkdirSync, writeFileSync} from 'node:fs'
import path from 'node:path'

const EC = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes']

function openssl(args, cwd) {
  const r = spawnSync('openssl', args, {cwd, encoding: 'utf8'})
  if (r.status !== 0) throw new Error(`openssl ${args.join(' ')}: ${r.stderr}`)
}

/** A CA (cert + key) in `dir`, named `name`. */
function makeCa(dir, name, cn) {
  openssl(['req', '-x509', ...EC, '-keyout', path.join(dir, `${name}-key.pem`), '-out', path.join(dir, `${name}-cert.pem`), '-days', '3', '-subj', `/CN=${cn}`], dir)
  return {cert: path.join(dir, `${name}-cert.pem`), key: path.join(dir, `${name}-key.pem`)}
}

/** A certificate for `name` signed by `ca`, with the given extensions. */
function issue(dir, ca, name, cn, ext) {
  const key = path.join(dir, `${name}-key.pem`)
  const csr = path.join(dir, `${name}.csr`)
  const cert = path.join(dir, `${name}-cert.pem`)
  const extFile = path.join(dir, `${name}.ext`)
  writeFileSync(extFile, ext)
  openssl(['req', ...EC, '-keyout', key, '-out', csr, '-subj', `/CN=${cn}`], dir)
  openssl(['x509', '-req', '-in', csr, '-CA', ca.cert, '-CAkey', ca.key, '-CAcreateserial', '-out', cert, '-days', '2', '-extfile', extFile], dir)
  return {cert, key}
}

/** A client certificate signed by `ca` whose validity ended yesterday (via `openssl ca`). */
function issueExpired(dir, ca, name) {
  const db = path.join(dir, `${name}-db`)
  mkdirSync(db, {recursive: true})
  writeFileSync(path.join(db, 'index.txt'), '')
  writeFileSync(path.join(db, 'serial'), '1000\n')
  const conf = path.join(db, 'ca.cnf')
  writeFileSync(
    conf,
    `[ca]\ndefault_ca = test\n[test]\ndir = ${db}\ndatabase = ${db}/index.txt\nserial = ${db}/serial\nnew_certs_dir = ${db}\n` +
      `certificate = ${ca.cert}\nprivate_key = ${ca.key}\ndefault_md = sha256\npolicy = any\nunique_subject = no\ncopy_extensions = none\nx509_extensions = ext\n` +
      `[any]\ncommonName = supplied\n[ext]\nextendedKeyUsage = clientAuth\nbasicConstraints = CA:FALSE\n`,
  )
  const key = path.join(dir, `${name}-key.pem`)
  const csr = path.join(dir, `${name}.csr`)
  const cert = path.join(dir, `${name}-cert.pem`)
  openssl(['req', ...EC, '-keyout', key, '-out', csr, '-subj', `/CN=${name}`], dir)
  const fmt = (d) => d.toISOString().replace(/[-:T]/g, '').slice(0, 14) + 'Z'
  const day = 86_400_000
  openssl(['ca', '-batch', '-config', conf, '-in', csr, '-out', cert, '-notext', '-startdate', fmt(new Date(Date.now() - 3 * day)), '-enddate', fmt(new Date(Date.now() - day))], dir)
  return {cert, key}
}

/**
 * Everything in `dir`. Returns paths: ca (PEM of the CA), server {cert,key},
 * client {cert,key}, expired {cert,key}, foreign {cert,key} (another CA's
 * client), foreignCa, and `qemuDir`/`clientDir`: directories holding the
 * server's and the client's files under the names qemu and libnbd expect.
 */
export function makePki(dir) {
  mkdirSync(dir, {recursive: true})
  const ca = makeCa(dir, 'ca', 'vmi test CA')
  const server = issue(dir, ca, 'server', '127.0.0.1', 'subjectAltName=IP:127.0.0.1,IP:10.78.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n')
  const client = issue(dir, ca, 'client', 'vmi test client', 'extendedKeyUsage=clientAuth\n')
  const expired = issueExpired(dir, ca, 'expired')
  const other = makeCa(dir, 'other-ca', 'another CA')
  const foreign = issue(dir, other, 'foreign', 'foreign client', 'extendedKeyUsage=clientAuth\n')
  const link = (sub, files) => {
    const d = path.join(dir, sub)
    mkdirSync(d, {recursive: true})
    for (const [to, from] of Object.entries(files)) spawnSync('cp', [from, path.join(d, to)])
    return d
  }
  const clientDir = link('client-dir', {'ca-cert.pem': ca.cert, 'client-cert.pem': client.cert, 'client-key.pem': client.key})
  const serverDir = link('server-dir', {'ca-cert.pem': ca.cert, 'server-cert.pem': server.cert, 'server-key.pem': server.key})
  return {ca: ca.cert, server, client, expired, foreign, foreignCa: other.cert, clientDir, serverDir}
}
