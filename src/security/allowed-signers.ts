/**
 * The allowed signers file of `ssh-keygen -Y verify` and git
 * (`gpg.ssh.allowedSignersFile`), see ssh-keygen(1) "ALLOWED SIGNERS":
 * one key a line, `principals [options] keytype base64 [comment]`, `#`
 * comments and empty lines ignored.
 *
 * - principals: a comma-separated pattern list (ssh_config(5) PATTERNS:
 *   `*` any run of characters, `?` one character, `!` in front negates). An
 *   identity is accepted when some pattern matches it and no negated one does.
 * - options: `namespaces="p1,p2"` (a pattern list the signature's namespace
 *   must match), `valid-after="T"`, `valid-before="T"` (T = YYYYMMDD[Z] or
 *   YYYYMMDDHHMM[SS][Z]; local time without Z), and `cert-authority`.
 *   Certificates are not supported: a cert-authority line never matches.
 *   Any other option makes the file invalid, as it does for ssh-keygen.
 */
import {UsageError} from '../errors.js'
import {parsePublicKeyLine, type SshPublicKey} from './ssh-keys.js'

export interface AllowedSigner {
  principals: string
  namespaces?: string
  validAfter?: number
  validBefore?: number
  certAuthority: boolean
  key: SshPublicKey
  /** `file:line`, for messages. */
  where: string
}

/** ssh's match_pattern: `*` and `?` wildcards, the whole string. */
export function matchPattern(s: string, pattern: string): boolean {
  // iterative glob with backtracking to the last `*`
  let si = 0
  let pi = 0
  let star = -1
  let mark = 0
  while (si < s.length) {
    if (pi < pattern.length && (pattern[pi] === '?' || pattern[pi] === s[si])) {
      si++
      pi++
    } else if (pi < pattern.length && pattern[pi] === '*') {
      star = pi++
      mark = si
    } else if (star >= 0) {
      pi = star + 1
      si = ++mark
    } else return false
  }
  while (pi < pattern.length && pattern[pi] === '*') pi++
  return pi === pattern.length
}

/** ssh's match_pattern_list: true when a pattern matches and no negated (`!`) one does. */
export function matchPatternList(s: string, list: string): boolean {
  let matched = false
  for (const raw of list.split(',')) {
    const negated = raw.startsWith('!')
    const p = negated ? raw.slice(1) : raw
    if (p === '' || !matchPattern(s, p)) continue
    if (negated) return false
    matched = true
  }
  return matched
}

/** Split off the first field of `rest`: up to whitespace, `"…"` quoting kept together (quotes removed when the whole field is quoted). */
function field(rest: string): [string, string] {
  let i = 0
  let quoted = false
  while (i < rest.length && (quoted || !/\s/.test(rest[i]))) {
    if (rest[i] === '"') quoted = !quoted
    i++
  }
  if (quoted) throw new Error('unterminated quote')
  return [rest.slice(0, i), rest.slice(i).trimStart()]
}

const unquote = (s: string) => (s.length >= 2 && s.startsWith('"') && s.endsWith('"') ? s.slice(1, -1) : s)

function parseTime(text: string): number {
  const m = /^(\d{4})(\d{2})(\d{2})(?:(\d{2})(\d{2})(\d{2})?)?(Z?)$/.exec(text)
  if (!m) throw new Error(`bad timestamp ${JSON.stringify(text)} (YYYYMMDD[Z] or YYYYMMDDHHMM[SS][Z])`)
  const [y, mo, d, h, mi, s] = m.slice(1, 7).map((x) => Number(x ?? 0))
  const t = m[7] ? Date.UTC(y, mo - 1, d, h, mi, s) : new Date(y, mo - 1, d, h, mi, s).getTime()
  if (!Number.isFinite(t)) throw new Error(`bad timestamp ${JSON.stringify(text)}`)
  return t
}

/** Options, comma-separated, values possibly quoted (and holding commas). */
function parseOptions(text: string, e: Pick<AllowedSigner, 'namespaces' | 'validAfter' | 'validBefore' | 'certAuthority'>): void {
  const opts = text.match(/(?:[^,"]|"[^"]*")+/g) ?? []
  for (const o of opts) {
    const eq = o.indexOf('=')
    const name = (eq < 0 ? o : o.slice(0, eq)).toLowerCase()
    const value = eq < 0 ? undefined : unquote(o.slice(eq + 1))
    if (name === 'cert-authority' && value === undefined) e.certAuthority = true
    else if (name === 'namespaces' && value !== undefined) e.namespaces = value
    else if (name === 'valid-after' && value !== undefined) e.validAfter = parseTime(value)
    else if (name === 'valid-before' && value !== undefined) e.validBefore = parseTime(value)
    else throw new Error(`unknown option ${JSON.stringify(o)}`)
  }
}

const KEY_TYPE_RE = /^(ssh-|ecdsa-|sk-)/

/** Parse a whole file's text; a bad line is a UsageError naming `file:line`. */
export function parseAllowedSigners(text: string, file: string): AllowedSigner[] {
  const out: AllowedSigner[] = []
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim()
    if (line === '' || line.startsWith('#')) return
    const where = `${file}:${i + 1}`
    try {
      let [principals, rest] = field(line)
      const e: Omit<AllowedSigner, 'key'> = {principals: unquote(principals), certAuthority: false, where}
      if (!KEY_TYPE_RE.test(rest)) {
        let options
        ;[options, rest] = field(rest)
        parseOptions(options, e)
      }
      if (e.principals === '') throw new Error('no principals')
      out.push({...e, key: parsePublicKeyLine(rest)})
    } catch (err) {
      throw new UsageError(`${where}: not an allowed signers line (principals [options] keytype base64): ${(err as Error).message}`, {data: {file, line: i + 1}})
    }
  })
  return out
}

/**
 * Why each line does not accept `key` signing as `principal` in `namespace`
 * at `time` (ms since the epoch), or the first line that does.
 */
export function findAllowedSigner(
  signers: AllowedSigner[],
  q: {key: SshPublicKey; principal: string; namespace: string; time: number},
): {signer: AllowedSigner} | {reasons: string[]} {
  const reasons: string[] = []
  for (const s of signers) {
    if (!s.key.blob.equals(q.key.blob)) continue
    if (s.certAuthority) reasons.push(`${s.where}: a cert-authority line (certificates are not supported)`)
    else if (!matchPatternList(q.principal, s.principals)) reasons.push(`${s.where}: principals ${JSON.stringify(s.principals)} do not match ${JSON.stringify(q.principal)}`)
    else if (s.namespaces !== undefined && !matchPatternList(q.namespace, s.namespaces)) reasons.push(`${s.where}: namespaces ${JSON.stringify(s.namespaces)} do not include ${JSON.stringify(q.namespace)}`)
    else if (s.validAfter !== undefined && q.time < s.validAfter) reasons.push(`${s.where}: the key is valid only after ${new Date(s.validAfter).toISOString()}`)
    else if (s.validBefore !== undefined && q.time > s.validBefore) reasons.push(`${s.where}: the key was valid only before ${new Date(s.validBefore).toISOString()}`)
    else return {signer: s}
  }
  return {reasons}
}
