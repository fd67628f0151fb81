// NBD over TLS for `vmi mount --listen` (the NBD protocol's STARTTLS, as
// qemu and libnbd speak it), with certificates made by openssl in the test:
// qemu-img and nbdinfo read the image through nbds:// with the test CA and
// a client certificate and get its bytes; a plain client, one without a
// client certificate, one with another CA's and one with an expired one are
// refused; before TLS every option but STARTTLS and ABORT answers
// NBD_REP_ERR_TLS_REQD; and plain NBD on a non-loopback address needs
// --allow-plain-nbd (checked in a network namespace this test creates).
import {test} from 'uvu'
import * as assert from 'uvu/assert'
import {spawnSync} from 'node:child_process'
import {once} from 'node:events'
import {chmodSync, cpSync, mkdirSync, readFileSync, statSync} from 'node:fs'
import path from 'node:path'
import tls from 'node:tls'
import {exec, execAsync, hasCommand, isRoot, makeImage, runAsync, sha256File, skip, tmpDir} from '../helpers/index.js'
import {startMount} from '../helpers/mount.js'
import {P, Raw} from '../helpers/nbd-raw.js'
import {makePki} from '../helpers/pki.js'

const M = 1024 * 1024
const T = tmpDir('vmi-nbd-tls-')
const SRC = path.join(T.dir, 'src.raw')
const STORE = path.join(T.dir, 'store')
let fx

async function fixture() {
  if (fx) return fx
  await makeImage(SRC, [{kind: 'random', size: 2 * M, seed: 'nbd-tls'}, {kind: 'zero', size: M}])
  const r = exec(['import', SRC, 'img:1', '--chunk-size', '64K'], {store: STORE})
  assert.is(r.status, 0, r.stderr)
  const pki = makePki(path.join(T.dir, 'pki'))
  /** A directory of client files named as qemu and libnbd look for them. */
  const clientDir = (name, who) => {
    const d = path.join(T.dir, name)
    mkdirSync(d, {recursive: true})
    cpSync(pki.ca, path.join(d, 'ca-cert.pem'))
    if (who) {
      cpSync(who.cert, path.join(d, 'client-cert.pem'))
      cpSync(who.key, path.join(d, 'client-key.pem'))
    }
    return d
  }
  fx = {
    pki,
    dirs: {good: clientDir('good', pki.client), none: clientDir('none'), foreign: clientDir('foreign', pki.foreign), expired: clientDir('expired', pki.expired)},
  }
  return fx
}

/** qemu-img's arguments for an NBD export at host:port over TLS with the client files in `dir`. */
function qemuTls(port, dir) {
  return ['--object', `tls-creds-x509,id=tls0,endpoint=client,dir=${dir}`, '--image-opts', `driver=nbd,host=127.0.0.1,port=${port},tls-creds=tls0`]
}

test('mount --listen --tls-cert --client-ca: qemu-img and nbdinfo read the image through TLS; plain, certificate-less, foreign and expired clients are refused', async () => {
  for (const cmd of ['openssl', 'qemu-img', 'nbdinfo']) if (!hasCommand(cmd)) return skip(`${cmd} is not installed`)
  const {pki, dirs} = await fixture()
  const m = await startMount(STORE, ['img:1', '--read-only', '--prefetch', 'none', '--listen', '127.0.0.1:0', '--tls-cert', pki.server.cert, '--tls-key', pki.server.key, '--client-ca', pki.ca])
  try {
    assert.match(m.nbd, /^nbds:\/\/127\.0\.0\.1:\d+\/$/)
    const port = Number(new URL(m.nbd).port)
    // qemu-img: info and a whole copy through TLS
    const info = await runAsync('qemu-img', ['info', '--output=json', ...qemuTls(port, dirs.good)])
    assert.is(info.status, 0, info.out)
    assert.is(JSON.parse(info.out)['virtual-size'], 3 * M)
    const out = path.join(T.dir, 'qemu-copy.raw')
    const conv = await runAsync('qemu-img', ['convert', '-O', 'raw', ...qemuTls(port, dirs.good), out])
    assert.is(conv.status, 0, conv.out)
    assert.is(await sha256File(out), await sha256File(SRC))
    // libnbd: nbdinfo with an nbds:// URI and the certificates directory
    const ni = await runAsync('nbdinfo', ['--json', `${m.nbd}?tls-certificates=${dirs.good}`])
    assert.is(ni.status, 0, ni.out)
    const j = JSON.parse(ni.out)
    assert.is(j.TLS, true)
    assert.is(j.exports[0]['export-size'], 3 * M)
    const copy = path.join(T.dir, 'nbdcopy.raw')
    if (hasCommand('nbdcopy')) {
      const c = await runAsync('nbdcopy', [`${m.nbd}?tls-certificates=${dirs.good}`, copy])
      assert.is(c.status, 0, c.out)
      assert.is(await sha256File(copy), await sha256File(SRC))
    }

    // refused: plain NBD (qemu and libnbd), and TLS without a good client certificate
    const plainQemu = await runAsync('qemu-img', ['info', `nbd://127.0.0.1:${port}/`])
    assert.is.not(plainQemu.status, 0)
    assert.match(plainQemu.out, /TLS/)
    const plainNbd = await runAsync('nbdinfo', [`nbd://127.0.0.1:${port}/`])
    assert.is.not(plainNbd.status, 0, plainNbd.out)
    for (const who of ['none', 'foreign', 'expired']) {
      const q = await runAsync('qemu-img', ['info', ...qemuTls(port, dirs[who])])
      assert.is.not(q.status, 0, `qemu-img, ${who}: ${q.out}`)
      assert.not.match(q.out, /virtual size/, who)
      const n = await runAsync('nbdinfo', [`${m.nbd}?tls-certificates=${dirs[who]}`])
      assert.is.not(n.status, 0, `nbdinfo, ${who}: ${n.out}`)
      assert.not.match(n.out, /export-size/, who)
    }
  } finally {
    const r = await m.stop()
    assert.is(r.code, 0, r.stderr)
  }
})

