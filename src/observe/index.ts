/**
 * Observability: structured logs, the per-brane log book (histograms, traces, profiles
 * and metrics come later).
 */
export { createLogging, silentLogging, prettyLine, type LoggingInit } from './log.ts'
export { LogBook, type LogRecord, type LogQuery, type LogKind, type LogLevel, type LogBookInit, type LogBookComponents } from './log-book.ts'
export { Counter, Histogram, MetricsRegistry, MS_BUCKETS, BYTE_BUCKETS, type Labels, type Summary } from './metrics.ts'
export { cpuProfileToPprof, encodePprof, decodePprof, type CpuProfileSource, type CpuPprofOptions, type PprofProfile } from './pprof.ts'
