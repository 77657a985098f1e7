/**
 * Observability: structured logs, the per-brane log book, metrics, CPU profiles, and
 * OpenTelemetry export (its SDK loaded only when an endpoint is set).
 */
export { createLogging, silentLogging, prettyLine, type LoggingInit } from './log.ts'
export { DeferredRecord, LogBook, type LogRecord, type RecordText, type LogQuery, type LogKind, type LogLevel, type LogBookInit, type LogBookComponents } from './log-book.ts'
export { Counter, Histogram, MetricsRegistry, MS_BUCKETS, BYTE_BUCKETS, type Labels, type Summary } from './metrics.ts'
export { cpuProfileToPprof, encodePprof, decodePprof, type CpuProfileSource, type CpuPprofOptions, type PprofProfile } from './pprof.ts'
export { parseTraceparent, startTelemetry, telemetryFromEnv, type Telemetry, type TelemetryComponents, type TelemetryInit, type TelemetrySpan } from './telemetry.ts'
