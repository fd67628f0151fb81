/**
 * What a pull or a mount asks before the chunks: the image a name stands
 * for (its ref on the seed, the signature checked when signers are given),
 * its manifest, and its boot profile. The manifest and the profile are
 * asked of the peers at once, then of the seed.
 */
import {NotAStoreError, RefNotFoundError, RemoteError, UsageError} from '../errors.js'
import {isValidId, STORE_MARKER_NAME} from '../store/layout.js'
import type {LocalStore} from '../store/local-store.js'
import {decodeProfile, maxProfileBytes} from '../store/profile.js'
import {chunkCount, decodeManifest, type Manifest} from '../store/manifest.js'
import {formatRef, isValidRefPart, parseRef, type RefName} from '../store/ref.js'
import {checkNotOlder, verifyRefSignature, type VerifiedSignature} from '../store/ref-signature.js'
import type {AllowedSigner} from '../security/allowed-signers.js'
import {MAX_BULK_CONNECTIONS} from './chain-bulk.js'
import type {FetchChain} from './chain.js'
import type {RemoteSource} from './source.js'

/** A seed that answers 404 to everything (any web server) is not "a seed without the image". */
function notAStore(seed: RemoteSource, what: string): NotAStoreError {
  return new NotAStoreError(
    `${seed.url} does not look like a vmi seed (${what}, no /${STORE_MARKER_NAME}, no /healthz: neither a vmi serve nor a static server over a vmi store; a store last written by a vmi older than its marker gets one from any vmi command run on it)`,
    {data: {url: seed.url}},
  )
}

/** What a name resolved to: the id, the ref and remote that named it, and the ref's signature when it was verified. */
export interface ResolvedTarget {
  id: string
  ref?: RefName
  remote?: string
  signature?: {data: Buffer; verified: VerifiedSignature}
}

/** Verify the signature `data` of `ref` → `id` from `from` (throws SignatureError), when `signers` are given. */
async function checkSigned(
  signers: AllowedSigner[] | undefined,
  ref: RefName,
  id: string,
  from: string,
  read: () => Promise<Buffer | undefined>,
): Promise<ResolvedTarget['signature']> {
  if (!signers) return undefined
  const data = await read()
  return {data: data!, verified: verifyRefSignature(data, ref, id, signers, from)}
}

/**
 * The ref a local name resolves to, when `spec` names one here (as
 * LocalStore.resolveId reads it: `name:tag`, or a bare name that is a ref
 * before it is an id prefix); undefined for an id or an id prefix.
 */
export async function localNamedRef(store: LocalStore, spec: string): Promise<{ref: RefName; id: string} | undefined> {
  if (!spec.includes(':') && !isValidRefPart(spec)) return undefined
  const ref = parseRef(spec)
  const id = await store.readRef(ref)
  return id === undefined ? undefined : {ref, id}
}

/** A local ref, its signature verified when `signers` are given (a local image named by id or prefix needs none). */
export async function resolveLocal(store: LocalStore, spec: string, signers?: AllowedSigner[]): Promise<ResolvedTarget> {
  const named = await localNamedRef(store, spec)
  if (!named) return {id: await store.resolveId(spec)}
  const {ref, id} = named
  return {id, ref, signature: await checkSigned(signers, ref, id, store.name, () => store.readRefSignature(ref))}
}

/**
 * Resolve what to pull: `name:tag` (asked of the seed), or a full image id.
 * With `signers`, a name's signature is fetched and verified here, before
 * anything else of the image is.
 */
export async function resolveTarget(chain: FetchChain, spec: string, signal?: AbortSignal, signers?: AllowedSigner[]): Promise<ResolvedTarget> {
  if (isValidId(spec)) return {id: spec}
  if (/^[0-9a-f]{4,63}$/.test(spec)) {
    // a prefix is only meaningful locally; a name may be spelled in hex too, and is asked of the seed as NAME:latest
    try {
      return {id: await chain.local.resolveId(spec)}
    } catch {
      if (!chain.seed) throw new UsageError(`${spec} looks like an id prefix; pull needs a full image id or NAME:TAG`)
    }
  }
  const ref = parseRef(spec)
  if (!chain.seed) {
    const local = await chain.local.readRef(ref)
    if (local) return resolveLocal(chain.local, formatRef(ref), signers)
    throw new UsageError(`pulling ${formatRef(ref)} by name needs a seed (remote) to look the name up; with peers only, pull by image id`)
  }
  const id = await chain.seed.getRef(ref.name, ref.tag, {signal})
  if (!id && !(await chain.seed.looksLikeStore({signal}))) throw notAStore(chain.seed, `no ref ${formatRef(ref)}`)
  if (!id) throw new RefNotFoundError(`${chain.seed.name} has no image ${formatRef(ref)}`, {data: {spec}})
  const seed = chain.seed
  const signature = await checkSigned(signers, ref, id, seed.name, () => seed.getRefSignature(ref.name, ref.tag, {signal}))
  // a host that has seen a newer signature of this ref does not go back
  if (signature) await checkNotOlder(chain.local, ref, signature.verified, signers!, seed.name)
  return {id, ref, remote: seed.url, ...(signature ? {signature} : {})}
}

