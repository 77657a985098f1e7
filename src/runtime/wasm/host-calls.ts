/**
 * The main-thread side of the host calls a brane's guest makes while it runs (see
 * host/sync-call.ts): emit, replicated state, and the streamed bodies of a request
 * (the rest of its body; waiting until the client took enough of the response).
 */
import { encodeStateValue, type HostCallAnswer, type HostCallMessage } from './host/sync-call.ts'
import type { StateCall } from './host/brane.ts'
import type { OnEmit, OnEmitOptions, OnState, Work } from './brane-options.ts'

/** What a host call needs of the job that made it */
export interface HostCallJob {
  readonly traceId: string | undefined
  /** the W3C trace context of the span it runs in (OpenTelemetry export on) */
  readonly traceparent: string | undefined
  readonly work: Work
  /** made at the job's first emit; aborted when the job leaves its worker */
  calls: AbortController | undefined
}

type Answer = (value: HostCallAnswer) => void
type BodyCall = { readonly op: 'body-read' } | { readonly op: 'body-wait', readonly until: number }

const CLOSED: HostCallAnswer = { ok: false, error: { tag: 'closed', val: '' } }

export class HostCalls {
  readonly #name: string
  readonly #onEmit: OnEmit | undefined
  readonly #onState: OnState | undefined

  constructor (name: string, onEmit: OnEmit | undefined, onState: OnState | undefined) {
    this.#name = name
    this.#onEmit = onEmit
    this.#onState = onState
  }

  /**
   * Does the call `message` of `job` (undefined when the job has left its worker: the
   * call is answered `unavailable`, and nobody reads it) and answers through `answer`
   */
  handle (job: HostCallJob | undefined, message: HostCallMessage, answer: Answer): void {
    if (job === undefined) {
      answer({ ok: false, error: { tag: 'unavailable', val: `Brane "${this.#name}" made a host call outside of its job` } })
      return
    }
    if (message.call.op === 'state') {
      this.#state(message.call.call, answer)
      return
    }
    if (message.call.op === 'body-read' || message.call.op === 'body-wait') {
      this.#body(job, message.call, answer)
      return
    }
    this.#emit(job, message.call, answer)
  }

  #emit (job: HostCallJob, call: { readonly topic: string, readonly payload: Uint8Array }, answer: Answer): void {
    const onEmit = this.#onEmit
    if (onEmit === undefined) {
      answer({ ok: false, error: { tag: 'unavailable', val: `Brane "${this.#name}" cannot emit: this node gave it no event dispatcher` } })
      return
    }
    job.calls ??= new AbortController()
    const { topic, payload } = call
    let options: OnEmitOptions = job.traceId === undefined ? { signal: job.calls.signal } : { traceId: job.traceId, signal: job.calls.signal }
    if (job.traceparent !== undefined) {
      options = { ...options, traceparent: job.traceparent }
    }
    let emitted: Promise<string>
    try {
      emitted = onEmit(topic, payload, options)
    } catch (err) {
      emitted = Promise.reject(err)
    }
    emitted.then((id) => {
      answer(typeof id === 'string'
        ? { ok: true, value: id }
        : { ok: false, error: { tag: 'unavailable', val: `Brane "${this.#name}" cannot emit on "${topic}": the dispatcher returned no event id` } })
    }, (err: unknown) => {
      const unknownTopic = err instanceof Error && err.name === 'UnknownTopicError'
      const reason = err instanceof Error ? err.message : String(err)
      answer({
        ok: false,
        error: unknownTopic
          ? { tag: 'unknown-topic', val: reason }
          : { tag: 'unavailable', val: `Brane "${this.#name}" cannot emit on "${topic}": ${reason}` }
      })
    })
  }

  /** The next piece of a request body, or a wait until the client took enough of a streamed response */
  #body (job: HostCallJob, call: BodyCall, answer: Answer): void {
    const streams = job.work.type === 'request' ? job.work.streams : undefined
    if (call.op === 'body-wait') {
      if (streams === undefined) {
        answer(CLOSED)
        return
      }
      streams.out.whenTaken(call.until).then((taken) => {
        answer(taken === undefined ? CLOSED : { ok: true, value: String(taken) })
      }, () => {})
      return
    }
    const rest = streams?.rest
    if (rest === undefined) {
      answer(CLOSED)
      return
    }
    rest.read().then((piece) => {
      answer(piece === undefined ? CLOSED : { ok: true, value: Buffer.from(piece.buffer, piece.byteOffset, piece.byteLength).toString('base64') })
    }, (err: unknown) => {
      answer({ ok: false, error: { tag: 'failed', val: err instanceof Error ? err.message : String(err) } })
    })
  }

  #state (call: StateCall, answer: Answer): void {
    const onState = this.#onState
    if (onState === undefined) {
      answer({ ok: false, error: { tag: 'unavailable', val: `Brane "${this.#name}" has no state: this node gave it no state service` } })
      return
    }
    try {
      answer({ ok: true, value: encodeStateValue(onState(call)) })
    } catch (err) {
      answer({ ok: false, error: { tag: 'unavailable', val: `Brane "${this.#name}": state ${call.method} "${call.key}" failed: ${err instanceof Error ? err.message : String(err)}` } })
    }
  }
}
