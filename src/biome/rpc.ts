/**
 * Request/response between nodes over the mesh's framed channels: one channel per peer
 * and direction, many calls in flight on it, answers matched by id. Each frame is a
 * 4-byte big-endian header length, the header (JSON), then the body bytes.
 */
import { DeadlineExceededError, FrameTooLargeError, OmegaError, PeerUnavailableError, RemoteError } from '../errors.ts'
import type { AbortOptions, Logger } from '../interfaces/index.ts'

export { FrameTooLargeError, RemoteError }

export const RPC_PROTOCOL = '/omega/rpc/1'

/** The part of a mesh channel RPC uses */
export interface RpcChannel {
  readonly peerDid: string
  send: (frame: Uint8Array, options?: AbortOptions) => Promise<void>
  frames: () => AsyncIterable<Uint8Array>
  close: (options?: AbortOptions) => Promise<void>
  abort: (err: Error) => void
}

/** The part of the mesh RPC uses */
export interface RpcTransport {
  handle: (protocol: string, handler: (channel: RpcChannel) => void) => void
  open: (peerDid: string, protocol: string, options?: AbortOptions) => Promise<RpcChannel>
}

/** The part of the mesh gossip protocols use: epidemic broadcast of small messages */
export interface Broadcaster {
  broadcast: (topic: string, data: Uint8Array) => void
  onBroadcast: (topic: string, handler: (data: Uint8Array, fromDid: string) => void) => () => void
}

export interface RpcReply {
  readonly result?: unknown
  readonly body?: Uint8Array
}

export interface RpcRequest {
  readonly params: unknown
  readonly body: Uint8Array
  /** did of the calling node */
  readonly from: string
}

export type RpcHandler = (request: RpcRequest, options: AbortOptions) => Promise<RpcReply>

export interface RpcInit {
  logger: Logger
  /** a call with no answer after this long fails. @default 30_000 */
  timeoutMs?: number
  /** largest frame sent or answered; a larger call fails without harming the channel. @default 4 MiB */
  maxFrameBytes?: number
  /** calls from one peer answered at once; more wait (back-pressure on that peer). @default 64 */
  maxConcurrent?: number
}

export interface CallOptions extends AbortOptions {
  /** this call's timeout instead of the default */
  timeoutMs?: number
}

interface Header {
  /** call id, per channel */
  readonly id: number
  /** q: request, s: success, e: error */
  readonly t: 'q' | 's' | 'e'
  readonly m?: string
  readonly p?: unknown
  readonly r?: unknown
  readonly e?: { readonly name: string, readonly message: string }
}

interface Pending {
  readonly resolve: (reply: { result: unknown, body: Uint8Array }) => void
  readonly reject: (err: Error) => void
}

interface Outgoing {
  readonly channel: RpcChannel
  readonly pending: Map<number, Pending>
  next: number
}

const encoder = new TextEncoder()
const decoder = new TextDecoder()

export function encodeFrame (header: Header, body: Uint8Array = new Uint8Array(0)): Uint8Array {
  const head = encoder.encode(JSON.stringify(header))
  const frame = new Uint8Array(4 + head.byteLength + body.byteLength)
  new DataView(frame.buffer).setUint32(0, head.byteLength)
  frame.set(head, 4)
  frame.set(body, 4 + head.byteLength)
  return frame
}

/** A request frame from its header encoded without an id (`{"t":"q",…}`): the id goes first */
function requestFrame (id: number, head: Uint8Array, body: Uint8Array = new Uint8Array(0)): Uint8Array {
  const prefix = encoder.encode(`{"id":${id},`)
  const headLength = prefix.byteLength + head.byteLength - 1
  const frame = new Uint8Array(4 + headLength + body.byteLength)
  new DataView(frame.buffer).setUint32(0, headLength)
  frame.set(prefix, 4)
  frame.set(head.subarray(1), 4 + prefix.byteLength)
  frame.set(body, 4 + headLength)
  return frame
}

