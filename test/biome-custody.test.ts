// Custody of queued events across `omega node` processes (four in all, on 127.0.0.1):
// events queued on a node that leaves are handed over and delivered by another node;
// with `[graph] durability = "replicated"` a node killed -9 and never restarted loses no
// acknowledged event (its copies on a second node are delivered instead).
import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { cli, copyFixtures, eventually, json, listItems, ok, peers, startNode, stopDaemon, type MeshProcess, type Placement } from './helpers.ts'

/** web (on the edge nodes) emits each request's path to end, which keeps them in its state */
function pipeline (endPeers: string, durability: 'local' | 'replicated'): string {
  return `
[brane.web]
substrate = "biome"
image = "http-emit.wasm"
lifecycle = "pooled"
trigger = { http = "/e/*" }
replicas = 2
peers = "lab/edge-*"

[brane.end]
substrate = "biome"
image = "state.wasm"
lifecycle = "pooled"
peers = "${endPeers}"

[brane.end.capability]
state = true

[graph]
durability = "${durability}"
edges = [{ from = "web", to = "end", on = "hits" }]
`
}

async function send (base: string, path: string): Promise<{ status: number, body: string }> {
  const res = await fetch(new URL(path, base), { method: 'POST', body: 'x', signal: AbortSignal.timeout(30_000) })
  return { status: res.status, body: (await res.text()).trim() }
}

