// Imports of images converted on the fly (qcow2, vmdk … through nbdcopy +
// qemu-nbd): every byte the converter writes reaches the import however late
// the import starts reading it (it first waits for the store lock), so
// re-importing the same image always gives the same id; a converter that
// delivers the wrong length is reported as a tool failure (exit 7) and leaves
// nothing referenced.
import {test} from 'uvu'
import * as assert from 'uvu/assert'
import {spawnSync} from 'node:child_process'
import {chmodSync, mkdirSync, promises as fsp, rmSync, symlinkSync, writeFileSync} from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {execAsync, fsckCleanAsync, hasCommand, listFiles, makeImage, skip, spawnCli, tmpStore} from '../helpers/index.js'
import {finished, sleep} from '../helpers/crash.js'

const M = 1024 * 1024
const CREATED = '2024-01-01T00:00:00Z'
/** Re-imports in the loop test, and how many run at once (two cores: two at a time keeps it under a minute). */
const LOOPS = 100
const AT_ONCE = 2

const tools = ['qemu-img', 'qemu-nbd', 'nbdcopy']
const missing = () => tools.filter((t) => !hasCommand(t))

function ok(r, what) {
  assert.is(r.status, 0, `${what}: exit ${r.status}, stderr ${JSON.stringify(r.stderr)}`)
  return r
}

/** A 24 MiB disk with 8 MiB of random data in two places, converted to `format`. */
async function convertedImage(dir, format) {
  const raw = path.join(dir, 'disk.raw')
  await makeImage(raw, [
    {kind: 'zero', size: M},
    {kind: 'random', size: 5 * M, seed: 'converted-a'},
    {kind: 'zero', size: 10 * M},
    {kind: 'random', size: 3 * M, seed: 'converted-b'},
    {kind: 'zero', size: 5 * M},
  ])
  const file = path.join(dir, `disk.${format}`)
  const c = spawnSync('qemu-img', ['convert', '-f', 'raw', '-O', format, raw, file])
  assert.is(c.status, 0, `qemu-img convert to ${format}: ${c.stderr}`)
  return file
}

/** The absolute path of a command on this PATH. */
const which = (cmd) => spawnSync('sh', ['-c', `command -v ${cmd}`]).stdout.toString().trim()

/** A directory `bin` under `dir` for a test's own PATH, holding `tools` ({name: shell script body}). */
function toolDir(dir, tools) {
  const bin = path.join(dir, 'bin')
  mkdirSync(bin, {recursive: true})
  for (const [name, body] of Object.entries(tools)) {
    rmSync(path.join(bin, name), {force: true})
    writeFileSync(path.join(bin, name), `#!/bin/sh\n${body}\n`)
    chmodSync(path.join(bin, name), 0o755)
  }
  return bin
}

/** Run `body(t, file)` with a fresh store `t` and the test image as qcow2; skips without QEMU's tools. */
async function withQcow2(body) {
  if (missing().length) return skip(`${missing().join(', ')} not installed`)
  const t = tmpStore()
  try {
    await body(t, await convertedImage(t.dir, 'qcow2'))
  } finally {
    t.cleanup()
  }
}

const importArgs = (file, ref) => ['import', file, ref, '--created', CREATED, '--json']
const objects = (store) => listFiles(path.join(store, 'objects'))

/** The store holds exactly `objs` objects, `refs` refs, nothing staged and no lock. */
async function assertStore(store, objs, refCount, what) {
  assert.equal(await objects(store), objs, `${what}: no chunk added`)
  assert.is((await listFiles(path.join(store, 'refs'))).length, refCount, `${what}: refs`)
  assert.equal(await listFiles(path.join(store, 'tmp')), [], `${what}: nothing left in tmp/`)
  assert.equal(await listFiles(path.join(store, 'locks')), [], `${what}: no lock left`)
  await fsckCleanAsync(store)
}

