/**
 * The host side of Omega's own interfaces (wit/brane/brane.wit, package
 * `omega:brane`): emit, log and state. The import objects are per instance; emit's
 * work happens on the main thread (see sync-call.ts), behind the {@link EmitHook}
 * the worker supplies.
 */
import type { ImportInterface } from './shim.ts'
import { WitError } from './shim.ts'

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

/** What every omega:brane/state call answers until the mesh's state service exists */
export const STATE_UNAVAILABLE = 'replicated state is not available on this node yet'

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

/** `omega:brane/state`: every call fails with `unavailable` (no replicated state yet) */
export function stateInterface (): ImportInterface {
  const unavailable = (): never => {
    throw new WitError({ tag: 'unavailable', val: STATE_UNAVAILABLE })
  }
  return { get: unavailable, set: unavailable, delete: unavailable, append: unavailable, range: unavailable }
}

/** An {@link EmitError} to throw from an {@link EmitHook} */
export function emitError (tag: EmitError['tag'], message: string): WitError {
  return new WitError({ tag, val: message })
}
