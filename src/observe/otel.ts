/**
 * OpenTelemetry export, the heavy part: spans and metrics over OTLP/HTTP (JSON bodies)
 * with the `@opentelemetry` SDK. Loaded by telemetry.ts's `startTelemetry` only, when an
 * endpoint is set: nothing else imports this file.
 *
 * Spans: a SERVER span per HTTP request a brane serves, continuing the client's W3C
 * `traceparent`; a CONSUMER span per event delivery, a child of the span that emitted
 * the event (its `traceparent` travels with the event, through the queue and across
 * nodes). Context is passed explicitly (no context manager, no global tracer provider):
 * Omega's own code is the only instrumentation.
 *
 * Metrics: the node's metrics registry (what `/metrics` shows) read at each export by a
 * metric producer, so that serving a request costs nothing more for them.
 */
import { diag, DiagLogLevel, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, TraceFlags, ValueType, createTraceState, type Attributes, type Span, type Tracer } from '@opentelemetry/api'
import { BasicTracerProvider, BatchSpanProcessor } from '@opentelemetry/sdk-trace-base'
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http'
import { OTLPMetricExporter } from '@opentelemetry/exporter-metrics-otlp-http'
import { AggregationTemporality, DataPointType, MeterProvider, PeriodicExportingMetricReader, type CollectionResult, type MetricData, type MetricProducer } from '@opentelemetry/sdk-metrics'
import { resourceFromAttributes, type Resource } from '@opentelemetry/resources'
import type { BraneEvent, BraneHttpRequest, Logger } from '../interfaces/index.ts'
import { Counter, type MetricsRegistry } from './metrics.ts'
import { parseTraceparent, type Telemetry, type TelemetryComponents, type TelemetryInit, type TelemetrySpan } from './telemetry.ts'

const SCOPE = 'omega'
/** How long stopping waits for the last export */
const SHUTDOWN_TIMEOUT_MS = 5_000

/** A span of Omega's, and the traceparent its children take */
class OmegaSpan implements TelemetrySpan {
  readonly traceparent: string
  readonly #span: Span
  readonly #http: boolean

  constructor (span: Span, http: boolean) {
    this.#span = span
    this.#http = http
    const context = span.spanContext()
    this.traceparent = `00-${context.traceId}-${context.spanId}-${(context.traceFlags & TraceFlags.SAMPLED) === TraceFlags.SAMPLED ? '01' : '00'}`
  }

  end (status?: number, error?: unknown): void {
    const span = this.#span
    if (status !== undefined) {
      span.setAttribute('http.response.status_code', status)
      if (status >= 500) {
        span.setAttribute('error.type', String(status))
        span.setStatus({ code: SpanStatusCode.ERROR })
      }
    }
    if (error !== undefined) {
      const name = error instanceof Error ? error.name : 'Error'
      span.setAttribute('error.type', name)
      span.setStatus({ code: SpanStatusCode.ERROR, message: error instanceof Error ? error.message : String(error) })
    } else if (!this.#http) {
      span.setStatus({ code: SpanStatusCode.OK })
    }
    span.end()
  }
}

/** The context of a remote parent from a `traceparent` (and `tracestate`), or the root */
function parentContext (traceparent: string | undefined, tracestate?: string): typeof ROOT_CONTEXT {
  const parent = parseTraceparent(traceparent)
  if (parent === undefined) {
    return ROOT_CONTEXT
  }
  return trace.setSpanContext(ROOT_CONTEXT, {
    traceId: parent.traceId,
    spanId: parent.spanId,
    traceFlags: parent.flags & TraceFlags.SAMPLED,
    isRemote: true,
    ...(tracestate === undefined ? {} : { traceState: createTraceState(tracestate) })
  })
}

function header (headers: ReadonlyArray<readonly [string, string]>, name: string): string | undefined {
  for (const [key, value] of headers) {
    if (key.length === name.length && key.toLowerCase() === name) {
      return value
    }
  }
  return undefined
}

/** HrTime of `ms` since the epoch */
function hrTime (ms: number): [number, number] {
  const seconds = Math.floor(ms / 1000)
  return [seconds, Math.round((ms - seconds * 1000) * 1e6)]
}

/** The unit of a metric named the Prometheus way (`…_ms`, `…_bytes`) */
function unitOf (name: string): string {
  return name.endsWith('_ms') ? 'ms' : name.endsWith('_bytes') ? 'By' : '1'
}

/** Reads the registry at each export: counters as monotonic sums, histograms with their buckets, all cumulative */
class RegistryProducer implements MetricProducer {
  readonly #registry: MetricsRegistry
  readonly #resource: Resource
  readonly #startTime: [number, number]

  constructor (registry: MetricsRegistry, resource: Resource) {
    this.#registry = registry
    this.#resource = resource
    this.#startTime = hrTime(Date.now())
  }

  async collect (): Promise<CollectionResult> {
    const startTime = this.#startTime
    const endTime = hrTime(Date.now())
    const metrics: MetricData[] = this.#registry.all.map((metric): MetricData => {
      const descriptor = { name: metric.name, description: metric.help, unit: unitOf(metric.name), valueType: ValueType.DOUBLE }
      if (metric instanceof Counter) {
        return {
          descriptor,
          aggregationTemporality: AggregationTemporality.CUMULATIVE,
          dataPointType: DataPointType.SUM,
          isMonotonic: true,
          dataPoints: metric.series().map((s) => ({ startTime, endTime, attributes: { ...s.labels }, value: s.value }))
        }
      }
      const boundaries = [...metric.buckets]
      return {
        descriptor,
        aggregationTemporality: AggregationTemporality.CUMULATIVE,
        dataPointType: DataPointType.HISTOGRAM,
        dataPoints: metric.series().map((s) => ({ startTime, endTime, attributes: { ...s.labels }, value: { buckets: { boundaries, counts: s.counts }, sum: s.sum, count: s.count } }))
      }
    }).filter((m) => m.dataPoints.length > 0)
    return { resourceMetrics: { resource: this.#resource, scopeMetrics: [{ scope: { name: SCOPE }, metrics }] }, errors: [] }
  }
}

