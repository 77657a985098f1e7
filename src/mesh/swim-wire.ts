/**
 * The wire side of the membership protocol (swim.ts): its messages, and the digest of a
 * member table that push-pull exchanges (one number per ring segment, so that records
 * cross only for the segments that differ)
 */
import type { NodeKey } from '../identity/index.ts'
import type { Logger } from '../interfaces/index.ts'
import type { Clock } from './clock.ts'
import type { Rumor } from './gossip.ts'
import type { MemberState, MembershipSettings, Substrate, WireMember } from './membership.ts'
import { ringPosition, shuffle } from './ring.ts'

/** A membership message, one JSON frame on the `/omega/swim/1` channel */
export type Message =
  | { t: 'ping', s: number, r?: Rumor[] }
  | { t: 'ack', s: number, r?: Rumor[], who?: boolean }
  | { t: 'preq', s: number, target: string }
  | { t: 'pack', s: number, target: string }
  | { t: 'sync', m: WireMember[], reply: boolean, seg?: number[] }
  | { t: 'digest', d: number[] }
  | { t: 'gossip', r: Rumor[], a?: number, u?: number }

const encoder = new TextEncoder()
/**
 * The table is cut into this many ring segments for push-pull: a digest of each (64
 * numbers) is exchanged, and records only for the segments that differ
 */
export const DIGEST_SEGMENTS = 64
const STATE_CODE: Readonly<Record<MemberState, number>> = { alive: 0, suspect: 1, dead: 2, left: 3 }

/** the segment of the push-pull digest `did` falls in (the top bits of its ring position) */
export function segmentOf (did: string): number {
  return ringPosition(did) >>> (32 - Math.log2(DIGEST_SEGMENTS))
}

/** a 32-bit fingerprint of what a record says that precedence looks at (did, incarnation, state) */
function fingerprint (did: string, inc: number, state: MemberState): number {
  let h = ringPosition(did) ^ Math.imul(inc >>> 0, 0x9e3779b1) ^ Math.imul(Math.floor(inc / 2 ** 32), 0x85ebca77) ^ Math.imul(STATE_CODE[state] + 1, 0xc2b2ae3d)
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b)
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35)
  return (h ^ (h >>> 16)) >>> 0
}

export function encodeMessage (message: Message): Uint8Array {
  return encoder.encode(JSON.stringify(message))
}

/** run a promise in the background; its failure is already handled or does not matter */
export function background (promise: Promise<unknown>): void {
  promise.catch(() => {})
}

/** What the protocol needs from its node: identity, transport and lifecycle */
export interface SwimComponents {
  key: NodeKey
  logger: Logger
  /** peers this node isolates (TEST/OPS): nothing to or from them, they look dead here */
  isolated: ReadonlySet<string>
  /** the node is started (until its stop() ends) */
  started: () => boolean
  /** the node's stop() has begun */
  stopping: () => boolean
  /** send one frame on the membership channel to `did`, opening it if needed */
  send: (did: string, bytes: Uint8Array) => Promise<void>
  /** whether a membership channel to `did` is open */
  connected: (did: string) => boolean
  /** `did` became dead or left: abort its channels */
  gone: (did: string, reason: Error) => void
  /** time, timers and chance (a simulation's virtual ones) @default REAL_CLOCK */
  clock?: Clock
}

export interface SwimInit {
  peerId: string
  name: string
  substrate: Substrate
  frontier: boolean
  meta: Record<string, string>
  /** did:keys believed (self included), or any */
  admit: ReadonlySet<string> | undefined
  settings: MembershipSettings
}

/** Per ring segment, the XOR of the fingerprints of the records `include` keeps */
export function tableDigest (records: Iterable<WireMember>, include: (record: WireMember) => boolean): number[] {
  const d = new Array<number>(DIGEST_SEGMENTS).fill(0)
  for (const record of records) {
    if (include(record)) {
      const segment = segmentOf(record.did)
      d[segment] = ((d[segment] as number) ^ fingerprint(record.did, record.inc, record.state)) >>> 0
    }
  }
  return d
}

/** the valid segment numbers of a sync's `seg`, or undefined (all) */
export function segmentsOf (seg: unknown): Set<number> | undefined {
  if (!Array.isArray(seg)) {
    return undefined
  }
  const out = new Set<number>()
  for (const x of seg as unknown[]) {
    if (typeof x === 'number' && Number.isInteger(x) && x >= 0 && x < DIGEST_SEGMENTS) {
      out.add(x)
    }
  }
  return out
}

/** The segments whose digest differs from `theirs` (none when `theirs` is not a digest) */
export function differingSegments (own: readonly number[], theirs: unknown): number[] {
  if (!Array.isArray(theirs) || theirs.length !== DIGEST_SEGMENTS) {
    return []
  }
  const differ: number[] = []
  for (let i = 0; i < DIGEST_SEGMENTS; i++) {
    if (own[i] !== theirs[i]) {
      differ.push(i)
    }
  }
  return differ
}

/** Where {@link pickTargets} chooses from */
export interface TargetPool {
  readonly random: () => number
  readonly self: string
  /** every member's did on the ring */
  readonly ring: readonly string[]
  /** the members to prefer: all the others, or (`sample`) the node's links */
  readonly candidates: readonly string[]
  /** a big table: take the connected candidates, then random ring members, without a pass over all */
  readonly sample: boolean
  readonly connected: (did: string) => boolean
}

/** Up to `count` members not in `exclude` (helpers of an indirect probe): those with a channel first, in random order */
export function pickTargets (pool: TargetPool, count: number, exclude: ReadonlySet<string>): string[] {
  const { random, ring } = pool
  if (pool.sample) {
    const out = shuffle(random, pool.candidates.filter((did) => !exclude.has(did) && pool.connected(did))).slice(0, count)
    const chosen = new Set(out)
    for (let tries = 0; out.length < count && tries < 8 * count; tries++) {
      const did = ring[Math.floor(random() * ring.length)] as string
      if (did !== pool.self && !exclude.has(did) && !chosen.has(did)) {
        out.push(did)
        chosen.add(did)
      }
    }
    return out
  }
  const connected: string[] = []
  const others: string[] = []
  for (const did of pool.candidates) {
    if (!exclude.has(did)) {
      (pool.connected(did) ? connected : others).push(did)
    }
  }
  shuffle(random, connected)
  shuffle(random, others)
  return connected.concat(others).slice(0, count)
}
