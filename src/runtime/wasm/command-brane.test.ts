// A wasi:cli/run command as an event brane, with the WAT fixture
// src/runtime/wasm/fixtures/echo-command.wat (it logs its environment and arguments on
// stderr, copies stdin to stdout, and exits with N when stdin starts with "exit N")
import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { EventBrane, type BraneEventInput, type EventBraneOptions, type OnEmit } from './index.ts'
import { componentLoader } from './testing.ts'

const encode = (text: string): Uint8Array => new TextEncoder().encode(text)

function event (payload: string, extra: Partial<BraneEventInput> = {}): BraneEventInput {
  return { id: 'jobs:b3:0001', topic: 'jobs', payload: encode(payload), source: 'ingest', traceId: 'jobs:b3:0000', attempt: 2, ...extra }
}

type Line = [string, string]

describe('EventBrane running a wasi:cli/run command', () => {
  let cacheDir = ''
  const open: EventBrane[] = []
  const load = componentLoader(() => cacheDir)

  async function start (options: Partial<EventBraneOptions> = {}): Promise<{ brane: EventBrane, lines: Line[] }> {
    const lines: Line[] = []
    const brane = await EventBrane.create(await load('build/fixtures/echo-command.wasm'), {
      name: 'cmd', grants: { 'fs.tmp': { quotaBytes: 1 << 20, lifetime: 'request' } }, log: (stream, line) => { lines.push([stream, line]) }, ...options
    })
    open.push(brane)
    return { brane, lines }
  }

  before(async () => { cacheDir = await mkdtemp(join(tmpdir(), 'omega-command-brane-')) })
  after(async () => {
    await Promise.all(open.map(async (b) => { await b.close() }))
    await rm(cacheDir, { recursive: true, force: true })
  })

  it('runs the command per event: the payload is stdin, OMEGA_* and the env grant are its environment, stdout and stderr go to the log', async () => {
    const { brane, lines } = await start({ grants: { env: { GREETING: 'hi', OMEGA_TOPIC: 'overridden' }, 'fs.tmp': { quotaBytes: 1 << 20, lifetime: 'request' } } })
    await brane.deliver(event('first payload\n'))
    await brane.deliver(event('second payload\n', { id: 'jobs:b3:0002', attempt: 1 }))
    const stderr = lines.filter(([stream]) => stream === 'stderr').map(([, line]) => line)
    const stdout = lines.filter(([stream]) => stream === 'stdout').map(([, line]) => line)
    assert.deepEqual(stdout, ['first payload', 'second payload'])
    for (const expected of ['GREETING=hi', 'OMEGA_KIND=event', 'OMEGA_BRANE=cmd', 'OMEGA_TOPIC=jobs', 'OMEGA_EVENT_ID=jobs:b3:0001', 'OMEGA_SOURCE=ingest', 'OMEGA_TRACE_ID=jobs:b3:0000', 'OMEGA_ATTEMPT=2', 'OMEGA_EVENT_ID=jobs:b3:0002', 'OMEGA_ATTEMPT=1', 'arg cmd']) {
      assert.ok(stderr.includes(expected), `stderr has ${expected}: ${stderr.join(' | ')}`)
    }
    // the event's variables win over the grant's; each event is a fresh instance, so nothing repeats
    assert.ok(!stderr.includes('OMEGA_TOPIC=overridden'))
    assert.equal(stderr.filter((line) => line === 'OMEGA_KIND=event').length, 2)
  })

  it('exit 0 (through wasi:cli/exit too) is done, 65 rejects, 75 and other codes retry; the worker survives each', async () => {
    const { brane } = await start()
    await brane.deliver(event('exit 0'))
    await assert.rejects(brane.deliver(event('exit 65')), { name: 'RejectedEventError', message: /Brane "cmd" rejected event "jobs:b3:0001": its command exited with status 65/ })
    await assert.rejects(brane.deliver(event('exit 75')), { name: 'RetryableEventError', message: /exited with status 75 on event "jobs:b3:0001" \(retry asked\)/ })
    await assert.rejects(brane.deliver(event('exit 3')), { name: 'RetryableEventError', message: /exited with status 3 on event/ })
    await brane.deliver(event('plain'))
    assert.equal(brane.stats.deadlineKills, 0)
  })

  it('with stdout = "emit", emits the records it wrote once it exits 0, on the event\'s trace', async () => {
    const calls: Array<[string, string, string | undefined]> = []
    const onEmit: OnEmit = async (topic, payload, options) => {
      calls.push([topic, new TextDecoder().decode(payload), options.traceId])
      return `${topic}:b3:${calls.length}`
    }
    const { brane } = await start({ stdout: 'emit', onEmit, grants: { emit: { topics: ['out', 'other'] }, 'fs.tmp': { quotaBytes: 1 << 20, lifetime: 'request' } } })
    await brane.deliver(event('out 5\nhelloother 2\nhi'))
    assert.deepEqual(calls, [['out', 'hello', 'jobs:b3:0000'], ['other', 'hi', 'jobs:b3:0000']])
    // a topic no edge carries: refused, nothing emitted
    await assert.rejects(brane.deliver(event('out 1\nxsecret 3\nabc')), { name: 'CapabilityDeniedError', message: /Brane "cmd" emitted on topic "secret", which no edge in \[graph\]\.edges carries from it \(it may emit: out, other\)/ })
    // malformed records are the guest's failure
    await assert.rejects(brane.deliver(event('not a record')), { name: 'GuestError', message: /Malformed emit record on stdout/ })
    // a failing exit emits nothing ("exit 75" is no record: it is never parsed)
    await assert.rejects(brane.deliver(event('exit 75')), { name: 'RetryableEventError' })
    assert.equal(calls.length, 2)
  })

  it('is refused when an import is not granted, naming the grant (its environment needs none: it carries the event)', async () => {
    await assert.rejects(EventBrane.create(await load('build/fixtures/echo-command.wasm'), { name: 'cmd', grants: {}, log: () => {} }), (err: Error) => {
      assert.equal(err.name, 'CapabilityDeniedError')
      assert.match(err.message, /^Cannot link brane "cmd": component imports "wasi:filesystem\/preopens@0\.2\.12", which needs \[brane\.cmd\.capability\] "fs\.tmp"/)
      assert.doesNotMatch(err.message, /environment/)
      return true
    })
  })
})
