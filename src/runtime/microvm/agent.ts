/**
 * The host side of the guest agent's framed protocol (guest/agent/agent.c): a 12-byte
 * header (u32 payload length, u8 type, 3 zero bytes, u32 request id; big-endian) and
 * the payload. One connection carries one request at a time.
 */
import { connect, type Socket } from 'node:net'
import type { AbortOptions } from '../../interfaces/index.ts'
import { VmmError } from '../../errors.ts'
import { combineSignals } from '../../util/index.ts'

export const FRAME_PING = 0x50 // 'P'
export const FRAME_PONG = 0x70 // 'p'
export const FRAME_RUN = 0x52 // 'R'
export const FRAME_RESULT = 0x72 // 'r'
export const FRAME_ERROR = 0x78 // 'x'
export const HEADER_BYTES = 12
export const MAX_FRAME_BYTES = 64 * 2 ** 20

export interface Frame {
  readonly type: number
  readonly id: number
  readonly payload: Buffer
}

export function encodeFrame (type: number, id: number, payload: Uint8Array = new Uint8Array()): Buffer {
  const header = Buffer.alloc(HEADER_BYTES)
  header.writeUInt32BE(payload.byteLength, 0)
  header.writeUInt8(type, 4)
  header.writeUInt32BE(id >>> 0, 8)
  return Buffer.concat([header, payload])
}

/** Splits a byte stream into frames */
export class FrameReader {
  #buffer: Buffer = Buffer.alloc(0)

  push (chunk: Buffer): Frame[] {
    this.#buffer = this.#buffer.byteLength === 0 ? chunk : Buffer.concat([this.#buffer, chunk])
    const frames: Frame[] = []
    while (this.#buffer.byteLength >= HEADER_BYTES) {
      const length = this.#buffer.readUInt32BE(0)
      if (length > MAX_FRAME_BYTES) {
        throw new VmmError(`The guest agent sent a frame of ${length} bytes (at most ${MAX_FRAME_BYTES}): the stream is corrupt`)
      }
      if (this.#buffer.byteLength < HEADER_BYTES + length) {
        break
      }
      frames.push({
        type: this.#buffer.readUInt8(4),
        id: this.#buffer.readUInt32BE(8),
        payload: this.#buffer.subarray(HEADER_BYTES, HEADER_BYTES + length)
      })
      this.#buffer = this.#buffer.subarray(HEADER_BYTES + length)
    }
    return frames
  }
}

/** A request for the workload: environment entries and stdin */
export interface RunInput {
  readonly env: Readonly<Record<string, string>>
  readonly stdin: Uint8Array
}

/** What the workload did */
export interface RunResult {
  /** exit code, or 128 + signal */
  readonly status: number
  readonly stdout: Buffer
  readonly stderr: Buffer
  /** the raw emit records it wrote on fd 3 */
  readonly emits: Buffer
}

export function encodeRun (input: RunInput): Buffer {
  const env = Buffer.from(Object.entries(input.env).map(([k, v]) => {
    if (k.includes('=') || k.includes('\0') || v.includes('\0')) {
      throw new TypeError(`Cannot pass environment entry "${k}" to a guest: names hold no "=" and nothing holds NUL`)
    }
    return `${k}=${v}\0`
  }).join(''))
  const head = Buffer.alloc(4)
  head.writeUInt32BE(env.byteLength, 0)
  return Buffer.concat([head, env, input.stdin])
}

export function decodeResult (payload: Buffer): RunResult {
  if (payload.byteLength < 16) {
    throw new VmmError('The guest agent sent a result frame shorter than its 16-byte head')
  }
  const status = payload.readUInt32BE(0)
  const outLen = payload.readUInt32BE(4)
  const errLen = payload.readUInt32BE(8)
  const emitLen = payload.readUInt32BE(12)
  if (16 + outLen + errLen + emitLen !== payload.byteLength) {
    throw new VmmError('The guest agent sent a result frame whose lengths do not add up')
  }
  return {
    status,
    stdout: payload.subarray(16, 16 + outLen),
    stderr: payload.subarray(16 + outLen, 16 + outLen + errLen),
    emits: payload.subarray(16 + outLen + errLen)
  }
}

export { parseEmits, type GuestEmit } from '../emit-records.ts'

/**
 * A connection to one guest's agent. `connect` takes a function that opens the byte
 * stream (a Unix socket for QEMU's virtio-serial chardev; Firecracker's vsock socket
 * after its `CONNECT` handshake).
 */
