/**
 * `export`: an image out of the store as a raw disk (sparse on files: zero
 * chunks become holes), or any qemu-img format. Every chunk is verified
 * against its id on the way out. Files are written beside the destination
 * and renamed into place, so a failed export leaves no partial file.
 */
import {promises as fsp} from 'node:fs'
import path from 'node:path'
import type {Writable} from 'node:stream'
import {BadManifestError, FileExistsError, InterruptedError, isErrno, UsageError, VmiError} from '../errors.js'
import {silentProgress, type ProgressReporter} from '../progress.js'
import {tmpName} from '../util/fs-util.js'
import {convertFromRaw, DEFAULT_TOOLS, type Tools} from './formats.js'
import type {LocalStore} from './local-store.js'
import {chunkCount, chunkLength, MAX_EXPANDED_CHUNKS} from './manifest.js'
import {manifestFileEntries} from './manifest-scan.js'
import type {ManifestHead} from './manifest-stream.js'

export interface ExportInit {
  /** 'raw' (default) or any format qemu-img writes (qcow2, vmdk, ...). */
  format?: string
  tools?: Tools
  progress?: ProgressReporter
  signal?: AbortSignal
  /** Replace an existing regular file at the destination (default: refuse, before reading a chunk). */
  overwrite?: boolean
}

export interface ExportResult {
  id: string
  virtualSize: number
  format: string
  bytesWritten: number
  holes: number
  seconds: number
}

const ZERO = Buffer.alloc(4 * 1024 * 1024)

/** Progress is reported at most once per this many bytes (a TTY bar formats text on every update). */
const PROGRESS_STEP = 8 << 20

