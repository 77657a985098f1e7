// examples/pipeline end to end in the runtime: the JS branes (componentize-js) built
// by `npm run build`, linked with the grants the manifest compiles to, and a small
// in-memory router in place of the dispatcher (emit → deliver along the plan's edges).
import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { loadManifest, type BranePlan } from '../../manifest/index.ts'
import { OmegaError } from '../../errors.ts'
import { EventBrane, HttpBrane, loadComponent, type BraneEventInput, type BraneLog, type OnEmit } from './index.ts'
import { ROOT } from './testing.ts'

const DIR = join(ROOT, 'examples/pipeline')

class UnknownTopicError extends OmegaError {
  static override name = 'UnknownTopicError'
  constructor (message: string) {
    super(message)
    this.name = 'UnknownTopicError'
  }
}

describe('examples/pipeline', () => {
  let cacheDir = ''
  const branes: Array<HttpBrane | EventBrane> = []

  before(async () => {
    cacheDir = await mkdtemp(join(tmpdir(), 'omega-pipeline-'))
  })

  after(async () => {
    await Promise.all(branes.map(async (b) => { await b.close() }))
    await rm(cacheDir, { recursive: true, force: true })
  })

  it('ingest → transform → train: each emit continues the trace of the event handled', async () => {
    const { plan } = await loadManifest(join(DIR, 'omega.toml'))
    const lines: Array<[string, string]> = []
    const events: BraneEventInput[] = []
    const targets = new Map<string, EventBrane>()
    let sequence = 0
    /** a dispatcher in miniature: queue, then deliver (in order) after acknowledging */
    const onEmitFor = (source: BranePlan): OnEmit => async (topic, payload, options) => {
      const edges = source.edgesOut.filter((edge) => edge.on === topic)
      if (edges.length === 0) {
        throw new UnknownTopicError(`Brane "${source.name}" cannot emit "${topic}"`)
      }
      const id = `${topic}:b3:${String(++sequence).padStart(4, '0')}`
      for (const edge of edges) {
        const event = { id, topic, payload, source: source.name, traceId: options.traceId ?? id, attempt: 1 }
        events.push(event)
        setImmediate(() => {
          targets.get(edge.to)?.deliver(event).catch((err: unknown) => { lines.push([edge.to, `delivery failed: ${String(err)}`]) })
        })
      }
      return id
    }
    const logFor = (name: string): BraneLog => (_stream, line, level) => { lines.push([name, level === undefined ? line : `${level}: ${line}`]) }
    for (const brane of plan.branes) {
      const image = brane.image
      assert.ok(image !== undefined)
      const loaded = await loadComponent(await readFile(join(DIR, image)), { cacheDir })
      const options = {
        name: brane.name,
        grants: brane.grants,
        log: logFor(brane.name),
        onEmit: onEmitFor(brane),
        lifecycle: brane.lifecycle,
        deadlineMs: brane.limits.deadlineMs,
        memMaxBytes: brane.limits.memMaxBytes,
        cpuQuota: brane.limits.cpuQuota,
        spare: false
      }
      if (brane.routes.some((route) => route.declared)) {
        branes.push(await HttpBrane.create(loaded, options))
      } else {
        const target = await EventBrane.create(loaded, options)
        targets.set(brane.name, target)
        branes.push(target)
      }
    }
    const ingest = branes[0] as HttpBrane
    assert.equal(ingest.name, 'ingest')

    const body = new TextEncoder().encode('alpha\n  beta \n\ngamma\n')
    const res = await ingest.handle({ method: 'POST', pathWithQuery: '/ingest', scheme: 'http', authority: 'localhost', headers: [['content-type', 'text/plain']], body })
    assert.equal(res.status, 202)
    assert.deepEqual(JSON.parse(new TextDecoder().decode(res.body)), { id: 'raw.batch:b3:0001', bytes: body.length })

    const until = Date.now() + 20_000
    while (!lines.some(([brane]) => brane === 'train') && Date.now() < until) {
      await new Promise((resolve) => setTimeout(resolve, 20))
    }
    assert.deepEqual(events.map((e) => [e.source, e.topic, e.id, e.traceId]), [
      ['ingest', 'raw.batch', 'raw.batch:b3:0001', 'raw.batch:b3:0001'],
      ['transform', 'tensor.shard', 'tensor.shard:b3:0002', 'raw.batch:b3:0001']
    ])
    assert.equal(new TextDecoder().decode(events[1]?.payload), `${fnv1a(body)} ALPHA|BETA|GAMMA`)
    // each brane's lines in order; across branes the order is a race (ingest logs the
    // event id after its emit returned, while transform may already be running)
    const byBrane = (all: ReadonlyArray<readonly [string, string]>): Array<readonly [string, string]> =>
      ['ingest', 'transform', 'train'].flatMap((name) => all.filter(([brane]) => brane === name))
    assert.deepEqual(byBrane(lines), [
      ['ingest', `info: ingest: ${body.length} bytes as raw.batch:b3:0001`],
      ['transform', 'info: transform: raw.batch:b3:0001 (attempt 1) -> tensor.shard:b3:0002'],
      ['train', `info: train: shard 1 from transform (trace raw.batch:b3:0001): ${fnv1a(body)} ALPHA|BETA|GAMMA`],
      ['train', `debug: train: 1 shards, ${(events[1]?.payload.length ?? 0)} bytes so far`]
    ])

    // an empty batch is rejected by transform (handle-error.reject)
    const transform = targets.get('transform')
    await assert.rejects(transform?.deliver({ id: 'raw.batch:b3:empty', topic: 'raw.batch', payload: new TextEncoder().encode('\n\n'), source: 'ingest', traceId: 't', attempt: 1 }) ?? Promise.resolve(), {
      name: 'RejectedEventError', message: 'Brane "transform" rejected event "raw.batch:b3:empty": event raw.batch:b3:empty has no lines'
    })
  })
})

function fnv1a (bytes: Uint8Array): string {
  let hash = 0x811c9dc5
  for (const byte of bytes) {
    hash ^= byte
    hash = Math.imul(hash, 0x01000193) >>> 0
  }
  return hash.toString(16).padStart(8, '0')
}
