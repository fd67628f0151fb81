// A fleet in the lab (test/helpers/lab.js): a seed and hosts, each in its own
// network namespace on a tbf-shaped veth into one bridge. Every host runs
// `vmi serve --seed SEED` and `vmi pull ID SEED --peer <every host>` at once.
// Checked: the fill is byte-identical everywhere and the seed sends each
// chunk about once; a host whose link is cut mid-fill does not stop the
// others; a fifth host mounts the image lazily from the peers while the
// seed's link is down; a seed holding raw chunks compresses them on send to
// a host across the lab, and a push compresses to a seed across the lab but
// not to a vmi serve on its own host. Timing goals belong to `npm run bench -- --only fleet`.
import {test} from 'uvu'
import * as assert from 'uvu/assert'
import {promises as fsp} from 'node:fs'
import path from 'node:path'
import {exec, execAsync, fsckCleanAsync, hasCommand, makeImage, seededBytes, sha256File, skip, spawnCli, textBytes, tmpStore} from '../helpers/index.js'
import {labUnavailable, startLab} from '../helpers/lab.js'
import {metricSum, startServe} from '../helpers/serve.js'

const M = 1024 * 1024
const PORT = 7070
const UNIQUE = 24 * M // distinct non-zero bytes of the test image
const LAYOUT = [{kind: 'random', size: 16 * M, seed: 'fleet-1'}, {kind: 'zero', size: 8 * M}, {kind: 'random', size: 8 * M, seed: 'fleet-2'}, {kind: 'repeat', size: 4 * M}]
const CHUNK = 128 * 1024
const CHUNKS = UNIQUE / CHUNK

const why = labUnavailable()

/**
 * fn({lab, t, src, id, seedUrl}) with a lab of `hosts` hosts whose seed runs
 * `vmi serve` over a store holding the test image; everything is stopped and
 * removed afterwards, whatever happens.
 */
async function withFleet(labInit, fn) {
  const t = tmpStore()
  let lab
  try {
    const src = path.join(t.dir, 'src.raw')
    await makeImage(src, LAYOUT)
    const seedStore = path.join(t.dir, 'seed')
    const imp = exec(['import', src, 'app:v1', '--json'], {store: seedStore})
    assert.is(imp.status, 0, imp.stderr)
    const {id, newBytes} = JSON.parse(imp.stdout)
    assert.is(newBytes, UNIQUE)
    lab = await startLab(labInit)
    const seed = await startServe(seedStore, ['--allow-anonymous-read'], {netns: lab.seed.ns, listen: `${lab.seed.ip}:${PORT}`})
    await fn({lab, t, src, id, seedUrl: seed.url})
  } finally {
    await lab?.close() // kills every process in the lab's namespaces, then deletes them
    t.cleanup()
  }
}

/** Start `vmi serve --seed SEED` on every host (at once); resolves to their URLs. */
async function startHostServes(t, hosts, seedUrl) {
  const serves = await Promise.all(hosts.map((h) => startServe(path.join(t.dir, h.name), ['--seed', seedUrl, '--allow-anonymous-read'], {netns: h.ns, listen: `${h.ip}:${PORT}`})))
  return serves.map((s) => s.url)
}

/** `vmi pull ID SEED --peer … EXTRA` on a host, started now; `done` resolves {code, json, stderr} when it exits. */
function startPull(t, host, id, seedUrl, peerUrls, extra = []) {
  const child = spawnCli(['pull', id, seedUrl, '--json', ...peerUrls.flatMap((u) => ['--peer', u]), ...extra], {store: path.join(t.dir, host.name), netns: host.ns})
  let out = ''
  let err = ''
  child.stdout.on('data', (d) => (out += d))
  child.stderr.on('data', (d) => (err += d))
  const done = new Promise((resolve) =>
    child.on('close', (code, signal) => {
      let json
      try {
        json = JSON.parse(out)
      } catch {}
      resolve({host: host.name, code, signal, json, stderr: err})
    }),
  )
  return {child, done}
}

/** The export of app's image from a host's store, hashed. */
async function exportedHash(t, host, id) {
  const out = path.join(t.dir, `${host.name}.raw`)
  const r = await execAsync(['export', id, out], {store: path.join(t.dir, host.name)})
  assert.is(r.status, 0, `export on ${host.name}: ${r.stderr}`)
  const h = await sha256File(out)
  await fsp.rm(out)
  return h
}