test('STARTTLS on the wire: before TLS only STARTTLS and ABORT are served (NBD_REP_ERR_TLS_REQD), EXPORT_NAME disconnects; inside TLS a second STARTTLS is invalid and GO works', async () => {
  if (!hasCommand('openssl')) return skip('openssl is not installed')
  const {pki} = await fixture()
  const m = await startMount(STORE, ['img:1', '--read-only', '--prefetch', 'none', '--listen', '127.0.0.1:0', '--tls-cert', pki.server.cert, '--tls-key', pki.server.key])
  try {
    const port = Number(new URL(m.nbd).port)
    const c = await Raw.connect({host: '127.0.0.1', port})
    await c.greeting()
    for (const [opt, data] of [
      [P.OPT_GO, P.encodeInfoRequest('', [])],
      [P.OPT_INFO, P.encodeInfoRequest('', [])],
      [P.OPT_LIST, undefined],
      [P.OPT_STRUCTURED_REPLY, undefined],
      [P.OPT_SET_META_CONTEXT, P.encodeMetaContextRequest('', ['base:allocation'])],
    ]) {
      const r = await c.option(opt, data)
      assert.is(r.type, P.REP_ERR_TLS_REQD, `option ${opt} before TLS`)
    }
    assert.is((await c.option(P.OPT_STARTTLS, Buffer.from('x'))).type, P.REP_ERR_INVALID, 'STARTTLS with data')
    assert.is((await c.option(P.OPT_STARTTLS)).type, P.REP_ACK)
    // the same connection, now TLS (no client certificate needed: this mount has no --client-ca)
    const s = tls.connect({socket: c.sock, ca: readFileSync(pki.ca), servername: undefined, host: '127.0.0.1'})
    s.on('error', () => {})
    await once(s, 'secureConnect')
    const t = new Raw(s)
    assert.is((await t.option(P.OPT_STARTTLS)).type, P.REP_ERR_INVALID, 'a second STARTTLS')
    t.write(P.encodeOption(P.OPT_GO, P.encodeInfoRequest('', [])))
    let r
    while ((r = await t.optReply()).type === P.REP_INFO);
    assert.is(r.type, P.REP_ACK, 'GO inside TLS')
    t.destroy()

    // EXPORT_NAME cannot be refused with a reply: the server disconnects
    const e = await Raw.connect({host: '127.0.0.1', port})
    await e.greeting()
    e.write(P.encodeOption(P.OPT_EXPORT_NAME, Buffer.from('')))
    assert.ok(await e.waitClosed(), 'EXPORT_NAME before TLS ends the connection')
    // ABORT is served in the clear
    const a = await Raw.connect({host: '127.0.0.1', port})
    await a.greeting()
    assert.is((await a.option(P.OPT_ABORT)).type, P.REP_ACK)
  } finally {
    await m.stop()
  }
})

