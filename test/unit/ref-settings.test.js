import {test} from 'uvu'
import * as assert from 'uvu/assert'
import {parseRef, formatRef} from '../../dist/store/ref.js'
import {parseSize, resolveChunkSize, resolveStoreDir} from '../../dist/cli/settings.js'

test('parseRef: name[:tag] with tag defaulting to latest', () => {
  assert.equal(parseRef('debian'), {name: 'debian', tag: 'latest'})
  assert.equal(parseRef('debian:12'), {name: 'debian', tag: '12'})
  assert.equal(parseRef('web-app_2.x:v1.2-rc_3'), {name: 'web-app_2.x', tag: 'v1.2-rc_3'})
  assert.is(formatRef(parseRef('a:b')), 'a:b')
})

test('parseRef rejects malformed names and tags', () => {
  for (const bad of ['', ':', 'a:', ':b', 'x:y:z', 'bad name', '-x', '.x', 'x/y', '../x', 'a..b', 'a:..', 'é', 'a'.repeat(129)]) {
    assert.throws(() => parseRef(bad), (e) => e.code === 'VMI_INVALID_REF' && e.exitCode === 2, JSON.stringify(bad))
  }
})

test('store dir: flag, then VMI_HOME, then XDG_DATA_HOME/vmi, then ~/.local/share/vmi', () => {
  assert.is(resolveStoreDir('/f', {VMI_HOME: '/v', XDG_DATA_HOME: '/x'}, '/home/u'), '/f')
  assert.is(resolveStoreDir(undefined, {VMI_HOME: '/v', XDG_DATA_HOME: '/x'}, '/home/u'), '/v')
  assert.is(resolveStoreDir(undefined, {XDG_DATA_HOME: '/x'}, '/home/u'), '/x/vmi')
  assert.is(resolveStoreDir(undefined, {}, '/home/u'), '/home/u/.local/share/vmi')
})

test('sizes parse with binary units', () => {
  assert.is(parseSize('262144'), 262144)
  assert.is(parseSize('256K'), 262144)
  assert.is(parseSize('256KiB'), 262144)
  assert.is(parseSize('1M'), 1048576)
  assert.is(parseSize('1.5G'), 1.5 * 1024 ** 3)
  for (const bad of ['', 'abc', '1X', '-1M', '1 2']) assert.throws(() => parseSize(bad), /invalid/, bad)
})

test('chunk size: flag, then VMI_CHUNK_SIZE, then config, then default; validated', () => {
  assert.is(resolveChunkSize('1M', {VMI_CHUNK_SIZE: '64K'}, {chunkSize: 131072}, 262144), 1048576)
  assert.is(resolveChunkSize(undefined, {VMI_CHUNK_SIZE: '64K'}, {chunkSize: 131072}, 262144), 65536)
  assert.is(resolveChunkSize(undefined, {}, {chunkSize: 131072}, 262144), 131072)
  assert.is(resolveChunkSize(undefined, {}, {}, 262144), 262144)
  assert.throws(() => resolveChunkSize('100K', {}, {}, 262144), /power of two/)
  assert.throws(() => resolveChunkSize(undefined, {VMI_CHUNK_SIZE: '8M'}, {}, 262144), /VMI_CHUNK_SIZE/)
})

test.run()
