/**
 * What the dashboard shows, read from a node: its peers (a node alone is a mesh of one),
 * the graph with each edge's live rate, backlog and failures, each brane's profile,
 * instances and placement, the latest traces and the settlement so far.
 */
import { hostname } from 'node:os'
import { edgeKey } from '../dispatch/index.ts'
import type { AbortOptions } from '../interfaces/index.ts'
import type { Receipt, UsageLine } from '../settle/index.ts'
import { receiptDigest } from '../settle/index.ts'
import type { LocalNode } from './local-node.ts'
import type { BraneProfile, InstanceRow } from './observer.ts'

/** One row of `omega biome peers` */
export interface PeerRow {
  readonly name: string
  readonly did: string
  /** HEAD: alive, same deployment · HEAL: alive, catching up · TAIL: suspected · DEAD · LEFT */
  readonly status: 'HEAD' | 'HEAL' | 'TAIL' | 'DEAD' | 'LEFT'
  readonly self: boolean
  readonly substrate: string
  readonly rttMs?: number
  readonly load?: number
  /** the branes it runs */
  readonly branes: readonly string[]
  readonly edgesIn: number
  readonly edgesOut: number
  readonly addrs: readonly string[]
}

/** Counters of one edge on one node */
export interface EdgeCounters {
  readonly acked: number
  readonly failed: number
  readonly backlog: number
}

/** What a node in a mesh adds: the other nodes */
export interface MeshView {
  readonly name: string
  readonly peers: () => PeerRow[]
  /** brane → the names of the nodes running it */
  readonly placement: () => ReadonlyMap<string, readonly string[]>
  /** every live node's edge counters, summed (this node's included) */
  readonly edges: (options: AbortOptions) => Promise<ReadonlyMap<string, EdgeCounters>>
}

export interface DashboardState {
  /** ms since the epoch */
  readonly at: number
  readonly node: { readonly did: string, readonly name: string, readonly mode: 'one node' | 'mesh', readonly gateway: string, readonly manifest: string, readonly startedAt: string }
  readonly peers: readonly PeerRow[]
  readonly branes: ReadonlyArray<{
    readonly name: string
    readonly substrate: string
    readonly profile: string
    readonly lifecycle: string
    readonly state: string
    readonly reason?: string
    readonly routes: readonly string[]
    /** the nodes running it */
    readonly nodes: readonly string[]
    readonly stats: BraneProfile
    readonly instances: readonly InstanceRow[]
  }>
  readonly edges: ReadonlyArray<EdgeCounters & {
    readonly from: string
    readonly to: string
    readonly on: string
    /** acknowledged deliveries per second over the last few seconds */
    readonly rate: number
  }>
  readonly traces: ReturnType<LocalNode['queue']['recentTraces']>
  readonly settlement?: {
    /** usage of the period not yet in a receipt, per brane and deployer */
    readonly pending: readonly UsageLine[]
    readonly head?: { readonly seq: number, readonly to: string, readonly digest: string, readonly usage: readonly UsageLine[] }
  }
}

/** Seconds of history a rate is taken over */
const RATE_SAMPLES = 5
const TRACES = 20

/** Reads a node's state for the dashboard, keeping the few samples its rates need */
export class DashboardModel {
  readonly #node: LocalNode
  readonly #mesh: MeshView | undefined
  readonly #samples: Array<{ at: number, acked: ReadonlyMap<string, number> }> = []

  constructor (node: LocalNode, mesh?: MeshView) {
    this.#node = node
    this.#mesh = mesh
  }