test(`${LOOPS} qcow2 and vmdk imports into a store that already holds every chunk: all succeed with the same id, nothing added, fsck clean`, () =>
  withQcow2(async (t, qcow) => {
    const files = [qcow, await convertedImage(t.dir, 'vmdk')]
    const ids = []
    for (const [k, file] of files.entries()) {
      const first = JSON.parse(ok(await execAsync(importArgs(file, `disk:f${k}`), {store: t.store}), `first import of ${file}`).stdout)
      assert.is(first.via, 'nbdcopy + qemu-nbd', 'streamed by the converter, not through a temporary file')
      assert.is(first.virtualSize, 24 * M)
      ids.push(first.id)
    }
    const stored = await objects(t.store)
    assert.is(stored.length, (8 * M) / (128 * 1024), 'the two formats share every chunk')

    const failures = []
    let next = 0
    const worker = async () => {
      while (next < LOOPS) {
        const i = next++
        const k = i % files.length
        const r = await execAsync(importArgs(files[k], `disk:r${i % 4}`), {store: t.store})
        if (r.status !== 0) failures.push(`#${i}: exit ${r.status}: ${r.stderr.trim()}`)
        else {
          const j = JSON.parse(r.stdout)
          if (j.id !== ids[k]) failures.push(`#${i}: id ${j.id}, not ${ids[k]}`)
          else if (j.newChunks !== 0) failures.push(`#${i}: ${j.newChunks} new chunks`)
        }
      }
    }
    await Promise.all(Array.from({length: AT_ONCE}, worker))
    assert.equal(failures, [], `${failures.length} of ${LOOPS} re-imports failed:\n${failures.join('\n')}`)
    await assertStore(t.store, stored, 6, 'after the loop')
  }),
)

test('an import that waits for a running gc before it reads the converter gets every byte (qcow2, vmdk, vhdx)', async () => {
  if (missing().length) return skip(`${missing().join(', ')} not installed`)
  const t = tmpStore()
  try {
    for (const format of ['qcow2', 'vmdk', 'vhdx']) {
      const file = await convertedImage(t.dir, format)
      const first = JSON.parse(ok(await execAsync(importArgs(file, `${format}:a`), {store: t.store}), `${format}: first import`).stdout)
      const stored = await objects(t.store)
      // a gc holds the store (its lock, as `vmi gc` writes it, naming this live process):
      // the import starts its converter, then waits for the lock before it reads a byte
      const gcLock = path.join(t.store, 'locks', 'gc')
      const lockInfo = {pid: process.pid, host: os.hostname(), op: 'gc', kind: 'write', roots: [], started: new Date().toISOString()}
      writeFileSync(gcLock, JSON.stringify(lockInfo))
      const child = spawnCli(importArgs(file, `${format}:b`), {store: t.store})
      const exited = finished(child)
      await sleep(1500)
      assert.is(child.exitCode, null, `${format}: the import waited for the gc`)
      await fsp.rm(gcLock)
      const r = ok(await exited, `${format}: import after the gc`)
      assert.is(JSON.parse(r.stdout).id, first.id, `${format}: same id as the import that did not wait`)
      assert.equal(await objects(t.store), stored, `${format}: no chunk added`)
    }
    await fsckCleanAsync(t.store)
  } finally {
    t.cleanup()
  }
})

test('--format names the source format: the same id as detected; a file not of it → exit 5 naming the format; an unknown format → exit 2 listing them (import and export)', () =>
  withQcow2(async (t, file) => {
    const detected = JSON.parse(ok(await execAsync(importArgs(file, 'q:detected'), {store: t.store}), 'import detected').stdout)
    const given = JSON.parse(ok(await execAsync([...importArgs(file, 'q:given'), '--format', 'qcow2'], {store: t.store}), 'import --format qcow2').stdout)
    assert.is(given.id, detected.id, 'the same image as detection gives')
    const raw = path.join(t.dir, 'disk.raw')
    const wrong = await execAsync(['import', raw, 'r:1', '--format', 'qcow2', '--json'], {store: t.store})
    assert.is(wrong.status, 5, wrong.stderr)
    assert.match(JSON.parse(wrong.stderr).error.message, /disk\.raw cannot be read as qcow2: .*not in qcow2 format/)
    for (const argv of [['import', raw, 'r:1', '--format', 'bogus'], ['export', 'q:given', path.join(t.dir, 'out.x'), '--format', 'bogus']]) {
      const r = await execAsync(argv, {store: t.store})
      assert.is(r.status, 2, r.stderr)
      assert.match(r.stderr, /bogus.*one of: raw, qcow2/)
    }
    await assertStore(t.store, await objects(t.store), 2, 'after the refusals')
    assert.equal((await fsp.readdir(t.dir)).sort(), ['disk.qcow2', 'disk.raw', 'store'], 'no output file')
  }))

