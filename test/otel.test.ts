/**
 * OpenTelemetry export end to end: a node exports to a tiny OTLP/HTTP receiver on
 * 127.0.0.1. One request through a chain of branes arrives as one trace (the client's),
 * with a span for the request and one per delivery, each the child of the span that
 * caused it; a guest's outgoing request carries the trace on; the node's metrics arrive
 * too. With no endpoint, the OpenTelemetry packages are never loaded.
 */
import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { LocalNode } from '../src/daemon/index.ts'
import { silentLogging } from '../src/observe/index.ts'
import { CHAIN, copyFixtures, ROOT, until } from './helpers.ts'

interface OtlpValue { stringValue?: string, intValue?: number | string, doubleValue?: number }
interface OtlpAttribute { key: string, value: OtlpValue }
interface OtlpSpan { traceId: string, spanId: string, parentSpanId?: string, name: string, kind: number, attributes: OtlpAttribute[] }
interface TracesBody { resourceSpans: Array<{ resource: { attributes: OtlpAttribute[] }, scopeSpans: Array<{ spans: OtlpSpan[] }> }> }
interface MetricsBody { resourceMetrics: Array<{ scopeMetrics: Array<{ metrics: Array<{ name: string, sum?: { dataPoints: Array<{ attributes: OtlpAttribute[], asInt?: number | string, asDouble?: number }> } }> }> }> }

const SPAN_KIND_SERVER = 2
const SPAN_KIND_CONSUMER = 5

/** A tiny OTLP/HTTP receiver (JSON bodies), which also answers the probe's outgoing requests */
class Receiver {
  readonly traces: TracesBody[] = []
  readonly metrics: MetricsBody[] = []
  /** headers of requests to any other path */
  readonly others: IncomingHttpHeaders[] = []
  readonly #server: Server