/**
 * Manifest bytes: local, else peers, else seed — verified against the id.
 * The peers are asked all at once (up to MAX_ASKS), and the first verified
 * copy wins: as a fleet starts none of them has it yet, and asking them in
 * turn cost every host a round trip per peer before the seed.
 * `probeSeed`: when the seed lacks it, ask whether the seed is a vmi store at
 * all (pulling by id; a seed that just answered a ref is one).
 */
export async function fetchManifest(
  chain: FetchChain,
  id: string,
  signal?: AbortSignal,
  opts: {probeSeed?: boolean} = {},
): Promise<{manifest: Manifest; bytes: Buffer; from: string; remote?: string}> {
  const local = await chain.local.getManifestBytes(id)
  if (local) return {manifest: chain.local.decodeStoredManifest(id, local), bytes: local, from: chain.local.name}
  const errors: string[] = []
  // one ask of one source; the seed, when it lacks the manifest, may be asked whether it is a store at all
  const ask = async (src: RemoteSource, s?: AbortSignal): Promise<{manifest: Manifest; bytes: Buffer; from: string; remote: string} | undefined> => {
    try {
      const bytes = await src.getManifestBytes(id, {signal: s})
      if (bytes) return {manifest: decodeManifest(bytes, id), bytes, from: src.name, remote: src.url}
      if (opts.probeSeed && src === chain.seed && !(await src.looksLikeStore({signal: s}))) throw notAStore(src, `no manifest ${id}`)
      errors.push(`${src.name} (missing)`)
    } catch (err) {
      if (err instanceof NotAStoreError) throw err
      if (!s?.aborted) errors.push(`${src.name} (${(err as Error).message})`)
    }
    return undefined
  }
  const found = await peersThenSeed(chain, signal, ask)
  signal?.throwIfAborted()
  if (found) return found
  throw new RemoteError(`no source has image ${id}: tried ${[chain.local.name + ' (missing)', ...errors].join(', ')}`, {data: {id}})
}

/**
 * Sources asked at once for a manifest or a profile: a fleet's worth, and
 * half the bulk path's bound on open connections (each ask is one).
 */
const MAX_ASKS = MAX_BULK_CONNECTIONS / 2

/**
 * `ask` of the sources, MAX_ASKS at once: the first answer that is not
 * undefined, as soon as it comes, and no more asks started; undefined once
 * every ask has found nothing (`ask` reports its own failures). The asks
 * still running then are not aborted: a peer's failure to connect is what
 * its circuit breaker learns it is down from before the chunks are asked.
 */
function firstFound<S, T>(sources: readonly S[], signal: AbortSignal | undefined, ask: (src: S, signal?: AbortSignal) => Promise<T | undefined>): Promise<T | undefined> {
  return new Promise((resolve) => {
    let next = 0
    let running = 0
    let done = false
    const start = () => {
      while (!done && running < MAX_ASKS && next < sources.length && !signal?.aborted) {
        running++
        // nothing found: start the next ask, or end once none is left running
        const settle = (r: T | undefined) => {
          running--
          if (done) return
          if (r !== undefined) return void ((done = true), resolve(r))
          start()
        }
        // (an ask that throws found nothing)
        ask(sources[next++], signal).then(settle, () => settle(undefined))
      }
      if (!done && running === 0) (done = true), resolve(undefined)
    }
    start()
  })
}

/** `ask` of the peers at once (firstFound), then of the seed when none had it. */
async function peersThenSeed<T>(chain: FetchChain, signal: AbortSignal | undefined, ask: (src: RemoteSource, signal?: AbortSignal) => Promise<T | undefined>): Promise<T | undefined> {
  const found = await firstFound(chain.peerList, signal, ask)
  if (found !== undefined || !chain.seed || signal?.aborted) return found
  return ask(chain.seed, signal)
}

/**
 * Bring the image's boot profile along when a source has one (a hint:
 * failures are ignored): the peers at once, as for the manifest, then the
 * seed.
 */
export async function copyProfile(chain: FetchChain, id: string, manifest: Manifest, signal?: AbortSignal): Promise<void> {
  const chunks = chunkCount(manifest.virtualSize, manifest.chunkSize)
  if (await chain.local.getProfile(id, chunks).catch(() => undefined)) return
  const fetchFrom = async (src: RemoteSource, s?: AbortSignal) => {
    // a profile larger than the image's chunks can need is refused before its body is read
    const bytes = await src.getProfileBytes(id, {signal: s, maxBytes: maxProfileBytes(chunks)}).catch(() => undefined)
    try {
      return bytes && decodeProfile(bytes, chunks)
    } catch {
      return undefined // a bad profile is ignored
    }
  }
  const profile = await peersThenSeed(chain, signal, fetchFrom)
  if (profile) await chain.local.putProfile(id, profile).catch(() => {})
}
