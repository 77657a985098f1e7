/**
 * Observability: structured logs (histograms, traces, profiles and metrics come later).
 */
export { createLogging, silentLogging, prettyLine, type LoggingInit } from './log.ts'
