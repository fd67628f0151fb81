// The vmi demo: the main job end to end on loopback.
//   1. a real Debian boot image (built once, cached) is imported; a second
//      version with 16 MiB changed shows deduplication;
//   2. a seed (`vmi serve`) receives it with `vmi push`;
//   3. host 1 (empty store) boots it under QEMU through `vmi mount`, each
//      chunk fetched from the seed on the guest's first read;
//   4. the seed stops; host 2 (empty store) boots it with host 1 as its peer;
//   5. a table: per host boot time and bytes from local / peers / seed, and
//      the seed's egress against the image's unique bytes.
// Without root, QEMU or network it says what it skips and why, and shows the
// rest with a generated image. Everything lives in one temp directory,
// removed at the end and on Ctrl-C.
import {spawn, spawnSync} from 'node:child_process'
import {createHash, randomBytes} from 'node:crypto'
import {createReadStream, existsSync, mkdtempSync, promises as fsp, rmSync, statSync} from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {fileURLToPath} from 'node:url'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const BIN = path.join(ROOT, 'bin', 'run.js')
const work = mkdtempSync(path.join(os.tmpdir(), 'vmi-demo-'))
const children = new Set()
const TOKEN = randomBytes(16).toString('hex')
let cleaned = false
function cleanup() {
  if (cleaned) return
  cleaned = true
  for (const c of children) c.kill('SIGTERM')
  rmSync(work, {recursive: true, force: true})
}
for (const sig of ['SIGINT', 'SIGTERM'])
  process.on(sig, () => {
    say('\ninterrupted: stopping servers and VMs, removing ' + work)
    cleanup()
    process.exit(130)
  })
process.on('exit', cleanup)

const say = (msg) => process.stderr.write(msg + '\n')
const step = (msg) => say(`\n== ${msg}`)
const mib = (n) => `${(n / 1048576).toFixed(1)} MiB`
const has = (cmd) => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0

/** Run the vmi CLI with --json; its progress and notes (stderr) stay visible. */
function vmi(args, store, opts = {}) {
  return new Promise((resolve, reject) => {
    const t0 = performance.now()
    const child = spawn(process.execPath, [BIN, ...args, '--json'], {env: {...process.env, VMI_HOME: store, ...(opts.env ?? {})}, stdio: ['ignore', 'pipe', 'inherit']})
    children.add(child)
    let out = ''
    child.stdout.on('data', (d) => {
      out += d
      if (opts.echo) process.stderr.write(d)
    })
    child.on('close', (code) => {
      children.delete(child)
      if (code !== 0 && !opts.allowFail) return reject(new Error(`vmi ${args.join(' ')} exited ${code}`))
      const i = out.lastIndexOf('\n{\n')
      let json = {}
      try {
        json = JSON.parse(i >= 0 ? out.slice(i + 1) : out || '{}')
      } catch {
        /* not JSON */
      }
      resolve({...json, code, stdout: out, wall: (performance.now() - t0) / 1000})
    })
  })
}

/** `vmi serve` in the background; resolves with its URL. */
function serve(store, args = []) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, 'serve', '--listen', '127.0.0.1:0', ...args], {env: {...process.env, VMI_HOME: store}, stdio: ['ignore', 'pipe', 'inherit']})
    children.add(child)
    child.stdout.once('data', (d) => {
      const m = /(http:\/\/\S+)/.exec(String(d))
      if (!m) return reject(new Error(`vmi serve said: ${d}`))
      resolve({
        url: m[1],
        async metrics() {
          return (await fetch(`${m[1]}/metrics`)).text()
        },
        stop: () =>
          new Promise((r) => {
            child.once('exit', r)
            child.kill('SIGTERM')
            children.delete(child)
          }),
      })
    })
    child.once('exit', (code) => reject(new Error(`vmi serve exited ${code}`)))
  })
}

function served(text) {
  let sum = 0
  for (const line of text.split('\n')) if (line.startsWith('vmi_served_bytes_total{kind="objects"}')) sum += Number(line.split(' ').pop())
  return sum
}

async function sha256(file) {
  const h = createHash('sha256')
  for await (const piece of createReadStream(file)) h.update(piece)
  return h.digest('hex')
}

