/**
 * Helpers for tests and benchmarks that run many mesh nodes in one process (not used by
 * the daemon).
 */
import { generateNodeKey } from '../identity/index.ts'
import { silentLogging } from '../observe/index.ts'
import { MeshNode } from './node.ts'
import type { MeshInit } from './node.ts'
import type { MembershipSettings } from './membership.ts'

/** Fast settings for loopback tests: failures noticed in about a second */
export const FAST_MEMBERSHIP: Partial<MembershipSettings> = {
  probeIntervalMs: 100,
  probeTimeoutMs: 200,
  indirectTimeoutMs: 300,
  phiMinStdDevMs: 50,
  phiAcceptablePauseMs: 200,
  suspectTimeoutMs: 600,
  reconnectIntervalMs: 300,
  pushPullIntervalMs: 2000,
  leaveTimeoutMs: 500
}

export interface TestMeshOptions extends Partial<Omit<MeshInit, 'key' | 'logger' | 'name'>> {
  /** node names are `${prefix}-${i}` @default 'lab.lan/node' */
  prefix?: string
}

/** Create and start one node */
export async function startNode (name: string, init: Partial<Omit<MeshInit, 'name' | 'logger'>> = {}): Promise<MeshNode> {
  const node = await MeshNode.create({
    key: init.key ?? generateNodeKey(),
    substrate: 'biome',
    membership: FAST_MEMBERSHIP,
    ...init,
    name,
    logger: silentLogging().forComponent('omega:mesh')
  })
  await node.start()
  return node
}

/**
 * Start `count` nodes; the first is the bootstrap peer of the others, which join
 * `concurrency` at a time.
 */
export async function startMesh (count: number, options: TestMeshOptions = {}, concurrency = 8): Promise<MeshNode[]> {
  const { prefix = 'lab.lan/node', ...init } = options
  const first = await startNode(`${prefix}-0`, init)
  const nodes = [first]
  const bootstrap = first.addrs
  for (let i = 1; i < count; i += concurrency) {
    const batch = []
    for (let j = i; j < Math.min(count, i + concurrency); j++) {
      batch.push(startNode(`${prefix}-${j}`, { ...init, bootstrap }))
    }
    nodes.push(...await Promise.all(batch))
  }
  return nodes
}

export async function stopAll (nodes: readonly MeshNode[]): Promise<void> {
  await Promise.allSettled(nodes.map(async (n) => { await n.stop() }))
}

/** Resolves when `check` holds; rejects with `what` after `ms` */
export async function waitFor (check: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms
  while (!check()) {
    if (Date.now() > deadline) {
      throw new Error(`Timed out after ${ms} ms waiting for ${what}`)
    }
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}

/** whether every node sees `did` in `state` */
export function allSee (nodes: readonly MeshNode[], did: string, state: string): boolean {
  return nodes.every((n) => n.did === did || n.member(did)?.state === state)
}