  async read (options: AbortOptions): Promise<DashboardState> {
    const node = this.#node
    const plan = node.plan
    // once: each read of `branes` builds the list anew
    const statuses = new Map(node.branes.map((b) => [b.name, b]))
    const name = this.#mesh?.name ?? hostname()
    const counters = this.#mesh === undefined ? localEdges(node) : await this.#mesh.edges(options)
    const at = Date.now()
    const acked = new Map([...counters].map(([key, c]) => [key, c.acked]))
    this.#samples.push({ at, acked })
    if (this.#samples.length > RATE_SAMPLES + 1) {
      this.#samples.shift()
    }
    const first = this.#samples[0] as { at: number, acked: ReadonlyMap<string, number> }
    const seconds = (at - first.at) / 1000
    const placement = this.#mesh?.placement()
    const settlement = node.settlement
    const head = settlement?.head()
    const running = [...statuses.values()].filter((b) => b.state === 'running').map((b) => b.name)
    return {
      at,
      node: { did: node.did, name, mode: this.#mesh === undefined ? 'one node' : 'mesh', gateway: node.url, manifest: plan.file, startedAt: node.startedAt },
      peers: this.#mesh?.peers() ?? [{
        name,
        did: node.did,
        status: 'HEAD',
        self: true,
        substrate: 'habitat',
        branes: running,
        edgesIn: plan.edges.filter((e) => running.includes(e.to)).length,
        edgesOut: plan.edges.filter((e) => running.includes(e.from)).length,
        addrs: [node.url]
      }],
      branes: plan.branes.map((b) => {
        const status = statuses.get(b.name)
        return {
          name: b.name,
          substrate: b.substrate,
          profile: b.profile,
          lifecycle: b.lifecycle,
          state: status?.state ?? 'unknown',
          ...(status?.reason === undefined ? {} : { reason: status.reason }),
          routes: status?.routes ?? [],
          nodes: placement?.get(b.name) ?? (status?.state === 'running' ? [name] : []),
          stats: node.observer.profile(b.name),
          instances: node.observer.instances(b.name)
        }
      }),
      edges: plan.edges.map((e) => {
        const key = edgeKey(e)
        const c = counters.get(key) ?? { acked: 0, failed: 0, backlog: 0 }
        const before = first.acked.get(key) ?? 0
        return { from: e.from, to: e.to, on: e.on, ...c, rate: seconds > 0 ? Math.max(0, c.acked - before) / seconds : 0 }
      }),
      traces: node.queue.recentTraces(TRACES),
      ...(settlement === undefined
        ? {}
        : { settlement: { pending: settlement.pending(), ...(head === undefined ? {} : { head: headOf(head) }) } })
    }
  }
}

/** This node's counters of every edge it holds deliveries of */
export function localEdges (node: Pick<LocalNode, 'queue'>): Map<string, EdgeCounters> {
  const out = new Map<string, EdgeCounters>()
  const depth = node.queue.depth()
  for (const [key, totals] of node.queue.edgeTotals()) {
    out.set(key, { acked: totals.acked, failed: totals.failed, backlog: depth.get(key) ?? 0 })
  }
  for (const [key, backlog] of depth) {
    if (!out.has(key)) {
      out.set(key, { acked: 0, failed: 0, backlog })
    }
  }
  return out
}

/**
 * Every live node's edge counters summed: this node's, and what each of `peers` answers
 * to `ask` (an answer that is not a list of counters is left out, as a peer that does
 * not answer)
 */
export async function meshEdges (local: Pick<LocalNode, 'queue'> | undefined, peers: readonly string[], ask: (did: string) => Promise<unknown>): Promise<Map<string, EdgeCounters>> {
  const answers = await Promise.allSettled(peers.map(async (did) => countersOf(await ask(did))))
  return sumEdges([...(local === undefined ? [] : [localEdges(local)]), ...answers.flatMap((a) => a.status === 'fulfilled' ? [a.value] : [])])
}

/** Edge counters from a peer's answer, `[[edge, {acked, failed, backlog}], …]`, checked */
function countersOf (answer: unknown): Map<string, EdgeCounters> {
  const out = new Map<string, EdgeCounters>()
  const count = (n: unknown): number => typeof n === 'number' && Number.isFinite(n) && n >= 0 ? n : 0
  for (const entry of Array.isArray(answer) ? answer : []) {
    if (Array.isArray(entry) && typeof entry[0] === 'string' && typeof entry[1] === 'object' && entry[1] !== null) {
      const c = entry[1] as Record<string, unknown>
      out.set(entry[0], { acked: count(c.acked), failed: count(c.failed), backlog: count(c.backlog) })
    }
  }
  return out
}

/** Counters of several nodes, summed per edge */
function sumEdges (all: ReadonlyArray<ReadonlyMap<string, EdgeCounters>>): Map<string, EdgeCounters> {
  const out = new Map<string, EdgeCounters>()
  for (const counters of all) {
    for (const [key, c] of counters) {
      const sum = out.get(key)
      out.set(key, sum === undefined ? c : { acked: sum.acked + c.acked, failed: sum.failed + c.failed, backlog: sum.backlog + c.backlog })
    }
  }
  return out
}

function headOf (receipt: Receipt): NonNullable<NonNullable<DashboardState['settlement']>['head']> {
  return { seq: receipt.seq, to: receipt.to, digest: receiptDigest(receipt), usage: receipt.usage }
}
