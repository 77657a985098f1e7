/**
 * Length-prefixed frames over a libp2p stream, with coalesced writes and honest
 * back-pressure in both directions.
 *
 * Wire format: each frame is a 4-byte big-endian length followed by that many bytes.
 *
 * Sending: `send()` queues a frame into a bounded buffer (`maxBufferedBytes`) and
 * resolves at once while there is room; when the buffer is full it waits until the
 * writer has moved bytes out. The writer concatenates queued frames into one chunk per
 * event-loop turn (or as soon as `flushBytes` are queued) and hands it to the stream
 * only while the stream does not need a drain and its own write buffer is below
 * `streamWriteLimit` (waiting for a fresh 'drain' event, never `onDrain()`, which
 * resolves at once after the first drain in @libp2p/utils 7.4).
 *
 * Receiving: frames are parsed from 'message' events into a queue; above
 * `readHighWaterBytes` the stream is paused (yamux then stops granting window to the
 * sender, whose writes stall) and resumed once the reader has consumed half of it.
 */
import type { Stream } from '@libp2p/interface'
import { MeshChannelError } from '../errors.ts'
import type { AbortOptions } from '../interfaces/index.ts'

/** One framed, ordered, back-pressured byte channel to a peer */
export interface FrameChannel {
  /** did:key of the remote node */
  readonly peerDid: string
  /** the protocol it was opened for, e.g. `/omega/events/1` */
  readonly protocol: string
  /**
   * Queue one frame; resolves once it is accepted into a bounded buffer (back-pressure:
   * waits while full). Frames are coalesced into few writes (per tick or at a size limit).
   *
   * @throws {MeshChannelError} if the channel is closed or the frame exceeds `maxFrameBytes`
   */
  send: (frame: Uint8Array, options?: AbortOptions) => Promise<void>
  /** incoming frames, in order (length-prefixed on the wire); call once */
  frames: () => AsyncIterable<Uint8Array>
  /** flush what is queued, then close the writing end (the remote's `frames()` ends) */
  close: (options?: AbortOptions) => Promise<void>
  /** drop everything queued and reset the stream */
  abort: (err: Error) => void
  /** bytes queued and not yet handed to the stream */
  readonly bufferedBytes: number
}

export interface FrameChannelSettings {
  /** largest frame accepted either way @default 4 MiB */
  maxFrameBytes: number
  /** bound of the send queue; `send()` waits while it is full @default 1 MiB */
  maxBufferedBytes: number
  /** write as soon as this much is queued, else once per event-loop turn @default 64 KiB */
  flushBytes: number
  /** do not hand the stream more while its own write buffer holds this much @default 256 KiB */
  streamWriteLimit: number
  /** pause reading while this many parsed bytes wait for the reader @default 1 MiB */
  readHighWaterBytes: number
}

export const DEFAULT_FRAME_SETTINGS: Readonly<FrameChannelSettings> = Object.freeze({
  maxFrameBytes: 4 * 1024 * 1024,
  maxBufferedBytes: 1024 * 1024,
  flushBytes: 64 * 1024,
  streamWriteLimit: 256 * 1024,
  readHighWaterBytes: 1024 * 1024
})

const HEADER = 4

type Chunk = Uint8Array | { subarray: () => Uint8Array, byteLength: number }

/** A FrameChannel over one libp2p stream */
export class StreamFrameChannel implements FrameChannel {
  readonly peerDid: string
  readonly protocol: string
  readonly #stream: Stream
  readonly #settings: FrameChannelSettings
  // send side
  #pending: Uint8Array[] = []
  #pendingBytes = 0
  #flushScheduled = false
  #pumping = false
  #spaceWaiters: Array<() => void> = []
  #error: Error | undefined
  #writeClosed = false
  // receive side
  #partial: Uint8Array | undefined
  #incoming: Uint8Array[] = []
  #incomingHead = 0
  #incomingBytes = 0
  #ended = false
  #readWaiter: (() => void) | undefined
  #paused = false
  #iterated = false

