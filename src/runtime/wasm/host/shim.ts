/**
 * The parts of @bytecodealliance/preview2-shim (Node build) that Omega's host
 * implementations build on, typed loosely: the shim declares its resource classes
 * with private constructors, and Omega subclasses some of them so that its own
 * objects pass the `instanceof` checks in jco's generated bindings.
 *
 * Importing this module starts the shim's I/O helper thread (a nested worker thread
 * that serves the shim's synchronous calls): import it from brane workers only,
 * never from the main thread.
 */
import { streams, poll, error } from '@bytecodealliance/preview2-shim/io'
import { types as httpTypes, outgoingHandler } from '@bytecodealliance/preview2-shim/http'
import { monotonicClock, wallClock } from '@bytecodealliance/preview2-shim/clocks'
import { random, insecure, insecureSeed } from '@bytecodealliance/preview2-shim/random'
import { terminalInput, terminalOutput } from '@bytecodealliance/preview2-shim/cli'
import { types as filesystemTypes } from '@bytecodealliance/preview2-shim/filesystem'

/** A constructor Omega may extend */
export type ShimClass = abstract new (...args: never[]) => object

/** An interface's functions and classes, as jco expects them in an import object */
export type ImportInterface = Record<string, unknown>

/** The shim's wasi:http `fields` */
export interface ShimFields {
  append(name: string, value: Uint8Array): void
  set(name: string, values: Uint8Array[]): void
  delete(name: string): void
  entries(): Array<[string, Uint8Array]>
}

/** A wasi:io/poll pollable */
export type Pollable = object

/** The shim's classes and interfaces, by WIT name */
export const shim = {
  InputStream: streams.InputStream as unknown as ShimClass,
  OutputStream: streams.OutputStream as unknown as ShimClass,
  IncomingRequest: httpTypes.IncomingRequest as unknown as ShimClass,
  IncomingBody: httpTypes.IncomingBody as unknown as ShimClass,
  OutgoingBody: httpTypes.OutgoingBody as unknown as ShimClass & {
    finish: (body: unknown, trailers: unknown) => void
  },
  OutgoingResponse: httpTypes.OutgoingResponse as unknown as abstract new (headers: unknown) => object,
  Fields: httpTypes.Fields as unknown as abstract new () => ShimFields,
  ioStreams: streams as unknown as ImportInterface,
  ioPoll: poll as unknown as ImportInterface,
  ioError: error as unknown as ImportInterface,
  httpTypes: httpTypes as unknown as ImportInterface,
  outgoingHandler: outgoingHandler as unknown as ImportInterface,
  monotonicClock: monotonicClock as unknown as ImportInterface,
  wallClock: wallClock as unknown as ImportInterface,
  random: random as unknown as ImportInterface,
  insecure: insecure as unknown as ImportInterface,
  insecureSeed: insecureSeed as unknown as ImportInterface,
  terminalInput: terminalInput as unknown as ImportInterface,
  terminalOutput: terminalOutput as unknown as ImportInterface,
  filesystemTypes: filesystemTypes as unknown as ImportInterface
}

/** A pollable that is always ready (for in-memory streams, which never block) */
export function readyPollable (): Pollable {
  return monotonicClock.subscribeDuration(0n)
}

/**
 * The error of a WIT `result<_, E>`: jco's bindings turn a thrown object with an own
 * `payload` into `err(payload)`. `new WitError(undefined)` is `err(())`.
 */
export class WitError extends Error {
  readonly payload: unknown
  constructor (payload: unknown) {
    super('WIT error result')
    this.name = 'WitError'
    this.payload = payload
  }
}
