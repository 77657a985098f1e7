// The supervisor and the generations it loads through a brane starter: stub runtimes
// stand in for the WASM and microVM ones, so that reuse, rollback, tolerated failures,
// branes placed elsewhere, kept branes, retries with back-off and stopping are tested
// without starting anything.
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import type { BranePlan, Plan } from '../manifest/index.ts'
import { silentLogging } from '../observe/index.ts'
import { loadGeneration, type BraneStarter, type RunningBrane } from './generation.ts'
import { retryDelayMs, Supervisor } from './supervisor.ts'

const log = silentLogging().forComponent('node')

/** A plan of branes named `names`, each with `version` (a stand-in for its whole plan) */
function planOf (names: readonly string[], version: Readonly<Record<string, number>> = {}): Plan {
  const branes = names.map((name) => ({ name, version: version[name] ?? 1 }) as unknown as BranePlan)
  return { file: '/srv/omega.toml', branes, edges: [], resolvers: [] } as unknown as Plan
}

/**
 * A stub runtime: starts anything, hands back the running brane when its plan is the
 * same, fails or places elsewhere as told (`failures`: the first N starts of a brane fail;
 * `gate`: starts wait for it)
 */
function stubStarter (settings: { fail?: ReadonlySet<string>, failures?: Map<string, number>, elsewhere?: ReadonlySet<string>, gate?: () => Promise<void> } = {}): BraneStarter & { started: string[], closed: string[] } {
  const started: string[] = []
  const closed: string[] = []
  const start: BraneStarter = async (brane, current) => {
    await settings.gate?.()
    if (settings.elsewhere?.has(brane.name) === true) {
      return { name: brane.name, state: 'remote', routes: [], reason: 'placed on node-b' }
    }
    const left = settings.failures?.get(brane.name) ?? 0
    if (left > 0) {
      settings.failures?.set(brane.name, left - 1)
      throw Object.assign(new Error(`brane ${brane.name} cannot start yet`), { name: 'ComponentLoadError' })
    }
    if (settings.fail?.has(brane.name) === true) {
      throw Object.assign(new Error(`brane ${brane.name} cannot start`), { name: 'ComponentLoadError' })
    }
    if (current !== undefined && JSON.stringify(current.plan) === JSON.stringify(brane)) {
      return current
    }
    started.push(brane.name)
    const running: RunningBrane = {
      plan: brane,
      id: `b3:${brane.name}`,
      close: async () => { closed.push(brane.name) },
      ...(brane.name.startsWith('on-') ? { events: { deliver: async () => {} } } : {}),
      status: { name: brane.name, state: 'running', routes: [] }
    }
    return running
  }
  return Object.assign(start, { started, closed })
}

describe('a generation of branes', () => {
  it('starts every brane of a plan, and knows which take events', async () => {
    const start = stubStarter()
    const { generation, reused } = await loadGeneration(planOf(['web', 'on-hit']), new Map(), start, log, {})
    assert.deepEqual([...generation.running.keys()], ['web', 'on-hit'])
    assert.deepEqual([...generation.events.keys()], ['on-hit'])
    assert.equal(generation.file, '/srv/omega.toml')
    assert.deepEqual([...reused], [])
    assert.deepEqual(start.started, ['web', 'on-hit'])
  })

  it('reuses on reload the branes whose plan did not change, and starts the changed ones', async () => {
    const start = stubStarter()
    const first = await loadGeneration(planOf(['web', 'api']), new Map(), start, log, {})
    const { generation, reused } = await loadGeneration(planOf(['web', 'api', 'new'], { api: 2 }), first.generation.running, start, log, {})
    assert.deepEqual([...reused], ['web'])
    assert.equal(generation.running.get('web'), first.generation.running.get('web'))
    assert.notEqual(generation.running.get('api'), first.generation.running.get('api'))
    assert.deepEqual(start.started, ['web', 'api', 'api', 'new'])
    // closing what was replaced is the caller's (after the switch): nothing closed here
    assert.deepEqual(start.closed, [])
  })

  it('rolls a failed load back: closes what it started, never what it reused, and throws every failure', async () => {
    const start = stubStarter()
    const first = await loadGeneration(planOf(['web']), new Map(), start, log, {})
    const failing = stubStarter({ fail: new Set(['bad', 'worse']) })
    await assert.rejects(loadGeneration(planOf(['web', 'fresh', 'bad', 'worse']), first.generation.running, failing, log, {}), (err: Error) => {
      assert.equal(err.name, 'ComponentLoadError')
      assert.match(err.message, /^Cannot start 2 branes:\n {2}brane bad cannot start\n {2}brane worse cannot start$/)
      return true
    })
    assert.deepEqual(failing.closed, ['fresh'])
    assert.deepEqual(start.closed, [], 'the reused brane still runs')
  })

  it('lets the failures it is told to tolerate pass: the others serve, the failed ones are returned to retry', async () => {
    const start = stubStarter({ fail: new Set(['bad']) })
    const { generation } = await loadGeneration(planOf(['web', 'bad']), new Map(), start, log, {}, { tolerate: () => true })
    assert.deepEqual([...generation.running.keys()], ['web'])
    assert.deepEqual([...generation.failed.keys()], ['bad'])
    assert.equal(generation.failed.get('bad')?.attempts, 1)
    // ... but not when nothing could start
    await assert.rejects(loadGeneration(planOf(['bad']), new Map(), start, log, {}, { tolerate: () => true }), { name: 'ComponentLoadError' })
  })

  it('does not start a brane placed on another node: it is listed with the reason', async () => {
    const start = stubStarter({ elsewhere: new Set(['store']) })
    const { generation } = await loadGeneration(planOf(['web', 'store']), new Map(), start, log, {})
    assert.deepEqual([...generation.running.keys()], ['web'])
    assert.deepEqual(generation.skipped, [{ name: 'store', state: 'remote', routes: [], reason: 'placed on node-b' }])
  })

  it('keeps the branes it is told to keep as they run, whatever their plan says now', async () => {
    const start = stubStarter()
    const first = await loadGeneration(planOf(['web', 'api']), new Map(), start, log, {})
    const { generation } = await loadGeneration(planOf(['web', 'api'], { web: 2, api: 2 }), first.generation.running, start, log, {}, { keep: new Set(['web']) })
    assert.equal(generation.running.get('web'), first.generation.running.get('web'))
    assert.deepEqual(start.started, ['web', 'api', 'api'])
  })

  it('stops at once when the load is aborted', async () => {
    await assert.rejects(loadGeneration(planOf(['web']), new Map(), stubStarter(), log, { signal: AbortSignal.abort(new Error('stop')) }), /stop/)
  })
})

