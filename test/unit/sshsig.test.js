// SSH signatures against OpenSSH itself: what vmi signs, `ssh-keygen -Y
// verify` accepts; what `ssh-keygen -Y sign` writes, vmi verifies; the same
// for every key type vmi supports, through a key file and through a real
// ssh-agent (an encrypted key included). The allowed signers matcher agrees
// with ssh-keygen's on principals, negation and namespaces.
import {test} from 'uvu'
import * as assert from 'uvu/assert'
import {spawn, spawnSync} from 'node:child_process'
import {existsSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import path from 'node:path'
import {hasCommand, skip, tmpDir} from '../helpers/index.js'
import {signerFromPrivateKey, parsePublicKeyLine, fingerprint} from '../../dist/security/ssh-keys.js'
import {signSshsig, parseSshsig, verifySshsig} from '../../dist/security/sshsig.js'
import {agentSigner} from '../../dist/security/ssh-agent.js'
import {findAllowedSigner, matchPatternList, parseAllowedSigners} from '../../dist/security/allowed-signers.js'

const KEYS = [
  ['ed25519', ['-t', 'ed25519']],
  ['ecdsa-256', ['-t', 'ecdsa', '-b', '256']],
  ['ecdsa-384', ['-t', 'ecdsa', '-b', '384']],
  ['ecdsa-521', ['-t', 'ecdsa', '-b', '521']],
  ['rsa-3072', ['-t', 'rsa', '-b', '3072']],
]

const have = hasCommand('ssh-keygen')
const work = tmpDir('vmi-sshsig-')
const keyFile = (name) => path.join(work.dir, `k-${name}`)

function sh(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, {encoding: 'utf8', ...opts})
  return {status: r.status, out: (r.stdout ?? '') + (r.stderr ?? '')}
}

function keygen(name, args, passphrase = '') {
  if (!existsSync(keyFile(name))) assert.is(sh('ssh-keygen', ['-q', ...args, '-N', passphrase, '-C', `test ${name}`, '-f', keyFile(name)]).status, 0)
  return keyFile(name)
}

/** ssh-keygen -Y verify of `message` against `armored`, the key allowed as principal `p`. */
function sshVerify(pubFile, message, armored, namespace = 'vmi-ref', principal = 'p') {
  const allowed = path.join(work.dir, 'allowed')
  const sig = path.join(work.dir, 'check.sig')
  writeFileSync(allowed, `${principal} ${readFileSync(pubFile, 'utf8')}`)
  writeFileSync(sig, armored)
  return sh('ssh-keygen', ['-Y', 'verify', '-f', allowed, '-I', principal, '-n', namespace, '-s', sig], {input: message})
}

/** ssh-keygen -Y sign of `message` with the key file: the armored signature. */
function sshSign(file, message, namespace = 'vmi-ref') {
  const msg = path.join(work.dir, 'msg')
  rmSync(`${msg}.sig`, {force: true})
  writeFileSync(msg, message)
  const r = sh('ssh-keygen', ['-Y', 'sign', '-q', '-f', file, '-n', namespace, msg])
  assert.is(r.status, 0, r.out)
  return readFileSync(`${msg}.sig`, 'utf8')
}

