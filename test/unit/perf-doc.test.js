// The performance report renderer (bench/lib/perf-doc.js) and its SVG
// charts (bench/lib/svg-plot.js), run on the saved results of this repository.
import {test} from 'uvu'
import * as assert from 'uvu/assert'
import {existsSync, promises as fsp} from 'node:fs'
import path from 'node:path'
import {fileURLToPath} from 'node:url'
import {renderPerformanceDoc} from '../../bench/lib/perf-doc.js'
import {barChart, lineChart, linearTicks, logTicks} from '../../bench/lib/svg-plot.js'
import {skip, tmpDir} from '../helpers/index.js'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..')
const RESULTS = path.join(ROOT, 'bench', 'results')

test('ticks: round linear steps, powers of ten (and of two) on log axes', () => {
  assert.equal(linearTicks(0, 10), [0, 2, 4, 6, 8, 10])
  assert.equal(linearTicks(0, 1.25), [0, 0.25, 0.5, 0.75, 1, 1.25])
  assert.equal(logTicks(1, 100), [1, 2, 5, 10, 20, 50, 100])
  assert.equal(logTicks(1, 1000), [1, 3, 10, 30, 100, 300, 1000])
  assert.equal(logTicks(1, 1e6), [1, 10, 100, 1000, 10000, 100000, 1000000])
  assert.equal(logTicks(64, 1024, 2), [64, 128, 256, 512, 1024])
})

test('charts are well-formed SVG with every series in the legend, and deterministic', () => {
  const line = () => lineChart({title: 'T <&>', xLabel: 'x', yLabel: 'y', xLog: true, yLog: true, series: [{name: 'a', points: [[1, 1], [10, 100], [0, 5]]}, {name: 'b', dashed: true, points: [[1, 2], [1000, 3]]}]})
  const svg = line()
  assert.ok(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"'))
  assert.ok(svg.trimEnd().endsWith('</svg>'))
  assert.ok(svg.includes('T &lt;&amp;&gt;'))
  assert.ok(/>a<\/text>/.test(svg) && />b<\/text>/.test(svg))
  assert.not.ok(/NaN|undefined|Infinity/.test(svg))
  assert.is(line(), svg)
  const bars = barChart({title: 'B', yLabel: 'v', categories: ['one', 'two\nlines'], series: [{name: 's1', values: [1, 2]}, {name: 's2', values: [3, undefined]}], refLines: [{y: 2.5, label: 'goal'}]})
  assert.is((bars.match(/<rect x=/g) ?? []).length, 1 + 3 + 2) // background, three bars, two legend swatches
  assert.not.ok(/NaN|undefined|Infinity/.test(bars))
})

test('docs/PERFORMANCE.md renders from the saved results; every plot it links exists; no hand-typed gaps', async () => {
  if (!existsSync(path.join(RESULTS, 'latest-dist.json'))) {
    skip('no bench/results/latest-dist.json')
    return
  }
  const {dir: root, cleanup} = tmpDir('vmi-perfdoc-')
  await fsp.mkdir(path.join(root, 'bench', 'results'), {recursive: true})
  for (const name of await fsp.readdir(RESULTS)) await fsp.copyFile(path.join(RESULTS, name), path.join(root, 'bench', 'results', name))
  const r = await renderPerformanceDoc({root})
  const md = await fsp.readFile(path.join(root, r.doc), 'utf8')
  for (const h of ['# Performance', '## Goals', '## Machine and runs']) assert.ok(md.includes(h), h)
  assert.not.ok(/NaN|undefined|Infinity/.test(md))
  const linked = [...md.matchAll(/\]\((img\/[^)]+\.svg)\)/g)].map((m) => m[1])
  assert.ok(linked.length >= 5)
  for (const l of linked) assert.ok(existsSync(path.join(root, 'docs', l)), l)
  for (const f of r.images) assert.not.ok(/NaN|undefined|Infinity/.test(await fsp.readFile(path.join(root, f), 'utf8')), f)
  if (existsSync(path.join(RESULTS, 'latest-sim.json'))) assert.ok(md.includes('This section is a simulation, not a measurement'))
  // the same input renders the same bytes
  const again = await renderPerformanceDoc({root})
  assert.is(await fsp.readFile(path.join(root, again.doc), 'utf8'), md)
  cleanup()
})

test.run()
