/**
 * The options of the fixed-newstyle handshake, one handler each:
 * NBD_OPT_EXPORT_NAME, ABORT, LIST, INFO, GO (INFO_EXPORT, NAME, DESCRIPTION,
 * BLOCK_SIZE), STRUCTURED_REPLY, LIST/SET_META_CONTEXT with base:allocation;
 * anything else gets NBD_REP_ERR_UNSUP.
 */
import type {BlockBackend} from './block-backend.js'
import {ProtocolError} from './errors.js'
import {MAX_PAYLOAD, META_CONTEXT_ID, MIN_BLOCK_SIZE, PREFERRED_BLOCK_SIZE} from './limits.js'
import * as P from './protocol.js'
import type {ExportInfo, Session} from './session.js'
import * as H from './wire-handshake.js'

/** What the option handlers work with. */
export interface OptionContext {
  readonly exp: ExportInfo
  readonly backend: Pick<BlockBackend, 'size' | 'readOnly' | 'multiConnSafe'>
  readonly session: Session
  send(bufs: Buffer[]): Promise<void>
}

/** After an option: negotiate on, enter transmission, or end (the client aborted). */
export type OptionOutcome = 'continue' | 'go' | 'abort'

export async function handleOption(ctx: OptionContext, opt: number, data: Buffer): Promise<OptionOutcome> {
  switch (opt) {
    case P.OPT_EXPORT_NAME:
      return exportName(ctx, data)
    case P.OPT_ABORT:
      await ctx.send([H.encodeOptionReply(opt, P.REP_ACK)])
      return 'abort'
    case P.OPT_LIST:
      return list(ctx, data)
    case P.OPT_INFO:
    case P.OPT_GO:
      return infoOrGo(ctx, opt, data)
    case P.OPT_STRUCTURED_REPLY:
      return structuredReply(ctx, data)
    case P.OPT_LIST_META_CONTEXT:
    case P.OPT_SET_META_CONTEXT:
      return metaContext(ctx, opt, data)
    case P.OPT_STARTTLS:
      return optError(ctx, opt, P.REP_ERR_UNSUP, 'TLS is not supported')
    default:
      return optError(ctx, opt, P.REP_ERR_UNSUP, `option ${opt} is not supported`)
  }
}

/** An error reply to option `opt`; negotiation goes on. */
export async function optError(ctx: Pick<OptionContext, 'send'>, opt: number, type: number, message: string): Promise<'continue'> {
  await ctx.send([H.encodeOptionReply(opt, type, Buffer.from(message.slice(0, 256), 'utf8'))])
  return 'continue'
}

/** The transmission flags of this export, as negotiated so far. */
export function transmissionFlags(ctx: OptionContext): number {
  const b = ctx.backend
  let f = P.FLAG_HAS_FLAGS | P.FLAG_SEND_FLUSH | P.FLAG_SEND_CACHE
  if (b.readOnly) f |= P.FLAG_READ_ONLY
  else f |= P.FLAG_SEND_FUA | P.FLAG_SEND_TRIM | P.FLAG_SEND_WRITE_ZEROES
  if (ctx.session.structured) f |= P.FLAG_SEND_DF
  if (b.multiConnSafe) f |= P.FLAG_CAN_MULTI_CONN
  return f
}

/** The one export answers to its own name and to the empty name. */
function isOurExport(ctx: OptionContext, name: string): boolean {
  return name === ctx.exp.name || name === ''
}

async function exportName(ctx: OptionContext, data: Buffer): Promise<OptionOutcome> {
  const name = H.decodeString(data)
  if (name === undefined || !isOurExport(ctx, name)) {
    // no way to report an error here: the spec says terminate
    const shown = name === undefined ? `(invalid string, ${data.length} bytes)` : JSON.stringify(name.slice(0, 64))
    throw new ProtocolError(`NBD_OPT_EXPORT_NAME for unknown export ${shown}`)
  }
  await ctx.send([H.encodeExportNameReply(ctx.backend.size, transmissionFlags(ctx), ctx.session.noZeroes)])
  return 'go'
}

