/**
 * Synchronous calls from a brane worker to the main thread. Host imports must return
 * synchronously (Node 20 has no JSPI), but some answers live on the main thread and
 * are asynchronous (an emit resolves once the dispatcher has queued the event
 * durably). The worker posts the call as a message and blocks in `Atomics.wait` on a
 * SharedArrayBuffer; the main thread does the work and writes the answer into the
 * buffer, then `Atomics.notify`s.
 *
 * One buffer per worker, one call at a time (a worker runs one guest call at a time).
 * Word 0 says whose turn it is:
 * - `0`: idle;
 * - `n > 0`: call `n` waits for its answer;
 * - `CLAIMED`: the main thread is writing the answer of the waiting call;
 * - `ANSWERED`: the answer is in the buffer (JSON, UTF-8, length in word 1).
 * The main thread claims with compare-and-swap `n → CLAIMED`, and a worker that gives
 * up (timeout) withdraws with `n → 0`: exactly one of them wins, so a late answer can
 * neither land in a later call nor be lost while the worker still reads it.
 * A terminated worker leaves its buffer behind: the main thread's late answer finds
 * the call withdrawn or lands in memory nobody reads, and nothing waits for it.
 */
import { performance } from 'node:perf_hooks'
import type { StateCall, StateResult } from './brane.ts'

const STATE = 0
const LENGTH = 1
const HEADER_BYTES = 8
const CLAIMED = -1
const ANSWERED = -2
/** Longest wait while the main thread writes an answer it has claimed (µs of work) */
const CLAIM_WAIT_MS = 1_000

/** Most bytes of one answer (JSON): event ids, messages, and state values (base64) */
export const HOST_CALL_ANSWER_BYTES = 1024 * 1024

/** A call a worker makes to the main thread */
export type HostCall =
  | { readonly op: 'emit', readonly topic: string, readonly payload: Uint8Array }
  | { readonly op: 'state', readonly call: StateCall }
  /** the next piece of the request body: answered with base64, or error `closed` at its end */
  | { readonly op: 'body-read' }
  /** waits until the client has taken `until` bytes of the streamed response; answers how many it took, or error `closed` once it left */
  | { readonly op: 'body-wait', readonly until: number }

/** The main thread's answer: a value, or the error value of a WIT variant */
export type HostCallAnswer =
  | { readonly ok: true, readonly value: string }
  | { readonly ok: false, readonly error: { readonly tag: string, readonly val: string } }

/** What the worker posts; `seq` identifies the call in the buffer */
export interface HostCallMessage {
  readonly type: 'host-call'
  readonly seq: number
  /** the job (request or event) the guest was running */
  readonly job: number
  readonly call: HostCall
}

/** A buffer for one worker's calls; goes to the worker in its `workerData` */
export function hostCallBuffer (): SharedArrayBuffer {
  return new SharedArrayBuffer(HEADER_BYTES + HOST_CALL_ANSWER_BYTES)
}

const encoder = new TextEncoder()
const decoder = new TextDecoder()

/**
 * Main thread: writes the answer of call `seq` and wakes the worker. Returns false
 * when the call is no longer waiting (the worker gave up, or a later call waits).
 */
export function answerHostCall (buffer: SharedArrayBuffer, seq: number, answer: HostCallAnswer): boolean {
  const words = new Int32Array(buffer, 0, 2)
  if (Atomics.compareExchange(words, STATE, seq, CLAIMED) !== seq) {
    return false
  }
  let bytes = encoder.encode(JSON.stringify(answer))
  if (bytes.length > buffer.byteLength - HEADER_BYTES) {
    const tooLong: HostCallAnswer = { ok: false, error: { tag: 'unavailable', val: `the node's answer was over ${HOST_CALL_ANSWER_BYTES} bytes` } }
    bytes = encoder.encode(JSON.stringify(tooLong))
  }
  new Uint8Array(buffer, HEADER_BYTES, bytes.length).set(bytes)
  Atomics.store(words, LENGTH, bytes.length)
  Atomics.store(words, STATE, ANSWERED)
  Atomics.notify(words, STATE)
  return true
}

