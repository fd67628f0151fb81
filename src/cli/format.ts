/** Human-readable output helpers for the CLI. */

export function humanBytes(n: number): string {
  if (n < 1024) return `${n} B`
  const units = ['KiB', 'MiB', 'GiB', 'TiB', 'PiB']
  let v = n
  let i = -1
  do {
    v /= 1024
    i++
  } while (v >= 1024 && i < units.length - 1)
  return `${v >= 100 ? v.toFixed(0) : v.toFixed(1)} ${units[i]}`
}

export function shortId(id: string): string {
  return id.slice(0, 12)
}

/** Left-aligned columns; numbers are pre-formatted strings. */
export function table(rows: string[][], header?: string[]): string {
  const all = header ? [header, ...rows] : rows
  if (all.length === 0) return ''
  const widths = all[0].map((_, c) => Math.max(...all.map((r) => (r[c] ?? '').length)))
  return all.map((r) => r.map((cell, c) => (c === r.length - 1 ? cell : cell.padEnd(widths[c]))).join('  ')).join('\n')
}

export function rate(bytes: number, seconds: number): string {
  return seconds > 0 ? `${humanBytes(bytes / seconds)}/s` : '-'
}