function decodeFrame (frame: Uint8Array): { header: Header, body: Uint8Array } {
  if (frame.byteLength < 4) {
    throw new RangeError('RPC frame shorter than its header length')
  }
  const length = new DataView(frame.buffer, frame.byteOffset, frame.byteLength).getUint32(0)
  if (4 + length > frame.byteLength) {
    throw new RangeError('RPC frame shorter than its header')
  }
  const header = JSON.parse(decoder.decode(frame.subarray(4, 4 + length))) as Header
  if (typeof header !== 'object' || header === null || !Number.isSafeInteger(header.id) || !['q', 's', 'e'].includes(header.t)) {
    throw new RangeError('RPC frame with a malformed header')
  }
  return { header, body: frame.subarray(4 + length) }
}

export class Rpc {
  readonly #transport: RpcTransport
  readonly #log: Logger
  readonly #timeoutMs: number
  readonly #maxFrame: number
  readonly #maxConcurrent: number
  readonly #handlers = new Map<string, RpcHandler>()
  readonly #outgoing = new Map<string, Promise<Outgoing>>()
  readonly #incoming = new Set<RpcChannel>()
  #closed = false

  constructor (transport: RpcTransport, init: RpcInit) {
    this.#transport = transport
    this.#log = init.logger
    this.#timeoutMs = init.timeoutMs ?? 30_000
    this.#maxFrame = init.maxFrameBytes ?? 4 * 1024 * 1024
    this.#maxConcurrent = init.maxConcurrent ?? 64
    transport.handle(RPC_PROTOCOL, (channel) => { this.#serve(channel) })
  }

  /** Answer calls of `method` from other nodes */
  register (method: string, handler: RpcHandler): void {
    this.#handlers.set(method, handler)
  }

  /**
   * Call `method` on `peer`.
   *
   * @throws PeerUnavailableError when the peer cannot be reached or the channel dies
   * @throws DeadlineExceededError when no answer comes within the timeout
   * @throws FrameTooLargeError when the call is larger than a frame may be
   * @throws RemoteError carrying the remote error's name when its handler failed
   */
  async call (peer: string, method: string, params: unknown, body?: Uint8Array, options: CallOptions = {}): Promise<{ result: unknown, body: Uint8Array }> {
    if (this.#closed) {
      throw new PeerUnavailableError('This node is stopping')
    }
    // the header is encoded once, without its id (known once the channel is open)
    const head = encoder.encode(JSON.stringify({ t: 'q', m: method, p: params }))
    const tooLarge = (size: number): FrameTooLargeError =>
      new FrameTooLargeError(`Cannot send ${method} to ${short(peer)}: ${size} bytes is over the mesh's frame limit of ${this.#maxFrame}`)
    if (4 + head.byteLength + (body?.byteLength ?? 0) > this.#maxFrame) {
      throw tooLarge(4 + head.byteLength + (body?.byteLength ?? 0))
    }
    const out = await this.#channelTo(peer, options)
    const id = ++out.next
    const frame = requestFrame(id, head, body)
    if (frame.byteLength > this.#maxFrame) {
      throw tooLarge(frame.byteLength)
    }
    const timeoutMs = options.timeoutMs ?? this.#timeoutMs
    const timeout = AbortSignal.timeout(timeoutMs)
    return new Promise((resolve, reject) => {
      const done = (): void => {
        out.pending.delete(id)
        timeout.removeEventListener('abort', onAbort)
        options.signal?.removeEventListener('abort', onAbort)
      }
      const onAbort = (): void => {
        done()
        reject(options.signal?.aborted === true ? options.signal.reason : new DeadlineExceededError(`${method} on ${short(peer)}: no answer within ${timeoutMs} ms`))
      }
      out.pending.set(id, {
        resolve: (reply) => { done(); resolve(reply) },
        reject: (err) => { done(); reject(err) }
      })
      timeout.addEventListener('abort', onAbort, { once: true })
      options.signal?.addEventListener('abort', onAbort, { once: true })
      out.channel.send(frame, options).catch((err: unknown) => {
        this.#drop(peer, out, err)
      })
    })
  }

  async #channelTo (peer: string, options: AbortOptions): Promise<Outgoing> {
    let opening = this.#outgoing.get(peer)
    if (opening === undefined) {
      opening = this.#transport.open(peer, RPC_PROTOCOL, options).then((channel) => {
        const out: Outgoing = { channel, pending: new Map(), next: 0 }
        this.#readReplies(peer, out).catch(() => {})
        return out
      })
      this.#outgoing.set(peer, opening)
      opening.catch(() => {
        if (this.#outgoing.get(peer) === opening) {
          this.#outgoing.delete(peer)
        }
      })
    }
    try {
      return await opening
    } catch (err) {
      throw new PeerUnavailableError(`Cannot reach node ${short(peer)}: ${(err as Error).message}`, { cause: err })
    }
  }

  async #readReplies (peer: string, out: Outgoing): Promise<void> {
    let failure: unknown
    try {
      for await (const frame of out.channel.frames()) {
        const { header, body } = decodeFrame(frame)
        const pending = out.pending.get(header.id)
        if (pending === undefined) {
          continue // answered after its caller gave up
        }
        if (header.t === 'e') {
          pending.reject(new RemoteError(header.e?.name ?? 'Error', header.e?.message ?? 'the remote handler failed'))
        } else {
          pending.resolve({ result: header.r, body: body.slice() })
        }
      }
    } catch (err) {
      failure = err
    }
    this.#drop(peer, out, failure ?? new Error('the channel closed'))
  }

  /** Forget a dead channel and fail what waits on it */
  #drop (peer: string, out: Outgoing, err: unknown): void {
    this.#outgoing.get(peer)?.then((current) => {
      if (current === out) {
        this.#outgoing.delete(peer)
      }
    }, () => {})
    out.channel.abort(err instanceof Error ? err : new Error(String(err)))
    for (const pending of out.pending.values()) {
      pending.reject(new PeerUnavailableError(`Lost node ${short(peer)}: ${err instanceof Error ? err.message : String(err)}`, { cause: err }))
    }
    out.pending.clear()
  }

  #serve (channel: RpcChannel): void {
    this.#incoming.add(channel)
    this.#serveChannel(channel).catch(() => {})
  }

  async #serveChannel (channel: RpcChannel): Promise<void> {
    const gone = new AbortController()
    let running = 0
    let slotFreed: (() => void) | undefined
    try {
      for await (const frame of channel.frames()) {
        // at most maxConcurrent answers at once: stop reading (the peer's sends stall) until one ends
        while (running >= this.#maxConcurrent) {
          await new Promise<void>((resolve) => { slotFreed = resolve })
        }
        let request: { header: Header, body: Uint8Array }
        try {
          request = decodeFrame(frame)
        } catch (err) {
          this.#log.warn({ peer: channel.peerDid, err: (err as Error).message }, 'dropping a malformed RPC channel')
          break
        }
        running++
        this.#answer(channel, request.header, request.body.slice(), gone.signal).catch(() => {}).finally(() => {
          running--
          slotFreed?.()
          slotFreed = undefined
        })
      }
    } catch (err) {
      this.#log.debug({ peer: channel.peerDid, err: (err as Error).message }, 'RPC channel ended')
    } finally {
      gone.abort(new PeerUnavailableError('the caller went away'))
      this.#incoming.delete(channel)
      channel.abort(new Error('RPC channel done'))
    }
  }

  async #answer (channel: RpcChannel, header: Header, body: Uint8Array, signal: AbortSignal): Promise<void> {
    const handler = header.m === undefined ? undefined : this.#handlers.get(header.m)
    let frame: Uint8Array
    try {
      if (header.t !== 'q' || handler === undefined) {
        throw new OmegaError(`No RPC method "${String(header.m)}" on this node`)
      }
      const reply = await handler({ params: header.p, body, from: channel.peerDid }, { signal })
      frame = encodeFrame({ id: header.id, t: 's', r: reply.result }, reply.body)
      if (frame.byteLength > this.#maxFrame) {
        throw new FrameTooLargeError(`The answer to ${String(header.m)} is ${frame.byteLength} bytes, over the mesh's frame limit of ${this.#maxFrame}`)
      }
    } catch (err) {
      const e = err instanceof Error ? err : new Error(String(err))
      frame = encodeFrame({ id: header.id, t: 'e', e: { name: e.name, message: e.message } })
    }
    await channel.send(frame).catch(() => {})
  }

  close (): void {
    this.#closed = true
    for (const opening of this.#outgoing.values()) {
      opening.then((out) => { this.#drop(out.channel.peerDid, out, new Error('this node is stopping')) }, () => {})
    }
    this.#outgoing.clear()
    for (const channel of this.#incoming) {
      channel.abort(new Error('this node is stopping'))
    }
  }
}

function short (did: string): string {
  return did.length > 24 ? `${did.slice(0, 14)}…${did.slice(-6)}` : did
}
