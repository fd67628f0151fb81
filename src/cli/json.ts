/**
 * Every JSON document vmi prints (results on stdout, errors and warnings on
 * stderr) carries `"version"`: the version of its shape, docs/JSON.md. A
 * change that removes or renames a key, or changes a value's type, raises it;
 * a new key does not.
 */
export const JSON_VERSION = 1

/** The document with its version first. */
export function versioned<T extends object>(doc: T): {version: typeof JSON_VERSION} & T {
  return {version: JSON_VERSION, ...doc}
}

/** One line of JSON (a document that is not the command's final result: mount's addresses, serve's URL, an error, a warning). */
export function jsonLine(doc: object): string {
  return JSON.stringify(versioned(doc)) + '\n'
}
