/**
 * A QMP client (QEMU Machine Protocol): line-delimited JSON on a Unix socket. Commands
 * are answered in order; asynchronous events (`{"event": …}`) are passed to listeners.
 */
import type { Socket } from 'node:net'
import type { AbortOptions } from '../../interfaces/index.ts'
import { VmmError } from '../../errors.ts'
import { openUnix } from './agent.ts'

export interface QmpEvent {
  readonly event: string
  readonly data?: Record<string, unknown>
}

export class QmpClient {
  readonly #socket: Socket
  #buffer = ''
  readonly #pending: Array<{ command: string, resolve: (v: unknown) => void, reject: (e: Error) => void }> = []
  readonly #listeners = new Set<(e: QmpEvent) => void>()
  #greeted: Promise<void>
  #closed: Error | undefined

  private constructor (socket: Socket) {
    this.#socket = socket
    let greet: () => void = () => {}
    let fail: (e: Error) => void = () => {}
    this.#greeted = new Promise<void>((resolve, reject) => { greet = resolve; fail = reject })
    this.#greeted.catch(() => {})
    let greeted = false
    socket.setEncoding('utf8')
    socket.on('data', (chunk: string) => {
      this.#buffer += chunk
      let nl: number
      while ((nl = this.#buffer.indexOf('\n')) >= 0) {
        const line = this.#buffer.slice(0, nl).trim()
        this.#buffer = this.#buffer.slice(nl + 1)
        if (line === '') {
          continue
        }
        let msg: Record<string, unknown>
        try {
          msg = JSON.parse(line) as Record<string, unknown>
        } catch {
          continue
        }
        if ('QMP' in msg && !greeted) {
          greeted = true
          greet()
        } else if ('event' in msg) {
          for (const l of this.#listeners) {
            l(msg as unknown as QmpEvent)
          }
        } else if ('return' in msg || 'error' in msg) {
          const waiter = this.#pending.shift()
          if (waiter === undefined) {
            continue
          }
          if ('error' in msg) {
            const e = msg.error as { class?: string, desc?: string }
            waiter.reject(new VmmError(`QEMU refused "${waiter.command}": ${e.desc ?? 'unknown error'} (${e.class ?? 'GenericError'})`))
          } else {
            waiter.resolve(msg.return)
          }
        }
      }
    })
    const onEnd = (err?: Error): void => {
      if (this.#closed !== undefined) {
        return
      }
      this.#closed = new VmmError(`The QMP connection to QEMU closed${err === undefined ? '' : `: ${err.message}`} (QEMU exited?)`)
      fail(this.#closed)
      for (const w of this.#pending.splice(0)) {
        w.reject(this.#closed)
      }
    }
    socket.on('error', onEnd)
    socket.on('close', () => { onEnd() })
  }

  /** Connects to the QMP socket at `path`, reads the greeting and leaves capability negotiation */
  static async connect (path: string, options: AbortOptions = {}): Promise<QmpClient> {
    const client = new QmpClient(await openUnix(path, options))
    try {
      await abortable(client.#greeted, options)
      await client.execute('qmp_capabilities', undefined, options)
    } catch (err) {
      client.close()
      throw err
    }
    return client
  }

  async execute (command: string, args?: Record<string, unknown>, options: AbortOptions = {}): Promise<unknown> {
    if (this.#closed !== undefined) {
      throw this.#closed
    }
    const reply = new Promise<unknown>((resolve, reject) => {
      this.#pending.push({ command, resolve, reject })
    })
    this.#socket.write(JSON.stringify(args === undefined ? { execute: command } : { execute: command, arguments: args }) + '\n')
    return abortable(reply, options)
  }

  onEvent (listener: (e: QmpEvent) => void): () => void {
    this.#listeners.add(listener)
    return () => { this.#listeners.delete(listener) }
  }

  close (): void {
    this.#socket.destroy()
  }
}

/** `promise`, or a rejection with the signal's reason when it aborts first */
export async function abortable<T> (promise: Promise<T>, options: AbortOptions): Promise<T> {
  const signal = options.signal
  if (signal === undefined) {
    return promise
  }
  signal.throwIfAborted()
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => { const reason: unknown = signal.reason; reject(reason) }
    signal.addEventListener('abort', onAbort, { once: true })
    promise.then(
      (v) => { signal.removeEventListener('abort', onAbort); resolve(v) },
      (e: unknown) => { signal.removeEventListener('abort', onAbort); reject(e instanceof Error ? e : new Error(String(e))) })
  })
}