export class AgentConnection {
  readonly #socket: Socket
  readonly #reader = new FrameReader()
  readonly #waiting = new Map<number, { resolve: (f: Frame) => void, reject: (e: Error) => void }>()
  #nextId = 1
  #closed: Error | undefined

  private constructor (socket: Socket) {
    this.#socket = socket
    socket.on('data', (chunk: Buffer) => {
      let frames: Frame[]
      try {
        frames = this.#reader.push(chunk)
      } catch (err) {
        this.#fail(err as Error)
        return
      }
      for (const frame of frames) {
        const waiter = this.#waiting.get(frame.id)
        if (waiter !== undefined) {
          this.#waiting.delete(frame.id)
          waiter.resolve(frame)
        }
      }
    })
    socket.on('error', (err) => { this.#fail(new VmmError(`The connection to the guest agent failed: ${err.message}`, { cause: err })) })
    socket.on('close', () => { this.#fail(new VmmError('The connection to the guest agent closed (the VMM exited?)')) })
  }

  /** Opens a Unix socket to the agent at `path` */
  static async open (path: string, options: AbortOptions = {}): Promise<AgentConnection> {
    const socket = await openUnix(path, options)
    return new AgentConnection(socket)
  }

  /** Wraps a socket that already speaks the agent protocol */
  static wrap (socket: Socket): AgentConnection {
    return new AgentConnection(socket)
  }

  #fail (err: Error): void {
    if (this.#closed !== undefined) {
      return
    }
    this.#closed = err
    for (const waiter of this.#waiting.values()) {
      waiter.reject(err)
    }
    this.#waiting.clear()
    this.#socket.destroy()
  }

  get closed (): boolean {
    return this.#closed !== undefined
  }

  /** Sends a frame and resolves with the reply that carries its id */
  async call (type: number, payload: Uint8Array, options: AbortOptions = {}): Promise<Frame> {
    if (this.#closed !== undefined) {
      throw this.#closed
    }
    options.signal?.throwIfAborted()
    const id = this.#nextId++
    return new Promise<Frame>((resolve, reject) => {
      const onAbort = (): void => {
        this.#waiting.delete(id)
        reject(options.signal?.reason)
      }
      options.signal?.addEventListener('abort', onAbort, { once: true })
      this.#waiting.set(id, {
        resolve: (f) => { options.signal?.removeEventListener('abort', onAbort); resolve(f) },
        reject: (e) => { options.signal?.removeEventListener('abort', onAbort); reject(e) }
      })
      this.#socket.write(encodeFrame(type, id, payload))
    })
  }

  /** Pings until the agent answers: it cannot answer before it runs, or while the guest is paused */
  async ready (options: AbortOptions & { intervalMs?: number } = {}): Promise<void> {
    const interval = options.intervalMs ?? 100
    for (;;) {
      options.signal?.throwIfAborted()
      const attempt = combineSignals([AbortSignal.timeout(interval), options.signal])
      try {
        await this.call(FRAME_PING, new Uint8Array(), { signal: attempt.signal })
        return
      } catch (err) {
        if (this.#closed !== undefined || options.signal?.aborted === true) {
          throw err
        }
      } finally {
        attempt.clear()
      }
    }
  }

  async run (input: RunInput, options: AbortOptions = {}): Promise<RunResult> {
    const frame = await this.call(FRAME_RUN, encodeRun(input), options)
    if (frame.type === FRAME_ERROR) {
      throw new VmmError(`The guest agent could not run the workload: ${frame.payload.toString('utf8')}`)
    }
    if (frame.type !== FRAME_RESULT) {
      throw new VmmError(`The guest agent answered a run with frame type ${frame.type}`)
    }
    return decodeResult(frame.payload)
  }

  close (): void {
    this.#fail(new VmmError('The connection to the guest agent was closed'))
  }
}

/** Connects to a Unix socket, bounded by `options.signal` */
export async function openUnix (path: string, options: AbortOptions = {}): Promise<Socket> {
  options.signal?.throwIfAborted()
  return new Promise<Socket>((resolve, reject) => {
    const socket = connect(path)
    const onAbort = (): void => { socket.destroy(); reject(options.signal?.reason) }
    options.signal?.addEventListener('abort', onAbort, { once: true })
    socket.once('connect', () => {
      options.signal?.removeEventListener('abort', onAbort)
      socket.removeAllListeners('error')
      resolve(socket)
    })
    socket.once('error', (err) => {
      options.signal?.removeEventListener('abort', onAbort)
      reject(err)
    })
  })
}
