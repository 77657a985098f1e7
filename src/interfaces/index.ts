/**
 * Contracts shared between modules. No runtime code lives here: implementations depend
 * on these types and never on each other's classes.
 */

/** Every public async method takes these as its last parameter */
export interface AbortOptions {
  signal?: AbortSignal
}

/** A long-lived component with a lifecycle */
export interface Startable {
  start: () => void | Promise<void>
  stop: () => void | Promise<void>
}

/** Structured logging, one logger per component */
export interface Logger {
  debug: (obj: Record<string, unknown>, msg?: string) => void
  info: (obj: Record<string, unknown>, msg?: string) => void
  warn: (obj: Record<string, unknown>, msg?: string) => void
  error: (obj: Record<string, unknown>, msg?: string) => void
}

export interface ComponentLogger {
  forComponent: (name: string) => Logger
}