describe('biome: queued events outlive the node that queued them', { timeout: 240_000 }, () => {
  let dir = ''
  const nodes = new Map<string, MeshProcess>()
  let deployerKey = ''
  let trust = ''

  const node = (name: string): MeshProcess => {
    const found = nodes.get(name)
    assert.ok(found !== undefined, `no node ${name}`)
    return found
  }
  const live = (): MeshProcess[] => [...nodes.values()].filter((n) => n.child.exitCode === null && n.child.signalCode === null)

  /** Deploy `manifest` through `via` and wait until every live node runs it */
  async function deploy (manifest: string, via: MeshProcess): Promise<void> {
    const file = join(dir, 'omega.toml')
    await writeFile(file, manifest)
    const run = await cli(['deploy', file, '--key', deployerKey, '--json'], via.home)
    assert.equal(run.code, 0, run.err)
    const id = (JSON.parse(run.out) as { id: string }).id
    await eventually(async () => {
      const views = await Promise.all(live().map(async (n) => json<Placement>(['biome', 'placement'], n.home)))
      return views.every((v) => v.deployment === id)
    }, 30_000, `every live node to run deployment ${id}`)
  }

  /** Post `/e/<prefix>N` for N < count to `gateway`; web answers each with the id of the event it emitted (acknowledged) */
  async function emit (gateway: string, prefix: string, count: number): Promise<string[]> {
    const acknowledged: string[] = []
    for (let i = 0; i < count; i++) {
      const { status, body } = await send(gateway, `/e/${prefix}${i}`)
      assert.equal(status, 200, `request ${prefix}${i} answered ${status}`)
      assert.match(body, /^hits:b3:/, `request ${prefix}${i}`)
      acknowledged.push(`/e/${prefix}${i}`)
    }
    return acknowledged
  }

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'omega-custody-'))
    await copyFixtures(dir, ['http-emit', 'state'])
    const first = await startNode(join(dir, 'edge-1'), 'lab/edge-1', [])
    nodes.set('edge-1', first)
    deployerKey = join(first.home, 'node.key')
    trust = (await cli(['id'], first.home)).out.trim()
    for (const name of ['edge-2', 'pool-a']) {
      nodes.set(name, await startNode(join(dir, name), `lab/${name}`, ['--bootstrap', first.addr, '--trust', trust]))
    }
    for (const n of nodes.values()) {
      await eventually(async () => (await peers(n.home)).filter((p) => p.status === 'HEAD').length === 3, 20_000, `${n.name} to see 3 live nodes`)
    }
  })

  after(async () => {
    await Promise.all([...nodes.values()].map(async (n) => { await stopDaemon(n, 'SIGKILL') }))
    await rm(dir, { recursive: true, force: true })
  })

  it('hands the events queued on a node that leaves to another node, which delivers them', async () => {
    // end can run on no node yet: every event waits in the queue of the node that took it
    await deploy(pipeline('lab/store-*', 'local'), node('edge-1'))
    const acknowledged = await emit(node('edge-1').gateway, 'h', 30)
    const leaving = node('edge-1')
    assert.equal(await stopDaemon(leaving, 'SIGINT'), 0, leaving.output())
    assert.match(leaving.output(), /handed 30 queued deliveries to the mesh before leaving/)
    // a store node arrives: end runs there, and the node that took the events delivers them
    nodes.set('store-1', await startNode(join(dir, 'store-1'), 'lab/store-1', ['--bootstrap', node('pool-a').addr, '--trust', trust]))
    await eventually(async () => {
      const seen = new Set(await listItems(node('store-1').home, 'end', 'seen'))
      return acknowledged.every((path) => seen.has(path))
    }, 60_000, 'every event queued on the node that left to reach end')
  })

  it('with durability = "replicated", loses no acknowledged event of a node killed -9 and never restarted', async () => {
    // end can run nowhere again, so the events wait on edge-2 (web's only node now)
    await deploy(pipeline('lab/later-*', 'replicated'), node('pool-a'))
    const victim = node('edge-2')
    // every node runs the deployment; the victim learns who else does by gossip, a beat
    // later: until then its replicated emits are refused (not acknowledged), as they must be
    // (a refused emit's event stays queued on the victim all the same: count every try)
    let tries = 0
    await eventually(async () => {
      tries++
      return /^hits:b3:/.test((await send(victim.gateway, '/e/ready')).body)
    }, 30_000, 'the victim to know another node that can hold its copies')
    const acknowledged = ['/e/ready', ...await emit(victim.gateway, 'r', 30)]
    victim.child.kill('SIGKILL')
    await eventually(async () => (await peers(node('pool-a').home)).find((p) => p.name === victim.name)?.status === 'DEAD', 30_000, 'the killed node to be declared dead')
    // end may run on the store node again: the copies the killed node left are delivered
    await deploy(pipeline('lab/store-*', 'replicated'), node('pool-a'))
    await eventually(async () => {
      const seen = new Set(await listItems(node('store-1').home, 'end', 'seen'))
      return acknowledged.every((path) => seen.has(path))
    }, 60_000, 'every event acknowledged by the killed node to reach end')
    const took = [...nodes.values()].filter((n) => n.output().includes(`took over ${30 + tries} queued deliveries of lab/edge-2, which is dead`))
    assert.equal(took.length, 1, 'one node held the copies and delivered them')
    for (const n of live()) {
      const dead = await cli(['dlq', '--json'], n.home)
      assert.deepEqual(JSON.parse(dead.out), [], `${n.name} dead-lettered nothing`)
    }
  })

  it('refuses to acknowledge a replicated emit when no other node can hold a copy', async () => {
    // alone with web: pool-a and store-1 leave the picture for web's node, edge-3
    const edge3 = await startNode(join(dir, 'edge-3'), 'lab/edge-3', ['--trust', trust])
    nodes.set('edge-3', edge3)
    const file = join(dir, 'alone.toml')
    await writeFile(file, pipeline('lab/later-*', 'replicated'))
    // the same app as before (the file's stem would make it a second app, whose branes collide)
    await ok(['deploy', file, '--app', 'omega', '--key', deployerKey], edge3.home)
    await eventually(async () => (await json<Placement>(['biome', 'placement'], edge3.home)).placement.find((p) => p.brane === 'web')?.names[0] === 'lab/edge-3', 30_000, 'web to run on edge-3')
    // web's emit fails, and web says so (instead of an event id)
    const { body } = await send(edge3.gateway, '/e/alone')
    assert.match(body, /^emit failed: .*no other live node runs this deployment to hold a copy of the event, so it is not acknowledged/)
  })
})
