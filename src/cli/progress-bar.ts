/**
 * A ProgressReporter drawing a bar on stderr (TTY only), via cli-progress.
 * cli-progress is loaded only when a bar is drawn: loading it cost ~10 ms of
 * every command's start, and scripts (no TTY) never draw one.
 */
import {createRequire} from 'node:module'
import type cliProgressTypes from 'cli-progress'
import {silentProgress, type ProgressReporter} from '../progress.js'
import {humanBytes} from './format.js'

const require = createRequire(import.meta.url)

export function ttyProgress(enabled: boolean): ProgressReporter {
  if (!enabled || !process.stderr.isTTY) return silentProgress
  const cliProgress = require('cli-progress') as typeof cliProgressTypes
  let bar: cliProgressTypes.SingleBar | undefined
  let unit: 'bytes' | 'items' = 'bytes'
  let t0 = 0
  return {
    start(label, total, u = 'bytes') {
      unit = u
      t0 = Date.now()
      bar?.stop()
      const known = total !== undefined
      bar = new cliProgress.SingleBar(
        {
          stream: process.stderr,
          format: known ? `${label} [{bar}] {percentage}% {done}/{all} {rate}` : `${label} {done} {rate}`,
          barsize: 30,
          hideCursor: true,
          clearOnComplete: true,
          fps: 5,
        },
        cliProgress.Presets.shades_classic,
      )
      bar.start(total ?? 0, 0, {done: fmt(0), all: known ? fmt(total!) : '', rate: ''})
    },
    update(done) {
      const secs = (Date.now() - t0) / 1000
      bar?.update(done, {done: fmt(done), rate: unit === 'bytes' && secs > 0.2 ? `${humanBytes(done / secs)}/s` : ''})
    },
    stop() {
      bar?.stop()
      bar = undefined
    },
  }
  function fmt(n: number): string {
    return unit === 'bytes' ? humanBytes(n) : String(n)
  }
}