describe('the supervisor', () => {
  const quick = (): number => 5

  it('backs off 1 s, doubling, at most 5 min', () => {
    assert.deepEqual([1, 2, 3, 9, 10, 50].map(retryDelayMs), [1000, 2000, 4000, 256_000, 300_000, 300_000])
  })

  it('starts a brane that could not start again, with back-off, until it runs; then it is routed', async () => {
    const start = stubStarter({ failures: new Map([['bad', 3]]) })
    const { generation } = await loadGeneration(planOf(['web', 'bad']), new Map(), start, log, {}, { tolerate: () => true })
    const routed: string[] = []
    const delays: number[] = []
    const supervisor = new Supervisor(generation, { starter: () => start, log, started: (name) => { routed.push(name) }, retryDelayMs: (attempts) => { delays.push(attempts); return 5 } })
    supervisor.retryFailed()
    for (let i = 0; i < 200 && routed.length === 0; i++) {
      await new Promise((resolve) => setTimeout(resolve, 5))
    }
    assert.deepEqual(routed, ['bad'])
    assert.deepEqual(delays, [1, 2, 3], 'one more attempt counted per failed start')
    assert.deepEqual([...supervisor.generation.running.keys()], ['web', 'bad'])
    assert.equal(supervisor.generation.failed.size, 0)
    await supervisor.stop()
  })

  it('loads a new plan beside what runs: hands back the replaced branes to drain, keeps the unchanged ones', async () => {
    const start = stubStarter()
    const { generation } = await loadGeneration(planOf(['web', 'api']), new Map(), start, log, {})
    const supervisor = new Supervisor(generation, { starter: () => start, log, started: () => {}, retryDelayMs: quick })
    const load = await supervisor.serially(async () => supervisor.load(planOf(['web', 'api'], { api: 2 }), {}))
    assert.deepEqual([...load.reused], ['web'])
    assert.deepEqual(load.replaced.map((r) => r.plan.name), ['api'])
    assert.equal(supervisor.generation, load.generation)
    // a failed load changes nothing
    const failing = stubStarter({ fail: new Set(['api']) })
    const broken = new Supervisor(load.generation, { starter: () => failing, log, started: () => {}, retryDelayMs: quick })
    await assert.rejects(broken.serially(async () => broken.load(planOf(['web', 'api'], { api: 3 }), {})), { name: 'ComponentLoadError' })
    assert.equal(broken.generation, load.generation)
    await supervisor.stop()
    await broken.stop()
  })

  it('closes what a retry was still starting when the supervisor stopped, and routes nothing to it', async () => {
    let open: () => void = () => {}
    const gated = new Promise<void>((resolve) => { open = resolve })
    let holding = false
    const start = stubStarter({ failures: new Map([['bad', 1]]), gate: async () => { if (holding) { await gated } } })
    const { generation } = await loadGeneration(planOf(['web', 'bad']), new Map(), start, log, {}, { tolerate: () => true })
    const routed: string[] = []
    const supervisor = new Supervisor(generation, { starter: () => start, log, started: (name) => { routed.push(name) }, retryDelayMs: quick })
    holding = true
    supervisor.retryFailed()
    await new Promise((resolve) => setTimeout(resolve, 30))
    // the retry waits in the gate; stop waits for it
    const stopped = supervisor.stop()
    open()
    await stopped
    assert.deepEqual(start.started, ['web', 'bad'])
    assert.deepEqual(start.closed, ['bad'])
    assert.deepEqual(routed, [])
    assert.ok(supervisor.generation.failed.has('bad'))
  })

  it('stops: pending retries are dropped, and nothing loads after', async () => {
    const start = stubStarter({ failures: new Map([['bad', 1]]) })
    const { generation } = await loadGeneration(planOf(['web', 'bad']), new Map(), start, log, {}, { tolerate: () => true })
    const routed: string[] = []
    const supervisor = new Supervisor(generation, { starter: () => start, log, started: (name) => { routed.push(name) }, retryDelayMs: () => 20 })
    supervisor.retryFailed()
    await supervisor.stop()
    await new Promise((resolve) => setTimeout(resolve, 60))
    assert.deepEqual(start.started, ['web'])
    assert.deepEqual(routed, [])
    await assert.rejects(supervisor.load(planOf(['web']), {}), /stopping/)
  })
})
