#!/usr/bin/env node
// man.mjs - man pages from the commands' own help: man/man1/vmi.1 (every command,
// the settings and their variables, the exit codes) and man/man1/vmi-<command>.1
// (vmi-remote-add.1 for `vmi remote add`), in roff (man(7) macros).
//
// Sources: oclif.manifest.json (summaries, descriptions, arguments, flags,
// examples), dist/cli/config-keys.js (ENVIRONMENT) and README.md's exit-code
// table (EXIT STATUS), so the pages say what --help and the README say.
//
// Usage: node scripts/man.mjs [OUTDIR]   (run by `npm run build`; `npm run man`)
import {mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync} from 'node:fs'
import path from 'node:path'
import {fileURLToPath, pathToFileURL} from 'node:url'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const out = path.resolve(process.argv[2] ?? path.join(root, 'man', 'man1'))
const pkg = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8'))
const manifest = JSON.parse(readFileSync(path.join(root, 'oclif.manifest.json'), 'utf8'))
const {SETTINGS} = await import(pathToFileURL(path.join(root, 'dist', 'cli', 'config-keys.js')).href)
const bin = pkg.oclif.bin
const date = process.env.SOURCE_DATE_EPOCH ? new Date(Number(process.env.SOURCE_DATE_EPOCH) * 1000) : new Date()
const month = date.toISOString().slice(0, 7)

