/**
 * Placement without a scheduler: every node computes the same assignment from the same
 * manifest and the same membership view. Each brane ranks the eligible nodes by
 * rendezvous (highest-random-weight) hashing of (brane, node) and runs on the first
 * `replicas` of them. When a node goes, only the branes it held move, each to the next
 * node in its own ranking; when one comes, it takes over only the branes it ranks first for.
 */
import { createHash } from 'node:crypto'
import picomatch from 'picomatch'
import type { BranePlan, Plan, ResolverPlan } from '../manifest/index.ts'

/** What placement needs to know of a node */
export interface Candidate {
  readonly did: string
  readonly name: string
  readonly substrate: string
  readonly frontier: boolean
  readonly state: 'alive' | 'suspect' | 'dead' | 'left'
  readonly meta?: Readonly<Record<string, string>>
}

export interface BranePlacement {
  readonly brane: string
  /** the nodes that run it, best ranked first */
  readonly nodes: readonly string[]
  /** how many replicas the manifest asks for now */
  readonly wanted: number
  /** eligible nodes (alive or suspect, matching substrate, peers/hosts and profile) */
  readonly eligible: number
  /** why it runs nowhere, or on fewer nodes than wanted */
  readonly reason?: string
}

export interface PlaceOptions {
  /** replicas wanted now for a `replicas = "auto"` brane (within its bounds). @default its minimum */
  auto?: (brane: BranePlan) => number
}

/** The meta key a node sets when it can pass a GPU through (VFIO) */
export const META_VFIO = 'vfio'

/** The rendezvous weight of `node` for `brane`: the first 8 bytes of SHA-256 */
export function weight (brane: string, node: string): bigint {
  return createHash('sha256').update(brane).update('\u0000').update(node).digest().readBigUInt64BE(0)
}

/** Why `member` cannot run `brane`, or undefined when it can */
export function ineligible (brane: BranePlan, member: Candidate): string | undefined {
  if (member.state === 'dead' || member.state === 'left') {
    return `node is ${member.state}`
  }
  if (member.substrate !== brane.substrate) {
    return `node is on substrate ${member.substrate}, the brane wants ${brane.substrate}`
  }
  if (brane.peers !== undefined && !picomatch.isMatch(member.name, brane.peers)) {
    return `node name "${member.name}" does not match peers = "${brane.peers}"`
  }
  if (brane.hosts.length > 0 && !brane.hosts.some((h) => h === member.name || picomatch.isMatch(member.name, h))) {
    return `node name "${member.name}" is not in hosts`
  }
  if (brane.profile === 'frontier' && !member.frontier) {
    return 'node cannot run microVMs (frontier)'
  }
  if (brane.gpu === 'passthrough' && member.meta?.[META_VFIO] !== '1') {
    return 'node has no VFIO for gpu = "passthrough"'
  }
  return undefined
}

/** Replicas wanted for `brane` now */
export function wantedReplicas (brane: BranePlan, options: PlaceOptions = {}): number {
  const rule = brane.replicas
  if (rule.kind === 'fixed') {
    return rule.count
  }
  const asked = options.auto?.(brane) ?? rule.min
  return Number.isFinite(asked) ? Math.min(rule.max, Math.max(rule.min, Math.round(asked))) : rule.min
}

/** The placement of every brane of `plan` over `members` */
export function place (plan: Plan, members: readonly Candidate[], options: PlaceOptions = {}): Map<string, BranePlacement> {
  const placements = new Map<string, BranePlacement>()
  for (const brane of plan.branes) {
    const wanted = wantedReplicas(brane, options)
    const reasons = new Map<string, string>()
    const eligible = members.filter((m) => {
      const why = ineligible(brane, m)
      if (why !== undefined) {
        reasons.set(m.name, why)
      }
      return why === undefined
    })
    // alive nodes first, so a suspect one takes a replica only when no alive node is left
    const ranked = eligible
      .map((m) => ({ m, w: weight(brane.name, m.did) }))
      .sort((a, b) => (a.m.state === 'alive' ? 0 : 1) - (b.m.state === 'alive' ? 0 : 1) || (a.w < b.w ? 1 : a.w > b.w ? -1 : 0))
      .map(({ m }) => m.did)
    const nodes = ranked.slice(0, wanted)
    let reason: string | undefined
    if (nodes.length === 0) {
      const detail = [...reasons].slice(0, 4).map(([name, why]) => `${name}: ${why}`).join('; ')
      reason = `no eligible node (${members.length} known${detail === '' ? '' : `; ${detail}`})`
    } else if (nodes.length < wanted) {
      reason = `only ${nodes.length} eligible node(s) for ${wanted} replicas`
    }
    placements.set(brane.name, { brane: brane.name, nodes, wanted, eligible: eligible.length, ...(reason === undefined ? {} : { reason }) })
  }
  return placements
}

/**
 * Whether node `did` runs `resolver`'s provider: one node of the mesh does, the first of
 * its brane's placement (where that brane's requests are served), or for a resolver of
 * the whole gateway the alive member ranked first for the resolver's name. When that node
 * goes, the brane's next node takes it over with the brane.
 */
export function runsResolver (resolver: ResolverPlan, did: string, placement: ReadonlyMap<string, BranePlacement>, members: readonly Candidate[]): boolean {
  if (resolver.brane !== undefined) {
    return placement.get(resolver.brane)?.nodes[0] === did
  }
  let best: { did: string, w: bigint } | undefined
  for (const m of members) {
    const w = weight(`resolver/${resolver.name}`, m.did)
    if (m.state === 'alive' && (best === undefined || w > best.w)) {
      best = { did: m.did, w }
    }
  }
  return best?.did === did
}

/**
 * The undelivered events per brane the members advertise (`q.<brane>` meta, for
 * `replicas = "auto"`), summed over the mesh
 */
export function advertisedBacklogs (members: ReadonlyArray<{ readonly meta: Readonly<Record<string, string>> }>): Map<string, number> {
  const total = new Map<string, number>()
  for (const member of members) {
    for (const [key, value] of Object.entries(member.meta)) {
      const depth = Number(value)
      // advertised by each member about itself: take only sane numbers
      if (key.startsWith('q.') && Number.isSafeInteger(depth) && depth >= 0) {
        total.set(key.slice(2), (total.get(key.slice(2)) ?? 0) + Math.min(depth, 1_000_000))
      }
    }
  }
  return total
}
