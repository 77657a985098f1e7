/**
 * The host side of Omega's own interfaces (wit/brane/brane.wit, package
 * `omega:brane`): emit, log and state. The import objects are per instance; emit's
 * work happens on the main thread (see sync-call.ts), behind the {@link EmitHook}
 * the worker supplies.
 */
import type { ImportInterface } from './shim.ts'
import { WitError } from './shim.ts'
import { STATE_UNAVAILABLE } from '../protocol.ts'

/** Levels of `omega:brane/log`, as jco represents the WIT enum */
export type GuestLogLevel = 'debug' | 'info' | 'warn' | 'error'

/** `emit-error` of omega:brane, as jco represents the WIT variant */
export type EmitError =
  | { readonly tag: 'unknown-topic', readonly val: string }
  | { readonly tag: 'unavailable', readonly val: string }
  | { readonly tag: 'too-large', readonly val: string }

/**
 * Emits one event and returns its id, synchronously; throws a {@link WitError}
 * whose payload is an {@link EmitError}.
 */
export type EmitHook = (topic: string, payload: Uint8Array) => string

/** One omega:brane/state call, as the host carries it to the state service */
export type StateCall =
  | { readonly method: 'get', readonly key: string }
  | { readonly method: 'set', readonly key: string, readonly value: Uint8Array }
  | { readonly method: 'delete', readonly key: string }
  | { readonly method: 'append', readonly key: string, readonly value: Uint8Array }
  | { readonly method: 'range', readonly key: string, readonly start: number, readonly end: number }
  /** the map's keys starting with `key`, in order, after `after`, at most `limit` (wasi:keyvalue list-keys) */
  | { readonly method: 'keys', readonly key: string, readonly after?: string, readonly limit: number }
  /** add `delta` (a decimal integer) to the decimal integer at `key` (absent: 0), at once; answers the sum */
  | { readonly method: 'increment', readonly key: string, readonly delta: string }
  /** set `value` only if `key` still holds `expected` (absent: undefined); answers [1] when it did, [0] when not */
  | { readonly method: 'swap', readonly key: string, readonly expected?: Uint8Array, readonly value: Uint8Array }

/** What a state call returns: `get`/`increment` a value or undefined, `range`/`keys`/`swap` a list, the others nothing */
export type StateResult = Uint8Array | undefined | Uint8Array[]

/**
 * Does one state call, synchronously; throws a {@link WitError} whose payload is a
 * `state-error` (`unavailable`) when it cannot
 */
export type StateHook = (call: StateCall) => StateResult

const LEVELS: ReadonlySet<string> = new Set(['debug', 'info', 'warn', 'error'])

/** `omega:brane/emit` */
export function emitInterface (emit: EmitHook): ImportInterface {
  return {
    emit (topic: string, payload: Uint8Array): string {
      return emit(topic, payload)
    }
  }
}

/** `omega:brane/log`: one record per call, to the brane's log (within its log budget) */
export function logInterface (log: (level: GuestLogLevel, message: string) => void): ImportInterface {
  return {
    log (level: string, message: string): void {
      log(LEVELS.has(level) ? level as GuestLogLevel : 'info', message)
    }
  }
}

/** wasi:logging levels as the brane's log levels (trace is debug, critical is error) */
const WASI_LEVELS: Readonly<Record<string, GuestLogLevel>> = { trace: 'debug', debug: 'debug', info: 'info', warn: 'warn', error: 'error', critical: 'error' }

/** `wasi:logging/logging`: one record per call, `context: message`, to the brane's log */
export function wasiLoggingInterface (log: (level: GuestLogLevel, message: string) => void): ImportInterface {
  return {
    log (level: string, context: string, message: string): void {
      log(WASI_LEVELS[level] ?? 'info', context === '' ? message : `${context}: ${message}`)
    }
  }
}

/** `wasi:config/store`: the brane's own `[brane.X.config]` table, read-only */
export function configInterface (config: Readonly<Record<string, string>>): ImportInterface {
  const entries = Object.entries(config)
  return {
    get: (key: string): string | undefined => Object.hasOwn(config, key) ? config[key] : undefined,
    getAll: (): Array<[string, string]> => entries.map(([key, value]): [string, string] => [key, value])
  }
}

/**
 * `omega:brane/state`: a map of byte values and append-only lists, done by `hook`
 * (without one, every call fails with `unavailable`)
 */
export function stateInterface (hook?: StateHook): ImportInterface {
  const call = hook ?? ((): never => { throw new WitError({ tag: 'unavailable', val: STATE_UNAVAILABLE }) })
  return {
    get: (key: string): Uint8Array | undefined => call({ method: 'get', key }) as Uint8Array | undefined,
    set: (key: string, value: Uint8Array): void => { call({ method: 'set', key, value }) },
    delete: (key: string): void => { call({ method: 'delete', key }) },
    append: (name: string, value: Uint8Array): void => { call({ method: 'append', key: name, value }) },
    range: (name: string, start: number, end: number): Uint8Array[] => call({ method: 'range', key: name, start, end }) as Uint8Array[]
  }
}

/** A `state-error` to throw from a {@link StateHook} */
export function stateError (message: string): WitError {
  return new WitError({ tag: 'unavailable', val: message })
}

/** An {@link EmitError} to throw from an {@link EmitHook} */
export function emitError (tag: EmitError['tag'], message: string): WitError {
  return new WitError({ tag, val: message })
}
