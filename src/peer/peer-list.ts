/**
 * Peer lists as users write them. Kept apart from the HTTP client so that
 * reading settings does not load it (every command reads settings).
 */

/** Split a peers list ("URL,URL URL" or one per line; # comments). */
export function parsePeerList(text: string): string[] {
  const out: string[] = []
  for (const line of text.split(/\r?\n/)) {
    const clean = line.replace(/#.*/, '').trim()
    for (const u of clean.split(/[\s,]+/)) if (u) out.push(u)
  }
  return out
}