  constructor (stream: Stream, peerDid: string, settings: Partial<FrameChannelSettings> = {}) {
    this.#stream = stream
    this.peerDid = peerDid
    this.protocol = stream.protocol ?? ''
    this.#settings = { ...DEFAULT_FRAME_SETTINGS, ...settings }
    stream.addEventListener('message', (evt) => { this.#onData(evt.data) })
    stream.addEventListener('remoteCloseWrite', () => { this.#end() })
    stream.addEventListener('close', (evt) => {
      if (evt.error !== undefined && this.#error === undefined) {
        this.#error = new MeshChannelError(`Frame channel ${this.protocol} to ${peerDid} closed: ${evt.error.message}`, { cause: evt.error })
      }
      this.#writeClosed = true
      this.#end()
      this.#wakeSpace()
    })
  }

  get bufferedBytes (): number {
    return this.#pendingBytes
  }

  async send (frame: Uint8Array, options: AbortOptions = {}): Promise<void> {
    options.signal?.throwIfAborted()
    if (frame.byteLength > this.#settings.maxFrameBytes) {
      throw new MeshChannelError(`Cannot send frame on ${this.protocol}: ${frame.byteLength} bytes exceeds the limit of ${this.#settings.maxFrameBytes}`)
    }
    while (this.#pendingBytes >= this.#settings.maxBufferedBytes) {
      this.#checkWritable()
      await this.#waitForSpace(options)
    }
    this.#checkWritable()
    const header = new Uint8Array(HEADER)
    new DataView(header.buffer).setUint32(0, frame.byteLength)
    this.#pending.push(header, frame)
    this.#pendingBytes += HEADER + frame.byteLength
    if (this.#pendingBytes >= this.#settings.flushBytes) {
      this.#pump()
    } else if (!this.#flushScheduled) {
      this.#flushScheduled = true
      setImmediate(() => {
        this.#flushScheduled = false
        this.#pump()
      })
    }
  }

  #checkWritable (): void {
    if (this.#error !== undefined) {
      throw this.#error
    }
    if (this.#writeClosed) {
      throw new MeshChannelError(`Cannot send frame on ${this.protocol} to ${this.peerDid}: the channel is closed`)
    }
  }

  async #waitForSpace (options: AbortOptions): Promise<void> {
    const signal = options.signal
    await new Promise<void>((resolve, reject) => {
      const onAbort = (): void => {
        const i = this.#spaceWaiters.indexOf(wake)
        if (i >= 0) {
          this.#spaceWaiters.splice(i, 1)
        }
        reject(signal?.reason)
      }
      const wake = (): void => {
        signal?.removeEventListener('abort', onAbort)
        resolve()
      }
      this.#spaceWaiters.push(wake)
      signal?.addEventListener('abort', onAbort, { once: true })
    })
  }

  #wakeSpace (): void {
    const waiters = this.#spaceWaiters
    this.#spaceWaiters = []
    for (const wake of waiters) {
      wake()
    }
  }

  /** move queued frames to the stream, chunk by chunk, while the stream accepts them */
  #pump (): void {
    if (this.#pumping) {
      return
    }
    this.#pumping = true
    this.#pumpLoop().catch((err: unknown) => {
      this.abort(err instanceof Error ? err : new Error(String(err)))
    })
  }

  async #pumpLoop (): Promise<void> {
    try {
      await this.#pumpFrames()
    } finally {
      // synchronously after the last check of #pending: no frame can be stranded
      this.#pumping = false
    }
  }

  async #pumpFrames (): Promise<void> {
    const stream = this.#stream
    while (this.#pending.length > 0 && this.#error === undefined) {
      while (stream.writableNeedsDrain || stream.writeBufferLength > this.#settings.streamWriteLimit) {
        await this.#freshDrain()
        if (this.#error !== undefined || stream.writeStatus !== 'writable') {
          return
        }
      }
      // take up to flushBytes (at least one frame) and write them as one chunk
      let bytes = 0
      let count = 0
      while (count < this.#pending.length && (bytes < this.#settings.flushBytes || count === 0)) {
        bytes += (this.#pending[count] as Uint8Array).byteLength + (this.#pending[count + 1] as Uint8Array).byteLength
        count += 2
      }
      const chunk = new Uint8Array(bytes)
      let offset = 0
      for (let i = 0; i < count; i++) {
        const part = this.#pending[i] as Uint8Array
        chunk.set(part, offset)
        offset += part.byteLength
      }
      this.#pending.splice(0, count)
      this.#pendingBytes -= bytes
      if (stream.writeStatus !== 'writable') {
        this.#writeClosed = true
        this.#wakeSpace()
        return
      }
      stream.send(chunk)
      this.#wakeSpace()
    }
  }

  /** the next 'drain' (or close) event; never the stale onDrain() promise */
  async #freshDrain (): Promise<void> {
    const stream = this.#stream
    await new Promise<void>((resolve) => {
      const done = (): void => {
        stream.removeEventListener('drain', done)
        stream.removeEventListener('close', done)
        resolve()
      }
      stream.addEventListener('drain', done)
      stream.addEventListener('close', done)
      // a drain may already have happened between the check and the listener
      if (!stream.writableNeedsDrain && stream.writeBufferLength <= this.#settings.streamWriteLimit) {
        queueMicrotask(done)
      } else if (!stream.writableNeedsDrain) {
        // buffered in the stream but not blocked: poll once the muxer has written
        setTimeout(done, 1)
      }
    })
  }

  #onData (data: Chunk): void {
    let bytes = data instanceof Uint8Array ? data : data.subarray()
    if (this.#partial !== undefined) {
      const joined = new Uint8Array(this.#partial.byteLength + bytes.byteLength)
      joined.set(this.#partial, 0)
      joined.set(bytes, this.#partial.byteLength)
      bytes = joined
      this.#partial = undefined
    }
    let offset = 0
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
    while (bytes.byteLength - offset >= HEADER) {
      const length = view.getUint32(offset)
      if (length > this.#settings.maxFrameBytes) {
        this.abort(new MeshChannelError(`Frame of ${length} bytes on ${this.protocol} from ${this.peerDid} exceeds the limit of ${this.#settings.maxFrameBytes}`))
        return
      }
      if (bytes.byteLength - offset - HEADER < length) {
        break
      }
      this.#incoming.push(bytes.subarray(offset + HEADER, offset + HEADER + length))
      this.#incomingBytes += length
      offset += HEADER + length
    }
    if (offset < bytes.byteLength) {
      this.#partial = bytes.slice(offset)
    }
    if (this.#incomingBytes > this.#settings.readHighWaterBytes && !this.#paused && this.#stream.readStatus === 'readable') {
      this.#paused = true
      this.#stream.pause()
    }
    this.#wakeReader()
  }

  #end (): void {
    this.#ended = true
    this.#wakeReader()
  }

  #wakeReader (): void {
    const wake = this.#readWaiter
    this.#readWaiter = undefined
    wake?.()
  }

  frames (): AsyncIterable<Uint8Array> {
    if (this.#iterated) {
      throw new MeshChannelError(`Frames of ${this.protocol} from ${this.peerDid} are already being read`)
    }
    this.#iterated = true
    return this.#read()
  }

  async * #read (): AsyncGenerator<Uint8Array> {
    while (true) {
      if (this.#incomingHead < this.#incoming.length) {
        const frame = this.#incoming[this.#incomingHead] as Uint8Array
        this.#incoming[this.#incomingHead] = EMPTY
        this.#incomingHead++
        if (this.#incomingHead > 1024 && this.#incomingHead * 2 > this.#incoming.length) {
          this.#incoming = this.#incoming.slice(this.#incomingHead)
          this.#incomingHead = 0
        }
        this.#incomingBytes -= frame.byteLength
        if (this.#paused && this.#incomingBytes <= this.#settings.readHighWaterBytes / 2) {
          this.#paused = false
          if (this.#stream.readStatus === 'paused') {
            this.#stream.resume()
          }
        }
        yield frame
        continue
      }
      if (this.#ended) {
        if (this.#error !== undefined && this.#stream.status !== 'closed') {
          throw this.#error
        }
        return
      }
      await new Promise<void>((resolve) => { this.#readWaiter = resolve })
    }
  }

  async close (options: AbortOptions = {}): Promise<void> {
    if (this.#writeClosed) {
      return
    }
    // let the writer empty the queue
    while (this.#pendingBytes > 0 && this.#error === undefined && !this.#writeClosed) {
      this.#pump()
      if (this.#pendingBytes === 0) {
        break
      }
      await this.#waitForSpace(options)
    }
    this.#writeClosed = true
    this.#wakeSpace()
    if (this.#error === undefined && this.#stream.writeStatus === 'writable') {
      await this.#stream.close(options)
    }
  }

  abort (err: Error): void {
    if (this.#error === undefined) {
      this.#error = err
    }
    this.#pending = []
    this.#pendingBytes = 0
    this.#writeClosed = true
    this.#stream.abort(err)
    this.#end()
    this.#wakeSpace()
  }
}

const EMPTY = new Uint8Array(0)