/** Export to a file path, or to a Writable (stdout) when `dest` is a stream. */
export async function exportImage(store: LocalStore, spec: string, dest: string | Writable, init: ExportInit = {}): Promise<ExportResult> {
  const t0 = performance.now()
  const format = init.format ?? 'raw'
  if (!/^[a-z0-9]+$/.test(format)) throw new UsageError(`unknown format ${JSON.stringify(format)}`)
  const id = await store.resolveId(spec)
  // the manifest is checked and walked as a file: its chunk list is never all in memory
  const manifestFile = store.layout.manifestPath(id)
  const manifest: ManifestHead = await store.verifyStoredManifestFile(id)
  const count = chunkCount(manifest.virtualSize, manifest.chunkSize)
  if (count > MAX_EXPANDED_CHUNKS)
    throw new BadManifestError(`image ${id} has ${count} chunks; vmi exports at most ${MAX_EXPANDED_CHUNKS} chunks per image`, {data: {id, chunks: count}})
  const progress = init.progress ?? silentProgress
  let bytesWritten = 0
  let holes = 0

  // read buffers, reused once their write is done (a fresh buffer per chunk let garbage pile up)
  const buffers: Buffer[] = []
  const takeBuffer = () => buffers.pop() ?? Buffer.allocUnsafeSlow(manifest.chunkSize)
  // synchronous (the object read and hash are): no promise per chunk
  const readChunk = (index: number, cid: string, into?: Buffer): Buffer => {
    const data = store.getObjectSync(cid, {verify: true, into})
    if (data.length !== chunkLength(manifest, index))
      throw new VmiError(`chunk ${cid} has ${data.length} bytes, image ${id} expects ${chunkLength(manifest, index)} at index ${index}`)
    return data
  }
  let reported = 0
  const report = (force = false) => {
    if (force || bytesWritten - reported >= PROGRESS_STEP) {
      reported = bytesWritten
      progress.update(bytesWritten)
    }
  }

  progress.start(`exporting ${spec}`, manifest.virtualSize, 'bytes')
  // a write error on the output stream (disk full, reader gone) arrives as an
  // 'error' event: caught here and raised from the loop, never left unhandled
  let streamError: unknown
  let wake: (() => void) | undefined
  const onStreamError = (err: unknown) => {
    streamError ??= err
    wake?.()
    released?.()
  }
  // pooled buffers handed to the stream and not yet released, oldest first. A
  // stream calls back in write order, so one callback serves them all (and
  // consecutive synchronous writes with the same callback share one tick).
  // At most 8 are lent at a time: a stream that writes synchronously, like a
  // file or /dev/null on stdout, calls back only after the current task.
  const lentBuffers: Buffer[] = []
  let released: (() => void) | undefined
  const onWritten = () => {
    const b = lentBuffers.shift()
    if (b) buffers.push(b)
    released?.()
  }
  /** Hand `data` to the stream; true when the caller must `await settle(out)` before the next. */
  const send = (out: Writable, data: Buffer, pooled?: Buffer): boolean => {
    let more: boolean
    if (pooled) {
      lentBuffers.push(pooled)
      more = out.write(data, onWritten)
    } else more = out.write(data)
    return !more || lentBuffers.length >= 8 || streamError !== undefined
  }
  const settle = async (out: Writable) => {
    while (lentBuffers.length >= 8 && !streamError) await new Promise<void>((resolve) => (released = resolve))
    if (out.writableNeedDrain && !streamError)
      await new Promise<void>((resolve) => {
        wake = resolve
        out.once('drain', resolve)
      })
    if (streamError) throw streamError
  }
  // (others' 'error' listeners — oclif's on stdout rethrows — are set aside meanwhile, and
  // put back only if the stream did not fail: a failed stream may still emit)
  const otherListeners = typeof dest !== 'string' ? dest.rawListeners('error') : []
  if (typeof dest !== 'string') {
    dest.removeAllListeners('error')
    dest.on('error', onStreamError)
  }
  try {
    if (typeof dest !== 'string') {
      if (format !== 'raw') {
        // qemu-img cannot write to a pipe: convert to a temporary file, then stream it.
        const tmp = path.join(store.layout.tmpDir, tmpName(`export.${format}`))
        try {
          await exportImage(store, id, tmp, {...init, progress})
          const fh = await fsp.open(tmp, 'r')
          try {
            for await (const piece of fh.createReadStream()) {
              if (send(dest, piece)) await settle(dest)
              bytesWritten += piece.length
            }
          } finally {
            await fh.close()
          }
        } finally {
          await fsp.rm(tmp, {force: true})
        }
      } else {
        let index = 0
        for await (const batch of manifestFileEntries(manifestFile)) {
          for (const e of batch) {
            init.signal?.throwIfAborted()
            if (typeof e === 'number') {
              // a zero run: ZERO-sized writes, not one per chunk
              const end = Math.min((index + e) * manifest.chunkSize, manifest.virtualSize)
              for (let at = index * manifest.chunkSize; at < end; ) {
                const n = Math.min(ZERO.length, end - at)
                const wait = send(dest, ZERO.subarray(0, n))
                bytesWritten += n
                at += n
                if (wait) await settle(dest)
              }
              index += e
            } else {
              const buf = takeBuffer()
              const data = readChunk(index, e, buf)
              const wait = send(dest, data, buf)
              bytesWritten += data.length
              index++
              if (wait) await settle(dest)
            }
            report()
          }
        }
        await settle(dest)
        report(true)
      }
      return {id, virtualSize: manifest.virtualSize, format, bytesWritten, holes, seconds: (performance.now() - t0) / 1000}
    }

    const target = path.resolve(dest)
    let st
    try {
      st = await fsp.stat(target)
    } catch (err) {
      if (!isErrno(err, 'ENOENT')) throw err
    }
    if (st?.isDirectory()) throw new UsageError(`${dest} is a directory; give a file name`)
    if (st?.isFile() && !init.overwrite) throw new FileExistsError(`${dest} already exists`, {data: {file: target}})
    const inPlace = st !== undefined && !st.isFile() // block device or similar
    const rawFile = inPlace ? target : path.join(path.dirname(target), `.${path.basename(target)}.${tmpName('vmi-export')}`)
    const rawTarget = format === 'raw' ? rawFile : rawFile + '.raw'
    try {
      const fh = await fsp.open(rawTarget, inPlace ? 'r+' : 'wx', 0o644)
      try {
        if (!inPlace) await fh.truncate(manifest.virtualSize)
        // writes in order, a few in flight
        const inflight: Promise<unknown>[] = []
        let writeError: unknown
        const track = (p: Promise<unknown>, buf?: Buffer) => {
          // every write is watched, so one that fails while others are waited on is never unhandled
          inflight.push(
            p.then(
              () => buf && buffers.push(buf),
              (err) => {
                writeError ??= err
              },
            ),
          )
        }
        const settleFile = async () => {
          if (inflight.length >= 8) await inflight.shift()
          if (writeError) throw writeError
        }
        let index = 0
        for await (const batch of manifestFileEntries(manifestFile)) {
          for (const e of batch) {
            init.signal?.throwIfAborted()
            if (typeof e === 'number') {
              if (!inPlace) holes += e
              else
                for (let k = 0; k < e; k++) {
                  const i = index + k
                  track(fh.write(ZERO, 0, chunkLength(manifest, i), i * manifest.chunkSize))
                  await settleFile()
                }
              index += e
              continue
            }
            const buf = takeBuffer()
            const data = readChunk(index, e, buf)
            track(fh.write(data, 0, data.length, index * manifest.chunkSize), buf)
            index++
            await settleFile()
            bytesWritten += data.length
            report()
          }
        }
        bytesWritten = manifest.virtualSize
        await Promise.all(inflight)
        if (writeError) throw writeError
        // character devices (/dev/null) cannot be fsynced
        await fh.sync().catch((err) => {
          if (!isErrno(err, 'EINVAL', 'ENOTSUP')) throw err
        })
      } finally {
        await fh.close()
      }
      if (format !== 'raw') {
        await convertFromRaw(rawTarget, format, rawFile, init.tools ?? DEFAULT_TOOLS)
        await fsp.rm(rawTarget, {force: true})
      }
      if (!inPlace) await publish(rawFile, target, init.overwrite ?? false, dest)
    } catch (err) {
      if (!inPlace) await fsp.rm(rawFile, {force: true}).catch(() => {})
      if (rawTarget !== rawFile) await fsp.rm(rawTarget, {force: true}).catch(() => {})
      throw err
    }
    return {id, virtualSize: manifest.virtualSize, format, bytesWritten, holes, seconds: (performance.now() - t0) / 1000}
  } catch (err) {
    if (init.signal?.aborted) throw new InterruptedError(`export of ${spec} interrupted`, {cause: err})
    if (isErrno(err, 'EPIPE')) throw new VmiError(`the reader of the export went away (broken pipe)`, {cause: err})
    if (isErrno(err, 'ENOSPC')) throw new VmiError(`no space left writing ${typeof dest === 'string' ? dest : 'the export'}`, {cause: err})
    if (isErrno(err, 'EACCES', 'EPERM', 'EROFS')) throw new VmiError(`cannot write ${typeof dest === 'string' ? dest : 'the export'}: ${(err as Error).message}`, {cause: err})
    if (isErrno(err, 'ENOENT') && typeof dest === 'string') throw new UsageError(`cannot write ${dest}: its directory does not exist`, {cause: err})
    throw err
  } finally {
    progress.stop()
    if (typeof dest !== 'string' && !streamError) {
      dest.off('error', onStreamError)
      for (const l of otherListeners) dest.on('error', l as (err: Error) => void)
    }
  }
}

/**
 * Put the finished file in place. Without `overwrite`, a hard link makes it
 * appear only if nothing took the name meanwhile (EEXIST); a filesystem
 * without hard links falls back to a rename.
 */
async function publish(file: string, target: string, overwrite: boolean, shown: string): Promise<void> {
  if (!overwrite) {
    try {
      await fsp.link(file, target)
      await fsp.rm(file, {force: true})
      return
    } catch (err) {
      if (isErrno(err, 'EEXIST')) throw new FileExistsError(`${shown} already exists`, {cause: err, data: {file: target}})
      if (!isErrno(err, 'EPERM', 'ENOTSUP', 'EOPNOTSUPP', 'EMLINK')) throw err
    }
  }
  await fsp.rename(file, target)
}
