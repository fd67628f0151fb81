/**
 * The one module that knows where things live in a store directory.
 *
 *   objects/ab/cdef…     chunks, named by the BLAKE3 hex of their bytes
 *   manifests/ab/cdef…   manifests, named by the BLAKE3 hex of their bytes
 *   refs/<name>/<tag>    text file holding a manifest id
 *   sigs/<name>/<tag>    the ref's signature (ref-signature.ts), when it is signed
 *   tmp/                 write-then-rename staging
 *   locks/               one file per running operation (see lock.ts)
 *   quarantine/          objects fsck --repair moved aside
 *   profiles/ab/cdef…    boot profile of an image (chunk read order), beside its manifest
 *   pins/<id>            images whose chunks cache eviction never removes
 *   lazy/<id>            images allowed to lack chunks (evicted or lazily mounted)
 *   sources/<id>         remotes an image can be fetched from again (its chunks are cache)
 *   run/mounts/<pid>.json  what each running mount serves (see mount/mount-registry.ts)
 *   config.json
 */
import path from 'node:path'

export const ID_RE = /^[0-9a-f]{64}$/

export function isValidId(id: unknown): id is string {
  return typeof id === 'string' && ID_RE.test(id)
}

/** The store marker's file name, at the store's root (docs/FORMAT.md). */
export const STORE_MARKER_NAME = 'vmi-store.json'
/** Its content. */
export const STORE_MARKER = '{"format":"vmi-store","version":1}\n'

export class StoreLayout {
  readonly root: string
  readonly objectsDir: string
  readonly manifestsDir: string
  readonly refsDir: string
  readonly sigsDir: string
  readonly tmpDir: string
  readonly locksDir: string
  readonly quarantineDir: string
  readonly pinsDir: string
  readonly profilesDir: string
  readonly lazyDir: string
  readonly sourcesDir: string
  /** vmi-store.json: says "this directory is a vmi store" to whoever reads it over HTTP (a static seed). */
  readonly markerFile: string
  readonly configFile: string
  readonly mountsDir: string

  constructor(root: string) {
    this.root = path.resolve(root)
    this.objectsDir = path.join(this.root, 'objects')
    this.manifestsDir = path.join(this.root, 'manifests')
    this.refsDir = path.join(this.root, 'refs')
    this.sigsDir = path.join(this.root, 'sigs')
    this.tmpDir = path.join(this.root, 'tmp')
    this.locksDir = path.join(this.root, 'locks')
    this.quarantineDir = path.join(this.root, 'quarantine')
    this.pinsDir = path.join(this.root, 'pins')
    this.profilesDir = path.join(this.root, 'profiles')
    this.lazyDir = path.join(this.root, 'lazy')
    this.sourcesDir = path.join(this.root, 'sources')
    this.configFile = path.join(this.root, 'config.json')
    this.mountsDir = path.join(this.root, 'run', 'mounts')
    this.markerFile = path.join(this.root, STORE_MARKER_NAME)
  }

  objectPath(id: string): string {
    assertId(id)
    return path.join(this.objectsDir, id.slice(0, 2), id.slice(2))
  }

  manifestPath(id: string): string {
    assertId(id)
    return path.join(this.manifestsDir, id.slice(0, 2), id.slice(2))
  }

  profilePath(id: string): string {
    assertId(id)
    return path.join(this.profilesDir, id.slice(0, 2), id.slice(2))
  }

  pinPath(id: string): string {
    assertId(id)
    return path.join(this.pinsDir, id)
  }

  lazyPath(id: string): string {
    assertId(id)
    return path.join(this.lazyDir, id)
  }

  sourcesPath(id: string): string {
    assertId(id)
    return path.join(this.sourcesDir, id)
  }

  refPath(name: string, tag: string): string {
    return path.join(this.refsDir, ...name.split('/'), tag)
  }

  /** The signature of ref name:tag: the same two levels as the ref, under sigs/. */
  refSignaturePath(name: string, tag: string): string {
    return path.join(this.sigsDir, name, tag)
  }
}

function assertId(id: string): void {
  if (!ID_RE.test(id)) throw new TypeError(`not a 64-hex id: ${JSON.stringify(id).slice(0, 80)}`)
}