for (const [name, args] of KEYS) {
  test(`${name}: vmi's signature verifies with ssh-keygen -Y verify, ssh-keygen's with vmi; a changed message or namespace does not`, () => {
    if (!have) return skip('ssh-keygen is not installed')
    const file = keygen(name, args)
    const signer = signerFromPrivateKey(readFileSync(file, 'utf8'), file)
    assert.is(fingerprint(signer.publicKey), fingerprint(parsePublicKeyLine(readFileSync(`${file}.pub`, 'utf8'))))
    const message = Buffer.from(`vmi-ref-signature v1\nref web:1\nid ${'ab'.repeat(32)}\ntime 2026-12-06T00:00:00.000Z\n`)
    return (async () => {
      const ours = await signSshsig(message, 'vmi-ref', signer)
      const ok = sshVerify(`${file}.pub`, message, ours)
      assert.is(ok.status, 0, ok.out)
      assert.match(ok.out, /Good "vmi-ref" signature for p/)
      assert.is.not(sshVerify(`${file}.pub`, Buffer.concat([message, Buffer.from('x')]), ours).status, 0, 'ssh-keygen refuses it for another message')
      assert.is.not(sshVerify(`${file}.pub`, message, ours, 'file').status, 0, 'and in another namespace')

      const theirs = parseSshsig(sshSign(file, message))
      assert.is(theirs.namespace, 'vmi-ref')
      assert.ok(theirs.publicKey.blob.equals(signer.publicKey.blob))
      assert.ok(verifySshsig(theirs, message, 'vmi-ref'), "ssh-keygen's signature verifies in vmi")
      assert.not.ok(verifySshsig(theirs, Buffer.from('another message'), 'vmi-ref'))
      assert.not.ok(verifySshsig(theirs, message, 'file'))
      assert.not.ok(verifySshsig(parseSshsig(sshSign(file, message, 'file')), message, 'vmi-ref'), 'a signature made for another namespace')
    })()
  })
}

test('an encrypted private key is refused with the way out (ssh-agent); a PEM or garbage file is refused by name', () => {
  if (!have) return skip('ssh-keygen is not installed')
  const file = keygen('encrypted', ['-t', 'ed25519'], 'secret words')
  assert.throws(
    () => signerFromPrivateKey(readFileSync(file, 'utf8'), file),
    (e) => e.code === 'VMI_USAGE' && /is encrypted/.test(e.message) && /ssh-agent/.test(e.message) && e.message.includes(file),
  )
  assert.throws(() => signerFromPrivateKey('-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n', 'x.pem'), (e) => e.code === 'VMI_USAGE' && /PEM format/.test(e.message))
  assert.throws(() => signerFromPrivateKey('hello', 'junk'), (e) => e.code === 'VMI_USAGE' && /junk/.test(e.message))
})

test('ssh-agent: a key the agent holds (an encrypted one too) signs what ssh-keygen verifies; a key it lacks is a clear error', async () => {
  if (!have || !hasCommand('ssh-agent') || !hasCommand('ssh-add')) return skip('ssh-agent/ssh-add are not installed')
  const sock = path.join(work.dir, 'agent.sock')
  const agent = spawn('ssh-agent', ['-D', '-a', sock], {stdio: 'ignore'})
  try {
    for (let i = 0; i < 100 && !existsSync(sock); i++) await new Promise((r) => setTimeout(r, 20))
    const plain = keygen('ed25519', ['-t', 'ed25519'])
    const enc = keygen('encrypted', ['-t', 'ed25519'], 'secret words')
    const rsa = keygen('rsa-3072', ['-t', 'rsa', '-b', '3072'])
    const askpass = path.join(work.dir, 'askpass.sh')
    writeFileSync(askpass, '#!/bin/sh\necho "secret words"\n', {mode: 0o755})
    const env = {...process.env, SSH_AUTH_SOCK: sock, SSH_ASKPASS: askpass, SSH_ASKPASS_REQUIRE: 'force', DISPLAY: ':0'}
    for (const f of [plain, enc, rsa]) {
      const r = sh('ssh-add', ['-q', f], {env})
      assert.is(r.status, 0, r.out)
    }
    const message = Buffer.from('signed through the agent\n')
    for (const f of [plain, enc, rsa]) {
      const signer = agentSigner(sock, parsePublicKeyLine(readFileSync(`${f}.pub`, 'utf8')))
      const armored = await signSshsig(message, 'vmi-ref', signer)
      const ok = sshVerify(`${f}.pub`, message, armored)
      assert.is(ok.status, 0, `${f}: ${ok.out}`)
      if (f === rsa) assert.match(ok.out, /RSA key/)
    }
    const other = keygen('ecdsa-256', ['-t', 'ecdsa', '-b', '256'])
    const stranger = agentSigner(sock, parsePublicKeyLine(readFileSync(`${other}.pub`, 'utf8')))
    try {
      await signSshsig(message, 'vmi-ref', stranger)
      assert.unreachable('an agent without the key signs nothing')
    } catch (e) {
      assert.is(e.code, 'VMI_USAGE')
      assert.match(e.message, /refused to sign/)
    }
  } finally {
    agent.kill('SIGTERM')
  }
})

