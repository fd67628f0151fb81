// @ts-check
// A small dependency-free SVG chart writer for the performance report:
// line charts (linear or log axes, several series, markers, dashed lines)
// and grouped bar charts, with axes, ticks, labels and a legend. The output
// is deterministic (same input → same bytes), so regenerated plots diff
// cleanly.

const PALETTE = ['#0072B2', '#D55E00', '#009E73', '#CC79A7', '#E69F00', '#56B4E9', '#000000', '#999999']
const FONT = 'font-family="Helvetica, Arial, sans-serif"'
const CHAR_W = 6.6 // approximate width of a 12 px character, for layout
const WIDTH = 680
const PLOT_W = WIDTH - 84 - 24 // the plot area, between the y axis labels and the right margin

export function esc(s) {
  return String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;')
}

const r2 = (x) => (Math.round(x * 100) / 100).toString()

/** 1234 → "1.2k", 0.5 → "0.5", 2e6 → "2M". */
export function compact(x) {
  if (x === 0) return '0'
  const a = Math.abs(x)
  const trim = (v, d) => String(Number(v.toFixed(d)))
  if (a >= 1e9) return trim(x / 1e9, a >= 1e10 ? 0 : 1) + 'G'
  if (a >= 1e6) return trim(x / 1e6, a >= 1e7 ? 0 : 1) + 'M'
  if (a >= 1e4) return trim(x / 1e3, 0) + 'k'
  if (a >= 1000) return trim(x / 1e3, 1) + 'k'
  if (a >= 10) return trim(x, 0)
  if (a >= 1) return trim(x, 2)
  return trim(x, 3)
}

/** Round-number ticks covering [min, max] (linear). */
export function linearTicks(min, max, target = 6) {
  if (!(max > min)) return [min]
  const raw = (max - min) / target
  const mag = 10 ** Math.floor(Math.log10(raw))
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? 10 * mag
  const ticks = []
  for (let v = Math.ceil(min / step - 1e-9) * step; v <= max + step * 1e-9; v += step) ticks.push(Number(v.toPrecision(12)))
  return ticks
}

/** Ticks for a log axis: powers of 10, plus 2× and 5× when the range is short; powers of 2 with base 2. */
export function logTicks(min, max, base = 10) {
  const ticks = []
  if (base === 2) {
    for (let e = Math.floor(Math.log2(min)); 2 ** e <= max * (1 + 1e-9); e++) if (2 ** e >= min * (1 - 1e-9)) ticks.push(2 ** e)
    return ticks
  }
  const lo = Math.floor(Math.log10(min))
  const hi = Math.ceil(Math.log10(max))
  const mults = hi - lo <= 2 ? [1, 2, 5] : hi - lo <= 4 ? [1, 3] : [1]
  for (let e = lo; e <= hi; e++)
    for (const m of mults) {
      const v = m * 10 ** e
      if (v >= min * (1 - 1e-9) && v <= max * (1 + 1e-9)) ticks.push(Number(v.toPrecision(12)))
    }
  return ticks
}

function scale({min, max, log, base = 10}, a, b) {
  if (log) {
    const l0 = Math.log(min)
    const l1 = Math.log(max)
    return (v) => a + ((Math.log(v) - l0) / (l1 - l0)) * (b - a)
  }
  return (v) => a + ((v - min) / (max - min)) * (b - a)
}

/** Axis range: data extent (from `min` when given), padded and rounded out to ticks. @param {number[]} values @param {{log: boolean, min?: number, base?: number, zero?: boolean}} o */
function axis(values, {log, min, base = 10, zero = false}) {
  let lo = min ?? Math.min(...values)
  let hi = Math.max(...values)
  if (log) {
    lo = Math.max(lo, Number.MIN_VALUE)
    if (min === undefined) lo = base === 2 ? 2 ** Math.floor(Math.log2(lo)) : 10 ** Math.floor(Math.log10(lo) + 1e-9)
    hi = base === 2 ? 2 ** Math.ceil(Math.log2(hi)) : 10 ** Math.ceil(Math.log10(hi) - 1e-9)
    if (hi <= lo) hi = lo * base
    return {min: lo, max: hi, log: true, base, ticks: logTicks(lo, hi, base)}
  }
  if (zero) lo = Math.min(0, lo)
  if (hi === lo) hi = lo + 1
  const t = linearTicks(lo, hi)
  const step = t.length > 1 ? t[1] - t[0] : 1
  if (min === undefined) lo = Math.min(lo, Math.floor(lo / step + 1e-9) * step)
  hi = t.at(-1) < hi - 1e-12 ? t.at(-1) + step : Math.max(hi, t.at(-1))
  return {min: lo, max: hi, log: false, ticks: linearTicks(lo, hi)}
}