async function list(ctx: OptionContext, data: Buffer): Promise<OptionOutcome> {
  const opt = P.OPT_LIST
  if (data.length) return optError(ctx, opt, P.REP_ERR_INVALID, 'NBD_OPT_LIST takes no data')
  const server = H.encodeRepServer(ctx.exp.name, ctx.exp.description)
  await ctx.send([H.encodeOptionReply(opt, P.REP_SERVER, server), H.encodeOptionReply(opt, P.REP_ACK)])
  return 'continue'
}

async function infoOrGo(ctx: OptionContext, opt: number, data: Buffer): Promise<OptionOutcome> {
  const req = H.decodeInfoRequest(data)
  if (!req) return optError(ctx, opt, P.REP_ERR_INVALID, 'malformed NBD_OPT_INFO/GO request')
  if (!isOurExport(ctx, req.name)) return optError(ctx, opt, P.REP_ERR_UNKNOWN, `no export named ${JSON.stringify(req.name)}`)
  const exp = ctx.exp
  const info = (payload: Buffer) => H.encodeOptionReply(opt, P.REP_INFO, payload)
  const replies = [info(H.encodeInfoExport(ctx.backend.size, transmissionFlags(ctx)))]
  if (req.infos.includes(P.INFO_NAME)) replies.push(info(H.encodeInfoString(P.INFO_NAME, exp.name)))
  if (req.infos.includes(P.INFO_DESCRIPTION) && exp.description) replies.push(info(H.encodeInfoString(P.INFO_DESCRIPTION, exp.description)))
  replies.push(info(H.encodeInfoBlockSize(MIN_BLOCK_SIZE, PREFERRED_BLOCK_SIZE, MAX_PAYLOAD)))
  replies.push(H.encodeOptionReply(opt, P.REP_ACK))
  await ctx.send(replies)
  return opt === P.OPT_GO ? 'go' : 'continue'
}

async function structuredReply(ctx: OptionContext, data: Buffer): Promise<OptionOutcome> {
  const opt = P.OPT_STRUCTURED_REPLY
  if (data.length) return optError(ctx, opt, P.REP_ERR_INVALID, 'NBD_OPT_STRUCTURED_REPLY takes no data')
  ctx.session.structured = true
  await ctx.send([H.encodeOptionReply(opt, P.REP_ACK)])
  return 'continue'
}

async function metaContext(ctx: OptionContext, opt: number, data: Buffer): Promise<OptionOutcome> {
  const set = opt === P.OPT_SET_META_CONTEXT
  if (set) ctx.session.metaContext = false // replaced even when the request fails
  if (!ctx.session.structured) return optError(ctx, opt, P.REP_ERR_INVALID, 'negotiate structured replies first')
  const req = H.decodeMetaContextRequest(data)
  if (!req) return optError(ctx, opt, P.REP_ERR_INVALID, 'malformed meta context request')
  if (!isOurExport(ctx, req.name)) return optError(ctx, opt, P.REP_ERR_UNKNOWN, `no export named ${JSON.stringify(req.name)}`)
  let match: boolean
  if (set) match = req.queries.includes(P.META_BASE_ALLOCATION)
  else match = req.queries.length === 0 || req.queries.some((q) => q === 'base:' || q === P.META_BASE_ALLOCATION)
  const replies: Buffer[] = []
  if (match) replies.push(H.encodeOptionReply(opt, P.REP_META_CONTEXT, H.encodeMetaContext(set ? META_CONTEXT_ID : 0, P.META_BASE_ALLOCATION)))
  replies.push(H.encodeOptionReply(opt, P.REP_ACK))
  if (set) ctx.session.metaContext = match
  await ctx.send(replies)
  return 'continue'
}
