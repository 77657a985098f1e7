/**
 * Structured logs: pino underneath (JSON, one object a line), with an optional human
 * format for terminals. Components get their own child logger by name.
 */
import { pino, type DestinationStream, type Level } from 'pino'
import type { ComponentLogger, Logger } from '../interfaces/index.ts'

export interface LoggingInit {
  /** @default 'info' */
  level?: Level
  /** `json` writes pino's lines as they are; `pretty` writes one readable line each. @default 'pretty' */
  format?: 'json' | 'pretty'
}

interface Writable {
  write: (text: string) => unknown
}

const LEVEL_NAMES: Record<number, string> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO', 40: 'WARN', 50: 'ERROR', 60: 'FATAL' }
const SKIP = new Set(['level', 'time', 'pid', 'hostname', 'msg', 'component'])

/** Render one pino JSON line for people: `12:00:01.234 INFO  gateway: listening url=…` */
export function prettyLine (line: string): string {
  let record: Record<string, unknown>
  try {
    record = JSON.parse(line) as Record<string, unknown>
  } catch {
    return line
  }
  const time = new Date(typeof record.time === 'number' ? record.time : Date.now()).toISOString().slice(11, 23)
  const level = (LEVEL_NAMES[Number(record.level)] ?? 'INFO').padEnd(5)
  const component = typeof record.component === 'string' ? `${record.component}: ` : ''
  const fields = Object.entries(record)
    .filter(([key]) => !SKIP.has(key))
    .map(([key, value]) => `${key}=${formatValue(value)}`)
  return `${time} ${level} ${component}${String(record.msg ?? '')}${fields.length > 0 ? ' ' + fields.join(' ') : ''}\n`
}

function formatValue (value: unknown): string {
  if (typeof value === 'string') {
    return /[\s"=]/.test(value) ? JSON.stringify(value) : value
  }
  if (value !== null && typeof value === 'object' && 'message' in value) {
    return JSON.stringify((value as { message: unknown }).message)
  }
  return JSON.stringify(value)
}

/** A logger writing to `out` (a stream or anything with `write(text)`) */
export function createLogging (out: Writable, init: LoggingInit = {}): ComponentLogger {
  const format = init.format ?? 'pretty'
  const destination: DestinationStream = {
    write (text: string): void {
      out.write(format === 'pretty' ? prettyLine(text) : text)
    }
  }
  const root = pino({ level: init.level ?? 'info', base: null, serializers: { err: pino.stdSerializers.err } }, destination)
  return {
    forComponent (name: string): Logger {
      return root.child({ component: name })
    }
  }
}

/** A logger that drops everything (tests, embedding) */
export function silentLogging (): ComponentLogger {
  const none = (): void => {}
  const logger: Logger = { debug: none, info: none, warn: none, error: none, isLevelEnabled: () => false }
  return { forComponent: () => logger }
}
