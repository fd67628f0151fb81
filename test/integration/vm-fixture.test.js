// Integration test for the VM boot fixture: scripts/build-boot-image.sh builds
// (once, then cached) a bootable Debian disk image, and scripts/boot-vm.sh
// boots it under QEMU, succeeding only when the guest prints its marker.
//
// The first run builds the image (root, network to deb.debian.org; ~2 min);
// later runs reuse the cache. Each boot takes ~20-25 s under TCG.
// Skipped, with the reason printed, when the builder exits 3 (not root, no
// debootstrap, mirror unreachable), when QEMU is missing, or when
// VMI_SKIP_VM=1 is set.
import {test} from 'uvu';
import * as assert from 'uvu/assert';
import {spawn, spawnSync} from 'node:child_process';
import {createHash} from 'node:crypto';
import {existsSync, mkdtempSync, readFileSync, rmSync} from 'node:fs';
import {tmpdir} from 'node:os';
import path from 'node:path';
import {fileURLToPath} from 'node:url';
import {skip} from '../helpers/index.js';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const script = (name) => path.join(repo, 'scripts', name);

function runScript(name, args = []) {
  const r = spawnSync('bash', [script(name), ...args], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
    maxBuffer: 64 * 1024 * 1024,
  });
  if (r.error) throw r.error;
  return r;
}

function lastLines(text, n = 25) {
  return (text || '').trimEnd().split('\n').slice(-n).join('\n');
}

// "BOOT-RESULT ok=1 accel=tcg marker_s=..." -> {ok: '1', accel: 'tcg', ...}
function parseBootResult(stdout) {
  const line = stdout.split('\n').find((l) => l.startsWith('BOOT-RESULT '));
  if (!line) return null;
  return Object.fromEntries(
    line.split(' ').slice(1).map((kv) => {
      const i = kv.indexOf('=');
      return [kv.slice(0, i), kv.slice(i + 1)];
    }),
  );
}

function skipped(what, reason) {
  skip(`${what}: ${reason}`);
}

function haveCommand(cmd) {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], {stdio: 'ignore'}).status === 0;
}

// Build (or find) the image once; later tests reuse the outcome.
let image; // {dir} | {skip: reason}
function ensureImage() {
  if (image) return image;
  if (process.env.VMI_SKIP_VM === '1') return (image = {skip: 'VMI_SKIP_VM=1'});
  const cached = runScript('boot-image-path.sh').stdout.trim();
  if (!existsSync(path.join(cached, '.complete'))) {
    console.log(`  building the boot image into ${cached} (first run only, a few minutes)...`);
  }
  const r = runScript('build-boot-image.sh');
  if (r.status === 3) return (image = {skip: lastLines(r.stderr, 1)});
  assert.is(r.status, 0, `build-boot-image.sh failed (exit ${r.status}):\n${lastLines(r.stderr)}`);
  const dir = r.stdout.trim().split('\n').pop();
  assert.is(dir, cached, 'builder prints the cache directory');
  return (image = {dir});
}

function boot(disk, extraArgs = []) {
  const r = runScript('boot-vm.sh', ['-t', '300', ...extraArgs, disk]);
  const result = parseBootResult(r.stdout);
  const detail = `boot-vm.sh exit ${r.status}, stdout:\n${r.stdout}\nstderr:\n${lastLines(r.stderr, 40)}`;
  assert.ok(result, `no BOOT-RESULT line; ${detail}`);
  assert.is(result.ok, '1', detail);
  assert.is(r.status, 0, detail);
  return result;
}

test('boot-image-path.sh is keyed by the builder script hash', () => {
  const out = runScript('boot-image-path.sh');
  assert.is(out.status, 0);
  const hash = createHash('sha256').update(readFileSync(script('build-boot-image.sh'))).digest('hex');
  assert.ok(
    out.stdout.trim().endsWith(`/boot-image-${hash.slice(0, 16)}`),
    `unexpected path ${out.stdout.trim()}`,
  );

  const base = mkdtempSync(path.join(tmpdir(), 'vmi-cache-'));
  try {
    const r = spawnSync('bash', [script('boot-image-path.sh')], {
      encoding: 'utf8',
      env: {...process.env, VMI_CACHE_DIR: base},
    });
    assert.is(r.stdout.trim(), `${base}/boot-image-${hash.slice(0, 16)}`);
  } finally {
    rmSync(base, {recursive: true, force: true});
  }
});

test('build-boot-image.sh produces a complete image directory', () => {
  const img = ensureImage();
  if (img.skip) return skipped('build', img.skip);
  for (const f of ['disk.raw', 'vmlinuz', 'initrd.img', 'cmdline', 'info', '.complete']) {
    assert.ok(existsSync(path.join(img.dir, f)), `missing ${f} in ${img.dir}`);
  }
  assert.not.ok(existsSync(path.join(img.dir, 'rootfs')), 'debootstrap tree must not be kept');
  assert.match(readFileSync(path.join(img.dir, 'cmdline'), 'utf8'), /root=\/dev\/vda/);
  assert.match(readFileSync(path.join(img.dir, 'info'), 'utf8'), /^kernel_release=\S+$/m);

  // a rerun on a complete directory is a no-op
  const again = runScript('build-boot-image.sh');
  assert.is(again.status, 0);
  assert.is(again.stdout.trim(), img.dir);
});

test('the raw image boots to the marker', () => {
  const img = ensureImage();
  if (img.skip) return skipped('raw boot', img.skip);
  if (!haveCommand('qemu-system-x86_64')) return skipped('raw boot', 'qemu-system-x86_64 not installed');
  const result = boot(path.join(img.dir, 'disk.raw'));
  assert.ok(Number(result.marker_s) > 0, `marker_s=${result.marker_s}`);
  assert.ok(Number(result.guest_uptime_s) > 0, `guest_uptime_s=${result.guest_uptime_s}`);
  const info = readFileSync(path.join(img.dir, 'info'), 'utf8');
  assert.ok(info.includes(`kernel_release=${result.kernel}\n`), `guest kernel ${result.kernel}`);
});

test('the image boots from a read-only NBD export', async () => {
  const img = ensureImage();
  if (img.skip) return skipped('NBD boot', img.skip);
  for (const cmd of ['qemu-system-x86_64', 'nbdkit']) {
    if (!haveCommand(cmd)) return skipped('NBD boot', `${cmd} not installed`);
  }
  const tmp = mkdtempSync(path.join(tmpdir(), 'vmi-nbd-'));
  const sock = path.join(tmp, 'nbd.sock');
  const nbdkit = spawn('nbdkit', ['-f', '-r', '-U', sock, 'file', path.join(img.dir, 'disk.raw')], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let nbdErr = '';
  nbdkit.stderr.on('data', (d) => (nbdErr += d));
  try {
    for (let i = 0; i < 100 && !existsSync(sock); i++) await new Promise((r) => setTimeout(r, 100));
    assert.ok(existsSync(sock), `nbdkit did not start: ${nbdErr}`);
    boot(`nbd+unix:///?socket=${sock}`, ['-d', img.dir]);
  } finally {
    nbdkit.kill('SIGTERM');
    await new Promise((r) => (nbdkit.exitCode !== null ? r() : nbdkit.once('exit', r)));
    rmSync(tmp, {recursive: true, force: true});
  }
});

test.run();
