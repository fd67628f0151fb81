/**
 * The manifests of the local store (manifests/ in layout.ts), a layer over
 * its objects (local-objects.ts); LocalStore adds refs and per-image
 * metadata. A manifest is stored under the hash of its bytes: written
 * through tmp/ and a rename, verified when read back.
 */
import {promises as fsp} from 'node:fs'
import {BadManifestError, IntegrityError, isErrno, RefNotFoundError, storeWriteError} from '../errors.js'
import {exists, readFileBounded, writeFileAtomic} from '../util/fs-util.js'
import {listSharded, LocalObjectStore} from './local-objects.js'
import {verifyManifestFile} from './manifest-scan.js'
import type {ManifestHead} from './manifest-stream.js'
import {decodeManifest, encodeManifest, MAX_MANIFEST_BYTES, type Manifest} from './manifest.js'

export class LocalManifestStore extends LocalObjectStore {
  async putManifest(m: Manifest): Promise<string> {
    const {bytes, id} = encodeManifest(m)
    await this.putManifestBytes(id, bytes)
    return id
  }

  /** Store manifest bytes already verified to hash to `id`. */
  async putManifestBytes(id: string, bytes: Uint8Array): Promise<void> {
    const dest = this.layout.manifestPath(id)
    if (await exists(dest)) return
    try {
      this.ensureShard(dest)
      await writeFileAtomic(this.tmpPath('manifest'), dest, bytes)
    } catch (err) {
      throw storeWriteError(err, `manifest ${id}`)
    }
  }

  /** Move a finished manifest file (already hashed to `id`, e.g. by ManifestWriter) into place. */
  async putManifestFile(id: string, file: string): Promise<void> {
    const dest = this.layout.manifestPath(id)
    try {
      if (await exists(dest)) {
        await fsp.rm(file, {force: true})
        return
      }
      this.ensureShard(dest)
      await fsp.rename(file, dest)
    } catch (err) {
      await fsp.rm(file, {force: true}).catch(() => {})
      throw storeWriteError(err, `manifest ${id}`)
    }
  }

  async hasManifest(id: string): Promise<boolean> {
    return exists(this.layout.manifestPath(id))
  }

  /** Manifest bytes as stored (not verified); the size limit is checked before reading. */
  async getManifestBytes(id: string): Promise<Buffer | undefined> {
    const file = this.layout.manifestPath(id)
    return readFileBounded(
      file,
      MAX_MANIFEST_BYTES,
      (size) => new BadManifestError(`manifest ${id} (${file}) is ${size} bytes, larger than the ${MAX_MANIFEST_BYTES} limit`, {data: {id, file}}),
    )
  }

  /**
   * A verified, decoded manifest; RefNotFoundError when absent, IntegrityError
   * when the file does not hash to its name (a damaged or tampered store).
   */
  async getManifest(id: string): Promise<Manifest> {
    const bytes = await this.getManifestBytes(id)
    if (bytes === undefined) throw new RefNotFoundError(`no image ${id} in ${this.name}`, {data: {id}})
    return this.decodeStoredManifest(id, bytes)
  }

  /** Decode bytes read from this store's manifest `id` (getManifest's checks and errors). */
  decodeStoredManifest(id: string, bytes: Uint8Array): Manifest {
    try {
      return decodeManifest(bytes, id)
    } catch (err) {
      throw this.storedManifestError(id, err)
    }
  }

  /** A manifest check's error, said of this store's file: a hash mismatch is damage (IntegrityError). */
  private storedManifestError(id: string, err: unknown): unknown {
    if (!(err instanceof BadManifestError)) return err
    const file = this.layout.manifestPath(id)
    if (err.data.actual !== undefined)
      return new IntegrityError(`manifest file ${file} does not match its id ${id} (its content hashes to ${err.data.actual}); the store is damaged (vmi fsck)`, {
        cause: err,
        data: {id, file, actual: err.data.actual},
      })
    return new BadManifestError(`${err.message} (${file})`, {cause: err, data: {id, file}})
  }

  /**
   * getManifest's checks on the manifest file without decoding its chunk
   * list (see manifest-scan.ts): the head, or the same errors.
   */
  async verifyStoredManifestFile(id: string): Promise<ManifestHead> {
    try {
      return (await verifyManifestFile(this.layout.manifestPath(id), id)).head
    } catch (err) {
      if (isErrno(err, 'ENOENT', 'ENOTDIR')) throw new RefNotFoundError(`no image ${id} in ${this.name}`, {data: {id}})
      throw this.storedManifestError(id, err)
    }
  }

  async *listManifestIds(): AsyncGenerator<string> {
    yield* listSharded(this.layout.manifestsDir)
  }

  async deleteManifest(id: string): Promise<void> {
    await fsp.rm(this.layout.manifestPath(id), {force: true})
  }
}
