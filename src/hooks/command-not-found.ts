/**
 * oclif's `command_not_found` hook: an unknown command is a usage error in
 * vmi's own format (exit 2, `vmi: error: …`, or the JSON error with --json),
 * with the closest command suggested ("did you mean").
 */
import type {Hook} from '#oclif'
import {jsonLine} from '../cli/json.js'
import {ExitCode} from '../errors.js'

/** Edit distance (insertions, deletions, substitutions, adjacent swaps). */
export function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({length: a.length + 1}, (_, i) => [i, ...Array<number>(b.length).fill(0)])
  for (let j = 1; j <= b.length; j++) d[0][j] = j
  for (let i = 1; i <= a.length; i++)
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost)
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1)
    }
  return d[a.length][b.length]
}

/** The commands worth suggesting for `typed`: the unique one it begins, else the nearest within a few edits. */
export function closestCommands(typed: string, commands: string[]): string[] {
  const prefixed = commands.filter((c) => c.startsWith(typed))
  if (typed.length >= 2 && prefixed.length === 1) return prefixed
  const limit = Math.max(1, Math.min(3, Math.floor(typed.length / 3)))
  const scored = commands.map((c) => ({c, d: editDistance(typed, c)})).filter((s) => s.d <= limit)
  const best = Math.min(...scored.map((s) => s.d))
  return scored.filter((s) => s.d === best).map((s) => s.c)
}

const hook: Hook<'command_not_found'> = async function (opts) {
  // oclif joins every word before the first flag into the id ("imprt disk.raw" → "imprt:disk.raw"):
  // the command typed is the leading topics plus one word
  const parts = opts.id.split(':')
  const topics = new Set(opts.config.topics.map((t) => t.name))
  let depth = 0
  while (depth < parts.length - 1 && topics.has(parts.slice(0, depth + 1).join(':'))) depth++
  const typed = parts.slice(0, depth + 1).join(' ')
  const commands = opts.config.commandIDs.map((id) => id.replaceAll(':', ' '))
  const near = closestCommands(typed, commands)
  const message =
    `unknown command "${typed}"` +
    (near.length > 0 ? `: did you mean ${near.map((c) => `"${c}"`).join(' or ')}?` : '') +
    ` ('${opts.config.bin} --help' lists the commands)`
  const code = ExitCode.USAGE
  if (opts.argv?.includes('--json')) process.stderr.write(jsonLine({error: {code: 'VMI_USAGE', message, exitCode: code}}))
  else process.stderr.write(`${opts.config.bin}: error: ${message}\n`)
  process.exitCode = code
}

export default hook
