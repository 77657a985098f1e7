import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { parseTraceparent, telemetryFromEnv } from './telemetry.ts'

describe('telemetryFromEnv', () => {
  it('is off with no endpoint, or when the SDK is disabled', () => {
    assert.equal(telemetryFromEnv({}), undefined)
    assert.equal(telemetryFromEnv({ OTEL_SERVICE_NAME: 'x', OTEL_EXPORTER_OTLP_ENDPOINT: '' }), undefined)
    assert.equal(telemetryFromEnv({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318', OTEL_SDK_DISABLED: 'TRUE' }), undefined)
    assert.equal(telemetryFromEnv({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318', OTEL_TRACES_EXPORTER: 'none', OTEL_METRICS_EXPORTER: 'none' }), undefined)
  })

  it('adds the signal paths to the base endpoint; a signal\'s own endpoint is used as it is', () => {
    assert.deepEqual(telemetryFromEnv({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318/' }), {
      tracesUrl: 'http://collector:4318/v1/traces', metricsUrl: 'http://collector:4318/v1/metrics'
    })
    assert.deepEqual(telemetryFromEnv({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'https://t.example/otlp', OTEL_METRICS_EXPORTER: 'none', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318' }), {
      tracesUrl: 'https://t.example/otlp'
    })
  })

  it('reads the service name, resource attributes, headers and the metric interval', () => {
    assert.deepEqual(telemetryFromEnv({
      OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://c/v1/traces',
      OTEL_RESOURCE_ATTRIBUTES: 'service.name=from-attrs, deployment.environment=prod%20eu',
      OTEL_EXPORTER_OTLP_HEADERS: 'authorization=Bearer%20x,bad',
      OTEL_METRIC_EXPORT_INTERVAL: '5000'
    }), {
      tracesUrl: 'http://c/v1/traces',
      serviceName: 'from-attrs',
      resourceAttributes: { 'service.name': 'from-attrs', 'deployment.environment': 'prod eu' },
      headers: { authorization: 'Bearer x' },
      metricIntervalMs: 5000
    })
    assert.equal(telemetryFromEnv({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c', OTEL_SERVICE_NAME: 'api', OTEL_RESOURCE_ATTRIBUTES: 'service.name=other' })?.serviceName, 'api')
  })

  it('refuses an endpoint that is not an http(s) URL', () => {
    assert.throws(() => telemetryFromEnv({ OTEL_EXPORTER_OTLP_ENDPOINT: 'collector:4317' }), { name: 'RangeError', message: /Invalid OpenTelemetry endpoint "collector:4317\/v1\/traces"/ })
  })
})

describe('parseTraceparent', () => {
  it('takes a W3C traceparent and refuses anything else', () => {
    assert.deepEqual(parseTraceparent('00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'), { traceId: '4bf92f3577b34da6a3ce929d0e0e4736', spanId: '00f067aa0ba902b7', flags: 1 })
    assert.deepEqual(parseTraceparent(' 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00 ')?.flags, 0)
    for (const bad of [undefined, '', 'garbage', '01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01', '00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01',
      '00-00000000000000000000000000000000-00f067aa0ba902b7-01', '00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01', '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra']) {
      assert.equal(parseTraceparent(bad), undefined, String(bad))
    }
  })
})
