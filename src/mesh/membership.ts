/**
 * Membership records, their precedence rules, their signatures and the settings of the
 * SWIM/Lifeguard-style protocol with a phi-accrual failure detector.
 */
import { publicKeyFromRaw } from '@libp2p/crypto/keys'
import { peerIdFromPublicKey } from '@libp2p/peer-id'
import { publicKeyFromDid, verify } from '../identity/index.ts'
import type { NodeKey } from '../identity/index.ts'
import type { Logger } from '../interfaces/index.ts'

export type MemberState = 'alive' | 'suspect' | 'dead' | 'left'
export type Substrate = 'gaia' | 'biome' | 'habitat'

/** What one node knows about another (or itself) */
export interface Member {
  /** did:key of the node (same Ed25519 key as its libp2p identity) */
  readonly did: string
  readonly peerId: string
  /** e.g. "lab.lan/transform-pool-1" (matched by manifest `peers` globs) */
  readonly name: string
  readonly substrate: Substrate
  /** advertises it can run microVMs */
  readonly frontier: boolean
  /** multiaddrs ending in /p2p/<peerId> */
  readonly addrs: readonly string[]
  readonly state: MemberState
  readonly incarnation: number
  /** last probe round trip measured by this node, when probed */
  readonly rttMs?: number
  /** advertised by the member (0..1 or any number it sets) */
  readonly load?: number
  /** small advertised key/values (gossiped) */
  readonly meta: Readonly<Record<string, string>>
}

/**
 * Settings of the membership protocol. Members sit on a ring ordered by a hash of their
 * did. Every node probes its `monitors` ring successors each `probeIntervalMs` and feeds
 * the acks to one phi-accrual detector per monitored peer; it may also probe
 * `randomProbes` random members per interval, SWIM style. A peer whose phi exceeds
 * `phiThreshold` (or whose random probe goes unanswered for `probeTimeoutMs`) is probed
 * indirectly through `indirectProbes` others; if none of them reaches it within
 * `indirectTimeoutMs` it becomes suspect, and dead after `suspectTimeoutMs` unless it
 * refutes with a higher incarnation. A node whose own timers run late (event-loop lag
 * above a quarter of the probe interval, or an indirect probe that returns late) holds
 * its verdicts for three intervals (Lifeguard's local health): silence may be its own.
 * With the defaults a crashed peer is suspected after about 2.5–3.5 s and dead about
 * 3 s later. Probe traffic per node is O(monitors + randomProbes) per interval,
 * independent of the mesh size.
 *
 * Each node also probes one of its ring "fingers" (the members 4, 8, 16, … places further
 * on) per interval, in turn, SWIM style. Its monitored successors and its fingers are its
 * links (about log2(n) + 1 members, always connected). News (membership changes and
 * broadcasts) is pushed at once along the links, each node passing on what was new to
 * it, so it reaches everyone in about log2(n) hops without new handshakes; it also rides
 * on probes and acks (`retransmitMult` × log10(n + 1) times, up to 2 KiB per message) and a periodic full-state
 * push-pull repairs the rest. Connections to members that are not links are closed after
 * `idleCloseMs` without mesh traffic.
 */
export interface MembershipSettings {
  /** @default 500 */
  probeIntervalMs: number
  /** ring successors each node monitors with a phi-accrual detector @default 3 */
  monitors: number
  /** extra random members probed per interval (plain SWIM probe; opens connections to them) @default 0 */
  randomProbes: number
  /** direct-ack timeout of a finger or random probe @default 400 */
  probeTimeoutMs: number
  /** members asked to probe a silent peer on this node's behalf @default 3 */
  indirectProbes: number
  /** @default 1000 */
  indirectTimeoutMs: number
  /** phi above which a monitored peer is probed indirectly, then suspected @default 8 */
  phiThreshold: number
  /** heartbeat inter-arrival samples kept per monitored peer @default 100 */
  phiWindow: number
  /** floor of the inter-arrival standard deviation @default 100 */
  phiMinStdDevMs: number
  /** silence tolerated on top of the mean interval before phi rises @default 1000 */
  phiAcceptablePauseMs: number
  /** time from suspect to dead when the suspect does not refute @default 3000 */
  suspectTimeoutMs: number
  /** members news is pushed to at once: 'auto' = this node's links; a number = that many random members @default 'auto' */
  gossipFanout: number | 'auto'
  /** close connections that carried no mesh frame and no other stream for this long (except to links) @default 10000 */
  idleCloseMs: number
  /** each rumor also rides on this many × ceil(log10(n + 1)) probe messages (memberlist's rule) @default 4 */
  retransmitMult: number
  /**
   * anti-entropy with one random member, to repair what gossip missed: digests of the
   * table's ring segments are compared, records cross only for segments that differ @default 30000
   */
  pushPullIntervalMs: number
  /** redial bootstrap peers when alone and retry one dead member (partition healing) @default 2000 */
  reconnectIntervalMs: number
  /** dead and left members are forgotten after this long @default 300000 */
  deadRetentionMs: number
  /** how long stop() waits for the leave announcement to be written @default 1000 */
  leaveTimeoutMs: number
  /** dial + stream open timeout @default 5000 */
  dialTimeoutMs: number
}

