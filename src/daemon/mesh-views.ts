/**
 * What a mesh node shows of itself: the apps it runs (`omega apps`), the peers table
 * (`omega biome peers`, the seeds' table) and the placement (`omega biome placement`)
 */
import { deploymentId, formatHlc, type BranePlacement, type DeploymentDocument } from '../biome/index.ts'
import type { Edge, Plan } from '../manifest/index.ts'
import type { Member } from '../mesh/index.ts'
import type { PeerRow } from './dashboard-state.ts'

/** What `omega apps` lists */
export interface AppRow {
  readonly name: string
  readonly id: string
  readonly deployer: string
  readonly time: string
  /** running (its branes placed), pending (not prepared yet), or refused (it collides with an app deployed before it) */
  readonly status: 'running' | 'pending' | 'refused'
  readonly reason?: string
  readonly manifest: string
  /** brane → names of the nodes it runs on */
  readonly placement: Readonly<Record<string, readonly string[]>>
}

/** What `omega biome placement` shows */
export interface PlacementView {
  /** the version of the apps placed (see versionOf), or null before any */
  readonly deployment: string | null
  /** app → id of its deployment */
  readonly apps: Readonly<Record<string, string>>
  readonly placement: ReadonlyArray<BranePlacement & { readonly names: readonly string[] }>
}

/** What {@link appRows} reads */
export interface AppRowsInput {
  /** every deployment the node holds (removals too) */
  readonly docs: readonly DeploymentDocument[]
  /** the apps prepared, with the id of their deployment */
  readonly apps: ReadonlyMap<string, { readonly id: string, readonly plan: Plan }>
  /** the apps left out, with why */
  readonly refused: ReadonlyMap<string, string>
  /** the placement applied */
  readonly applied: ReadonlyMap<string, BranePlacement>
  /** whether what is applied is what the node holds */
  readonly upToDate: boolean
  readonly nameOf: (did: string) => string
}

/** Every app (not the removed ones), with its version, status and where each brane runs */
export function appRows (input: AppRowsInput): AppRow[] {
  const rows: AppRow[] = []
  for (const doc of input.docs) {
    if (doc.removed === true) {
      continue
    }
    const id = deploymentId(doc)
    const app = input.apps.get(doc.name)
    const prepared = app?.id === id ? app : undefined
    const refused = input.refused.get(doc.name)
    const placement: Record<string, string[]> = {}
    for (const brane of prepared?.plan.branes ?? []) {
      placement[brane.name] = (input.applied.get(brane.name)?.nodes ?? []).map(input.nameOf)
    }
    rows.push({
      name: doc.name,
      id,
      deployer: doc.deployer,
      time: formatHlc(doc.time),
      status: refused !== undefined ? 'refused' : prepared !== undefined && input.upToDate ? 'running' : 'pending',
      ...(refused === undefined ? {} : { reason: refused }),
      manifest: doc.manifest.file,
      placement
    })
  }
  return rows
}

/** What {@link peerRows} reads */
export interface PeerRowsInput {
  readonly members: readonly Member[]
  /** this node's did */
  readonly self: string
  /** the placement this node computed */
  readonly placement: ReadonlyMap<string, BranePlacement>
  /** whether this node is still catching up */
  readonly healing: boolean
  /** the version of the deployments this node holds (a peer with another is catching up) */
  readonly version: string
  readonly edges: readonly Edge[]
}

/** The seeds' peers table, by name; with `brane`, only the nodes that run it */
export function peerRows (input: PeerRowsInput, brane?: string): PeerRow[] {
  const rows = input.members.map((m): PeerRow => {
    const self = m.did === input.self
    const branes = self
      ? [...input.placement.values()].filter((p) => p.nodes.includes(input.self)).map((p) => p.brane)
      : (m.meta.branes ?? '').split(',').filter((b) => b !== '')
    const status: PeerRow['status'] = m.state === 'dead'
      ? 'DEAD'
      : m.state === 'left'
        ? 'LEFT'
        : m.state === 'suspect'
          ? 'TAIL'
          : (self ? input.healing : m.meta.heal === '1' || m.meta.deploy !== input.version) ? 'HEAL' : 'HEAD'
    return {
      name: m.name,
      did: m.did,
      status,
      self,
      substrate: m.substrate,
      ...(m.rttMs === undefined ? {} : { rttMs: m.rttMs }),
      ...(m.load === undefined ? {} : { load: m.load }),
      branes,
      edgesIn: input.edges.filter((e) => branes.includes(e.to)).length,
      edgesOut: input.edges.filter((e) => branes.includes(e.from)).length,
      addrs: m.addrs
    }
  })
  return (brane === undefined ? rows : rows.filter((r) => r.branes.includes(brane))).sort((a, b) => a.name < b.name ? -1 : 1)
}
