// `vmi mount --exec`: stopping vmi stops the whole hypervisor hand-off —
// the shell, everything it started (grandchildren included), and the
// qemu-storage-daemon bridge — and vmi exits 128 + the signal's number.
import {test} from 'uvu'
import * as assert from 'uvu/assert'
import {existsSync, readdirSync, readFileSync} from 'node:fs'
import path from 'node:path'
import {exec, hasCommand, makeImage, skip, spawnCli, tmpStore} from '../helpers/index.js'

const M = 1024 * 1024

async function imageStore(t) {
  await makeImage(path.join(t.dir, 'src.raw'), [{kind: 'random', size: M, seed: 'exec'}])
  const store = path.join(t.dir, 'store')
  const r = exec(['import', path.join(t.dir, 'src.raw'), 'img:1', '--chunk-size', '64K'], {store})
  assert.is(r.status, 0, r.stderr)
  return store
}

/** Whether a process runs (a zombie does not count: it is dead and holds nothing). */
function running(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z'
  } catch {
    return false
  }
}

/** Pids of running processes whose command line contains `needle`. */
function processesWith(needle) {
  const out = []
  for (const pid of readdirSync('/proc').filter((e) => /^\d+$/.test(e))) {
    let cmd
    try {
      cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ')
    } catch {
      continue
    }
    if (cmd.includes(needle) && running(pid)) out.push(Number(pid))
  }
  return out
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

async function until(check, what, ms = 30_000) {
  const deadline = Date.now() + ms
  while (Date.now() < deadline) {
    if (check()) return
    await sleep(50)
  }
  throw new Error(`timed out waiting for ${what}`)
}

function pidsIn(file) {
  return existsSync(file) ? readFileSync(file, 'utf8').split('\n').filter(Boolean).map(Number) : []
}

/**
 * A shell that starts a background sleep and a second shell with its own
 * background sleep, recording every pid: four processes, two of them
 * grandchildren of `sh -c`.
 */
function spawningCommand(pids, prefix = '') {
  return `${prefix}echo $$ >> ${pids}; sleep 300 & echo $! >> ${pids}; sh -c 'sleep 301 & echo $! >> ${pids}; wait' & echo $! >> ${pids}; wait`
}

/** Start `vmi mount … --exec cmd`, wait until the command has recorded `n` pids. */
async function startExec(store, args, pids, n) {
  const child = spawnCli(['mount', 'img:1', ...args], {store})
  let stderr = ''
  child.stderr.on('data', (d) => (stderr += d))
  child.stdout.resume()
  const exited = new Promise((r) => child.on('exit', (code, signal) => r({code, signal})))
  await until(() => pidsIn(pids).length >= n || child.exitCode !== null, 'the --exec command to start')
  assert.is(child.exitCode, null, `vmi mount exited early: ${stderr}`)
  return {child, exited, stderr: () => stderr}
}

async function stopped(m, sig) {
  m.child.kill(sig)
  const timer = setTimeout(() => m.child.kill('SIGKILL'), 60_000)
  const r = await m.exited
  clearTimeout(timer)
  return r
}

function killAll(pids) {
  for (const pid of pidsIn(pids))
    try {
      process.kill(pid, 'SIGKILL')
    } catch {
      /* gone */
    }
}

for (const {sig, code, title, args = [], prefix = ''} of [
  {sig: 'SIGINT', code: 130, title: "SIGINT to vmi stops the --exec command's whole process group and exits 130"},
  {sig: 'SIGTERM', code: 143, title: "SIGTERM to vmi stops the --exec command's whole process group and exits 143"},
  // an ignored signal stays ignored across fork and exec: no process of the group heeds SIGTERM
  {sig: 'SIGTERM', code: 143, title: 'a process group that ignores SIGTERM gets SIGKILL after --exec-stop-timeout', args: ['--exec-stop-timeout', '1'], prefix: "trap '' TERM; "},
]) {
  test(title, async () => {
    const t = tmpStore()
    const pids = path.join(t.dir, 'pids')
    try {
      const store = await imageStore(t)
      const m = await startExec(store, ['--read-only', ...args, '--exec', spawningCommand(pids, prefix)], pids, 4)
      const started = pidsIn(pids)
      assert.ok(started.every(running), 'all four processes run before the signal')
      const r = await stopped(m, sig)
      assert.is(r.code, code, `exit code after ${sig}: ${m.stderr()}`)
      assert.equal(started.filter(running), [], `processes left after ${sig}`)
      assert.match(m.stderr(), /stopped/)
    } finally {
      killAll(pids)
      t.cleanup()
    }
  })
}

test('when the --exec command ends, what it left running in the background is stopped too; its exit code is passed on', async () => {
  const t = tmpStore()
  const pids = path.join(t.dir, 'pids')
  try {
    const store = await imageStore(t)
    const child = spawnCli(['mount', 'img:1', '--read-only', '--exec', `sleep 300 & echo $! >> ${pids}; exit 3`], {store})
    child.stdout.resume()
    child.stderr.resume()
    const r = await new Promise((res) => child.on('exit', (code) => res(code)))
    assert.is(r, 3)
    const left = pidsIn(pids)
    assert.is(left.length, 1)
    assert.equal(left.filter(running), [], 'the background sleep was stopped')
  } finally {
    killAll(pids)
    t.cleanup()
  }
})

test('SIGINT to vmi with a --file bridge leaves no qemu-storage-daemon and no FUSE mount behind', async () => {
  if (!hasCommand('qemu-storage-daemon') || !existsSync('/dev/fuse')) return skip('qemu-storage-daemon or /dev/fuse missing')
  const t = tmpStore()
  const pids = path.join(t.dir, 'pids')
  try {
    const store = await imageStore(t)
    const file = path.join(t.dir, 'disk.img')
    // the command reads the disk through the bridge before it waits
    const m = await startExec(store, ['--read-only', '--file', file, '--exec', `head -c 4096 {file} > /dev/null && ${spawningCommand(pids)}`], pids, 4)
    const started = pidsIn(pids)
    assert.ok(processesWith(file).length > 0, 'qemu-storage-daemon serves the file while mounted')
    const r = await stopped(m, 'SIGINT')
    assert.is(r.code, 130, m.stderr())
    assert.equal(started.filter(running), [], 'processes left')
    assert.equal(processesWith(file), [], 'no qemu-storage-daemon left for the file')
    assert.not.ok(readFileSync('/proc/mounts', 'utf8').includes(file), 'the FUSE mount is gone')
    assert.not.ok(existsSync(file), 'the file vmi created is removed')
  } finally {
    killAll(pids)
    for (const pid of processesWith(path.join(t.dir, 'disk.img'))) process.kill(pid, 'SIGKILL')
    t.cleanup()
  }
})

test.run()