function legendBlock(items, x, y, width) {
  // items: [{name, color, dashed, kind: 'line'|'bar'}]; wraps into rows
  const out = []
  let cx = x
  let cy = y
  for (const it of items) {
    const w = 28 + it.name.length * CHAR_W + 18
    if (cx + w > x + width && cx > x) {
      cx = x
      cy += 18
    }
    if (it.kind === 'bar') out.push(`<rect x="${r2(cx)}" y="${r2(cy - 9)}" width="18" height="10" fill="${it.color}"/>`)
    else {
      out.push(`<line x1="${r2(cx)}" y1="${r2(cy - 4)}" x2="${r2(cx + 22)}" y2="${r2(cy - 4)}" stroke="${it.color}" stroke-width="2"${it.dashed ? ' stroke-dasharray="6 4"' : ''}/>`)
      if (it.marker !== false) out.push(marker(cx + 11, cy - 4, it.color, it.markerShape))
    }
    out.push(`<text x="${r2(cx + 28)}" y="${r2(cy)}" font-size="12" ${FONT} fill="#222">${esc(it.name)}</text>`)
    cx += w
  }
  return {svg: out.join('\n'), height: cy - y + 18}
}

function marker(x, y, color, shape = 'circle') {
  if (shape === 'square') return `<rect x="${r2(x - 3.5)}" y="${r2(y - 3.5)}" width="7" height="7" fill="${color}"/>`
  if (shape === 'diamond') return `<path d="M${r2(x)} ${r2(y - 4.5)}L${r2(x + 4.5)} ${r2(y)}L${r2(x)} ${r2(y + 4.5)}L${r2(x - 4.5)} ${r2(y)}Z" fill="${color}"/>`
  if (shape === 'triangle') return `<path d="M${r2(x)} ${r2(y - 4.5)}L${r2(x + 4.5)} ${r2(y + 3.5)}L${r2(x - 4.5)} ${r2(y + 3.5)}Z" fill="${color}"/>`
  return `<circle cx="${r2(x)}" cy="${r2(y)}" r="3.5" fill="${color}"/>`
}
const SHAPES = ['circle', 'square', 'diamond', 'triangle']

function frame({height, title, subtitle}) {
  const width = WIDTH
  const head = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" role="img" aria-label="${esc(title)}">`,
    `<title>${esc(title)}</title>`,
    `<rect x="0" y="0" width="${width}" height="${height}" fill="#ffffff"/>`,
    `<text x="${width / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold" ${FONT} fill="#111">${esc(title)}</text>`,
  ]
  if (subtitle) head.push(`<text x="${width / 2}" y="40" text-anchor="middle" font-size="11.5" ${FONT} fill="#555">${esc(subtitle)}</text>`)
  return head
}