/** Text → roff: backslashes and dashes escaped, non-ASCII as \[uXXXX] (groff reads Latin-1), no line starting with a control character. */
function esc(text) {
  return String(text)
    .replaceAll('\\', '\\e')
    .replaceAll('-', '\\-')
    .replace(/[^\x00-\x7f]/gu, (ch) => `\\[u${ch.codePointAt(0).toString(16).toUpperCase().padStart(4, '0')}]`)
    .split('\n')
    .map((l) => (/^[.']/.test(l) ? '\\&' + l : l))
    .join('\n')
}

/** Paragraphs (blank-line separated) as .PP blocks. */
function paragraphs(text) {
  return String(text)
    .trim()
    .split(/\n\s*\n/)
    .map((p) => `.PP\n${esc(p.trim())}`)
    .join('\n')
}

const pageName = (id) => `${bin}-${id.replaceAll(':', '-')}`
const commandLine = (id) => `${bin} ${id.replaceAll(':', ' ')}`
const example = (e) => (typeof e === 'string' ? e : e.command).replaceAll('<%= config.bin %>', bin).replaceAll('<%= command.id %>', '')

function flagSynopsis(f) {
  const name = `\\fB\\-\\-${esc(f.name)}\\fR`
  const short = f.char ? `\\fB\\-${esc(f.char)}\\fR, ` : ''
  const value = f.type === 'option' ? ` \\fI${f.options ? esc(f.options.join('|')) : 'VALUE'}\\fR` : ''
  return short + name + value
}

function commandPage(id, c) {
  const lines = [
    `.TH ${esc(pageName(id).toUpperCase())} 1 "${month}" "${bin} ${pkg.version}" "${bin} manual"`,
    '.SH NAME',
    `${esc(pageName(id))} \\- ${esc(c.summary ?? '')}`,
    '.SH SYNOPSIS',
    `.B ${esc(commandLine(id))}`,
  ]
  const args = Object.values(c.args ?? {})
  const syn = args.map((a) => (a.required ? `\\fI${esc(a.name.toUpperCase())}\\fR` : `[\\fI${esc(a.name.toUpperCase())}\\fR]`))
  lines.push(`${syn.join(' ')}${syn.length ? ' ' : ''}[\\fIOPTIONS\\fR]`)
  lines.push('.SH DESCRIPTION', paragraphs(c.summary ?? ''))
  if (c.description) lines.push(paragraphs(c.description))
  if (args.length) {
    lines.push('.SH ARGUMENTS')
    for (const a of args) lines.push('.TP', `\\fI${esc(a.name.toUpperCase())}\\fR${a.required ? '' : ' (optional)'}`, esc(a.description ?? ''))
  }
  const flags = Object.values(c.flags ?? {}).filter((f) => !f.hidden)
  if (flags.length) {
    lines.push('.SH OPTIONS')
    for (const f of flags) {
      const extra = [f.default !== undefined && f.type === 'option' ? `Default: ${f.default}.` : '', f.multiple ? 'Repeatable.' : '', f.env ? `Environment: ${f.env}.` : ''].filter(Boolean).join(' ')
      lines.push('.TP', flagSynopsis(f), esc([f.summary ?? f.description ?? '', extra].filter(Boolean).join(' ')))
    }
  }
  if (c.examples?.length) {
    lines.push('.SH EXAMPLES')
    for (const e of c.examples) lines.push('.PP', '.nf', esc(example(e)), '.fi')
  }
  lines.push('.SH EXIT STATUS', `As for every command: see \\fB${bin}\\fR(1).`, '.SH SEE ALSO', `\\fB${bin}\\fR(1)`)
  return lines.join('\n') + '\n'
}

/** README's "### Exit codes" table: [code, meaning]. */
function exitCodes() {
  const readme = readFileSync(path.join(root, 'README.md'), 'utf8')
  const section = readme.split(/^### Exit codes$/m)[1]?.split(/^#/m)[0] ?? ''
  return section
    .split('\n')
    .filter((l) => /^\| \d+ \|/.test(l))
    .map((l) => {
      const [, code, meaning] = /^\| (\d+) \| (.*) \|$/.exec(l)
      return [code, meaning.replaceAll('`', '')]
    })
}

function mainPage(ids) {
  const lines = [
    `.TH ${bin.toUpperCase()} 1 "${month}" "${bin} ${pkg.version}" "${bin} manual"`,
    '.SH NAME',
    `${bin} \\- ${esc(pkg.description)}`,
    '.SH SYNOPSIS',
    `.B ${bin}`,
    '\\fICOMMAND\\fR [\\fIARGUMENTS\\fR] [\\fB\\-\\-store\\fR \\fIDIR\\fR] [\\fB\\-\\-json\\fR] [\\fB\\-q\\fR]',
    '.SH DESCRIPTION',
    paragraphs(
      `Images are split into fixed-size chunks addressed by BLAKE3 in a local object store. ${bin} push sends an image to a seed, ${bin} pull fetches it through local store, peers and seed, ${bin} serve lends chunks to peers, and ${bin} mount serves an NBD export that fetches chunks on first read.\n\nEvery command takes --store DIR, --json (a machine-readable result on stdout) and -q/--quiet, and has --help with examples.`,
    ),
    '.SH COMMANDS',
  ]
  for (const id of ids) lines.push('.TP', `\\fB${esc(commandLine(id))}\\fR`, `${esc(manifest.commands[id].summary ?? '')} See \\fB${esc(pageName(id))}\\fR(1).`)
  lines.push('.SH ENVIRONMENT', paragraphs('Each setting comes from its flag, else its variable, else the store\'s config.json (vmi config), else its default.'))
  for (const s of SETTINGS.filter((s) => s.env.length))
    lines.push('.TP', s.env.map((e) => `\\fB${esc(e)}\\fR`).join(', '), esc(`${s.summary}${s.flags.length ? ` Flag: ${s.flags.join('; ')}.` : ''}${s.key ? ` Config key: ${s.key}.` : ''}`))
  lines.push('.SH EXIT STATUS')
  for (const [code, meaning] of exitCodes()) lines.push('.TP', `\\fB${code}\\fR`, esc(meaning))
  lines.push('.SH SEE ALSO', ids.map((id) => `\\fB${esc(pageName(id))}\\fR(1)`).join(',\n'))
  return lines.join('\n') + '\n'
}

const ids = Object.keys(manifest.commands)
  .filter((id) => !manifest.commands[id].hidden)
  .sort()
mkdirSync(out, {recursive: true})
for (const f of readdirSync(out)) if (f.endsWith('.1')) rmSync(path.join(out, f))
writeFileSync(path.join(out, `${bin}.1`), mainPage(ids))
for (const id of ids) writeFileSync(path.join(out, `${pageName(id)}.1`), commandPage(id, manifest.commands[id]))
console.error(`man: ${ids.length + 1} pages in ${path.relative(process.cwd(), out) || '.'}`)
