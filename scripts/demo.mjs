// The vmi demo: a realistic disk image imported, deduplicated against a
// second version of itself, exported byte-identical, bundled and loaded
// into a second store, with the numbers shown. Everything it creates lives
// in one temporary directory, removed at the end and on Ctrl-C.
import {spawn, spawnSync} from 'node:child_process'
import {createHash, randomBytes} from 'node:crypto'
import {createReadStream, mkdtempSync, promises as fsp, rmSync, statSync} from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {fileURLToPath} from 'node:url'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const BIN = path.join(ROOT, 'bin', 'run.js')
const work = mkdtempSync(path.join(os.tmpdir(), 'vmi-demo-'))
let child
const cleanup = () => {
  child?.kill('SIGTERM')
  rmSync(work, {recursive: true, force: true})
}
process.on('SIGINT', () => {
  say('\ninterrupted: cleaning up')
  cleanup()
  process.exit(130)
})
process.on('exit', cleanup)

function say(msg) {
  process.stderr.write(msg + '\n')
}
function step(msg) {
  say(`\n== ${msg}`)
}
const mib = (n) => `${(n / 1048576).toFixed(1)} MiB`
const has = (cmd) => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0

/** Run the vmi CLI with --json; progress (stderr) stays visible. */
function vmi(args, store) {
  return new Promise((resolve, reject) => {
    const t0 = performance.now()
    child = spawn(process.execPath, [BIN, ...args, '--json'], {env: {...process.env, VMI_HOME: store}, stdio: ['ignore', 'pipe', 'inherit']})
    let out = ''
    child.stdout.on('data', (d) => (out += d))
    child.on('close', (code) => {
      child = undefined
      if (code !== 0) return reject(new Error(`vmi ${args.join(' ')} exited ${code}`))
      resolve({...JSON.parse(out || '{}'), wall: (performance.now() - t0) / 1000})
    })
  })
}

async function sha256(file) {
  const h = createHash('sha256')
  for await (const piece of createReadStream(file)) h.update(piece)
  return h.digest('hex')
}

function allocated(file) {
  const st = statSync(file)
  return st.blocks * 512
}

/** The project's Debian boot image when it can be built; else an ext4 image of this machine's /usr. */
function sourceImage() {
  step('getting a realistic disk image')
  const build = spawnSync('bash', [path.join(ROOT, 'scripts/build-boot-image.sh')], {stdio: ['ignore', 'inherit', 'inherit']})
  if (build.status === 0) {
    const dir = spawnSync('bash', [path.join(ROOT, 'scripts/boot-image-path.sh')]).stdout.toString().trim()
    const disk = path.join(dir, 'disk.raw')
    say(`using the project's Debian boot image: ${disk}`)
    return {file: disk, what: 'Debian 12 boot image (debootstrap, ext4)'}
  }
  say(`the Debian boot image cannot be built here (exit ${build.status}: needs root, debootstrap and the Debian mirror);`)
  if (!has('mkfs.ext4')) throw new Error('neither the Debian image builder nor mkfs.ext4 is available')
  const file = path.join(work, 'usr.ext4')
  say('making an ext4 image (1 GiB) populated from this machine\'s /usr/share instead')
  const r = spawnSync('mkfs.ext4', ['-q', '-F', '-d', '/usr/share', file, '1G'], {stdio: 'inherit'})
  if (r.status !== 0) throw new Error('mkfs.ext4 failed')
  return {file, what: 'ext4 image of /usr/share (1 GiB)'}
}

async function main() {
  say(`vmi demo — working in ${work}`)
  const src = sourceImage()
  const store = path.join(work, 'store')
  const virt = statSync(src.file).size
  const alloc = allocated(src.file)

  step('import v1')
  const v1 = await vmi(['import', src.file, 'demo:v1'], store)
  say(`image ${v1.id}\n${v1.chunks} chunks of ${v1.chunkSize / 1024} KiB: ${v1.zeroChunks} all-zero (not stored), ${v1.dedupedChunks} repeats, ${v1.newChunks} stored`)

  step('make v2: the same disk with 16 MiB rewritten (a package upgrade, say), import it')
  const v2file = path.join(work, 'v2.raw')
  spawnSync('cp', ['--sparse=always', src.file, v2file])
  const fh = await fsp.open(v2file, 'r+')
  const buf = randomBytes(16 << 20)
  await fh.write(buf, 0, buf.length, Math.floor(virt / 3 / 65536) * 65536)
  await fh.close()
  const v2 = await vmi(['import', v2file, 'demo:v2', '--parent', 'demo:v1'], store)
  say(`v2 stored only ${v2.newChunks} new chunks (${mib(v2.newBytes)})`)

  step('export v1 and compare with the source')
  const out = path.join(work, 'v1.out.raw')
  const exp = await vmi(['export', 'demo:v1', out], store)
  const [a, b] = await Promise.all([sha256(src.file), sha256(out)])
  const identical = a === b
  say(`sha256 source ${a}\nsha256 export ${b}  ${identical ? 'IDENTICAL' : 'DIFFERENT'}`)

  step('save both versions to a bundle, load it into an empty store, fsck')
  const bundle = path.join(work, 'demo.tar')
  const saved = await vmi(['save', 'demo:v1', 'demo:v2', '-o', bundle], store)
  const store2 = path.join(work, 'store2')
  await vmi(['load', bundle], store2)
  const f = await vmi(['fsck'], store2)

  const ls = await vmi(['ls'], store)
  const d = await vmi(['diff', 'demo:v1', 'demo:v2'], store)
  const storeBytes = ls.images.reduce((s, i) => s + i.uniqueBytes, 0) + d.content.shared.bytes
  const rows = [
    ['source', src.what],
    ['virtual size', mib(virt)],
    ['allocated on disk', mib(alloc)],
    ['v1 stored (non-zero, distinct chunks)', `${mib(v1.newBytes)} (${((100 * v1.newBytes) / virt).toFixed(1)}% of virtual)`],
    ['v1 import', `${v1.seconds.toFixed(2)} s, ${(virt / v1.seconds / 1e6).toFixed(0)} MB/s (virtual bytes)`],
    ['v2 import (16 MiB changed)', `${v2.newChunks} new chunks, ${mib(v2.newBytes)} new`],
    ['store for v1 + v2', `${mib(storeBytes)} vs ${mib(2 * alloc)} for two copies of the file`],
    ['v1 export', `${exp.seconds.toFixed(2)} s, ${(virt / exp.seconds / 1e6).toFixed(0)} MB/s, byte-identical: ${identical ? 'yes' : 'NO'}`],
    ['bundle of v1 + v2', `${mib(statSync(bundle).size)} (${saved.objects} chunks), loaded and fsck ${f.ok ? 'clean' : 'NOT clean'}`],
  ]
  const w = Math.max(...rows.map((r) => r[0].length))
  console.log('\nvmi demo results')
  for (const [k, v] of rows) console.log(`  ${k.padEnd(w)}  ${v}`)
  if (!identical || !f.ok) process.exitCode = 1
}

main().catch((err) => {
  say(`demo failed: ${err.message}`)
  process.exitCode = 1
})