export const DEFAULT_MEMBERSHIP: Readonly<MembershipSettings> = Object.freeze({
  probeIntervalMs: 500,
  monitors: 3,
  randomProbes: 0,
  probeTimeoutMs: 400,
  indirectProbes: 3,
  indirectTimeoutMs: 1000,
  phiThreshold: 8,
  phiWindow: 100,
  phiMinStdDevMs: 100,
  phiAcceptablePauseMs: 1000,
  suspectTimeoutMs: 3000,
  gossipFanout: 'auto',
  idleCloseMs: 10_000,
  retransmitMult: 4,
  pushPullIntervalMs: 30_000,
  reconnectIntervalMs: 2000,
  deadRetentionMs: 300_000,
  leaveTimeoutMs: 1000,
  dialTimeoutMs: 5000
})

/**
 * A member record as gossiped (JSON). `sig` is the member's own Ed25519 signature (by the
 * key of `did`, base64url) over {@link memberClaim}: every field but `state`, which other
 * nodes may change (suspect, dead) when they pass on the member's last claim.
 */
export interface WireMember {
  did: string
  peerId: string
  name: string
  substrate: Substrate
  frontier: boolean
  addrs: string[]
  state: MemberState
  inc: number
  load?: number
  meta: Record<string, string>
  sig?: string
}

const RANK: Readonly<Record<MemberState, number>> = { alive: 0, suspect: 1, dead: 2, left: 2 }

/**
 * Whether `next` supersedes `current` (SWIM precedence): a higher incarnation wins; at
 * the same incarnation suspect beats alive and dead/left beat both.
 */
export function supersedes (next: WireMember, current: WireMember): boolean {
  if (next.inc !== current.inc) {
    return next.inc > current.inc
  }
  return RANK[next.state] > RANK[current.state]
}

/** the {@link Member} a record shows, in `state` (the holder's view: isolated peers look dead) */
export function memberView (r: WireMember, state: MemberState, rttMs: number | undefined): Member {
  const member: { -readonly [K in keyof Member]: Member[K] } = {
    did: r.did,
    peerId: r.peerId,
    name: r.name,
    substrate: r.substrate,
    frontier: r.frontier,
    addrs: [...r.addrs],
    state,
    incarnation: r.inc,
    meta: { ...r.meta }
  }
  if (rttMs !== undefined) {
    member.rttMs = rttMs
  }
  if (r.load !== undefined) {
    member.load = r.load
  }
  return member
}

const STATES = new Set<string>(['alive', 'suspect', 'dead', 'left'])
const SUBSTRATES = new Set<string>(['gaia', 'biome', 'habitat'])

const WIRE_KEYS = new Set(['did', 'peerId', 'name', 'substrate', 'frontier', 'addrs', 'state', 'inc', 'load', 'meta', 'sig'])

/** whether `v` (well-formed as parseWireMember checks) is exactly a WireMember: nothing to strip or fix */
function clean (v: Record<string, unknown>): boolean {
  if (typeof v.frontier !== 'boolean' || (v.load !== undefined && (typeof v.load !== 'number' || !Number.isFinite(v.load))) ||
    (v.sig !== undefined && typeof v.sig !== 'string') || typeof v.meta !== 'object' || v.meta === null ||
    Object.getPrototypeOf(v) !== Object.prototype || Object.getPrototypeOf(v.meta) !== Object.prototype) {
    return false
  }
  for (const key in v) {
    if (!WIRE_KEYS.has(key)) {
      return false
    }
  }
  for (const key in v.meta) {
    if (typeof (v.meta as Record<string, unknown>)[key] !== 'string' || key === '__proto__') {
      return false
    }
  }
  return true
}