/** @param {Record<string, any>} a */
function axesSvg({x0, x1, y0, y1, xAxis, yAxis, sx, sy, xLabel, yLabel, xFormat, yFormat, xTickValues, xTickLabels}) {
  const out = []
  // grid and y ticks
  for (const t of yAxis.ticks) {
    const y = sy(t)
    out.push(`<line x1="${r2(x0)}" y1="${r2(y)}" x2="${r2(x1)}" y2="${r2(y)}" stroke="#e4e4e4" stroke-width="1"/>`)
    out.push(`<text x="${r2(x0 - 6)}" y="${r2(y + 4)}" text-anchor="end" font-size="11" ${FONT} fill="#333">${esc(yFormat(t))}</text>`)
  }
  if (xAxis) {
    const ticks = xTickValues ?? xAxis.ticks
    ticks.forEach((t, i) => {
      const x = sx(t)
      out.push(`<line x1="${r2(x)}" y1="${r2(y0)}" x2="${r2(x)}" y2="${r2(y1)}" stroke="#f0f0f0" stroke-width="1"/>`)
      out.push(`<line x1="${r2(x)}" y1="${r2(y0)}" x2="${r2(x)}" y2="${r2(y0 + 5)}" stroke="#333" stroke-width="1"/>`)
      out.push(`<text x="${r2(x)}" y="${r2(y0 + 18)}" text-anchor="middle" font-size="11" ${FONT} fill="#333">${esc(xTickLabels ? xTickLabels[i] : xFormat(t))}</text>`)
    })
  }
  out.push(`<line x1="${r2(x0)}" y1="${r2(y0)}" x2="${r2(x1)}" y2="${r2(y0)}" stroke="#333" stroke-width="1"/>`)
  out.push(`<line x1="${r2(x0)}" y1="${r2(y0)}" x2="${r2(x0)}" y2="${r2(y1)}" stroke="#333" stroke-width="1"/>`)
  if (xLabel) out.push(`<text x="${r2((x0 + x1) / 2)}" y="${r2(y0 + 36)}" text-anchor="middle" font-size="12" ${FONT} fill="#222">${esc(xLabel)}</text>`)
  if (yLabel) out.push(`<text transform="translate(16 ${r2((y0 + y1) / 2)}) rotate(-90)" text-anchor="middle" font-size="12" ${FONT} fill="#222">${esc(yLabel)}</text>`)
  return out
}

/**
 * A line chart. series: [{name, points: [[x, y], …], dashed?, color?, marker?: false}]
 * (points with a non-finite or, on a log axis, non-positive coordinate are dropped).
 * Options: xLog/yLog (true, or 2 for a base-2 x axis), yMin, yZero (false: the y
 * axis need not start at 0), xTicks (explicit values), xFormat.
 */
export function lineChart(o) {
  const series = o.series.map((s, i) => ({
    ...s,
    color: s.color ?? PALETTE[i % PALETTE.length],
    shape: SHAPES[i % SHAPES.length],
    points: s.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y) && (!o.xLog || x > 0) && (!o.yLog || y > 0)),
  }))
  const xs = series.flatMap((s) => s.points.map((p) => p[0]))
  const ys = series.flatMap((s) => s.points.map((p) => p[1]))
  const xBase = o.xLog === 2 ? 2 : 10
  const xAxis = axis(xs, {log: !!o.xLog, base: xBase})
  const yAxis = axis(ys, {log: !!o.yLog, min: o.yMin, zero: !o.yLog && o.yZero !== false})
  const items = series.map((s) => ({name: s.name, color: s.color, dashed: s.dashed, marker: s.marker, markerShape: s.shape}))
  const lh = legendBlock(items, 0, 0, PLOT_W).height
  const top = o.subtitle ? 54 : 38
  const plotH = 260
  const height = top + plotH + 46 + lh + 8
  const x0 = 84
  const x1 = x0 + PLOT_W
  const y1 = top
  const y0 = top + plotH
  const sx = scale(xAxis, x0, x1)
  const sy = scale(yAxis, y0, y1)
  const out = frame({height, title: o.title, subtitle: o.subtitle})
  out.push(...axesSvg({x0, x1, y0, y1, xAxis, yAxis, sx, sy, xLabel: o.xLabel, yLabel: o.yLabel, xFormat: o.xFormat ?? compact, yFormat: compact, xTickValues: o.xTicks}))
  out.push('<g>')
  for (const s of series) {
    if (!s.points.length) continue
    const d = s.points.map(([x, y], i) => `${i ? 'L' : 'M'}${r2(sx(x))} ${r2(sy(y))}`).join('')
    out.push(`<path d="${d}" fill="none" stroke="${s.color}" stroke-width="2"${s.dashed ? ' stroke-dasharray="6 4"' : ''}/>`)
    if (s.marker !== false) for (const [x, y] of s.points) out.push(marker(sx(x), sy(y), s.color, s.shape))
  }
  out.push('</g>')
  out.push(legendBlock(items, x0, y0 + 58, PLOT_W).svg, '</svg>')
  return out.join('\n') + '\n'
}

