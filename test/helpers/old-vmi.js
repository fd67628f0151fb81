// A real vmi from before compressed objects (format 1), built from this
// repository's own history: the interop tests run it against today's vmi.
// Needs the repository's git history (skipped with the reason otherwise). Run
// it with the helpers' `bin` option: exec(argv, {bin}), startServe(store, args, {bin}).
import {spawnSync} from 'node:child_process'
import {existsSync, mkdirSync, rmSync, symlinkSync} from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {ROOT} from './index.js'

/** The last commit whose vmi wrote and read raw objects only. */
export const FORMAT1_COMMIT = 'df42bb8186656e1d8d2aed46c3f675bd93a193c5'

/**
 * Build that commit's vmi once per machine (into the temp directory; ~30 s:
 * its TypeScript compiled with this checkout's node_modules, whose
 * dependencies are a superset of its own). Returns {bin} or {skip: reason}.
 */
export function oldVmi(commit = FORMAT1_COMMIT) {
  const dir = path.join(os.tmpdir(), `vmi-format1-${commit.slice(0, 12)}`)
  const bin = path.join(dir, 'bin', 'run.js')
  if (existsSync(path.join(dir, '.built'))) return {bin}
  const git = (args) => spawnSync('git', ['-C', ROOT, ...args], {encoding: 'utf8'})
  if (git(['cat-file', '-e', `${commit}^{commit}`]).status !== 0)
    return {skip: `the repository's history is not here (no git, or a shallow clone without ${commit.slice(0, 12)}): cannot build the format 1 vmi`}
  rmSync(dir, {recursive: true, force: true})
  mkdirSync(dir, {recursive: true})
  const run = (cmd, args, cwd = dir) => {
    const r = spawnSync(cmd, args, {cwd, encoding: 'utf8', maxBuffer: 64 << 20})
    if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: exit ${r.status}: ${r.stderr.slice(-2000)}`)
  }
  run('sh', ['-c', `git -C "${ROOT}" archive ${commit} | tar -x -C "${dir}"`])
  symlinkSync(path.join(ROOT, 'node_modules'), path.join(dir, 'node_modules'))
  run(process.execPath, [path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.json'])
  run(process.execPath, ['scripts/vendor-oclif.mjs'])
  run('sh', ['-c', 'touch .built'])
  return {bin}
}
