import {lookup} from 'node:dns/promises'
import {networkInterfaces} from 'node:os'

/**
 * Whether a host or address reaches only this machine: localhost,
 * 127.0.0.0/8, ::1 (and 127/8 written as an IPv4-mapped IPv6 address).
 * Anything else, including a name that resolves to a loopback address,
 * counts as reachable from the network.
 */
export function isLoopbackHost(host: string): boolean {
  const h = host.toLowerCase().replace(/^\[|\]$/g, '')
  if (h === 'localhost' || h === '::1' || h === '0:0:0:0:0:0:0:1') return true
  return /^(?:::ffff:)?127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h)
}

/**
 * Whether an http(s) URL leads to this machine: its host is a loopback
 * address, or resolves to one, or to an address of one of this machine's
 * interfaces (the address a connection to it would use: the first the
 * resolver gives). A name that does not resolve, or any other URL, does not.
 * For choosing what is worth doing on the way (compressing), never for
 * deciding who may read: a name's resolution is not proof of anything.
 */
export async function isThisMachineUrl(url: string): Promise<boolean> {
  let host: string
  try {
    const u = new URL(url)
    if (u.protocol !== 'http:' && u.protocol !== 'https:') return false
    host = u.hostname.replace(/^\[|\]$/g, '')
  } catch {
    return false
  }
  if (isLoopbackHost(host)) return true
  const address = await lookup(host).then(
    (a) => a.address.toLowerCase(),
    () => undefined,
  )
  if (address === undefined) return false
  if (isLoopbackHost(address)) return true
  const mine = Object.values(networkInterfaces()).flatMap((list) => (list ?? []).map((i) => i.address.toLowerCase()))
  return mine.includes(address.replace(/^::ffff:(?=\d+\.)/, '')) || mine.includes(address)
}
