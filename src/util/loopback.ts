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

/** An http(s) URL whose host is a loopback address; any other URL (an s3:// bucket, one that does not parse) is not. */
export function isLoopbackUrl(url: string): boolean {
  try {
    const u = new URL(url)
    return (u.protocol === 'http:' || u.protocol === 'https:') && isLoopbackHost(u.hostname)
  } catch {
    return false
  }
}
