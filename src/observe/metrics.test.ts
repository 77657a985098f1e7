import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { MetricsRegistry } from './metrics.ts'

describe('metrics', () => {
  it('renders counters and histograms in the Prometheus text format', () => {
    const registry = new MetricsRegistry()
    const requests = registry.counter('omega_requests_total', 'Requests served')
    const latency = registry.histogram('omega_exec_ms', 'Guest execution time', [1, 10])
    requests.inc({ brane: 'hello', status: '200' })
    requests.inc({ brane: 'hello', status: '200' })
    requests.inc({ brane: 'say "hi"', status: '500' })
    latency.observe(0.5, { brane: 'hello' })
    latency.observe(5, { brane: 'hello' })
    latency.observe(50, { brane: 'hello' })
    assert.equal(registry.render(), [
      '# HELP omega_requests_total Requests served',
      '# TYPE omega_requests_total counter',
      'omega_requests_total{brane="hello",status="200"} 2',
      'omega_requests_total{brane="say \\"hi\\"",status="500"} 1',
      '# HELP omega_exec_ms Guest execution time',
      '# TYPE omega_exec_ms histogram',
      'omega_exec_ms_bucket{brane="hello",le="1"} 1',
      'omega_exec_ms_bucket{brane="hello",le="10"} 2',
      'omega_exec_ms_bucket{brane="hello",le="+Inf"} 3',
      'omega_exec_ms_sum{brane="hello"} 55.5',
      'omega_exec_ms_count{brane="hello"} 3',
      ''
    ].join('\n'))
  })

  it('gives percentiles over the recent window', () => {
    const registry = new MetricsRegistry()
    const h = registry.histogram('x', 'x')
    for (let i = 1; i <= 100; i++) {
      h.observe(i)
    }
    assert.deepEqual(h.summary(), { count: 100, p50: 50, p99: 99, mean: 50.5, max: 100 })
    assert.equal(h.summary({ other: 'series' }), undefined)
  })

  it('lists its series for an exporter: counts per bucket with the one above every bound', () => {
    const registry = new MetricsRegistry()
    const requests = registry.counter('omega_requests_total', 'Requests served')
    const latency = registry.histogram('omega_exec_ms', 'Guest execution time', [1, 10])
    requests.inc({ brane: 'a' }, 2)
    for (const v of [0.5, 5, 50, 60]) {
      latency.observe(v, { brane: 'a' })
    }
    assert.deepEqual(registry.all.map((m) => m.name), ['omega_requests_total', 'omega_exec_ms'])
    assert.deepEqual(requests.series(), [{ labels: { brane: 'a' }, value: 2 }])
    assert.deepEqual(latency.buckets, [1, 10])
    assert.deepEqual(latency.series(), [{ labels: { brane: 'a' }, counts: [1, 1, 2], sum: 115.5, count: 4 }])
  })
})