/**
 * A WireMember from untrusted JSON, or undefined when malformed. A record that is exactly
 * a WireMember (as every node sends) is returned as it is, not copied: the caller owns it
 * (it was just parsed) and must not change it.
 */
export function parseWireMember (value: unknown): WireMember | undefined {
  if (typeof value !== 'object' || value === null) {
    return undefined
  }
  const v = value as Record<string, unknown>
  if (typeof v.did !== 'string' || typeof v.peerId !== 'string' || typeof v.name !== 'string' ||
    typeof v.substrate !== 'string' || !SUBSTRATES.has(v.substrate) || typeof v.state !== 'string' ||
    !STATES.has(v.state) || typeof v.inc !== 'number' || !Number.isFinite(v.inc) ||
    !Array.isArray(v.addrs) || !v.addrs.every((a) => typeof a === 'string')) {
    return undefined
  }
  if (clean(v)) {
    return v as unknown as WireMember
  }
  const meta: Record<string, string> = {}
  if (typeof v.meta === 'object' && v.meta !== null) {
    for (const [k, x] of Object.entries(v.meta as Record<string, unknown>)) {
      if (typeof x === 'string') {
        meta[k] = x
      }
    }
  }
  const member: WireMember = {
    did: v.did,
    peerId: v.peerId,
    name: v.name,
    substrate: v.substrate as Substrate,
    frontier: v.frontier === true,
    addrs: v.addrs as string[],
    state: v.state as MemberState,
    inc: v.inc,
    meta
  }
  if (typeof v.load === 'number' && Number.isFinite(v.load)) {
    member.load = v.load
  }
  if (typeof v.sig === 'string') {
    member.sig = v.sig
  }
  return member
}

/** tag of the signed claim's encoding (a new encoding gets a new tag) */
const CLAIM_TAG = 'omega/member/1'

/**
 * The canonical text a member signs: a JSON array, in a fixed order, of everything it
 * claims about itself (did, peerId, name, substrate, frontier, addrs, incarnation, load,
 * meta sorted by key). Not `state` and not `sig`.
 */
export function memberClaim (w: WireMember): string {
  const meta = Object.keys(w.meta).sort().map((k) => [k, w.meta[k]])
  return JSON.stringify([CLAIM_TAG, w.did, w.peerId, w.name, w.substrate, w.frontier, w.addrs, w.inc, w.load ?? null, meta])
}

/** `w` signed by `key` (which must be the key of `w.did` for others to believe it) */
export function signMember (w: WireMember, key: Pick<NodeKey, 'sign'>): WireMember {
  const sig = Buffer.from(key.sign(Buffer.from(memberClaim(w)))).toString('base64url')
  return { ...w, addrs: [...w.addrs], meta: { ...w.meta }, sig }
}

/**
 * Whether `w` is the claim of the node it names: `sig` verifies with the key of `w.did`
 * over `claim` (= {@link memberClaim}(w)), `peerId` is that key's libp2p peer id and every
 * address ends in `/p2p/<peerId>`. Never throws (a malformed did is false).
 */
export function verifyMember (w: WireMember, claim = memberClaim(w)): boolean {
  if (typeof w.sig !== 'string' || w.sig.length !== 86) {
    return false
  }
  try {
    const raw = publicKeyFromDid(w.did)
    if (peerIdFromPublicKey(publicKeyFromRaw(raw)).toString() !== w.peerId) {
      return false
    }
    const suffix = `/p2p/${w.peerId}`
    if (!w.addrs.every((a) => a.endsWith(suffix))) {
      return false
    }
    return verify(w.did, Buffer.from(claim), Buffer.from(w.sig, 'base64url'))
  } catch {
    return false
  }
}

/**
 * {@link verifyMember} with a bounded cache of the signatures already verified (each with
 * the exact claim it covers), so that steady-state gossip, which repeats the same records,
 * costs a string comparison instead of an Ed25519 verification (~50–100 µs).
 */
export class MemberVerifier {
  readonly #max: number
  readonly #verified = new Map<string, string>()
  /** frozen records already verified: they cannot have changed since */
  readonly #frozen = new WeakSet<WireMember>()

  /** @param max - signatures remembered (oldest forgotten first) */
  constructor (max = 8192) {
    this.#max = max
  }