/**
 * A grouped bar chart. categories: labels along x; series: [{name, values: [...]}]
 * (one value per category; null/undefined leaves a gap). Options: yLog, yLabel,
 * valueFormat (labels above bars), refLines: [{y, label, color?}] (horizontal
 * dashed lines), legend (true: even for one series).
 */
export function barChart(o) {
  const series = o.series.map((s, i) => ({...s, color: s.color ?? PALETTE[i % PALETTE.length]}))
  const vals = series.flatMap((s) => s.values.filter((v) => Number.isFinite(v) && (!o.yLog || v > 0)))
  const refs = o.refLines ?? []
  const yAxis = axis([...vals, ...refs.map((r) => r.y)], {log: !!o.yLog, zero: !o.yLog})
  const items = series.length > 1 || o.legend ? series.map((s) => ({name: s.name, color: s.color, kind: 'bar'})) : []
  for (const r of refs) items.push({name: r.label, color: r.color ?? '#444', dashed: true, marker: false})
  const lh = items.length ? legendBlock(items, 0, 0, PLOT_W).height : 0
  const top = o.subtitle ? 54 : 38
  const plotH = 250
  const catLines = Math.max(...o.categories.map((c) => String(c).split('\n').length))
  const height = top + plotH + 26 + catLines * 13 + 14 + lh + 8
  const x0 = 84
  const x1 = x0 + PLOT_W
  const y1 = top
  const y0 = top + plotH
  const sy = scale(yAxis, y0, y1)
  const fmtV = o.valueFormat ?? compact
  const out = frame({height, title: o.title, subtitle: o.subtitle})
  out.push(...axesSvg({x0, x1, y0, y1, xAxis: undefined, yAxis, sx: undefined, sy, xLabel: undefined, yLabel: o.yLabel, yFormat: compact}))
  const n = o.categories.length
  const groupW = PLOT_W / n
  const barW = Math.min(46, (groupW * 0.78) / series.length)
  const base = o.yLog ? y0 : sy(Math.max(0, yAxis.min))
  o.categories.forEach((cat, ci) => {
    const gx = x0 + groupW * ci + (groupW - barW * series.length) / 2
    series.forEach((s, si) => {
      const v = s.values[ci]
      if (!Number.isFinite(v) || (o.yLog && v <= 0)) return
      const y = sy(v)
      const x = gx + si * barW
      out.push(`<rect x="${r2(x + 1)}" y="${r2(Math.min(y, base))}" width="${r2(barW - 2)}" height="${r2(Math.abs(base - y))}" fill="${s.color}"/>`)
      out.push(`<text x="${r2(x + barW / 2)}" y="${r2(Math.min(y, base) - 4)}" text-anchor="middle" font-size="10.5" ${FONT} fill="#222">${esc(fmtV(v))}</text>`)
    })
    String(cat)
      .split('\n')
      .forEach((line, li) => out.push(`<text x="${r2(x0 + groupW * (ci + 0.5))}" y="${r2(y0 + 16 + li * 13)}" text-anchor="middle" font-size="11" ${FONT} fill="#333">${esc(line)}</text>`))
  })
  for (const r of refs) {
    const y = sy(r.y)
    out.push(`<line x1="${r2(x0)}" y1="${r2(y)}" x2="${r2(x1)}" y2="${r2(y)}" stroke="${r.color ?? '#444'}" stroke-width="1.5" stroke-dasharray="6 4"/>`)
  }
  if (items.length) out.push(legendBlock(items, x0, y0 + 38 + catLines * 13, PLOT_W).svg)
  out.push('</svg>')
  return out.join('\n') + '\n'
}