let diagLogger: Logger | undefined

/** The SDK's own complaints (a failed export) go to the node's log, at warn and above */
function routeDiagnostics (logger: Logger): void {
  if (diagLogger !== undefined) {
    diagLogger = logger // the latest node's logger: diag is process-wide
    return
  }
  diagLogger = logger
  const warn = (message: string, ...args: unknown[]): void => { diagLogger?.warn({ details: args.map(String).join(' ') }, `OpenTelemetry: ${message}`) }
  diag.setLogger({ error: warn, warn, info: () => {}, debug: () => {}, verbose: () => {} }, { logLevel: DiagLogLevel.WARN, suppressOverrideMessage: true })
}

/** Spans and metrics exported with the OpenTelemetry SDK: see the file's header */
export class OtelTelemetry implements Telemetry {
  readonly tracing: boolean
  readonly #tracer: Tracer
  readonly #tracerProvider: BasicTracerProvider | undefined
  readonly #meterProvider: MeterProvider | undefined
  #stopped: Promise<void> | undefined

  constructor (components: TelemetryComponents, init: TelemetryInit) {
    routeDiagnostics(components.logger)
    const resource = resourceFromAttributes({
      ...init.resourceAttributes,
      'service.name': init.serviceName ?? 'omega',
      ...(components.instanceId === undefined ? {} : { 'service.instance.id': components.instanceId })
    })
    const headers = init.headers === undefined ? {} : { headers: { ...init.headers } }
    if (init.tracesUrl !== undefined) {
      this.#tracerProvider = new BasicTracerProvider({
        resource,
        spanProcessors: [new BatchSpanProcessor(new OTLPTraceExporter({ url: init.tracesUrl, ...headers }))]
      })
    }
    this.tracing = this.#tracerProvider !== undefined
    // with traces off (metrics only) nobody asks for spans; were one asked for, the API's
    // no-op tracer would give one that records nothing
    this.#tracer = this.#tracerProvider?.getTracer(SCOPE) ?? trace.getTracer(SCOPE)
    if (init.metricsUrl !== undefined) {
      this.#meterProvider = new MeterProvider({
        resource,
        readers: [new PeriodicExportingMetricReader({
          exporter: new OTLPMetricExporter({ url: init.metricsUrl, ...headers }),
          exportIntervalMillis: init.metricIntervalMs ?? 60_000,
          metricProducers: [new RegistryProducer(components.metrics, resource)]
        })]
      })
    }
    components.logger.info({ traces: init.tracesUrl ?? 'off', metrics: init.metricsUrl ?? 'off', service: init.serviceName ?? 'omega' }, 'exporting OpenTelemetry over OTLP/HTTP')
  }

  request (brane: string, request: Pick<BraneHttpRequest, 'method' | 'pathWithQuery' | 'headers'>): TelemetrySpan {
    const query = request.pathWithQuery.indexOf('?')
    const attributes: Attributes = {
      'http.request.method': request.method,
      'url.path': query === -1 ? request.pathWithQuery : request.pathWithQuery.slice(0, query),
      'omega.brane': brane
    }
    if (query !== -1) {
      attributes['url.query'] = request.pathWithQuery.slice(query + 1)
    }
    const parent = parentContext(header(request.headers, 'traceparent'), header(request.headers, 'tracestate'))
    return this.#start(`${request.method} ${brane}`, SpanKind.SERVER, attributes, parent, true)
  }

  delivery (brane: string, event: Pick<BraneEvent, 'id' | 'topic' | 'source' | 'traceId' | 'attempt' | 'traceparent'>): TelemetrySpan {
    const attributes: Attributes = {
      'messaging.system': 'omega',
      'messaging.operation.type': 'process',
      'messaging.destination.name': event.topic,
      'messaging.message.id': event.id,
      'omega.brane': brane,
      'omega.event.source': event.source,
      'omega.event.trace_id': event.traceId,
      'omega.event.attempt': event.attempt
    }
    return this.#start(`process ${event.topic}`, SpanKind.CONSUMER, attributes, parentContext(event.traceparent), false)
  }

  #start (name: string, kind: SpanKind, attributes: Attributes, parent: typeof ROOT_CONTEXT, http: boolean): OmegaSpan {
    return new OmegaSpan(this.#tracer.startSpan(name, { kind, attributes }, parent), http)
  }

  async flush (): Promise<void> {
    await Promise.all([this.#tracerProvider?.forceFlush(), this.#meterProvider?.forceFlush()])
  }

  async shutdown (): Promise<void> {
    this.#stopped ??= (async () => {
      let timer: NodeJS.Timeout | undefined
      const timeout = new Promise<void>((resolve) => { timer = setTimeout(resolve, SHUTDOWN_TIMEOUT_MS).unref() })
      const done = Promise.allSettled([this.#tracerProvider?.shutdown(), this.#meterProvider?.shutdown()]).then(() => {})
      await Promise.race([done, timeout])
      clearTimeout(timer)
    })()
    return this.#stopped
  }
}
