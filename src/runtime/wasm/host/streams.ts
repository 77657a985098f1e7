import { readSync, writeSync } from 'node:fs'
import { readyPollable, shim, WitError, type Pollable } from './shim.ts'

// wasi:io/streams `stream-error.closed`
const CLOSED = Object.freeze({ tag: 'closed' })

// How much a guest may write per check-write; in-memory sinks accept everything
const WRITE_BUDGET = 1n << 20n

/**
 * A wasi:io input-stream whose reads block until they can answer (so a read never
 * answers "nothing yet"): the blocking calls are the plain ones, and `subscribe` is
 * always ready. Subclasses give `read`.
 */
abstract class BlockingInputStream extends shim.InputStream {
  abstract read (len: bigint): Uint8Array

  blockingRead (len: bigint): Uint8Array {
    return this.read(len)
  }

  skip (len: bigint): bigint {
    return BigInt(this.read(len).length)
  }

  blockingSkip (len: bigint): bigint {
    return this.skip(len)
  }

  subscribe (): Pollable {
    return readyPollable()
  }
}

/**
 * A wasi:io input-stream over bytes held in memory (request bodies, stdin). With
 * `pull`, the bytes arrive in pieces: a read that finds nothing left asks `pull` for
 * the next piece, blocking until it comes (`undefined` ends the stream; a `WitError`
 * it throws is the read's stream error). A read therefore never answers "nothing yet",
 * and `subscribe` is always ready.
 */
export class MemoryInputStream extends BlockingInputStream {
  #data: Uint8Array
  #offset = 0
  #pull: (() => Uint8Array | undefined) | undefined

  constructor (data: Uint8Array, pull?: () => Uint8Array | undefined) {
    super()
    this.#data = data
    this.#pull = pull
  }

  read (len: bigint): Uint8Array {
    while (this.#offset >= this.#data.length) {
      const next = this.#pull?.()
      if (next === undefined) {
        this.#pull = undefined
        throw new WitError(CLOSED)
      }
      this.#data = next
      this.#offset = 0
    }
    const end = Math.min(this.#data.length, this.#offset + Number(len))
    const chunk = this.#data.slice(this.#offset, end)
    this.#offset = end
    return chunk
  }
}

interface Readable {
  read: (len: bigint) => Uint8Array
  blockingRead: (len: bigint) => Uint8Array
}

/**
 * A wasi:io output-stream that hands every write to `sink` synchronously. Never
 * blocks, so check-write always grants a full budget and subscribe is always ready.
 */
export class SinkOutputStream extends shim.OutputStream {
  readonly #sink: (bytes: Uint8Array) => void
  readonly #flushed: () => void
  #closed = false

  /** @param flushed - told of every flush the guest asks for, after the bytes before it reached `sink` */
  constructor (sink: (bytes: Uint8Array) => void, flushed: () => void = () => {}) {
    super()
    this.#sink = sink
    this.#flushed = flushed
  }

  /** Stop accepting writes: later writes fail with `closed` */
  close (): void {
    this.#closed = true
  }

  checkWrite (): bigint {
    if (this.#closed) {
      throw new WitError(CLOSED)
    }
    return WRITE_BUDGET
  }

  write (contents: Uint8Array): void {
    if (this.#closed) {
      throw new WitError(CLOSED)
    }
    // jco may hand us a view into guest memory: copy before keeping it
    this.#sink(contents.slice())
  }

  blockingWriteAndFlush (contents: Uint8Array): void {
    this.write(contents)
    this.#flushed()
  }

  flush (): void {
    this.checkWrite()
    this.#flushed()
  }

  blockingFlush (): void {
    this.flush()
  }

  writeZeroes (len: bigint): void {
    this.write(new Uint8Array(Number(len)))
  }

  blockingWriteZeroesAndFlush (len: bigint): void {
    this.writeZeroes(len)
    this.#flushed()
  }

  splice (src: Readable, len: bigint): bigint {
    const chunk = src.read(len)
    this.write(chunk)
    return BigInt(chunk.length)
  }

  blockingSplice (src: Readable, len: bigint): bigint {
    const chunk = src.blockingRead(len)
    this.write(chunk)
    return BigInt(chunk.length)
  }

  subscribe (): Pollable {
    return readyPollable()
  }
}

/**
 * Collects the bytes written to a {@link SinkOutputStream}, under a limit on all bytes
 * ever written; {@link take} hands over what was collected so far (a streamed body).
 */
export class ByteCollector {
  #chunks: Uint8Array[] = []
  #pending = 0
  #size = 0
  #overflowed = false
  readonly #limit: number

