import {test} from 'uvu'
import * as assert from 'uvu/assert'
import {looksLikeText, sniffArchive, sniffFormat} from '../../dist/store/formats.js'

test('sniffFormat recognises image magics', () => {
  assert.is(sniffFormat(Buffer.from('QFI\xfb\0\0\0\x03', 'latin1')), 'qcow2')
  assert.is(sniffFormat(Buffer.from('KDMV....', 'latin1')), 'vmdk')
  assert.is(sniffFormat(Buffer.from('vhdxfile', 'latin1')), 'vhdx')
  assert.is(sniffFormat(Buffer.from('conectix', 'latin1')), 'vpc')
  const vdi = Buffer.alloc(512)
  vdi.writeUInt32LE(0xbeda107f, 0x40)
  assert.is(sniffFormat(vdi), 'vdi')
  assert.is(sniffFormat(Buffer.alloc(512)), undefined)
})

test('sniffArchive recognises compressed files', () => {
  assert.is(sniffArchive(Buffer.from([0x1f, 0x8b, 8, 0])), 'gzip')
  assert.is(sniffArchive(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00])), 'xz')
  assert.is(sniffArchive(Buffer.from([0x28, 0xb5, 0x2f, 0xfd])), 'zstd')
  assert.is(sniffArchive(Buffer.alloc(512)), undefined)
})

test('looksLikeText: text and JSON yes; disks, binary and runs of one letter no', () => {
  assert.ok(looksLikeText(Buffer.from('{"a": 1,\n "b": [1, 2]}\n')))
  assert.ok(looksLikeText(Buffer.from('#!/bin/sh\necho héllo wörld\n')))
  assert.not.ok(looksLikeText(Buffer.alloc(4096)), 'zeros')
  assert.not.ok(looksLikeText(Buffer.alloc(4096, 0x5a)), 'no line break: not text')
  const boot = Buffer.alloc(4096, 0x41)
  boot[510] = 0x55
  boot[511] = 0xaa
  boot[100] = 0
  assert.not.ok(looksLikeText(boot), 'a NUL byte means binary')
  assert.not.ok(looksLikeText(Buffer.from([0x41, 0x0a, 0x01, 0x02])), 'control bytes')
})

test.run()
