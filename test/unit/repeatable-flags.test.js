// Every repeatable flag of every command takes one value per use
// (multipleNonGreedy): `vmi pull --peer A IMAGE SEED` keeps IMAGE and SEED as
// arguments, and the CLI drops oclif's note that says otherwise
// (cli/base-command.ts), which is true only while this holds.
import {test} from 'uvu'
import * as assert from 'uvu/assert'
import {readdirSync} from 'node:fs'
import path from 'node:path'
import {fileURLToPath, pathToFileURL} from 'node:url'

const COMMANDS = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'dist', 'commands')

function commandFiles(dir) {
  return readdirSync(dir, {withFileTypes: true}).flatMap((e) =>
    e.isDirectory() ? commandFiles(path.join(dir, e.name)) : e.name.endsWith('.js') ? [path.join(dir, e.name)] : [],
  )
}

test('every repeatable flag takes one value per use', async () => {
  const files = commandFiles(COMMANDS)
  assert.ok(files.length >= 20, `commands found: ${files.length}`)
  const repeatable = []
  for (const file of files) {
    const cmd = (await import(pathToFileURL(file).href)).default
    for (const [name, flag] of Object.entries(cmd?.flags ?? {})) {
      if (!flag.multiple) continue
      repeatable.push(`${path.relative(COMMANDS, file)} --${name}`)
      assert.ok(flag.multipleNonGreedy, `${path.relative(COMMANDS, file)}: --${name} is repeatable but takes every value after it`)
    }
  }
  assert.ok(repeatable.length >= 3, `repeatable flags seen: ${repeatable.join(', ')}`)
})

test.run()
