/**
 * Helpers for tests and benchmarks that run many mesh nodes in one process (not used by
 * the daemon).
 */
import { generateNodeKey } from '../identity/index.ts'
import { silentLogging } from '../observe/index.ts'
import { StreamFrameChannel } from './frames.ts'
import { MeshNode, SWIM_PROTOCOL, peerIdOfDid } from './node.ts'
import type { MeshInit } from './node.ts'
import type { Member, MembershipSettings, WireMember } from './membership.ts'

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

/**
 * TEST hook: send raw membership messages (objects, JSON-encoded as on the wire) from
 * `from` to the member `toDid` over a fresh `/omega/swim/1` stream, then close it. This is
 * what any peer that can connect can do anyway (e.g. to forge records in a test); it adds
 * nothing to the node's own code paths.
 */
export async function sendRawSwim (from: MeshNode, toDid: string, messages: readonly unknown[]): Promise<void> {
  const signal = AbortSignal.timeout(5000)
  const stream = await from.libp2p.dialProtocol(peerIdOfDid(toDid), SWIM_PROTOCOL, { signal })
  const channel = new StreamFrameChannel(stream, toDid)
  const encoder = new TextEncoder()
  for (const message of messages) {
    await channel.send(encoder.encode(JSON.stringify(message)), { signal })
  }
  await channel.close({ signal })
}

/** a member as a wire record (without a signature), e.g. to forge one in a test */
export function wireOf (member: Member): WireMember {
  const w: WireMember = {
    did: member.did,
    peerId: member.peerId,
    name: member.name,
    substrate: member.substrate,
    frontier: member.frontier,
    addrs: [...member.addrs],
    state: member.state,
    inc: member.incarnation,
    meta: { ...member.meta }
  }
  if (member.load !== undefined) {
    w.load = member.load
  }
  return w
}
