/** Image references: `name:tag` (tag defaults to `latest`), like docker/git. */
import {InvalidRefError} from '../errors.js'

export const DEFAULT_TAG = 'latest'
const PART_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/

export interface RefName {
  name: string
  tag: string
}

export function isValidRefPart(s: string): boolean {
  return PART_RE.test(s) && !s.includes('..')
}

/**
 * Parse `name[:tag]`. Names and tags are 1–128 characters of letters, digits,
 * `.`, `_` and `-`, starting with a letter or digit.
 */
export function parseRef(input: string, defaultTag = DEFAULT_TAG): RefName {
  if (typeof input !== 'string' || input.length === 0) throw new InvalidRefError('empty image reference')
  const colon = input.indexOf(':')
  const name = colon === -1 ? input : input.slice(0, colon)
  const tag = colon === -1 ? defaultTag : input.slice(colon + 1)
  if (!isValidRefPart(name))
    throw new InvalidRefError(
      `invalid image name ${JSON.stringify(name)} in ${JSON.stringify(input)}: use 1-128 of [A-Za-z0-9._-], starting with a letter or digit`,
      {data: {input}},
    )
  if (!isValidRefPart(tag))
    throw new InvalidRefError(
      `invalid tag ${JSON.stringify(tag)} in ${JSON.stringify(input)}: use 1-128 of [A-Za-z0-9._-], starting with a letter or digit`,
      {data: {input}},
    )
  return {name, tag}
}

export function formatRef(ref: RefName): string {
  return `${ref.name}:${ref.tag}`
}