test('plain NBD on a non-loopback --listen needs --allow-plain-nbd (exit 2 otherwise); --tls-cert needs --listen and no bridge', async () => {
  const {pki} = await fixture()
  for (const listen of ['0.0.0.0:0', ':0', '10.78.0.1:0']) {
    const r = exec(['mount', 'img:1', '--read-only', '--listen', listen, '--exec', 'true'], {store: STORE})
    assert.is(r.status, 2, `${listen}: ${r.stderr}`)
    for (const w of ['--tls-cert', '--allow-plain-nbd']) assert.ok(r.stderr.includes(w), `${listen}: names ${w}: ${r.stderr}`)
  }
  const noListen = exec(['mount', 'img:1', '--read-only', '--tls-cert', pki.server.cert, '--tls-key', pki.server.key, '--exec', 'true'], {store: STORE})
  assert.is(noListen.status, 2, noListen.stderr)
  const bridge = exec(['mount', 'img:1', '--read-only', '--listen', '127.0.0.1:0', '--tls-cert', pki.server.cert, '--tls-key', pki.server.key, '--file', path.join(T.dir, 'f.raw'), '--exec', 'true'], {store: STORE})
  assert.is(bridge.status, 2, bridge.stderr)
  assert.match(bridge.stderr, /--file does not speak NBD over TLS/)

  if (!isRoot || !hasCommand('ip') || !hasCommand('nbdinfo')) return skip('a non-loopback address needs root, ip and nbdinfo (a network namespace)')
  const ns = `vmi-nbdtls-${process.pid}`
  const ip = (args) => spawnSync('ip', args, {encoding: 'utf8'})
  ip(['netns', 'del', ns])
  try {
    for (const args of [['netns', 'add', ns], ['-n', ns, 'link', 'set', 'lo', 'up'], ['-n', ns, 'link', 'add', 'v0', 'type', 'veth', 'peer', 'name', 'v1'], ['-n', ns, 'addr', 'add', '10.78.0.1/24', 'dev', 'v0'], ['-n', ns, 'link', 'set', 'v0', 'up'], ['-n', ns, 'link', 'set', 'v1', 'up']]) {
      const r = ip(args)
      if (r.status !== 0) return skip(`no network namespace: ip ${args.join(' ')}: ${r.stderr.trim()}`)
    }
    const plain = await execAsync(['mount', 'img:1', '--read-only', '--prefetch', 'none', '--listen', '10.78.0.1:0', '--allow-plain-nbd', '--exec', 'nbdinfo --size {nbd}'], {store: STORE, netns: ns})
    assert.is(plain.status, 0, plain.stderr)
    assert.match(plain.stdout, new RegExp(`^${3 * M}$`, 'm'))
    // with TLS no flag is needed; nbdinfo reads through nbds:// inside the namespace
    const secure = await execAsync(['mount', 'img:1', '--read-only', '--prefetch', 'none', '--listen', '10.78.0.1:0', '--tls-cert', pki.server.cert, '--tls-key', pki.server.key, '--exec', `nbdinfo --size '{nbd}?tls-certificates=${fx.dirs.none}'`], {store: STORE, netns: ns})
    assert.is(secure.status, 0, secure.stderr)
    assert.match(secure.stdout, /^nbd: nbds:\/\/10\.78\.0\.1:\d+\/$/m)
    assert.match(secure.stdout, new RegExp(`^${3 * M}$`, 'm'))
  } finally {
    ip(['netns', 'del', ns])
  }
})

test("another local user cannot connect to a mount's unix socket (mode 0600), whatever the umask; its owner can", async () => {
  if (!isRoot) return skip('needs root to run a client as another user (uid 65534)')
  if (!hasCommand('nbdinfo')) return skip('nbdinfo is not installed')
  await fixture()
  const sock = path.join(T.dir, 'local.sock')
  // a umask that would leave the socket open to everyone (the child inherits it)
  const umask = process.umask(0)
  let m
  try {
    m = await startMount(STORE, ['img:1', '--read-only', '--prefetch', 'none', '--socket', sock])
  } finally {
    process.umask(umask)
  }
  try {
    assert.is(statSync(sock).mode & 0o777, 0o600)
    // the store's tmp/ and T.dir must be searchable for the other user to get as far as the socket
    chmodSync(T.dir, 0o755)
    const other = spawnSync('nbdinfo', ['--size', m.nbd], {uid: 65534, gid: 65534, encoding: 'utf8'})
    assert.is.not(other.status, 0, other.stdout)
    assert.match(other.stderr, /Permission denied/)
    const owner = spawnSync('nbdinfo', ['--size', m.nbd], {encoding: 'utf8'})
    assert.is(owner.status, 0, owner.stderr)
    assert.is(owner.stdout.trim(), String(3 * M))
  } finally {
    await m.stop()
  }
})

test.after(() => T.cleanup())
test.run()