test('allowed signers: principals and namespaces match as ssh-keygen -Y verify matches them', async () => {
  if (!have) return skip('ssh-keygen is not installed')
  const file = keygen('ed25519', ['-t', 'ed25519'])
  const pub = readFileSync(`${file}.pub`, 'utf8').trim()
  const signer = signerFromPrivateKey(readFileSync(file, 'utf8'), file)
  const message = Buffer.from('m\n')
  const armored = await signSshsig(message, 'vmi-ref', signer)
  const sigFile = path.join(work.dir, 'm.sig')
  writeFileSync(sigFile, armored)
  const cases = [
    ['web:*', '', 'web:latest'],
    ['web:*', '', 'webx:latest'],
    ['*', '', 'db:1'],
    ['web:v?', '', 'web:v1'],
    ['web:v?', '', 'web:v10'],
    ['web:*,!web:prod', '', 'web:prod'],
    ['web:*,!web:prod', '', 'web:dev'],
    ['"a:1,b:*"', '', 'b:2'],
    ['web:*', 'namespaces="file,vmi-*"', 'web:1'],
    ['web:*', 'namespaces="file,git"', 'web:1'],
    ['web:*', 'valid-before="20000101"', 'web:1'],
    ['web:*', 'valid-after="20000101Z"', 'web:1'],
  ]
  const allowed = path.join(work.dir, 'allowed-cases')
  const results = []
  for (const [principals, options, identity] of cases) {
    const line = `${principals} ${options ? options + ' ' : ''}${pub}`
    writeFileSync(allowed, `# a comment\n\n${line}\n`)
    const ssh = sh('ssh-keygen', ['-Y', 'verify', '-f', allowed, '-I', identity, '-n', 'vmi-ref', '-s', sigFile], {input: message}).status === 0
    const ours = 'signer' in findAllowedSigner(parseAllowedSigners(readFileSync(allowed, 'utf8'), allowed), {key: signer.publicKey, principal: identity, namespace: 'vmi-ref', time: Date.now()})
    assert.is(ours, ssh, `${line} for ${identity}: ssh-keygen says ${ssh}`)
    results.push(ssh)
  }
  assert.ok(results.includes(true) && results.includes(false), 'the cases hold accepted and refused ones')
  assert.ok(matchPatternList('web:latest', 'db:*,web:*'))
  assert.not.ok(matchPatternList('web:latest', 'web:*,!*:latest'))
})

test('allowed signers: a malformed line is an error naming file:line; a cert-authority line never matches a plain key', () => {
  if (!have) return skip('ssh-keygen is not installed')
  const pub = readFileSync(`${keygen('ed25519', ['-t', 'ed25519'])}.pub`, 'utf8').trim()
  assert.throws(() => parseAllowedSigners(`web:* ${pub}\nweb:* bogus-option ${pub}\n`, 'f'), (e) => e.code === 'VMI_USAGE' && /^f:2: /.test(e.message))
  assert.throws(() => parseAllowedSigners('web:* ssh-ed25519 AAAA\n', 'g'), (e) => /^g:1: /.test(e.message))
  const [ca] = parseAllowedSigners(`* cert-authority ${pub}\n`, 'h')
  const r = findAllowedSigner([ca], {key: ca.key, principal: 'web:1', namespace: 'vmi-ref', time: Date.now()})
  assert.ok('reasons' in r && /cert-authority/.test(r.reasons[0]))
})

test.after(() => work.cleanup())
test.run()
