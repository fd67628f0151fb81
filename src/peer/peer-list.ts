/**
 * Peer lists as users write them. Kept apart from the HTTP client so that
 * reading settings does not load it (every command reads settings).
 */

export interface PeerEntry {
  url: string
  /** 1-based line of the text it came from. */
  line: number
}

/** Split a peers list ("URL,URL URL" or one per line; # comments), keeping each URL's line. */
export function parsePeerLines(text: string): PeerEntry[] {
  const out: PeerEntry[] = []
  text.split(/\r?\n/).forEach((line, i) => {
    const clean = line.replace(/#.*/, '').trim()
    for (const url of clean.split(/[\s,]+/)) if (url) out.push({url, line: i + 1})
  })
  return out
}

/** Split a peers list ("URL,URL URL" or one per line; # comments). */
export function parsePeerList(text: string): string[] {
  return parsePeerLines(text).map((e) => e.url)
}

export function isHttpUrl(u: string): boolean {
  try {
    return ['http:', 'https:'].includes(new URL(u).protocol)
  } catch {
    return false
  }
}
