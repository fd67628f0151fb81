/**
 * The end of a server response, whichever way it ends.
 *
 * A response ends with its 'close' event, except one queued behind another
 * response on a connection with pipelined requests: when that connection
 * goes away, Node (20 at least; nodejs/node#62534) emits no 'close',
 * 'finish' or 'error' on it, and destroying it emits nothing either.
 * Whatever waits on such a response (a file piped into it, bytes counted
 * as held, a request counted as in flight) would wait for ever. The
 * connection's own 'close' is the signal then: one listener per
 * connection, however many requests it has pipelined.
 */
import type {IncomingMessage, ServerResponse} from 'node:http'
import type {Socket} from 'node:net'

const waiting = new WeakMap<Socket, Set<() => void>>()

/** Call `fn` once, when `res` closes or its connection does, whichever comes first. */
export function onResponseDone(req: IncomingMessage, res: ServerResponse, fn: () => void): void {
  const sock = req.socket
  let done = false
  const once = (): void => {
    if (done) return
    done = true
    res.off('close', once)
    waiting.get(sock)?.delete(once)
    fn()
  }
  res.once('close', once)
  if (sock.destroyed) return void process.nextTick(once)
  let set = waiting.get(sock)
  if (!set) {
    const fresh = new Set<() => void>()
    waiting.set(sock, fresh)
    sock.once('close', () => {
      waiting.delete(sock)
      for (const f of fresh) f()
    })
    set = fresh
  }
  set.add(once)
}
