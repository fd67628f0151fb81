// util/loopback.ts: isThisMachineUrl, which push uses to send chunks as they
// rest to a vmi serve on this machine, also by a non-loopback address.
import {test} from 'uvu'
import * as assert from 'uvu/assert'
import os from 'node:os'
import {isThisMachineUrl} from '../../dist/util/loopback.js'

/** A non-loopback IPv4 address of one of this machine's interfaces, if it has any. */
const own = Object.values(os.networkInterfaces())
  .flat()
  .find((i) => i && i.family === 'IPv4' && !i.internal)?.address

test('loopback hosts, by address or name, are this machine', async () => {
  for (const url of ['http://127.0.0.1:7070', 'http://127.3.4.5/', 'http://[::1]:7070/', 'https://localhost:8443', 'http://LOCALHOST/'])
    assert.ok(await isThisMachineUrl(url), url)
})

test("an address of one of this machine's interfaces is this machine; another address is not", async () => {
  if (own) assert.ok(await isThisMachineUrl(`http://${own}:7070/`), own)
  else console.log('  (no non-loopback IPv4 interface here: only the other half is checked)')
  // TEST-NET-3 (RFC 5737): never an address a machine is given for real
  assert.not.ok(own === '203.0.113.7')
  assert.not.ok(await isThisMachineUrl('http://203.0.113.7:7070/'))
})

test('what is not an http(s) URL is not', async () => {
  for (const url of ['s3://bucket/prefix', 'file:///tmp/x', 'not a url', ''])
    assert.not.ok(await isThisMachineUrl(url), url)
})

test.run()
