/**
 * Bodies that stream between the main thread and a brane's worker: the response a
 * guest writes while it runs, and the rest of a request body it reads while it runs.
 */
import type { BodyChunks } from '../../interfaces/index.ts'
import type { RequestTiming } from './protocol.ts'

/** Most bytes of request body one `body-read` host call carries (its answer is base64 in a 1 MiB buffer) */
export const BODY_READ_BYTES = 512 * 1024

/** Someone waiting until the consumer has taken `until` bytes */
interface TakenWait {
  readonly until: number
  readonly resolve: (taken: number | undefined) => void
}

/**
 * A response body that the worker pushes and the client takes. What was taken is
 * counted, so that the worker can wait until the client keeps up (`whenTaken`); a
 * consumer that stops early cancels the stream and every wait answers `undefined`.
 */
export class ResponseStream implements BodyChunks {
  #chunks: Uint8Array[] = []
  #taken = 0
  #ended = false
  #error: Error | undefined
  #cancelled = false
  #iterated = false
  #wake: (() => void) | undefined
  #waits: TakenWait[] = []
  /** where the time went, once the guest is done */
  timing: RequestTiming | undefined

  /** Appends bytes the guest wrote */
  push (bytes: Uint8Array): void {
    if (this.#ended || this.#cancelled || bytes.byteLength === 0) {
      return
    }
    this.#chunks.push(bytes)
    this.#wakeReader()
  }

  /** The guest is done: `tail` is its last bytes */
  end (tail: Uint8Array, timing: RequestTiming): void {
    this.push(tail)
    this.timing = timing
    this.#ended = true
    this.#wakeReader()
  }

  /** The guest failed after its head went out: the consumer gets `err` after what was pushed */
  fail (err: unknown): void {
    if (this.#ended) {
      return
    }
    this.#error = err instanceof Error ? err : new Error(String(err))
    this.#ended = true
    this.#wakeReader()
  }

  /** Bytes the consumer took so far */
  get taken (): number {
    return this.#taken
  }

  /** Whether the consumer left before the end */
  get cancelled (): boolean {
    return this.#cancelled
  }

  /** Resolves with the bytes taken once at least `until` were, or `undefined` once the consumer left */
  async whenTaken (until: number): Promise<number | undefined> {
    if (this.#cancelled) {
      return undefined
    }
    if (this.#taken >= until) {
      return this.#taken
    }
    return new Promise((resolve) => { this.#waits.push({ until, resolve }) })
  }

  [Symbol.asyncIterator] (): AsyncIterator<Uint8Array> {
    if (this.#iterated) {
      throw new TypeError('A response body can be read once')
    }
    this.#iterated = true
    return {
      next: async (): Promise<IteratorResult<Uint8Array>> => {
        for (;;) {
          const chunk = this.#chunks.shift()
          if (chunk !== undefined) {
            this.#taken += chunk.byteLength
            this.#answerWaits()
            return { done: false, value: chunk }
          }
          if (this.#ended) {
            if (this.#error !== undefined) {
              throw this.#error
            }
            return { done: true, value: undefined }
          }
          await new Promise<void>((resolve) => { this.#wake = resolve })
        }
      },
      return: async (): Promise<IteratorResult<Uint8Array>> => {
        this.#cancel()
        return { done: true, value: undefined }
      }
    }
  }

  #cancel (): void {
    if (this.#ended && this.#chunks.length === 0) {
      return
    }
    this.#cancelled = true
    this.#chunks = []
    for (const wait of this.#waits.splice(0)) {
      wait.resolve(undefined)
    }
  }

  #answerWaits (): void {
    if (this.#waits.length === 0) {
      return
    }
    const still: TakenWait[] = []
    for (const wait of this.#waits) {
      if (this.#taken >= wait.until) {
        wait.resolve(this.#taken)
      } else {
        still.push(wait)
      }
    }
    this.#waits = still
  }

  #wakeReader (): void {
    const wake = this.#wake
    this.#wake = undefined
    wake?.()
  }
}

/**
 * Reads a request body's pieces on demand, at most {@link BODY_READ_BYTES} at a time;
 * `undefined` at its end. A piece that fails (e.g. the body went past its limit)
 * fails that read and every later one.
 */
export class BodyReader {
  readonly #source: AsyncIterator<Uint8Array>
  #left: Uint8Array | undefined
  #done = false

  constructor (source: BodyChunks) {
    this.#source = source[Symbol.asyncIterator]()
  }

  async read (): Promise<Uint8Array | undefined> {
    while (this.#left === undefined || this.#left.byteLength === 0) {
      if (this.#done) {
        return undefined
      }
      const next = await this.#source.next()
      if (next.done === true) {
        this.#done = true
        return undefined
      }
      this.#left = next.value
    }
    const piece = this.#left.subarray(0, BODY_READ_BYTES)
    this.#left = this.#left.subarray(piece.byteLength)
    return piece
  }

  /** Stops reading (the guest is done): lets the source go */
  close (): void {
    if (!this.#done) {
      this.#done = true
      this.#source.return?.().catch(() => {})
    }
  }
}