test('a converter that exits cleanly with too few bytes → exit 7 naming it; nothing referenced, gc removes its chunks', () =>
  withQcow2(async (t, qcow) => {
    // nbdcopy whose output stops after 2 MiB + 64 KiB, and which still exits 0 (the pipeline's status is head's)
    const real = which('nbdcopy')
    const bin = toolDir(t.dir, {nbdcopy: `[ "$1" = --version ] && exec ${real} --version\n${real} "$@" | head -c ${2 * M + 65536}`})
    const r = await execAsync(['import', qcow, 'disk:v1', '--created', CREATED], {store: t.store, env: {PATH: `${bin}:${process.env.PATH}`}})
    const ctx = `exit ${r.status}, stderr ${JSON.stringify(r.stderr)}`
    assert.is(r.status, 7, ctx)
    assert.is(r.stdout, '', ctx)
    assert.match(r.stderr, /nbdcopy/, ctx)
    assert.match(r.stderr, new RegExp(`${2 * M + 65536} bytes.*${24 * M}`), ctx)
    assert.equal(await listFiles(path.join(t.store, 'refs')), [], 'no ref')
    assert.equal(await listFiles(path.join(t.store, 'manifests')), [], 'no manifest')
    // the chunks it stored before the end came short are referenced by nothing: fsck is clean, gc takes them
    await fsckCleanAsync(t.store)
    const orphans = (await objects(t.store)).length
    assert.ok(orphans > 0, 'the short import had stored chunks (else this test shows nothing about them)')
    const g = JSON.parse(ok(await execAsync(['gc', '--json'], {store: t.store}), 'gc').stdout)
    assert.is(g.removedObjects, orphans, `gc removed them: ${JSON.stringify(g)}`)
    assert.equal(await objects(t.store), [], 'gc left no chunk')
    // the real converter imports the same file
    ok(await execAsync(['import', qcow, 'disk:v1', '--created', CREATED], {store: t.store}), 'import with the real nbdcopy')
    await fsckCleanAsync(t.store)
  }),
)

test('without nbdcopy, the qemu-img convert fallback gives the same id; a short converted file → exit 7 naming qemu-img, tmp/ left empty', () =>
  withQcow2(async (t, qcow) => {
    const first = JSON.parse(ok(await execAsync(importArgs(qcow, 'disk:v1'), {store: t.store}), 'import through nbdcopy').stdout)
    const stored = await objects(t.store)
    // a PATH with node and qemu-img but no nbdcopy or qemu-nbd
    const qemuImg = which('qemu-img')
    const bin = toolDir(t.dir, {'qemu-img': `exec ${qemuImg} "$@"`})
    symlinkSync(process.execPath, path.join(bin, 'node'))
    const j = JSON.parse(ok(await execAsync(importArgs(qcow, 'disk:v2'), {store: t.store, env: {PATH: bin}}), 'import through qemu-img convert').stdout)
    assert.is(j.via, 'qemu-img convert (temporary raw file)')
    assert.is(j.id, first.id, 'same image either way')
    await assertStore(t.store, stored, 2, 'after the fallback import')
    // a qemu-img whose converted file comes out 1 MiB long
    toolDir(t.dir, {'qemu-img': `${qemuImg} "$@" || exit $?\nif [ "$1" = convert ]; then for last; do :; done; ${which('truncate')} -s ${M} "$last"; fi`})
    const r = await execAsync(importArgs(qcow, 'disk:v3'), {store: t.store, env: {PATH: bin}})
    const ctx = `exit ${r.status}, stderr ${JSON.stringify(r.stderr)}`
    assert.is(r.status, 7, ctx)
    assert.match(r.stderr, /qemu-img convert.*1048576 bytes/, ctx)
    await assertStore(t.store, stored, 2, 'after the short conversion')
  }),
)

test.run()
