// Which NBD requests reach the backend (nbd/validate.ts): the checks every request passes first.
import {test} from 'uvu'
import * as assert from 'uvu/assert'
import {requestError} from '../../dist/mount/nbd/validate.js'
import {MAX_PAYLOAD} from '../../dist/mount/nbd/limits.js'
import {P} from '../helpers/nbd-raw.js'

const SIZE = 1 << 20
const rw = {size: SIZE, readOnly: false}
const ro = {size: SIZE, readOnly: true}
const plain = {structured: false, metaContext: false}
const structured = {structured: true, metaContext: false}
const withContext = {structured: true, metaContext: true}

test('requests inside the export pass', () => {
  for (const type of [P.CMD_READ, P.CMD_WRITE, P.CMD_TRIM, P.CMD_WRITE_ZEROES, P.CMD_CACHE]) {
    assert.is(requestError(type, 0, 0, 4096, rw, plain), 0, P.COMMAND_NAMES[type])
    assert.is(requestError(type, P.CMD_FLAG_FUA, SIZE - 1, 1, rw, plain), 0, `${P.COMMAND_NAMES[type]} at the end`)
  }
  assert.is(requestError(P.CMD_FLUSH, 0, 0, 0, rw, plain), 0)
  assert.is(requestError(P.CMD_WRITE_ZEROES, P.CMD_FLAG_NO_HOLE, 0, 4096, rw, plain), 0)
  assert.is(requestError(P.CMD_BLOCK_STATUS, P.CMD_FLAG_REQ_ONE, 0, 4096, rw, withContext), 0)
})

test('unknown commands and flags a command does not take are EINVAL', () => {
  assert.is(requestError(P.CMD_DISC, 0, 0, 0, rw, plain), P.EINVAL)
  assert.is(requestError(P.CMD_RESIZE, 0, 0, 0, rw, plain), P.EINVAL)
  assert.is(requestError(99, 0, 0, 0, rw, plain), P.EINVAL)
  assert.is(requestError(P.CMD_READ, P.CMD_FLAG_NO_HOLE, 0, 1, rw, plain), P.EINVAL)
  assert.is(requestError(P.CMD_WRITE, P.CMD_FLAG_REQ_ONE, 0, 1, rw, plain), P.EINVAL)
  // DF only once structured replies are negotiated
  assert.is(requestError(P.CMD_READ, P.CMD_FLAG_DF, 0, 1, rw, plain), P.EINVAL)
  assert.is(requestError(P.CMD_READ, P.CMD_FLAG_DF, 0, 1, rw, structured), 0)
  // flags are checked before anything else, FLUSH's too
  assert.is(requestError(P.CMD_FLUSH, P.CMD_FLAG_DF, 0, 0, rw, structured), P.EINVAL)
})

test('bounds: writes past the end are ENOSPC, everything else EINVAL; FLUSH has none', () => {
  assert.is(requestError(P.CMD_WRITE, 0, SIZE - 1, 2, rw, plain), P.ENOSPC)
  assert.is(requestError(P.CMD_WRITE_ZEROES, 0, SIZE, 1, rw, plain), P.ENOSPC)
  assert.is(requestError(P.CMD_TRIM, 0, SIZE, 1, rw, plain), P.EINVAL)
  assert.is(requestError(P.CMD_READ, 0, SIZE - 1, 2, rw, plain), P.EINVAL)
  assert.is(requestError(P.CMD_CACHE, 0, SIZE + 4096, 1, rw, plain), P.EINVAL)
  // an offset past 2^53 - 1 arrives as -1
  assert.is(requestError(P.CMD_READ, 0, -1, 1, rw, plain), P.EINVAL)
  assert.is(requestError(P.CMD_FLUSH, 0, -1, 7, rw, plain), 0)
})

test('read-only exports refuse writes with EPERM, before the bounds', () => {
  for (const type of [P.CMD_WRITE, P.CMD_WRITE_ZEROES, P.CMD_TRIM]) {
    assert.is(requestError(type, 0, 0, 1, ro, plain), P.EPERM, P.COMMAND_NAMES[type])
    assert.is(requestError(type, 0, SIZE, 1, ro, plain), P.EPERM, `${P.COMMAND_NAMES[type]} past the end`)
  }
  assert.is(requestError(P.CMD_READ, 0, 0, 1, ro, plain), 0)
  assert.is(requestError(P.CMD_FLUSH, 0, 0, 0, ro, plain), 0)
})

test('reads up to MAX_PAYLOAD; BLOCK_STATUS needs base:allocation and a length', () => {
  const big = {size: 4 * MAX_PAYLOAD, readOnly: false}
  assert.is(requestError(P.CMD_READ, 0, 0, MAX_PAYLOAD, big, plain), 0)
  assert.is(requestError(P.CMD_READ, 0, 0, MAX_PAYLOAD + 1, big, plain), P.EINVAL)
  assert.is(requestError(P.CMD_BLOCK_STATUS, 0, 0, 4096, rw, structured), P.EINVAL)
  assert.is(requestError(P.CMD_BLOCK_STATUS, 0, 0, 0, rw, withContext), P.EINVAL)
})

test.run()
