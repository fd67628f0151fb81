// The --listen syntax shared by serve and mount, and the "did you mean" of unknown commands.
import {test} from 'uvu'
import * as assert from 'uvu/assert'
import {listenError, parseListen} from '../../dist/cli/listen.js'
import {closestCommands, editDistance} from '../../dist/hooks/command-not-found.js'

test('parseListen: HOST:PORT, :PORT (all interfaces), [v6]:PORT', () => {
  assert.equal(parseListen('127.0.0.1:7070'), {host: '127.0.0.1', port: 7070})
  assert.equal(parseListen(':10809'), {host: '0.0.0.0', port: 10809})
  assert.equal(parseListen('[::1]:0'), {host: '::1', port: 0})
  assert.equal(parseListen('seed.example:65535'), {host: 'seed.example', port: 65535})
})

test('parseListen refuses what is not HOST:PORT, and suggests :PORT for a bare port', () => {
  for (const bad of ['', '7070x', 'host', 'host:', 'host:65536', '::1:80', '[::1]', 'a:b:1']) {
    assert.throws(() => parseListen(bad), (e) => e.code === 'VMI_USAGE' && e.exitCode === 2 && !/did you mean/.test(e.message), JSON.stringify(bad))
  }
  assert.throws(() => parseListen('7070'), (e) => e.exitCode === 2 && e.message.includes('did you mean ":7070"'))
})

test('listenError: only failures to listen, with their reason', () => {
  const inUse = Object.assign(new Error('listen EADDRINUSE'), {code: 'EADDRINUSE', syscall: 'listen'})
  assert.match(listenError(inUse, ':7070').message, /^cannot listen on :7070: the address is in use \(EADDRINUSE\)$/)
  assert.is(listenError(Object.assign(new Error('x'), {code: 'EACCES', syscall: 'open'}), ':7070'), undefined)
  assert.is(listenError(new Error('x'), ':7070'), undefined)
})

test('closestCommands: a unique prefix, else the nearest within a few edits', () => {
  const cmds = ['import', 'export', 'inspect', 'pull', 'push', 'remote add', 'remote rm', 'remote ls', 'rm', 'ls', 'log']
  assert.equal(closestCommands('imprt', cmds), ['import'])
  assert.equal(closestCommands('improt', cmds), ['import'])
  assert.equal(closestCommands('insp', cmds), ['inspect'])
  assert.equal(closestCommands('remote rmm', cmds), ['remote rm'])
  assert.equal(closestCommands('pul', cmds), ['pull'])
  assert.equal(closestCommands('xyzzy', cmds), [])
  assert.is(editDistance('ab', 'ba'), 1)
  assert.is(editDistance('', 'abc'), 3)
})

test.run()