  constructor () {
    this.#server = createServer((req, res) => {
      const chunks: Buffer[] = []
      req.on('data', (chunk: Buffer) => { chunks.push(chunk) })
      req.on('end', () => {
        const body = Buffer.concat(chunks).toString('utf8')
        if (req.method === 'POST' && req.url === '/v1/traces') {
          this.traces.push(JSON.parse(body) as TracesBody)
        } else if (req.method === 'POST' && req.url === '/v1/metrics') {
          this.metrics.push(JSON.parse(body) as MetricsBody)
        } else {
          this.others.push(req.headers)
        }
        res.setHeader('content-type', 'application/json')
        res.end('{}')
      })
    })
  }

  async start (): Promise<string> {
    await new Promise<void>((resolve) => { this.#server.listen(0, '127.0.0.1', resolve) })
    return `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}`
  }

  async stop (): Promise<void> {
    this.#server.closeAllConnections()
    await new Promise<void>((resolve) => { this.#server.close(() => { resolve() }) })
  }

  get spans (): Array<OtlpSpan & { resource: OtlpAttribute[] }> {
    return this.traces.flatMap((t) => t.resourceSpans.flatMap((r) => r.scopeSpans.flatMap((s) => s.spans.map((span) => ({ ...span, resource: r.resource.attributes })))))
  }
}

function attr (attributes: readonly OtlpAttribute[], key: string): string | number | undefined {
  const value = attributes.find((a) => a.key === key)?.value
  if (value === undefined) {
    return undefined
  }
  return value.stringValue ?? (value.intValue === undefined ? value.doubleValue : Number(value.intValue))
}

const TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736'
const CLIENT_SPAN = '00f067aa0ba902b7'

describe('OpenTelemetry export', () => {
  let dir = ''
  const receiver = new Receiver()
  let base = ''

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'omega-otel-'))
    await copyFixtures(dir, ['http-emit', 'forward', 'sink', 'probe'])
    await writeFile(join(dir, 'chain.toml'), CHAIN)
    base = await receiver.start()
  })
  after(async () => {
    await receiver.stop()
    await rm(dir, { recursive: true, force: true })
  })

  it('exports one request through a 3-brane chain as one trace, the client\'s, each span the child of the one that caused it', async () => {
    const node = await LocalNode.start(join(dir, 'chain.toml'), {
      home: join(dir, 'chain-home'),
      port: 0,
      logging: silentLogging(),
      admin: false,
      telemetry: { tracesUrl: `${base}/v1/traces`, metricsUrl: `${base}/v1/metrics`, serviceName: 'omega-test' }
    })
    let id = ''
    try {
      const res = await fetch(`${node.url}/e/first?x=1`, { headers: { traceparent: `00-${TRACE_ID}-${CLIENT_SPAN}-01` }, signal: AbortSignal.timeout(30_000) })
      assert.equal(res.status, 200)
      id = (await res.text()).trim()
      await until(() => (node.trace(id)?.hops.length ?? 0) === 2, 30_000, 'both deliveries')
    } finally {
      await node.stop() // flushes the spans and the metrics
    }
    const spans = receiver.spans
    assert.equal(spans.length, 3, JSON.stringify(spans.map((s) => s.name)))
    for (const span of spans) {
      assert.equal(span.traceId, TRACE_ID, `span "${span.name}" is in another trace`)
      assert.equal(attr(span.resource, 'service.name'), 'omega-test')
      assert.equal(attr(span.resource, 'service.instance.id'), node.did)
    }
    const request = spans.find((s) => s.kind === SPAN_KIND_SERVER)
    assert.ok(request !== undefined, 'no request span')
    assert.equal(request.parentSpanId, CLIENT_SPAN)
    assert.equal(request.name, 'GET web')
    assert.equal(attr(request.attributes, 'http.request.method'), 'GET')
    assert.equal(attr(request.attributes, 'url.path'), '/e/first')
    assert.equal(attr(request.attributes, 'http.response.status_code'), 200)
    assert.equal(attr(request.attributes, 'omega.brane'), 'web')
    const mid = spans.find((s) => s.kind === SPAN_KIND_CONSUMER && attr(s.attributes, 'omega.brane') === 'mid')
    assert.ok(mid !== undefined, 'no delivery span for "mid"')
    assert.equal(mid.parentSpanId, request.spanId, 'the first delivery is not a child of the request')
    assert.equal(attr(mid.attributes, 'messaging.destination.name'), 'hits')
    assert.equal(attr(mid.attributes, 'messaging.message.id'), id)
    assert.equal(attr(mid.attributes, 'omega.event.trace_id'), id)
    const end = spans.find((s) => s.kind === SPAN_KIND_CONSUMER && attr(s.attributes, 'omega.brane') === 'end')
    assert.ok(end !== undefined, 'no delivery span for "end"')
    assert.equal(end.parentSpanId, mid.spanId, 'the second delivery is not a child of the first')
    assert.equal(attr(end.attributes, 'messaging.destination.name'), 'out')

    // the registry's metrics, at the last export
    const metrics = receiver.metrics.flatMap((m) => m.resourceMetrics.flatMap((r) => r.scopeMetrics.flatMap((s) => s.metrics)))
    const requests = metrics.filter((m) => m.name === 'omega_requests_total').flatMap((m) => m.sum?.dataPoints ?? [])
    const web = requests.find((p) => attr(p.attributes, 'brane') === 'web' && attr(p.attributes, 'status') === '200')
    assert.ok(web !== undefined, `no omega_requests_total for web: ${JSON.stringify(metrics.map((m) => m.name))}`)
    assert.equal(Number(web.asDouble ?? web.asInt), 1)
    assert.ok(metrics.some((m) => m.name === 'omega_request_duration_ms'), 'no request durations')
    assert.ok(metrics.some((m) => m.name === 'omega_events_total'), 'no event deliveries')
  })

  it('sends the request\'s trace on a guest\'s outgoing wasi:http request', async () => {
    const port = new URL(base).port
    await writeFile(join(dir, 'probe.toml'), `
[brane.probe]
image = "probe.wasm"
trigger = { http = "/fetch" }

[brane.probe.capability]
"net.http" = { allowlist = ["127.0.0.1:${port}"] }
"fs.tmp" = { quota = "64 KiB", lifetime = "request" }
clock = true
random = true
env = {}
`)
    receiver.traces.length = 0
    const node = await LocalNode.start(join(dir, 'probe.toml'), {
      home: join(dir, 'probe-home'),
      port: 0,
      logging: silentLogging(),
      admin: false,
      telemetry: { tracesUrl: `${base}/v1/traces` }
    })
    try {
      const url = encodeURIComponent(`http://127.0.0.1:${port}/downstream`)
      const res = await fetch(`${node.url}/fetch?url=${url}`, { headers: { traceparent: `00-${TRACE_ID}-${CLIENT_SPAN}-01` }, signal: AbortSignal.timeout(60_000) })
      assert.equal(res.status, 200, await res.clone().text())
      assert.equal((JSON.parse(await res.text()) as { status?: number }).status, 200)
    } finally {
      await node.stop()
    }
    const request = receiver.spans.find((s) => s.kind === SPAN_KIND_SERVER)
    assert.ok(request !== undefined, 'no request span')
    assert.equal(receiver.others.length, 1)
    assert.equal(receiver.others[0]?.traceparent, `00-${TRACE_ID}-${request.spanId}-01`)
  })

  it('loads no OpenTelemetry package when no endpoint is set', async () => {
    // a child process whose module loader refuses every @opentelemetry module: a node
    // without telemetry serves and delivers; one with telemetry cannot start
    const script = join(dir, 'no-otel.mjs')
    await writeFile(join(dir, 'hooks.mjs'), `
export async function resolve (specifier, context, next) {
  if (specifier.includes('@opentelemetry') || /observe\\/otel\\.js$/.test(specifier)) {
    throw new Error('loaded ' + specifier)
  }
  return next(specifier, context)
}
`)
    await writeFile(script, `
import { register } from 'node:module'
register(${JSON.stringify(pathToFileURL(join(dir, 'hooks.mjs')).href)})
const { LocalNode } = await import(${JSON.stringify(pathToFileURL(join(ROOT, 'dist/src/daemon/index.js')).href)})
const { silentLogging } = await import(${JSON.stringify(pathToFileURL(join(ROOT, 'dist/src/observe/index.js')).href)})
const telemetry = process.argv[2] === 'on' ? { telemetry: { tracesUrl: 'http://127.0.0.1:9/v1/traces' } } : {}
const node = await LocalNode.start(process.argv[3], { home: process.argv[4], port: 0, logging: silentLogging(), admin: false, ...telemetry })
try {
  const res = await fetch(node.url + '/e/x', { signal: AbortSignal.timeout(30000) })
  const id = (await res.text()).trim()
  const deadline = Date.now() + 30000
  while ((node.trace(id)?.hops.length ?? 0) < 2) {
    if (Date.now() > deadline) throw new Error('the events were not delivered')
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
  process.stdout.write('served ' + res.status + '\\n')
} finally {
  await node.stop()
}
`)
    const run = async (mode: 'on' | 'off'): Promise<{ code: number | null, out: string }> => {
      const child = spawn(process.execPath, [script, mode, join(dir, 'chain.toml'), join(dir, `no-otel-${mode}`)], { stdio: ['ignore', 'pipe', 'pipe'], timeout: 60_000 })
      let out = ''
      child.stdout.on('data', (chunk: Buffer) => { out += chunk.toString() })
      child.stderr.on('data', (chunk: Buffer) => { out += chunk.toString() })
      const code = await new Promise<number | null>((resolve) => { child.on('close', resolve) })
      return { code, out }
    }
    const off = await run('off')
    assert.equal(off.code, 0, off.out)
    assert.match(off.out, /^served 200$/m)
    const on = await run('on')
    assert.notEqual(on.code, 0, on.out)
    assert.match(on.out, /loaded .*(@opentelemetry|otel\.js)/)
  })
})
