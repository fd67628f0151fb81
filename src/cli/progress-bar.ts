/**
 * Progress on stderr: a bar on a TTY (cli-progress), and a plain line every
 * few seconds elsewhere (CI logs, a service's journal), so a long import or
 * push is seen to move. cli-progress is loaded only when a bar is drawn:
 * loading it cost ~10 ms of every command's start.
 */
import {createRequire} from 'node:module'
import type cliProgressTypes from 'cli-progress'
import {silentProgress, type ProgressReporter} from '../progress.js'
import {humanBytes} from './format.js'

const require = createRequire(import.meta.url)

/** Default interval of the plain progress lines (VMI_PROGRESS_INTERVAL_MS overrides it). */
export const PROGRESS_INTERVAL_MS = 5000

/** The reporter for a command: a bar on a TTY, else a line every `intervalMs`; none when disabled (-q, --json). */
export function stderrProgress(enabled: boolean, intervalMs = PROGRESS_INTERVAL_MS): ProgressReporter {
  if (!enabled) return silentProgress
  return process.stderr.isTTY ? ttyProgress() : lineProgress(intervalMs, (line) => process.stderr.write(line + '\n'))
}

/**
 * One line every `intervalMs` while a phase runs (none for a phase shorter
 * than that): `label: done of total (p%), rate` and the update's info. A
 * timer, not the updates, prints it, so a stall shows as a line that does
 * not move.
 */
export function lineProgress(intervalMs: number, write: (line: string) => void): ProgressReporter {
  let timer: NodeJS.Timeout | undefined
  let label = ''
  let total: number | undefined
  let unit: 'bytes' | 'items' = 'bytes'
  let done = 0
  let info: Record<string, string | number> = {}
  let t0 = 0
  const fmt = (n: number) => (unit === 'bytes' ? humanBytes(n) : String(n))
  const line = () => {
    const secs = (Date.now() - t0) / 1000
    const of = total !== undefined ? ` of ${fmt(total)} (${total > 0 ? Math.floor((100 * done) / total) : 100}%)` : ''
    const speed = unit === 'bytes' && secs > 0 ? `, ${humanBytes(done / secs)}/s` : ''
    const extra = Object.entries(info).map(([k, v]) => `, ${k === 'bytes' && typeof v === 'number' ? humanBytes(v) : `${v} ${k}`}`)
    write(`${label}: ${fmt(done)}${unit === 'items' ? ' chunks' : ''}${of}${speed}${extra.join('')}`)
  }
  const stop = () => {
    clearInterval(timer)
    timer = undefined
  }
  return {
    start(l, t, u = 'bytes') {
      stop()
      label = l
      total = t
      unit = u
      done = 0
      info = {}
      t0 = Date.now()
      timer = setInterval(line, intervalMs)
      timer.unref()
    },
    update(d, i) {
      done = d
      if (i) info = i
    },
    stop,
  }
}

export function ttyProgress(): ProgressReporter {
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
