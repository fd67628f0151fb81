/**
 * The object half of the local store: chunk files under objects/ (layout.ts),
 * written through a temporary file and a link so a crash never leaves a
 * partial object in place. LocalStore (local-store.ts) adds manifests, refs
 * and per-image metadata on top.
 */
import fs, {promises as fsp} from 'node:fs'
import path from 'node:path'
import {ChunkMissingError, IntegrityError, isErrno, storeWriteError} from '../errors.js'
import {fastTmpName, mkdirpSync, readdirOrEmpty, tmpName, writeFileNoClobberSync, writeNewFileSync} from '../util/fs-util.js'
import {isValidId, StoreLayout} from './layout.js'
import {decodeObject, isFrame, MAX_STORED_OBJECT, openObject} from './object-encoding.js'

export class LocalObjectStore {
  readonly layout: StoreLayout
  readonly name: string
  private readonly madeDirs = new Set<string>()
  /** Where putObjectSync writes its temporary files (see stageObjectsIn). */
  private objectStaging?: string

  protected constructor(root: string) {
    this.layout = new StoreLayout(root)
    this.name = `local store ${this.layout.root}`
  }

  get root(): string {
    return this.layout.root
  }

  /** Whether this process may write the store (false on a read-only filesystem, or a directory it lacks permission for). */
  async isWritable(): Promise<boolean> {
    return fsp.access(this.layout.root, fs.constants.W_OK).then(
      () => true,
      () => false,
    )
  }

  /** A fresh path under tmp/ for staging a write. */
  tmpPath(label: string): string {
    return path.join(this.layout.tmpDir, tmpName(label))
  }

  /** The directory `file` goes in exists (made once per process; synchronous, as it is on the object write path). */
  protected ensureShard(file: string): void {
    const dir = path.dirname(file)
    if (this.madeDirs.has(dir)) return
    mkdirpSync(dir)
    this.madeDirs.add(dir)
  }

  // ---------------------------------------------------------------- objects

  /**
   * Whether the object is here: one stat, made synchronously as getObject's
   * read is (a stat of a page-cached directory entry costs less than the
   * round trip through the thread pool a promise-based call makes, and a push
   * or a missing-check asks this for every chunk of an image).
   */
  async hasObject(id: string): Promise<boolean> {
    return this.hasObjectSync(id)
  }

  /** hasObject without the promise: for hot loops over chunks. */
  hasObjectSync(id: string): boolean {
    return fs.existsSync(this.layout.objectPath(id))
  }

  /**
   * hasObjectSync for many ids at once: one listing of objects/ first, so an
   * id whose shard directory does not exist costs no stat (a pull onto an
   * empty host then stats nothing). A snapshot: an object stored meanwhile by another process may be reported
   * absent, which only costs fetching it again.
   */
  presentObjectsSync(ids: Iterable<string>): Set<string> {
    let shards: Set<string>
    try {
      shards = new Set(fs.readdirSync(this.layout.objectsDir))
    } catch (err) {
      if (!isErrno(err, 'ENOENT')) throw err
      shards = new Set()
    }
    const present = new Set<string>()
    for (const id of ids) if (shards.has(id.slice(0, 2)) && this.hasObjectSync(id)) present.add(id)
    return present
  }

  /**
   * Chunk bytes; ChunkMissingError when absent. `verify` re-hashes them.
   * Read synchronously: a chunk is at most 4 MiB and usually in the page
   * cache, and a miss costs one stat instead of a thrown ENOENT from the
   * thread pool, which is far slower.
   */
  async getObject(id: string, opts: {verify?: boolean; into?: Buffer} = {}): Promise<Buffer> {
    return this.getObjectSync(id, opts)
  }

  /** getObject without the promise (export's per-chunk loop). */
  getObjectSync(id: string, opts: {verify?: boolean; into?: Buffer} = {}): Buffer {
    const stored = this.readObjectStored(id, opts.into)
    if (stored === undefined) throw new ChunkMissingError(`chunk ${id} is not in ${this.name}`, {data: {id}})
    if (!opts.verify) return decodeObject(stored)
    const o = openObject(id, stored)
    if (o.actual !== undefined) throw new IntegrityError(`chunk ${id} in ${this.name} is corrupt (hashes to ${o.actual})`, {data: {id, actual: o.actual}})
    return o.data
  }

