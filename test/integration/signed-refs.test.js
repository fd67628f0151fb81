// Signed refs end to end, through the real CLI and a real `vmi serve` seed:
// push --sign writes a signature ssh-keygen -Y verify accepts; a signature
// ssh-keygen -Y sign made verifies in vmi; pull and mount with
// --verify-signers refuse (exit 10, nothing pulled) a ref the seed swapped to
// another valid manifest, an unsigned ref, a key the allowed signers do not
// list, and a key allowed only for other names; a good signature pulls and
// mounts; save/load carries it and `vmi verify` passes after load; a pull by
// id needs no signature. A static seed (nginx) serves the signature as a file.
import {test} from 'uvu'
import * as assert from 'uvu/assert'
import {spawn, spawnSync} from 'node:child_process'
import {existsSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import path from 'node:path'
import {execAsync, fsckClean, hasCommand, listFiles, makeImage, skip, tmpDir, tmpStore} from '../helpers/index.js'
import {startMount} from '../helpers/mount.js'
import {startNginx} from '../helpers/nginx.js'
import {startServe} from '../helpers/serve.js'

const K = 1024
const TOKEN = 'sign-test-token'
const have = hasCommand('ssh-keygen')

let ctx

/** Keys, images in a host store, a seed with a push token, the allowed signers file. */
async function setup() {
  const work = tmpDir('vmi-signed-')
  const host = path.join(work.dir, 'host')
  const seedStore = path.join(work.dir, 'seed')
  const key = (name) => {
    const f = path.join(work.dir, name)
    const r = spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', name, '-f', f], {encoding: 'utf8'})
    assert.is(r.status, 0, r.stderr)
    return f
  }
  const keys = {web: key('web-key'), db: key('db-key'), stranger: key('stranger-key')}
  const pub = (k) => readFileSync(`${k}.pub`, 'utf8').trim()
  const allowed = path.join(work.dir, 'allowed_signers')
  // the stranger's key is not listed; the db key may sign db:* only, and only in vmi's namespace
  writeFileSync(allowed, `# who may sign which ref\nweb:* ${pub(keys.web)}\ndb:* namespaces="vmi-ref" ${pub(keys.db)}\n`)
  const ids = {}
  for (const [name, seed] of [['web:1', 'web-one'], ['evil:1', 'evil'], ['db:1', 'db-one'], ['other:1', 'other'], ['web:2', 'web-two']]) {
    const f = path.join(work.dir, `${seed}.raw`)
    await makeImage(f, [{kind: 'random', size: 256 * K, seed}, {kind: 'zero', size: 64 * K}])
    const r = await execAsync(['import', f, name, '--chunk-size', '64K'], {store: host})
    assert.is(r.status, 0, r.stderr)
    ids[name] = r.stdout.trim().split('\n').at(-1)
  }
  const seed = await startServe(seedStore, [], {env: {VMI_PUSH_TOKEN: TOKEN}})
  return {work, host, seedStore, seed, keys, allowed, ids}
}

const vmi = (argv, store, env = {}) => execAsync(argv, {store, env: {VMI_PUSH_TOKEN: TOKEN, SSH_AUTH_SOCK: '', ...env}})

/** A fresh, empty host store path. */
let n = 0
const fresh = () => path.join(ctx.work.dir, `fresh-${n++}`)

/** A refused pull: exit 10, the reason on stderr, nothing on stdout, and the store holds no manifest, object or ref. */
async function assertRefused(argv, why, env) {
  const store = fresh()
  const r = await vmi(argv, store, env)
  assert.is(r.status, 10, `${argv.join(' ')}: exit 10, got ${r.status}: ${r.stderr}`)
  assert.match(r.stderr, why)
  assert.is(r.stdout, '')
  for (const dir of ['manifests', 'objects', 'refs', 'sigs']) assert.equal(await listFiles(path.join(store, dir)), [], `nothing pulled into ${dir}/`)
  return r
}

/** Split a signature file into the signed message and the armored signature, and ask ssh-keygen -Y verify. */
function sshVerify(sigText, identity) {
  const at = sigText.indexOf('-----BEGIN SSH SIGNATURE-----')
  const sig = path.join(ctx.work.dir, 'check.sig')
  writeFileSync(sig, sigText.slice(at))
  return spawnSync('ssh-keygen', ['-Y', 'verify', '-f', ctx.allowed, '-I', identity, '-n', 'vmi-ref', '-s', sig], {input: sigText.slice(0, at), encoding: 'utf8'})
}

test.before(async () => {
  if (have) ctx = await setup()
})

test.after(async () => {
  await ctx?.seed.stop()
  ctx?.work.cleanup()
})

test('push --sign writes sigs/NAME/TAG on the seed (and beside the local ref); ssh-keygen -Y verify accepts it for that name only', async () => {
  if (!have) return skip('ssh-keygen is not installed')
  const {host, seed, seedStore, keys, ids} = ctx
  const r = await vmi(['push', 'web:1', seed.url, '--sign', keys.web, '--json'], host)
  assert.is(r.status, 0, r.stderr)
  const out = JSON.parse(r.stdout)
  assert.is(out.signature.keyType, 'ssh-ed25519')
  assert.match(out.signature.key, /^SHA256:/)
  const text = readFileSync(path.join(seedStore, 'sigs', 'web', '1'), 'utf8')
  assert.ok(text.startsWith(`vmi-ref-signature v1\nref web:1\nid ${ids['web:1']}\ntime ${out.signature.time}\n-----BEGIN SSH SIGNATURE-----\n`), text)
  assert.is(readFileSync(path.join(host, 'sigs', 'web', '1'), 'utf8'), text, 'the local ref of the same name has it too')
  const ok = sshVerify(text, 'web:1')
  assert.is(ok.status, 0, ok.stderr + ok.stdout)
  assert.match(ok.stdout, /Good "vmi-ref" signature for web:1/)
  assert.is.not(sshVerify(text, 'db:1').status, 0, 'ssh-keygen does not accept it for another name')
  // the seed serves it as it stored it
  const got = await fetch(`${seed.url}/sigs/web/1`)
  assert.is(got.status, 200)
  assert.is(await got.text(), text)
  // push the others the refusal tests need: evil unsigned, db unsigned, other by the stranger, web:2 by the db key
  for (const argv of [['push', 'evil:1', seed.url], ['push', 'db:1', seed.url], ['push', 'other:1', seed.url, '--sign', keys.stranger], ['push', 'web:2', seed.url, '--sign', keys.db]]) {
    const p = await vmi(argv, host)
    assert.is(p.status, 0, `${argv.join(' ')}: ${p.stderr}`)
  }
  assert.ok(existsSync(path.join(seedStore, 'sigs', 'other', '1')))
})

test('the seed refuses a signature upload without the token (401, 403), for another ref or a malformed one (400), for a ref it lacks or another image (409)', async () => {
  if (!have) return skip('ssh-keygen is not installed')
  const {seed, seedStore} = ctx
  const text = readFileSync(path.join(seedStore, 'sigs', 'web', '1'))
  const put = (p, body, token = TOKEN) => fetch(`${seed.url}/${p}`, {method: 'PUT', body, headers: token ? {authorization: `Bearer ${token}`} : {}})
  assert.is((await put('sigs/web/1', text, null)).status, 401)
  assert.is((await put('sigs/web/1', text, 'wrong')).status, 403)
  assert.is((await put('sigs/evil/1', text)).status, 400, "web:1's signature under evil:1")
  assert.is((await put('sigs/web/1', 'hello')).status, 400)
  // well-formed (the server cannot tell trusted keys), but not for this ref as it is: 409
  assert.is((await put('sigs/nope/1', text.toString().replace('ref web:1', 'ref nope:1'))).status, 409, 'a ref the seed does not have')
  assert.is((await put('sigs/web/1', text.toString().replace(/^id \S+$/m, `id ${ctx.ids['evil:1']}`))).status, 409, 'another image than the ref points at')
  assert.is((await put('sigs/web/1', text)).status, 200, 'the right one is accepted again')
})

test('good signature: pull and mount with --verify-signers work; the signature is stored and vmi verify passes', async () => {
  if (!have) return skip('ssh-keygen is not installed')
  const {seed, allowed, ids} = ctx
  const store = fresh()
  const r = await vmi(['pull', 'web:1', seed.url, '--verify-signers', allowed, '--json'], store)
  assert.is(r.status, 0, r.stderr)
  const out = JSON.parse(r.stdout)
  assert.is(out.id, ids['web:1'])
  assert.is(out.signature.ref, 'web:1')
  assert.is(out.signature.principals, 'web:*')
  assert.match(out.signature.allowedBy, /allowed_signers:2$/)
  const v = await vmi(['verify', 'web:1', '--verify-signers', allowed, '--json'], store)
  assert.is(v.status, 0, v.stderr)
  assert.is(JSON.parse(v.stdout).id, ids['web:1'])
  fsckClean(store)

  // a mount of a name not here fetches and checks the seed's signature, the config setting naming the file
  const mstore = fresh()
  assert.is((await vmi(['config', 'set', 'allowedSigners', allowed], mstore)).status, 0)
  const m = await startMount(mstore, ['web:1', seed.url, '--prefetch', 'none'], {env: {SSH_AUTH_SOCK: ''}})
  try {
    assert.is(m.mounted, ids['web:1'])
    if (hasCommand('qemu-img')) {
      const info = spawnSync('qemu-img', ['info', '--output=json', m.nbd], {encoding: 'utf8'})
      assert.is(info.status, 0, info.stderr)
      assert.is(JSON.parse(info.stdout)['virtual-size'], 320 * K)
    }
  } finally {
    assert.is((await m.stop()).code, 0)
  }
  assert.ok(existsSync(path.join(mstore, 'sigs', 'web', '1')), 'the mount stored the verified signature beside the ref it wrote')
  // and a later mount of the local name checks the local signature
  const again = await startMount(mstore, ['web:1', '--no-seed', '--prefetch', 'none'], {env: {SSH_AUTH_SOCK: ''}})
  assert.is((await again.stop()).code, 0)
})

test('a seed that swaps the ref to another valid manifest: pull and mount refuse it (exit 10) before fetching anything', async () => {
  if (!have) return skip('ssh-keygen is not installed')
  const {seed, seedStore, allowed, ids} = ctx
  const refFile = path.join(seedStore, 'refs', 'web', '1')
  writeFileSync(refFile, ids['evil:1'] + '\n')
  try {
    // without verification the swap goes unnoticed: every chunk of evil verifies against its id
    const plain = await vmi(['pull', 'web:1', seed.url, '--json'], fresh())
    assert.is(plain.status, 0, plain.stderr)
    assert.is(JSON.parse(plain.stdout).id, ids['evil:1'])
    await assertRefused(['pull', 'web:1', seed.url, '--verify-signers', allowed], new RegExp(`ref web:1 from seed \\S+ is not trusted: it points at ${ids['evil:1']}, but its signature is for image ${ids['web:1']}`))
    await assertRefused(['pull', 'web:1', seed.url], /is not trusted/, {VMI_ALLOWED_SIGNERS: allowed})
    const m = await assertRefused(['mount', 'web:1', seed.url, '--verify-signers', allowed, '--prefetch', 'none'], /is not trusted/)
    assert.not.match(m.stderr, /nbd/)
  } finally {
    writeFileSync(refFile, ids['web:1'] + '\n')
  }
})

test('an unsigned ref is refused (exit 10, nothing pulled)', async () => {
  if (!have) return skip('ssh-keygen is not installed')
  await assertRefused(['pull', 'evil:1', ctx.seed.url, '--verify-signers', ctx.allowed], /ref evil:1 from seed \S+ is not trusted: it has no signature/)
})

test('a ref signed by a key the allowed signers do not list is refused (exit 10, nothing pulled or mounted)', async () => {
  if (!have) return skip('ssh-keygen is not installed')
  const {seed, allowed} = ctx
  await assertRefused(['pull', 'other:1', seed.url, '--verify-signers', allowed], /is signed by ssh-ed25519 key SHA256:\S+, which the allowed signers do not accept for other:1 \(the key is not listed\)/)
  await assertRefused(['mount', 'other:1', seed.url, '--verify-signers', allowed], /not listed/)
})

test('a signature whose signed lines were altered (a later time) does not verify: refused (exit 10)', async () => {
  if (!have) return skip('ssh-keygen is not installed')
  const {seed, seedStore, allowed} = ctx
  const file = path.join(seedStore, 'sigs', 'web', '1')
  const good = readFileSync(file, 'utf8')
  writeFileSync(file, good.replace(/^time \S+$/m, 'time 2099-01-01T00:00:00.000Z'))
  try {
    await assertRefused(['pull', 'web:1', seed.url, '--verify-signers', allowed], /ref web:1 from seed \S+ is not trusted: its signature does not verify/)
  } finally {
    writeFileSync(file, good)
  }
})

test('a ref signed by a key allowed only for other names is refused (exit 10, VMI_SIGNATURE)', async () => {
  if (!have) return skip('ssh-keygen is not installed')
  const r = await assertRefused(['pull', 'web:2', ctx.seed.url, '--verify-signers', ctx.allowed, '--json'], /principals \\"db:\*\\" do not match \\"web:2\\"/)
  assert.is(JSON.parse(r.stderr.trim().split('\n').at(-1)).error.code, 'VMI_SIGNATURE')
})

test('a signature ssh-keygen -Y sign made over the documented message verifies in vmi (pull, then vmi verify)', async () => {
  if (!have) return skip('ssh-keygen is not installed')
  const {seed, seedStore, keys, allowed, ids} = ctx
  // the message as docs/FORMAT.md defines it, built here, signed by OpenSSH
  const message = `vmi-ref-signature v1\nref db:1\nid ${ids['db:1']}\ntime 2026-12-06T01:02:03.004Z\n`
  const msgFile = path.join(ctx.work.dir, 'db-message')
  writeFileSync(msgFile, message)
  const s = spawnSync('ssh-keygen', ['-Y', 'sign', '-q', '-f', keys.db, '-n', 'vmi-ref', msgFile], {encoding: 'utf8'})
  assert.is(s.status, 0, s.stderr)
  const put = await fetch(`${seed.url}/sigs/db/1`, {method: 'PUT', body: message + readFileSync(`${msgFile}.sig`, 'utf8'), headers: {authorization: `Bearer ${TOKEN}`}})
  assert.is(put.status, 200)
  assert.ok(existsSync(path.join(seedStore, 'sigs', 'db', '1')))
  const store = fresh()
  const r = await vmi(['pull', 'db:1', seed.url, '--verify-signers', allowed, '--json'], store)
  assert.is(r.status, 0, r.stderr)
  assert.is(JSON.parse(r.stdout).signature.time, '2026-12-06T01:02:03.004Z')
  assert.is((await vmi(['verify', 'db:1', '--verify-signers', allowed], store)).status, 0)
  // signed in another namespace: refused, though the same key made it
  rmSync(`${msgFile}.sig`)
  const f = spawnSync('ssh-keygen', ['-Y', 'sign', '-q', '-f', keys.db, '-n', 'file', msgFile], {encoding: 'utf8'})
  assert.is(f.status, 0, f.stderr)
  writeFileSync(path.join(store, 'sigs', 'db', '1'), message + readFileSync(`${msgFile}.sig`, 'utf8'))
  const v = await vmi(['verify', 'db:1', '--verify-signers', allowed], store)
  assert.is(v.status, 10)
  assert.match(v.stderr, /namespace "file"/)
})

test('push --sign KEY.pub signs through ssh-agent (an encrypted key); without SSH_AUTH_SOCK, or with the encrypted key file itself, exit 2 before any upload', async () => {
  if (!have) return skip('ssh-keygen is not installed')
  if (!hasCommand('ssh-agent') || !hasCommand('ssh-add')) return skip('ssh-agent/ssh-add are not installed')
  const {host, seed, seedStore, work, allowed} = ctx
  const enc = path.join(work.dir, 'encrypted-key')
  assert.is(spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', 'pass phrase', '-f', enc]).status, 0)
  const list = readFileSync(allowed, 'utf8')
  writeFileSync(allowed, list + `agent:* ${readFileSync(`${enc}.pub`, 'utf8')}`)
  const tagged = await vmi(['tag', 'web:1', 'agent:1'], host)
  assert.is(tagged.status, 0, tagged.stderr)
  const noAgent = await vmi(['push', 'agent:1', seed.url, '--sign', `${enc}.pub`], host)
  assert.is(noAgent.status, 2)
  assert.match(noAgent.stderr, /SSH_AUTH_SOCK is not set/)
  const encrypted = await vmi(['push', 'agent:1', seed.url, '--sign', enc], host)
  assert.is(encrypted.status, 2)
  assert.match(encrypted.stderr, /is encrypted .*ssh-agent/)
  assert.not.ok(existsSync(path.join(seedStore, 'refs', 'agent')), 'refused before any upload')
  const sock = path.join(work.dir, 'agent.sock')
  const agent = spawn('ssh-agent', ['-D', '-a', sock], {stdio: 'ignore'})
  try {
    for (let i = 0; i < 100 && !existsSync(sock); i++) await new Promise((r) => setTimeout(r, 20))
    const askpass = path.join(work.dir, 'askpass.sh')
    writeFileSync(askpass, '#!/bin/sh\necho "pass phrase"\n', {mode: 0o755})
    const add = spawnSync('ssh-add', ['-q', enc], {env: {...process.env, SSH_AUTH_SOCK: sock, SSH_ASKPASS: askpass, SSH_ASKPASS_REQUIRE: 'force', DISPLAY: ':0'}, encoding: 'utf8'})
    assert.is(add.status, 0, add.stderr)
    const r = await vmi(['push', 'agent:1', seed.url, '--sign', `${enc}.pub`], host, {SSH_AUTH_SOCK: sock})
    assert.is(r.status, 0, r.stderr)
    assert.match(r.stdout, /signed agent:1 with ssh-ed25519 key SHA256:/)
  } finally {
    agent.kill('SIGTERM')
  }
  const ok = sshVerify(readFileSync(path.join(seedStore, 'sigs', 'agent', '1'), 'utf8'), 'agent:1')
  assert.is(ok.status, 0, ok.stderr + ok.stdout)
  const p = await vmi(['pull', 'agent:1', seed.url, '--verify-signers', allowed], fresh())
  assert.is(p.status, 0, p.stderr)
})

test('rollback: a seed serving an older, validly signed state of a ref is refused by a host that has seen the newer signature', async () => {
  if (!have) return skip('ssh-keygen is not installed')
  const {host, seed, seedStore, keys, allowed, ids} = ctx
  const refFile = path.join(seedStore, 'refs', 'web', '1')
  const sigFile = path.join(seedStore, 'sigs', 'web', '1')
  const old = {ref: readFileSync(refFile), sig: readFileSync(sigFile)}
  const store = fresh()
  try {
    assert.is((await vmi(['pull', 'web:1', seed.url, '--verify-signers', allowed], store)).status, 0)
    // web:1 moves on to a new image, signed later; the host pulls it
    const p = await vmi(['push', 'web:2', seed.url, '--as', 'web:1', '--sign', keys.web], host)
    assert.is(p.status, 0, p.stderr)
    const newer = await vmi(['pull', 'web:1', seed.url, '--verify-signers', allowed, '--json'], store)
    assert.is(newer.status, 0, newer.stderr)
    assert.is(JSON.parse(newer.stdout).id, ids['web:2'])
    // the seed puts the old ref and its (valid) old signature back
    writeFileSync(refFile, old.ref)
    writeFileSync(sigFile, old.sig)
    const r = await vmi(['pull', 'web:1', seed.url, '--verify-signers', allowed], store)
    assert.is(r.status, 10, r.stderr)
    assert.match(r.stderr, /is older than the one .* holds .*: a rollback/)
    assert.is((await vmi(['verify', 'web:1', '--verify-signers', allowed, '--json'], store)).status, 0, 'the host kept the newer ref')
    // a host that never saw the newer one cannot tell (the first pull trusts the newest signature it is shown)
    assert.is((await vmi(['pull', 'web:1', seed.url, '--verify-signers', allowed], fresh())).status, 0)
  } finally {
    writeFileSync(refFile, old.ref)
    writeFileSync(sigFile, old.sig)
  }
})

test('pull by full image id needs no signature, with --verify-signers', async () => {
  if (!have) return skip('ssh-keygen is not installed')
  const {seed, allowed, ids} = ctx
  const store = fresh()
  const r = await vmi(['pull', ids['evil:1'], seed.url, '--verify-signers', allowed, '--json'], store)
  assert.is(r.status, 0, r.stderr)
  assert.is(JSON.parse(r.stdout).signature, undefined)
})

test('save/load carries the signature; vmi verify passes after load; a stale or forged one in a bundle is handled', async () => {
  if (!have) return skip('ssh-keygen is not installed')
  const {host, allowed, ids, work} = ctx
  const bundle = path.join(work.dir, 'web.tar')
  const s = await vmi(['save', 'web:1', 'evil:1', '-o', bundle], host)
  assert.is(s.status, 0, s.stderr)
  const store = fresh()
  const l = await vmi(['load', bundle], store)
  assert.is(l.status, 0, l.stderr)
  const v = await vmi(['verify', 'web:1', '--verify-signers', allowed], store)
  assert.is(v.status, 0, v.stderr)
  assert.match(v.stdout, new RegExp(`^good signature of web:1 -> ${ids['web:1']} by ssh-ed25519 key SHA256:`))
  const u = await vmi(['verify', 'evil:1', '--verify-signers', allowed], store)
  assert.is(u.status, 10, 'an unsigned ref stays unsigned')
  assert.match(u.stderr, /no signature/)
  fsckClean(store)
  // a ref moved after signing: verify refuses it, and save leaves the stale signature out
  assert.is((await vmi(['tag', 'evil:1', 'web:1'], store)).status, 0)
  const moved = await vmi(['verify', 'web:1', '--verify-signers', allowed], store)
  assert.is(moved.status, 10)
  assert.match(moved.stderr, /but its signature is for image/)
  const b2 = path.join(work.dir, 'moved.tar')
  assert.is((await vmi(['save', 'web:1', '-o', b2], store)).status, 0)
  const idx = JSON.parse(spawnSync('tar', ['-xOf', b2, 'vmi-bundle.json'], {encoding: 'utf8'}).stdout)
  assert.is(idx.images[0].signatures, undefined)
  const first = JSON.parse(spawnSync('tar', ['-xOf', bundle, 'vmi-bundle.json'], {encoding: 'utf8'}).stdout)
  assert.equal(Object.keys(first.images.find((i) => i.id === ids['web:1']).signatures), ['web:1'])
})

test('vmi verify: no allowed signers file is exit 2, a missing one exit 3, a ref not here exit 3', async () => {
  if (!have) return skip('ssh-keygen is not installed')
  const {host} = ctx
  const none = await vmi(['verify', 'web:1'], host, {VMI_ALLOWED_SIGNERS: ''})
  assert.is(none.status, 2)
  assert.match(none.stderr, /no allowed signers file/)
  assert.is((await vmi(['verify', 'web:1', '--verify-signers', '/nonexistent/allowed'], host)).status, 3)
  assert.is((await vmi(['verify', 'nope:1', '--verify-signers', ctx.allowed], host)).status, 3)
  const bad = path.join(ctx.work.dir, 'bad-allowed')
  writeFileSync(bad, 'web:* ssh-ed25519 !!!\n')
  const b = await vmi(['verify', 'web:1', '--verify-signers', bad], host)
  assert.is(b.status, 2)
  assert.match(b.stderr, /bad-allowed:1:/)
})

test('a static seed (nginx over the seed store) serves sigs/ as files: a good ref pulls, a swapped one is refused', async () => {
  if (!have) return skip('ssh-keygen is not installed')
  if (!hasCommand('nginx')) return skip('nginx is not installed')
  const {seedStore, allowed, ids} = ctx
  const ng = await startNginx(seedStore)
  try {
    const r = await vmi(['pull', 'web:1', ng.url, '--verify-signers', allowed], fresh())
    assert.is(r.status, 0, r.stderr)
    const refFile = path.join(seedStore, 'refs', 'web', '1')
    writeFileSync(refFile, ids['evil:1'] + '\n')
    try {
      await assertRefused(['pull', 'web:1', ng.url, '--verify-signers', allowed], /is not trusted/)
    } finally {
      writeFileSync(refFile, ids['web:1'] + '\n')
    }
  } finally {
    await ng.close()
  }
})

test.run()