/** Worker: makes calls to the main thread, blocking the thread until each is answered */
export class HostCaller {
  readonly #words: Int32Array
  readonly #bytes: Uint8Array
  readonly #post: (message: HostCallMessage, transfer: ArrayBuffer[]) => void
  #seq = 0
  /** ms this thread spent blocked in calls since the last {@link takeBlockedMs} */
  #blockedMs = 0

  constructor (buffer: SharedArrayBuffer, post: (message: HostCallMessage, transfer: ArrayBuffer[]) => void) {
    this.#words = new Int32Array(buffer, 0, 2)
    this.#bytes = new Uint8Array(buffer, HEADER_BYTES)
    this.#post = post
  }

  /**
   * Sends `call` for job `job` and blocks until the main thread answers or
   * `timeoutMs` passes (then answers `undefined`: the call is withdrawn, and a late
   * answer is dropped by the main thread).
   */
  call (job: number, call: HostCall, timeoutMs: number): HostCallAnswer | undefined {
    const seq = this.#seq = this.#seq % 0x7fff_ffff + 1
    const start = performance.now()
    const until = start + timeoutMs
    Atomics.store(this.#words, STATE, seq)
    try {
      const message: HostCallMessage = { type: 'host-call', seq, job, call }
      try {
        this.#post(message, transferable(call))
      } catch {
        // a buffer that cannot move (e.g. a view of the whole linear memory): copy it
        this.#post(message, [])
      }
      for (;;) {
        const state = Atomics.load(this.#words, STATE)
        if (state === ANSWERED) {
          const length = Atomics.load(this.#words, LENGTH)
          const answer = JSON.parse(decoder.decode(this.#bytes.slice(0, length))) as HostCallAnswer
          Atomics.store(this.#words, STATE, 0)
          return answer
        }
        if (state === CLAIMED) {
          Atomics.wait(this.#words, STATE, CLAIMED, CLAIM_WAIT_MS)
          continue
        }
        const left = until - performance.now()
        if (left <= 0) {
          if (Atomics.compareExchange(this.#words, STATE, seq, 0) === seq) {
            return undefined
          }
          continue // claimed meanwhile: the answer is being written
        }
        Atomics.wait(this.#words, STATE, seq, left)
      }
    } finally {
      this.#blockedMs += performance.now() - start
    }
  }

  /** ms blocked in calls since the last call of this method */
  takeBlockedMs (): number {
    const ms = this.#blockedMs
    this.#blockedMs = 0
    return ms
  }
}

/** A payload that owns all of its buffer moves to the main thread instead of being copied */
function transferable (call: HostCall): ArrayBuffer[] {
  if (call.op !== 'emit') {
    return []
  }
  const { buffer, byteOffset, byteLength } = call.payload
  return buffer instanceof ArrayBuffer && byteOffset === 0 && byteLength === buffer.byteLength && byteLength > 0 ? [buffer] : []
}

/** A state call's result as the `value` of an answer: JSON of base64 (`get`, `range`) or '' */
export function encodeStateValue (result: StateResult): string {
  if (result === undefined) {
    return 'null'
  }
  if (Array.isArray(result)) {
    return JSON.stringify(result.map((v) => Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('base64')))
  }
  return JSON.stringify(Buffer.from(result.buffer, result.byteOffset, result.byteLength).toString('base64'))
}

/** The inverse of {@link encodeStateValue}, for a call of `method` */
export function decodeStateValue (method: StateCall['method'], value: string): StateResult {
  if (method !== 'get' && method !== 'range' && method !== 'keys' && method !== 'increment' && method !== 'swap') {
    return undefined
  }
  const parsed = JSON.parse(value) as string | null | string[]
  if (parsed === null) {
    return undefined
  }
  const bytes = (b64: string): Uint8Array => new Uint8Array(Buffer.from(b64, 'base64'))
  return Array.isArray(parsed) ? parsed.map(bytes) : bytes(parsed)
}