  /**
   * Chunk bytes (decoded when the object is compressed; not verified), or
   * undefined when absent: no error built for a miss. With `into` (large
   * enough), a raw object is read into it.
   */
  readObject(id: string, into?: Buffer): Buffer | undefined {
    const stored = this.readObjectStored(id, into)
    return stored && decodeObject(stored)
  }

  /** The object file's bytes as they are (a raw chunk or a zstd frame: object-encoding.ts), or undefined when absent. */
  readObjectStored(id: string, into?: Buffer): Buffer | undefined {
    return readObjectFileSync(this.layout.objectPath(id), into)
  }

  /** Whether the object file is a zstd frame (its first 4 bytes; false when absent or unreadable). */
  objectIsFrameSync(id: string): boolean {
    let fd: number
    try {
      fd = fs.openSync(this.layout.objectPath(id), fs.constants.O_RDONLY | fs.constants.O_NONBLOCK)
    } catch {
      return false
    }
    try {
      const head = Buffer.alloc(4)
      return fs.readSync(fd, head, 0, 4, 0) === 4 && isFrame(head)
    } catch {
      return false
    } finally {
      fs.closeSync(fd)
    }
  }

  /**
   * Store an object (a raw chunk or a frame of it: object-encoding.ts). The
   * caller vouches that `id` is the hash of its chunk (pass `verify` for
   * untrusted data). Returns true when newly written.
   */
  async putObject(id: string, data: Buffer, opts: {verify?: boolean} = {}): Promise<boolean> {
    if (opts.verify) {
      const o = openObject(id, data)
      if (o.actual !== undefined) throw new IntegrityError(`refusing chunk claimed to be ${id}: it hashes to ${o.actual}`, {data: {id, actual: o.actual}})
    }
    return this.putObjectSync(id, data)
  }

  /**
   * putObject without verification, in synchronous system calls (see
   * writeFileNoClobberSync): the hot path of import, pull and load.
   */
  putObjectSync(id: string, data: Uint8Array, opts: {probe?: boolean} = {}): boolean {
    const dest = this.layout.objectPath(id)
    try {
      // most puts of an existing object end here, without writing anything;
      // `probe: false` when the caller found it absent already (the link then says EEXIST)
      if (opts.probe !== false && this.hasObjectSync(id)) return false
      this.ensureShard(dest)
      return writeFileNoClobberSync(path.join(this.objectStaging ?? this.layout.tmpDir, fastTmpName('obj')), dest, data)
    } catch (err) {
      throw storeWriteError(err, `chunk ${id}`)
    }
  }

  /**
   * Replace a compressed object by its raw chunk, which the caller verified
   * against `id` (a mount keeps what it reads raw: FORMAT.md "Compressed
   * objects"). Atomic, a rename over the file: a reader that opened the
   * frame reads the frame, a later one the raw chunk, and both hold the same
   * chunk. False when not done: the object is gone, the store cannot be
   * written, or the chunk begins with the zstd magic (it stays a frame).
   */
  replaceWithRawSync(id: string, raw: Buffer): boolean {
    if (isFrame(raw)) return false
    const dest = this.layout.objectPath(id)
    const tmp = path.join(this.objectStaging ?? this.layout.tmpDir, fastTmpName('raw'))
    try {
      if (!fs.existsSync(dest)) return false // evicted or collected meanwhile: not brought back here
      writeNewFileSync(tmp, raw)
      fs.renameSync(tmp, dest)
      return true
    } catch {
      fs.rmSync(tmp, {force: true})
      return false
    }
  }

  /**
   * Write putObjectSync's temporary files into `dir` (created here), a
   * directory below tmp/ of this thread's own. Threads that store objects at
   * the same time otherwise create and remove their temporary files in one
   * directory, and queue on its lock in the kernel. Name it with tmpName() so that gc removes it once its process is
   * gone.
   */
  stageObjectsIn(dir: string): void {
    mkdirpSync(dir)
    this.objectStaging = dir
  }

