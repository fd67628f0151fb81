// Backend errors as NBD error values (nbd/errors.ts).
import {test} from 'uvu'
import * as assert from 'uvu/assert'
import {errnoToNbd, errorToNbd} from '../../dist/mount/nbd/errors.js'

test('errno mapping', () => {
  assert.is(errnoToNbd('EPERM'), 1)
  assert.is(errnoToNbd('ENOSPC'), 28)
  assert.is(errnoToNbd('EDQUOT'), 28)
  assert.is(errnoToNbd('EINVAL'), 22)
  assert.is(errnoToNbd('EIO'), 5)
  assert.is(errnoToNbd('whatever'), 5)
  assert.is(errorToNbd(Object.assign(new Error('x'), {errno: 'ENOSPC'})), 28)
  assert.is(errorToNbd(Object.assign(new Error('x'), {code: 'EROFS'})), 1)
  assert.is(errorToNbd(new Error('plain')), 5)
  assert.is(errorToNbd(undefined), 5)
  assert.is(errorToNbd('string'), 5)
})

test.run()
