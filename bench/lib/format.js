// @ts-check
// Number formatting and markdown tables.

export const MB = 1e6
export const GB = 1e9
export const KiB = 1024
export const MiB = 1024 * KiB
export const GiB = 1024 * MiB

export function mbps(bytes, seconds) {
  return bytes / seconds / MB
}

export function f(x, digits = 2) {
  if (x === undefined || x === null || Number.isNaN(x)) return '–'
  return x.toFixed(digits)
}

export function int(x) {
  if (x === undefined || x === null || Number.isNaN(x)) return '–'
  return Math.round(x).toLocaleString('en-US')
}

export function bytesHuman(n) {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let i = 0
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024
    i++
  }
  return `${n.toFixed(n < 10 && i > 0 ? 2 : n < 100 && i > 0 ? 1 : 0)} ${units[i]}`
}

/** A ratio as "1.23×". */
export const times = (v, digits = 2) => `${f(v, digits)}×`

/** A {median, min, max} (stats()) as "median (min–max)". */
export const range = (s, fmt = f) => `${fmt(s.median)} (${fmt(s.min)}–${fmt(s.max)})`

export function pct(part, whole) {
  return `${((100 * part) / whole).toFixed(1)} %`
}

/** A markdown table from a header row and rows of cells. */
export function table(header, rows) {
  const esc = (c) => String(c ?? '').replace(/\|/g, '\\|')
  return [
    `| ${header.map(esc).join(' | ')} |`,
    `| ${header.map((_, i) => (i === 0 ? '---' : '--:')).join(' | ')} |`,
    ...rows.map((r) => `| ${r.map(esc).join(' | ')} |`),
  ].join('\n')
}

/** Least-squares line y = a + b·x. */
export function linearFit(xs, ys) {
  const n = xs.length
  const mx = xs.reduce((a, b) => a + b, 0) / n
  const my = ys.reduce((a, b) => a + b, 0) / n
  let sxx = 0
  let sxy = 0
  for (let i = 0; i < n; i++) {
    sxx += (xs[i] - mx) ** 2
    sxy += (xs[i] - mx) * (ys[i] - my)
  }
  const b = sxx === 0 ? 0 : sxy / sxx
  return {a: my - b * mx, b}
}