  /**
   * Move `file` (an object, manifest or ref of this store found bad) to
   * quarantine/ as `<label>.<unique>`, so that a later pull, import or load
   * stores a good copy again; returns where it went. Rejects with the
   * filesystem's error when it cannot be moved.
   */
  async moveAside(file: string, label: string): Promise<string> {
    const dest = path.join(this.layout.quarantineDir, `${label}.${tmpName('bad')}`)
    await fsp.mkdir(this.layout.quarantineDir, {recursive: true})
    await fsp.rename(file, dest)
    return dest
  }

  /**
   * After `err` from a verified read: a corrupt object (an IntegrityError
   * naming it) is moved aside, as fsck --repair would, so that the pull the
   * error's hint suggests stores a good copy again (a pull counts what is
   * present, without re-hashing it); the message says where it went. Best
   * effort: a store this process cannot write keeps it.
   */
  async setAsideIfCorrupt(err: unknown): Promise<void> {
    if (!(err instanceof IntegrityError) || typeof err.data.id !== 'string' || err.data.actual === undefined || !isValidId(err.data.id)) return
    const moved = await this.moveAside(this.layout.objectPath(err.data.id), err.data.id).catch(() => undefined)
    if (moved) err.message += `; moved to ${path.relative(this.layout.root, moved)}`
  }

  /** Size in bytes of a stored object, or undefined when absent. */
  async objectSize(id: string): Promise<number | undefined> {
    try {
      return (await fsp.stat(this.layout.objectPath(id))).size
    } catch (err) {
      if (isErrno(err, 'ENOENT')) return undefined
      throw err
    }
  }

  /** Every object id in the store (order unspecified). */
  async *listObjectIds(): AsyncGenerator<string> {
    yield* listSharded(this.layout.objectsDir)
  }
}

export async function* listSharded(dir: string): AsyncGenerator<string> {
  for (const shard of (await readdirOrEmpty(dir)).sort()) {
    if (!/^[0-9a-f]{2}$/.test(shard)) continue
    for (const rest of await readdirOrEmpty(path.join(dir, shard))) {
      const id = shard + rest
      if (isValidId(id)) yield id
    }
  }
}

/**
 * Why an object file cannot hold a chunk, or undefined when it can: not a
 * regular file (a FIFO would block a read), or larger than any chunk (or its frame). Shared
 * by the store's reads and by `vmi serve`, which streams objects itself.
 */
export function objectFileDefect(file: string, st: {isFile(): boolean; size: number}): string | undefined {
  if (!st.isFile()) return `${file} is not a regular file`
  if (st.size > MAX_STORED_OBJECT) return `${st.size} bytes, more than any chunk`
  return undefined
}

/**
 * The whole object file (in `into` when it is large enough), or undefined
 * when it does not exist. Not a regular file, or larger than any chunk:
 * IntegrityError (a corrupt object), without reading it; O_NONBLOCK so a FIFO
 * planted in the store cannot block the open.
 */
function readObjectFileSync(file: string, into?: Buffer): Buffer | undefined {
  let fd: number
  try {
    fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK)
  } catch (err) {
    if (isErrno(err, 'ENOENT', 'ENOTDIR')) return undefined
    throw err
  }
  try {
    const st = fs.fstatSync(fd)
    const defect = objectFileDefect(file, st)
    if (defect) {
      const id = path.basename(path.dirname(file)) + path.basename(file)
      throw new IntegrityError(`chunk ${id} is corrupt (${defect})`, {data: {id}})
    }
    const size = st.size
    const buf = into && into.length >= size ? into.subarray(0, size) : Buffer.allocUnsafe(size)
    let off = 0
    while (off < size) {
      const n = fs.readSync(fd, buf, off, size - off, off)
      if (n === 0) return buf.subarray(0, off)
      off += n
    }
    return buf
  } finally {
    fs.closeSync(fd)
  }
}