  verify (w: WireMember): boolean {
    if (w.sig === undefined) {
      return false
    }
    if (this.#frozen.has(w)) {
      return true
    }
    const claim = memberClaim(w)
    if (this.#verified.get(w.sig) === claim) {
      return true
    }
    if (!verifyMember(w, claim)) {
      return false
    }
    if (this.#verified.size >= this.#max) {
      const oldest = this.#verified.keys().next().value
      if (oldest !== undefined) {
        this.#verified.delete(oldest)
      }
    }
    this.#verified.set(w.sig, claim)
    if (Object.isFrozen(w) && Object.isFrozen(w.addrs) && Object.isFrozen(w.meta)) {
      this.#frozen.add(w)
    }
    return true
  }
}

/**
 * Signatures verified in this process: a fact whichever node of the process checked it,
 * so every node shares them (a test mesh or a simulation runs many nodes in one process,
 * and a joiner's record is then checked once, not once per node)
 */
const VERIFIED = new MemberVerifier(65_536)

/**
 * Which did claims each member name, over the records believed in this process (a fact
 * whichever node of the process saw it, like {@link VERIFIED}). A name no other did ever
 * claimed cannot be held by another member of any table here, so the name rule needs no
 * scan of the table: a joiner learning n members does O(n) work, not O(n²).
 */
export class NameClaims {
  readonly #max: number
  readonly #claims = new Map<string, string | null>()

  /** @param max - names remembered; beyond it, unknown names are checked by a scan */
  constructor (max = 65_536) {
    this.#max = max
  }

  /** whether `did` is the only did that ever claimed `name` here (records the claim) */
  sole (name: string, did: string): boolean {
    const holder = this.#claims.get(name)
    if (holder === undefined) {
      if (this.#claims.size >= this.#max) {
        return false
      }
      this.#claims.set(name, did)
      return true
    }
    if (holder === did) {
      return true
    }
    // null: contested (two dids claimed it), checked by a scan from now on
    this.#claims.set(name, null)
    return false
  }
}

const NAMES = new NameClaims()

/** a refused member record is logged once per did and reason in this interval */
const REFUSAL_LOG_INTERVAL_MS = 60_000
const REFUSAL_LOG_MAX = 1024

/**
 * The trust rules of member records: which ones a node believes (signed by their did,
 * admitted, their name not held by another live member). Refusals are logged at warn.
 */
export class MemberTrust {
  readonly #admit: ReadonlySet<string> | undefined
  readonly #log: Logger
  readonly #verifier = VERIFIED
  readonly #names = NAMES
  readonly #refusals = new Map<string, number>()

  /** @param admit - the dids believed (self included), or any */
  constructor (admit: ReadonlySet<string> | undefined, log: Logger) {
    this.#admit = admit
    this.#log = log
  }

  /** the holder's own record: its name is claimed by its did (it is in its table unchecked) */
  own (w: WireMember): void {
    this.#names.sole(w.name, w.did)
  }

  /** log a refused member record, at most once per REFUSAL_LOG_INTERVAL_MS per did and reason */
  #refuse (w: WireMember, reason: string): false {
    const key = `${reason}\n${w.did}`
    const now = Date.now()
    const last = this.#refusals.get(key)
    if (last === undefined || now - last >= REFUSAL_LOG_INTERVAL_MS) {
      if (this.#refusals.size >= REFUSAL_LOG_MAX) {
        this.#refusals.clear()
      }
      this.#refusals.set(key, now)
      this.#log.warn({ did: w.did, name: w.name, inc: w.inc, reason }, `mesh: refused a member record: ${reason}`)
    }
    return false
  }

  /**
   * Whether `w` may be believed: signed by its did, admitted, and its name not held by
   * another live member of `known` (the records this node holds)
   */
  believable (w: WireMember, current: WireMember | undefined, known: Iterable<WireMember>): boolean {
    if (this.#admit !== undefined && !this.#admit.has(w.did)) {
      return this.#refuse(w, 'not admitted')
    }
    if (!this.#verifier.verify(w)) {
      return this.#refuse(w, w.sig === undefined ? 'unsigned' : 'bad signature')
    }
    if (current !== undefined && current.name === w.name && (current.state === 'alive' || current.state === 'suspect')) {
      // the name is already this member's
      return true
    }
    if (this.#names.sole(w.name, w.did)) {
      return true
    }
    for (const r of known) {
      if (r.did !== w.did && r.name === w.name && (r.state === 'alive' || r.state === 'suspect')) {
        return this.#refuse(w, `name "${w.name}" belongs to ${r.did}`)
      }
    }
    return true
  }
}