const seedObjectBytes = async (lab, seedUrl) => metricSum(await lab.httpGet(lab.seed, `${seedUrl}/metrics`), 'vmi_served_bytes_total', {kind: 'objects'})

/** Resolves within `ms` or fails the test with `what`. */
function bounded(p, ms, what) {
  let timer
  return Promise.race([p, new Promise((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: not done after ${ms / 1000} s`)), ms)))]).finally(() => clearTimeout(timer))
}

test('fleet lab: 4 hosts fill at once with owner hashing (byte-identical, seed sends one copy); a fifth host mounts lazily from the peers with the seed cut off', async () => {
  if (why) return skip(why)
  if (!hasCommand('qemu-img')) return skip('qemu-img is not installed (the NBD client that reads the mount)')
  await withFleet({hosts: 5, seedRate: 100e6, hostRate: 100e6}, async ({lab, t, src, id, seedUrl}) => {
    const fillers = lab.hosts.slice(0, 4)
    const urls = await startHostServes(t, fillers, seedUrl)
    const tx0 = lab.counters(lab.seed).tx
    const results = await bounded(Promise.all(fillers.map((h) => startPull(t, h, id, seedUrl, urls).done)), 60_000, 'the 4-host fill')
    for (const r of results) {
      assert.is(r.code, 0, `pull on ${r.host}: ${r.stderr}`)
      // a chunk this host's own serve fetched through for a peer is found local by its pull
      assert.is((r.json.fromChunks.local ?? 0) + r.json.fromChunks.peer + r.json.fromChunks.seed, CHUNKS, `${r.host} got every chunk`)
    }
    assert.ok(
      results.every((r) => r.json.fromChunks.peer > 0),
      `every host took chunks from its peers: ${results.map((r) => `${r.host} peer ${r.json.fromChunks.peer} seed ${r.json.fromChunks.seed}`).join('; ')}`,
    )
    const seedBytes = await seedObjectBytes(lab, seedUrl)
    const wire = lab.counters(lab.seed).tx - tx0
    console.log(`  4 hosts at 100 Mbit/s: seed sent ${seedBytes} chunk bytes for ${UNIQUE} unique (${(seedBytes / UNIQUE).toFixed(3)}×), ${wire} bytes on its link`)
    assert.ok(seedBytes >= UNIQUE, 'the seed sent every chunk at least once')
    assert.ok(seedBytes <= 1.02 * UNIQUE, `seed egress ${(seedBytes / UNIQUE).toFixed(3)}× the unique bytes (≤ 1.02×)`)
    const want = await sha256File(src)
    const got = await Promise.all(fillers.map((h) => exportedHash(t, h, id)))
    fillers.forEach((h, i) => assert.is(got[i], want, `${h.name} holds the image byte for byte`))
    await fsckCleanAsync(path.join(t.dir, fillers[0].name))

    // the seed's cable is pulled: h4 mounts by id and reads everything, through its peers only
    lab.setLink(lab.seed, false)
    const out = path.join(t.dir, 'mounted.raw')
    const m = await bounded(
      execAsync(['mount', id, seedUrl, ...urls.flatMap((u) => ['--peer', u]), '--read-only', '--prefetch', 'none', '--json', '--exec', `qemu-img convert -f raw -O raw {nbd} ${out}`], {
        store: path.join(t.dir, 'h4'),
        netns: lab.hosts[4].ns,
      }),
      60_000,
      'the mount on h4',
    )
    assert.is(m.status, 0, `mount on h4: ${m.stderr}`)
    // stdout: the {"mounted":…} line, then the result (oclif prints it indented over several lines)
    const stats = JSON.parse(m.stdout.slice(m.stdout.indexOf('\n{') + 1))
    assert.is(stats.fetched.seed, 0, 'nothing came from the seed')
    assert.ok(stats.fetched.peer >= CHUNKS, `every chunk came from a peer, on first read (${stats.fetched.peer} fetches)`)
    assert.is(await sha256File(out), want, 'the mounted disk reads byte for byte')
  })
})

test("fleet lab: a host's link is cut mid-fill; the other hosts still complete, byte-identical", async () => {
  if (why) return skip(why)
  // a slow seed link, so the fill is surely under way when the cable is pulled
  await withFleet({hosts: 4, seedRate: 50e6, hostRate: 50e6}, async ({lab, t, src, id, seedUrl}) => {
    const urls = await startHostServes(t, lab.hosts, seedUrl)
    const [cut, ...rest] = lab.hosts
    // a silent peer is given up after 2 s instead of the default 10 s: the same path, sooner
    const pulls = lab.hosts.map((h) => startPull(t, h, id, seedUrl, urls, ['--peer-timeout', '2000']))
    // the cut host owns about a quarter of the chunks; it goes once it holds some of them
    const objects = path.join(t.dir, cut.name, 'objects')
    const held = async () => (await fsp.readdir(objects).catch(() => [])).length
    const deadline = Date.now() + 30_000
    while ((await held()) < 8 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20))
    lab.setLink(cut, false)
    const runningAtCut = pulls.slice(1).map((p) => p.child.exitCode === null)
    assert.ok(runningAtCut.every(Boolean), 'the other hosts were still filling when the link was cut')
    const results = await bounded(Promise.all(pulls.slice(1).map((p) => p.done)), 90_000, 'the fill of the hosts left')
    for (const r of results) {
      assert.is(r.code, 0, `pull on ${r.host}: ${r.stderr}`)
      assert.is(r.json.fromChunks.local + r.json.fromChunks.peer + r.json.fromChunks.seed, CHUNKS, `${r.host} has every chunk`)
    }
    const errors = results.reduce((a, r) => a + r.json.sourceErrors, 0)
    assert.ok(errors > 0, 'the hosts left felt the cut (requests to the cut host failed)')
    const seedBytes = await seedObjectBytes(lab, seedUrl)
    console.log(`  host ${cut.name} cut mid-fill: the others completed; seed sent ${(seedBytes / UNIQUE).toFixed(3)}× the unique bytes; source errors ${errors}`)
    const want = await sha256File(src)
    const got = await Promise.all(rest.map((h) => exportedHash(t, h, id)))
    rest.forEach((h, i) => assert.is(got[i], want, `${h.name} holds the image byte for byte`))
    await fsckCleanAsync(path.join(t.dir, rest[0].name))
  })
})

test('fleet lab: a seed holding raw chunks compresses them on send to a host across the lab (--compress-sends auto), not to a pull on its own machine by its lab address, and not with never; a push compresses across the lab, not to a vmi serve on its own host (by a loopback address or by its lab address)', async () => {
  if (why) return skip(why)
  const t = tmpStore()
  let lab
  try {
    // one random chunk first (import refuses what looks like text), then 31 chunks of hex words with line numbers
    const src = path.join(t.dir, 'text.raw')
    const text = textBytes('fleet-text', 31 * CHUNK)
    await fsp.writeFile(src, Buffer.concat([seededBytes('fleet-text-head', CHUNK), text]))
    const seedStore = path.join(t.dir, 'seed')
    const imp = exec(['import', src, 'text:v1', '--json'], {store: seedStore})
    assert.is(imp.status, 0, imp.stderr)
    const {id, newBytes} = JSON.parse(imp.stdout)
    lab = await startLab({hosts: 1, seedRate: 100e6, hostRate: 100e6})
    const serve = (extra, port) => startServe(seedStore, ['--allow-anonymous-read', ...extra], {netns: lab.seed.ns, listen: `${lab.seed.ip}:${port}`})
    const auto = await serve([], PORT)
    const never = await serve(['--compress-sends', 'never'], PORT + 1)
    const pulled = {}
    for (const [name, seed] of [['auto', auto], ['never', never]]) {
      const r = await bounded(execAsync(['pull', id, seed.url, '--json'], {store: path.join(t.dir, `host-${name}`), netns: lab.hosts[0].ns}), 60_000, `the pull from the ${name} seed`)
      assert.is(r.status, 0, r.stderr)
      pulled[name] = JSON.parse(r.stdout)
      assert.is(pulled[name].fromBytes.seed, newBytes)
      const fsck = await fsckCleanAsync(path.join(t.dir, `host-${name}`))
      assert.is(fsck.compressedObjects, name === 'auto' ? 31 : 0, `frames kept by the host that pulled from the ${name} seed`)
    }
    console.log(`  ${newBytes} chunk bytes: ${pulled.auto.wireBytes} on the wire from the auto seed, ${pulled.never.wireBytes} from the never seed`)
    assert.ok(pulled.auto.wireBytes < 0.6 * newBytes, `auto: ${pulled.auto.wireBytes} bytes on the wire`)
    assert.is(pulled.never.wireBytes, newBytes)
    assert.is(metricSum(await lab.httpGet(lab.seed, `${auto.url}/metrics`), 'vmi_send_compressions_total', {result: 'compressed'}), 31)
    assert.is(metricSum(await lab.httpGet(lab.seed, `${auto.url}/metrics`), 'vmi_send_compressions_total', {result: 'incompressible'}), 1)
    // a pull on the seed's own machine by the address the hosts use (as a fleet host pulls what it
    // owns from its own serve): no link crossed, so the chunks go as they rest, raw, none compressed
    const self = await bounded(execAsync(['pull', id, auto.url, '--json'], {store: path.join(t.dir, 'seed-self'), netns: lab.seed.ns}), 60_000, 'the pull on the seed itself')
    assert.is(self.status, 0, self.stderr)
    const selfJson = JSON.parse(self.stdout)
    assert.is(selfJson.fromBytes.seed, newBytes)
    assert.is(selfJson.wireBytes, newBytes, `the pull on the seed's own machine: ${selfJson.wireBytes} bytes on the wire`)
    assert.is((await fsckCleanAsync(path.join(t.dir, 'seed-self'))).compressedObjects, 0)
    const sent = await lab.httpGet(lab.seed, `${auto.url}/metrics`)
    assert.equal(['compressed', 'cached'].map((result) => metricSum(sent, 'vmi_send_compressions_total', {result})), [31, 0])
    // a push from the host (its chunks raw): compressed by default to a seed across the lab; as the
    // chunks rest (raw) to a vmi serve on the host itself, whose readers across a link get frames on send
    const host = path.join(t.dir, 'host-never')
    const across = await startServe(path.join(t.dir, 'empty-seed'), ['--token', 'lab-push-token', '--allow-anonymous-read'], {netns: lab.seed.ns, listen: `${lab.seed.ip}:${PORT + 2}`})
    const local = await startServe(path.join(t.dir, 'local-seed'), ['--token', 'lab-push-token'], {netns: lab.hosts[0].ns})
    // the same, by the address the host has in the lab (not a loopback address)
    const localByAddress = await startServe(path.join(t.dir, 'local-seed-2'), ['--token', 'lab-push-token', '--allow-anonymous-read'], {netns: lab.hosts[0].ns, listen: `${lab.hosts[0].ip}:${PORT + 3}`})
    const pushed = {}
    for (const [name, url] of [['across', across.url], ['local', local.url], ['localByAddress', localByAddress.url]]) {
      const r = await bounded(execAsync(['push', id, url, '--token', 'lab-push-token', '--json'], {store: host, netns: lab.hosts[0].ns}), 60_000, `the push to the ${name} seed`)
      assert.is(r.status, 0, r.stderr)
      pushed[name] = JSON.parse(r.stdout)
      assert.is(pushed[name].uploadedChunkBytes, newBytes)
    }
    console.log(`  push of ${newBytes} chunk bytes: ${pushed.across.uploadedBytes} sent across the lab (${pushed.across.encoding}), ${pushed.local.uploadedBytes} to a vmi serve on the host (${pushed.local.encoding})`)
    assert.equal([pushed.across.encoding, pushed.across.compressed], ['compress', true])
    assert.ok(pushed.across.uploadedBytes < 0.6 * newBytes, `across: ${pushed.across.uploadedBytes} bytes sent`)
    assert.equal([pushed.local.encoding, pushed.local.compressed, pushed.local.uploadedBytes], ['stored', false, newBytes])
    assert.equal([pushed.localByAddress.encoding, pushed.localByAddress.uploadedBytes], ['stored', newBytes], `the push to ${localByAddress.url}, a vmi serve on the host`)
  } finally {
    await lab?.close()
    t.cleanup()
  }
})

test.run()
