/**
 * OpenTelemetry export, the light part: what the rest of Omega sees of it (spans as
 * {@link TelemetrySpan}, a W3C `traceparent` each), its configuration from the standard
 * `OTEL_*` variables, and the loader of the heavy part (otel.ts, with the
 * `@opentelemetry` packages), which is imported only when an endpoint is set. With no
 * endpoint nothing here runs: the observer's check of `telemetry === undefined` is all
 * a request or a delivery pays.
 */
import type { BraneEvent, BraneHttpRequest, Logger } from '../interfaces/index.ts'
import type { MetricsRegistry } from './metrics.ts'

/** One span Omega opened (a request served, an event delivered), ended once */
export interface TelemetrySpan {
  /** the span's W3C trace context, `00-<trace id>-<span id>-<flags>`: the parent of what it causes */
  readonly traceparent: string
  /** ends the span: an HTTP request with its response's `status`, or with the `error` that failed it */
  end: (status?: number, error?: unknown) => void
}

/** Spans of requests and deliveries, and the export of the node's metrics */
export interface Telemetry {
  /** whether spans are exported (else only metrics are, and nobody needs to ask for spans) */
  readonly tracing: boolean
  /**
   * A SERVER span for one HTTP request `brane` serves, continuing the request's own
   * `traceparent` header when it has a valid one
   */
  request: (brane: string, request: Pick<BraneHttpRequest, 'method' | 'pathWithQuery' | 'headers'>) => TelemetrySpan
  /** A CONSUMER span for one delivery of `event` to `brane`, a child of the span that emitted it */
  delivery: (brane: string, event: Pick<BraneEvent, 'id' | 'topic' | 'source' | 'traceId' | 'attempt' | 'traceparent'>) => TelemetrySpan
  /** exports every ended span and the metrics now */
  flush: () => Promise<void>
  /** flushes, then stops exporting */
  shutdown: () => Promise<void>
}

/** Where and how to export (see {@link telemetryFromEnv} for the variables behind each) */
export interface TelemetryInit {
  /** full URL spans are posted to; no traces when unset */
  readonly tracesUrl?: string
  /** full URL metrics are posted to; no metrics when unset */
  readonly metricsUrl?: string
  /** `service.name`. @default 'omega' */
  readonly serviceName?: string
  /** more resource attributes (`OTEL_RESOURCE_ATTRIBUTES`) */
  readonly resourceAttributes?: Readonly<Record<string, string>>
  /** headers of every export request (`OTEL_EXPORTER_OTLP_HEADERS`) */
  readonly headers?: Readonly<Record<string, string>>
  /** ms between metric exports. @default 60000 */
  readonly metricIntervalMs?: number
}

/** What telemetry reads and reports to */
export interface TelemetryComponents {
  /** the metrics exported (the node's request observer's) */
  readonly metrics: MetricsRegistry
  readonly logger: Logger
  /** `service.instance.id`: the node's did */
  readonly instanceId?: string
}

/**
 * The export configuration the standard variables ask for, or undefined when they ask
 * for none: no `OTEL_EXPORTER_OTLP_ENDPOINT` (base URL: `/v1/traces` and `/v1/metrics`
 * are added), `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or
 * `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT` (full URLs), or `OTEL_SDK_DISABLED=true`.
 * `OTEL_TRACES_EXPORTER=none` and `OTEL_METRICS_EXPORTER=none` turn one signal off;
 * `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_EXPORTER_OTLP_HEADERS` and
 * `OTEL_METRIC_EXPORT_INTERVAL` are read too. Omega exports OTLP/HTTP with JSON bodies.
 *
 * @throws RangeError when an endpoint is not an http(s) URL
 */
export function telemetryFromEnv (env: Readonly<Record<string, string | undefined>>): TelemetryInit | undefined {
  const value = (name: string): string | undefined => {
    const v = env[name]?.trim()
    return v === undefined || v === '' ? undefined : v
  }
  if (value('OTEL_SDK_DISABLED')?.toLowerCase() === 'true') {
    return undefined
  }
  const base = value('OTEL_EXPORTER_OTLP_ENDPOINT')
  const signalUrl = (signal: 'traces' | 'metrics'): string | undefined => {
    if (value(`OTEL_${signal.toUpperCase()}_EXPORTER`)?.toLowerCase() === 'none') {
      return undefined
    }
    const own = value(`OTEL_EXPORTER_OTLP_${signal.toUpperCase()}_ENDPOINT`)
    const url = own ?? (base === undefined ? undefined : `${base.replace(/\/+$/, '')}/v1/${signal}`)
    if (url !== undefined && !/^https?:\/\/[^/]/i.test(url)) {
      throw new RangeError(`Invalid OpenTelemetry endpoint "${url}": expected an http:// or https:// URL`)
    }
    return url
  }
  const tracesUrl = signalUrl('traces')
  const metricsUrl = signalUrl('metrics')
  if (tracesUrl === undefined && metricsUrl === undefined) {
    return undefined
  }
  const interval = Number(value('OTEL_METRIC_EXPORT_INTERVAL'))
  const resourceAttributes = keyValues(value('OTEL_RESOURCE_ATTRIBUTES'))
  const headers = keyValues(value('OTEL_EXPORTER_OTLP_HEADERS'))
  const serviceName = value('OTEL_SERVICE_NAME') ?? resourceAttributes['service.name']
  return {
    ...(tracesUrl === undefined ? {} : { tracesUrl }),
    ...(metricsUrl === undefined ? {} : { metricsUrl }),
    ...(serviceName === undefined ? {} : { serviceName }),
    ...(Object.keys(resourceAttributes).length === 0 ? {} : { resourceAttributes }),
    ...(Object.keys(headers).length === 0 ? {} : { headers }),
    ...(Number.isFinite(interval) && interval > 0 ? { metricIntervalMs: interval } : {})
  }
}

/** `k1=v1,k2=v2` (values percent-encoded, as the OpenTelemetry variables write them) */
function keyValues (text: string | undefined): Record<string, string> {
  const out: Record<string, string> = {}
  for (const pair of text?.split(',') ?? []) {
    const eq = pair.indexOf('=')
    if (eq > 0) {
      const key = pair.slice(0, eq).trim()
      let v = pair.slice(eq + 1).trim()
      try {
        v = decodeURIComponent(v)
      } catch {} // kept as written
      if (key !== '') {
        out[key] = v
      }
    }
  }
  return out
}

/**
 * Starts exporting: loads the `@opentelemetry` packages (only now) and sets up the
 * exporters `init` asks for, OTLP/HTTP with JSON bodies.
 */
export async function startTelemetry (components: TelemetryComponents, init: TelemetryInit): Promise<Telemetry> {
  const { OtelTelemetry } = await import('./otel.ts')
  return new OtelTelemetry(components, init)
}

/** A W3C `traceparent`: version 00, then 32 and 16 lowercase hex digits (not all zero), then flags */
const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/

/** The trace id, parent span id and flags of a valid `traceparent`, or undefined */
export function parseTraceparent (value: string | undefined): { traceId: string, spanId: string, flags: number } | undefined {
  const match = value === undefined ? null : TRACEPARENT.exec(value.trim())
  if (match === null) {
    return undefined
  }
  const [, traceId = '', spanId = '', flags = '00'] = match
  if (/^0+$/.test(traceId) || /^0+$/.test(spanId)) {
    return undefined
  }
  return { traceId, spanId, flags: parseInt(flags, 16) }
}
