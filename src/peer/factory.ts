/**
 * The one place a fetch chain is assembled from resolved configuration;
 * commands never build chains themselves.
 */
import {promises as fsp} from 'node:fs'
import {FileNotFoundError, isErrno, UsageError} from '../errors.js'
import type {LocalStore} from '../store/local-store.js'
import {BatchedSource} from './batched-source.js'
import {FetchChain, type ChainEvent} from './chain.js'
import {HttpStore} from './http-store.js'
import {isHttpUrl, parsePeerLines} from './peer-list.js'

export {parsePeerList} from './peer-list.js'

export interface ChainConfig {
  seedUrl?: string
  peers?: string[]
  /** One peer URL a line; re-read when it changes (checked every second). */
  peersFile?: string
  ownerHashing?: boolean
  insecure?: boolean
  /** Socket inactivity timeout for peers, ms (default 10000). */
  peerTimeoutMs?: number
  onEvent?: (e: ChainEvent) => void
}

export interface BuiltChain {
  chain: FetchChain
  close(): void
}

export function peerStore(url: string, cfg: ChainConfig = {}): HttpStore {
  // peers: few quick retries (the chain moves on), short idle timeout
  return new HttpStore(url, {kind: 'peer', insecure: cfg.insecure, idleTimeoutMs: cfg.peerTimeoutMs ?? 10_000, connectTimeoutMs: 2000, retry: {retries: 1, baseMs: 50}})
}

export function seedStore(url: string, init: {token?: string; insecure?: boolean} = {}): HttpStore {
  return new HttpStore(url, {kind: 'seed', token: init.token, insecure: init.insecure, retry: {retries: 4, baseMs: 200}})
}

/** The upstream of `vmi serve --seed URL`: its fetch-through gets joined into pipelined batches. */
export function upstreamSource(url: string): BatchedSource {
  return new BatchedSource(new HttpStore(url, {kind: 'seed'}))
}

/** The peers a file lists; a missing file is not found, a line that is not an http(s) URL is named by file and line. */
async function readPeersFile(file: string): Promise<string[]> {
  let text: string
  try {
    text = await fsp.readFile(file, 'utf8')
  } catch (err) {
    if (isErrno(err, 'ENOENT')) throw new FileNotFoundError(`peers file ${file} does not exist`, {cause: err})
    throw new UsageError(`cannot read peers file ${file}: ${(err as Error).message}`, {cause: err})
  }
  const entries = parsePeerLines(text)
  const bad = entries.find((e) => !isHttpUrl(e.url))
  if (bad) throw new UsageError(`${file}:${bad.line}: ${JSON.stringify(bad.url)} is not an http(s) URL`, {data: {file, line: bad.line}})
  return entries.map((e) => e.url.replace(/\/+$/, ''))
}

export async function buildChain(store: LocalStore, cfg: ChainConfig): Promise<BuiltChain> {
  const fixed = cfg.peers ?? []
  const make = (urls: string[]) => [...new Set(urls)].map((u) => peerStore(u, cfg))
  const fromFile = cfg.peersFile ? await readPeersFile(cfg.peersFile) : []
  const chain = new FetchChain(store, {
    peers: make([...fixed, ...fromFile]),
    seed: cfg.seedUrl ? seedStore(cfg.seedUrl, {insecure: cfg.insecure}) : undefined,
    ownerHashing: cfg.ownerHashing,
    onEvent: cfg.onEvent,
  })
  let timer: NodeJS.Timeout | undefined
  if (cfg.peersFile) {
    const file = cfg.peersFile
    let lastMtime = (await fsp.stat(file)).mtimeMs
    timer = setInterval(async () => {
      try {
        const m = (await fsp.stat(file)).mtimeMs
        if (m === lastMtime) return
        lastMtime = m
        chain.setPeers(make([...fixed, ...(await readPeersFile(file))]))
      } catch {
        /* keep the last good list */
      }
    }, 1000)
    timer.unref()
  }
  return {chain, close: () => timer && clearInterval(timer)}
}