function sourceImage() {
  step('1. a real disk image')
  const build = spawnSync('bash', [path.join(ROOT, 'scripts/build-boot-image.sh')], {stdio: ['ignore', 'pipe', 'inherit']})
  if (build.status === 0) {
    const dir = build.stdout.toString().trim().split('\n').pop()
    say(`the project's Debian 12 boot image (cached in ${dir})`)
    return {file: path.join(dir, 'disk.raw'), dir, bootable: true, what: 'Debian 12 boot image'}
  }
  say(`SKIP building the Debian boot image (exit ${build.status}: it needs root, debootstrap and the Debian mirror): the VM boots are skipped;`)
  if (!has('mkfs.ext4')) throw new Error('neither the Debian image builder nor mkfs.ext4 is available')
  const file = path.join(work, 'usr.ext4')
  say("using an ext4 image (1 GiB) made from this machine's /usr/share instead")
  if (spawnSync('mkfs.ext4', ['-q', '-F', '-d', '/usr/share', file, '1G'], {stdio: 'inherit'}).status !== 0) throw new Error('mkfs.ext4 failed')
  return {file, bootable: false, what: 'ext4 image of /usr/share'}
}

async function main() {
  say(`vmi demo — working in ${work}`)
  const src = sourceImage()
  const canBoot = src.bootable && has('qemu-system-x86_64')
  if (src.bootable && !canBoot) say('SKIP the VM boots: qemu-system-x86_64 is not installed')
  const ci = path.join(work, 'ci')
  const virt = statSync(src.file).size

  step('2. CI: import v1, and a v2 with 16 MiB rewritten')
  const v1 = await vmi(['import', src.file, 'demo:v1'], ci)
  say(`v1 ${v1.id.slice(0, 12)}: ${v1.chunks} chunks of ${v1.chunkSize / 1024} KiB, ${v1.zeroChunks} all-zero (not stored), ${v1.newChunks} stored = ${mib(v1.newBytes)}`)
  const v2file = path.join(work, 'v2.raw')
  spawnSync('cp', ['--sparse=always', src.file, v2file])
  const fh = await fsp.open(v2file, 'r+')
  await fh.write(randomBytes(16 << 20), 0, 16 << 20, Math.floor(virt / 2 / 65536) * 65536)
  await fh.close()
  const v2 = await vmi(['import', v2file, 'demo:v2', '--parent', 'demo:v1'], ci)
  await fsp.rm(v2file)
  say(`v2 stored only ${v2.newChunks} new chunks (${mib(v2.newBytes)})`)
  const out = path.join(work, 'v1.out')
  await vmi(['export', 'demo:v1', out], ci)
  const identical = (await sha256(out)) === (await sha256(src.file))
  await fsp.rm(out)
  say(`v1 exported: byte-identical to the source: ${identical ? 'yes' : 'NO'}`)

  step('3. the seed: vmi serve with a push token; CI pushes v1')
  const seedStore = path.join(work, 'seed')
  const seed = await serve(seedStore, ['--push-token', TOKEN])
  const push = await vmi(['push', 'demo:v1', seed.url], ci, {env: {VMI_PUSH_TOKEN: TOKEN}})
  say(`pushed ${push.uploadedChunks} chunks (${mib(push.uploadedBytes)}) in ${push.seconds.toFixed(1)} s`)
  const egress0 = served(await seed.metrics())

  const hosts = []
  let egressBoot = NaN
  const host1 = path.join(work, 'host1')
  const host2 = path.join(work, 'host2')
  const bootCmd = (target) => `bash ${path.join(ROOT, 'scripts/boot-vm.sh')} -d ${src.dir} -t 300 -g 20 ${target}`
  const parseBoot = (stdout) => {
    const line = stdout.split('\n').find((l) => l.startsWith('BOOT-RESULT'))
    return line ? Object.fromEntries(line.split(' ').slice(1).map((kv) => kv.split('='))) : {}
  }

  if (canBoot) {
    step('4. host 1 (empty store) boots the VM through vmi mount; chunks come from the seed on first read')
    const t0 = performance.now()
    const m = await vmi(['mount', push.id, seed.url, '--prefetch', 'none', '--read-only', '--exec', bootCmd('{nbd}')], host1, {echo: false, allowFail: true})
    const b = parseBoot(m.stdout)
    if (b.ok !== '1') throw new Error(`host 1 did not boot:\n${m.stdout}`)
    hosts.push({host: 'host 1', how: 'vmi mount, seed', boot: Number(b.marker_s), wall: (performance.now() - t0) / 1000, local: 0, peer: m.fetchedBytes.peer, seed: m.fetchedBytes.seed})
    say(`host 1 booted: marker after ${b.marker_s} s; fetched ${mib(m.fetchedBytes.seed)} from the seed (${m.fetched.seed} chunks) of ${mib(v1.newBytes)}`)
    egressBoot = served(await seed.metrics()) - egress0
    say('host 1 completes its copy in the background (vmi pull) and lends it (vmi serve)')
    await vmi(['pull', push.id, seed.url], host1)
  } else {
    step('4. host 1 (empty store) pulls the image from the seed (no VM boot here)')
    const p = await vmi(['pull', push.id, seed.url], host1)
    hosts.push({host: 'host 1', how: 'vmi pull, seed', boot: NaN, wall: p.seconds, local: p.fromBytes.local, peer: p.fromBytes.peer, seed: p.fromBytes.seed})
  }
  const egress = served(await seed.metrics()) - egress0
  const peer1 = await serve(host1)

  step('5. the seed stops; host 2 (empty store) gets the image from host 1')
  await seed.stop()
  say('seed stopped')
  if (canBoot) {
    const t0 = performance.now()
    const m = await vmi(['mount', push.id, seed.url, '--peer', peer1.url, '--read-only', '--prefetch', 'none', '--exec', bootCmd('{nbd}')], host2, {allowFail: true})
    const b = parseBoot(m.stdout)
    if (b.ok !== '1') throw new Error(`host 2 did not boot:\n${m.stdout}`)
    hosts.push({host: 'host 2', how: 'vmi mount, peer host 1', boot: Number(b.marker_s), wall: (performance.now() - t0) / 1000, local: 0, peer: m.fetchedBytes.peer, seed: m.fetchedBytes.seed})
    say(`host 2 booted: marker after ${b.marker_s} s; ${mib(m.fetchedBytes.peer)} from host 1, ${mib(m.fetchedBytes.seed)} from the seed`)
    step('6. for comparison: the same boot from a local raw file')
    const local = spawnSync('bash', ['-c', bootCmd(src.file)], {stdio: ['ignore', 'pipe', 'inherit']})
    const lb = parseBoot(local.stdout.toString())
    if (lb.ok === '1') hosts.push({host: 'local file', how: 'qemu on disk.raw', boot: Number(lb.marker_s), wall: NaN, local: NaN, peer: NaN, seed: NaN})
  } else {
    const p = await vmi(['pull', push.id, seed.url, '--peer', peer1.url], host2)
    hosts.push({host: 'host 2', how: 'vmi pull, peer host 1', boot: NaN, wall: p.seconds, local: p.fromBytes.local, peer: p.fromBytes.peer, seed: p.fromBytes.seed})
  }
  const f = await vmi(['fsck'], host2)
  await peer1.stop()

  const num = (x, d = 1) => (Number.isFinite(x) ? x.toFixed(d) : '-')
  const rows = hosts.map((h) => [h.host, h.how, num(h.boot), Number.isFinite(h.local) ? mib(h.local) : '-', Number.isFinite(h.peer) ? mib(h.peer) : '-', Number.isFinite(h.seed) ? mib(h.seed) : '-'])
  const head = ['host', 'how', 'boot s', 'from local', 'from peers', 'from seed']
  const w = head.map((hd, c) => Math.max(hd.length, ...rows.map((r) => r[c].length)))
  console.log(`\nvmi demo results — ${src.what}, ${mib(virt)} virtual, ${mib(v1.newBytes)} of distinct non-zero chunks`)
  for (const r of [head, ...rows]) console.log('  ' + r.map((cell, c) => cell.padEnd(w[c])).join('  '))
  if (Number.isFinite(egressBoot)) console.log(`  seed egress for host 1's boot: ${mib(egressBoot)} (${((100 * egressBoot) / v1.newBytes).toFixed(1)}% of the image's unique bytes)`)
  console.log(`  seed egress in all: ${mib(egress)} = ${(egress / v1.newBytes).toFixed(3)}x the image's unique bytes: each chunk once, host 2 got nothing from it`)
  console.log(`  v2 (16 MiB rewritten) cost ${mib(v2.newBytes)} more in the store; v1 export byte-identical: ${identical ? 'yes' : 'NO'}; host 2 fsck: ${f.ok ? 'clean' : 'NOT clean'}`)
  if (!identical || !f.ok) process.exitCode = 1
}

main().catch((err) => {
  say(`demo failed: ${err.message}`)
  process.exitCode = 1
})