  /** @param limit - most bytes written in all; writing past it fails the write */
  constructor (limit: number) {
    this.#limit = limit
  }

  /** bytes written in all, taken or not */
  get size (): number {
    return this.#size
  }

  /** bytes written and not yet taken */
  get pending (): number {
    return this.#pending
  }

  /** whether a write was refused for going past the limit */
  get overflowed (): boolean {
    return this.#overflowed
  }

  push (bytes: Uint8Array): void {
    if (this.#size + bytes.length > this.#limit) {
      this.#overflowed = true
      // a stream error the guest can see, not a trap
      throw new WitError({ tag: 'last-operation-failed', val: new (shim.ioError['Error'] as new (msg: string) => object)(`body larger than ${this.#limit} bytes`) })
    }
    this.#chunks.push(bytes)
    this.#pending += bytes.length
    this.#size += bytes.length
  }

  /** The bytes not yet taken, in one fresh buffer (safe to transfer to another thread) */
  take (): Uint8Array {
    const out = this.#chunks.length === 1 ? this.#chunks[0] as Uint8Array : new Uint8Array(this.#pending)
    if (this.#chunks.length > 1) {
      let offset = 0
      for (const chunk of this.#chunks) {
        out.set(chunk, offset)
        offset += chunk.length
      }
    }
    this.#chunks = []
    this.#pending = 0
    return out
  }
}

/**
 * Splits what a guest writes to stdout or stderr into lines for the brane's log.
 * Long lines are cut at `maxLine` bytes; `end()` emits an unterminated last line.
 */
export class LineSplitter {
  readonly #emit: (line: string) => void
  readonly #maxLine: number
  readonly #decoder = new TextDecoder('utf-8', { fatal: false })
  #pending = ''

  constructor (emit: (line: string) => void, maxLine = 16 * 1024) {
    this.#emit = emit
    this.#maxLine = maxLine
  }

  push (bytes: Uint8Array): void {
    this.#pending += this.#decoder.decode(bytes, { stream: true })
    let newline = this.#pending.indexOf('\n')
    while (newline !== -1) {
      this.#emit(this.#pending.slice(0, newline).replace(/\r$/, ''))
      this.#pending = this.#pending.slice(newline + 1)
      newline = this.#pending.indexOf('\n')
    }
    while (this.#pending.length > this.#maxLine) {
      this.#emit(this.#pending.slice(0, this.#maxLine))
      this.#pending = this.#pending.slice(this.#maxLine)
    }
  }

  end (): void {
    this.#pending += this.#decoder.decode()
    if (this.#pending !== '') {
      this.#emit(this.#pending)
      this.#pending = ''
    }
  }
}

const WAIT = new Int32Array(new SharedArrayBuffer(4))

/** Waits `ms` on this thread (a non-blocking descriptor had nothing to give or take) */
function pause (ms: number): void {
  Atomics.wait(WAIT, 0, 0, ms)
}

/**
 * A wasi:io input-stream over a file descriptor of the host process, read
 * synchronously (`omega run`'s stdin: the process's, in the thread running the guest)
 */
export class FdInputStream extends BlockingInputStream {
  readonly #fd: number
  #ended = false

  constructor (fd: number) {
    super()
    this.#fd = fd
  }

  read (len: bigint): Uint8Array {
    if (this.#ended) {
      throw new WitError(CLOSED)
    }
    const buffer = new Uint8Array(Math.max(1, Math.min(Number(len), 64 * 1024)))
    for (;;) {
      let n: number
      try {
        n = readSync(this.#fd, buffer, 0, buffer.length, null)
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code
        if (code === 'EAGAIN') {
          pause(5)
          continue
        }
        if (code === 'EOF') {
          n = 0
        } else {
          throw new WitError({ tag: 'last-operation-failed', val: new (shim.ioError['Error'] as new (msg: string) => object)((err as Error).message) })
        }
      }
      if (n === 0) {
        this.#ended = true
        throw new WitError(CLOSED)
      }
      return buffer.slice(0, n)
    }
  }
}

/** Writes all of `bytes` to the host descriptor `fd`, synchronously */
export function writeAllSync (fd: number, bytes: Uint8Array): void {
  let offset = 0
  while (offset < bytes.length) {
    try {
      offset += writeSync(fd, bytes, offset, bytes.length - offset)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') {
        throw err
      }
      pause(5)
    }
  }
}
