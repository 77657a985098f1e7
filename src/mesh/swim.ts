/**
 * The SWIM/Lifeguard-style membership protocol of a {@link MeshNode}: the member table and
 * its trust rules, probes, acks and indirect probes with phi-accrual failure detection,
 * suspicion and refutation, and epidemic dissemination (member records and broadcasts,
 * pushed along the ring links and piggy-backed on probes). The node gives it a transport
 * ({@link SwimComponents}) and runs its rounds; see {@link MembershipSettings}.
 */
import { MeshError } from '../errors.ts'
import type { Logger } from '../interfaces/index.ts'
import { REAL_CLOCK, type Clock } from './clock.ts'
import { Gossip, type Rumor } from './gossip.ts'
import { MemberTrust, memberClaim, memberView, signMember, supersedes, type Member, type MemberState, type MembershipSettings, type WireMember } from './membership.ts'
import { PhiAccrualDetector } from './phi.ts'
import { Ring, shuffle } from './ring.ts'
import { background, encodeMessage, pickTargets, type Message, type SwimComponents, type SwimInit } from './swim-wire.ts'
import { TableSync } from './swim-sync.ts'

export { background, encodeMessage, type Message, type SwimComponents, type SwimInit }

/** above this many members, helpers and gossip targets are drawn without a pass over all of them */
const PICK_SCAN_LIMIT = 256
/** setMeta/setLoad changes are gossiped at most this often (each bumps the incarnation) */
const ANNOUNCE_INTERVAL_MS = 1000

/**
 * One node's side of the membership protocol (see {@link MeshNode} for its trust rules).
 * Timing is the node's: it calls {@link Swim.probeRound} every probe interval.
 */
export class Swim {
  readonly did: string
  readonly #components: SwimComponents
  readonly #settings: MembershipSettings
  readonly #log: Logger
  readonly #self: WireMember
  readonly #isolated: ReadonlySet<string>
  /**
   * the member records held, self included: one shared, never-mutated record per member
   * (only self's is changed in place), and side tables for what few members have
   */
  readonly #known = new Map<string, WireMember>()
  /** dead and left members, and since when (forgotten after deadRetentionMs) */
  readonly #departed = new Map<string, number>()
  /** the suspicion timers of suspect members */
  readonly #suspectTimers = new Map<string, unknown>()
  /** last probe round trip to the members this node probed */
  readonly #rtt = new Map<string, number>()
  readonly #ring: Ring
  readonly #listeners = new Set<(member: Member, previous: MemberState | undefined) => void>()
  readonly #pending = new Map<number, { did: string, sentAt: number, done: (ok: boolean) => void }>()
  readonly #indirectWaiters = new Map<number, () => void>()
  readonly #indirecting = new Set<string>()
  readonly #detectors = new Map<string, PhiAccrualDetector>()
  readonly #gossip: Gossip
  readonly #tables: TableSync
  readonly #trust: MemberTrust
  readonly #clock: Clock
  #signedSelf: { claim: string, record: WireMember } | undefined
  #seq = 0
  #fingerCursor = 0
  #expectedTick = 0
  #announceTimer: unknown
  #lastAnnounce = 0
  #calmUntil = 0

  constructor (components: SwimComponents, init: SwimInit) {
    this.#components = components
    this.#clock = components.clock ?? REAL_CLOCK
    this.#log = components.logger
    this.#isolated = components.isolated
    this.#settings = init.settings
    this.#trust = new MemberTrust(init.admit, components.logger)
    this.did = components.key.did
    this.#ring = new Ring(this.did, () => this.others(), init.settings)
    this.#gossip = new Gossip({
      did: this.did,
      logger: components.logger,
      isolated: components.isolated,
      started: components.started,
      stopping: components.stopping,
      now: () => this.#clock.now(),
      memberCount: () => this.#known.size,
      retransmitMult: init.settings.retransmitMult,
      push: (rumors, exclude, until) => { this.#push(rumors, exclude, until) },
      merge: (w) => this.#merge(w)
    })
    this.#self = {
      did: this.did,
      peerId: init.peerId,
      name: init.name,
      substrate: init.substrate,
      frontier: init.frontier,
      addrs: [],
      state: 'alive',
      inc: this.#clock.now(),
      meta: { ...init.meta }
    }
    this.#trust.own(this.#self)
    this.#tables = new TableSync({
      did: this.did,
      records: () => this.#known.values(),
      selfRecord: () => this.#selfRecord(),
      isolated: (did) => this.#isolated.has(did),
      knows: (did) => this.#known.has(did),
      merge: (w) => this.#merge(w),
      disseminate: (rumors, exclude) => { this.#gossip.disseminate(rumors, exclude) },
      send: async (did, message) => this.#send(did, message),
      ping: async (did, timeoutMs) => this.#ping(did, timeoutMs),
      deadMembers: () => [...this.#departed.keys()].filter((did) => this.#known.get(did)?.state === 'dead'),
      others: () => this.others(),
      connected: (did) => this.#components.connected(did),
      random: () => this.#clock.random(),
      stopping: () => this.#components.stopping(),
      probeTimeoutMs: () => this.#settings.probeTimeoutMs
    })
  }

  get name (): string {
    return this.#self.name
  }

  /** this node's record as it goes on the wire (signed) */
  record (): WireMember {
    return this.#selfRecord()
  }

  /** the node started listening on `addrs` (again after a stop: a new life) */
  start (addrs: string[], firstRoundAt: number): void {
    if (this.#self.state !== 'alive') {
      // started again after stop(): a new life, above the 'left' the others hold
      this.#self.state = 'alive'
      this.#self.inc = Math.max(this.#self.inc + 1, this.#clock.now())
      this.#known.clear()
      this.#departed.clear()
      this.#rtt.clear()
      this.#ring.invalidate()
    }
    this.#self.addrs = addrs
    this.#known.set(this.did, this.#self)
    this.#notify(this.#self, undefined)
    this.#expectedTick = firstRoundAt
  }

  /**
   * Announce the leave: straight to `peers` (those with a channel) plus the gossip fanout,
   * each acknowledging; resolves when all did or after leaveTimeoutMs.
   */
  async leave (peers: Iterable<string>): Promise<void> {
    this.#clock.clearTimeout(this.#announceTimer)
    this.#announceTimer = undefined
    this.#self.inc++
    this.#self.state = 'left'
    const rumor: Rumor = { k: 'm', m: this.#selfRecord() }
    const targets = new Set<string>(peers)
    for (const did of this.#gossipTargets(new Set())) {
      targets.add(did)
    }
    // each target acknowledges (close() resolves before bytes reach the socket)
    const sends = [...targets].map(async (did) => this.#request(did, (a) => ({ t: 'gossip', r: [rumor], a }), this.#settings.leaveTimeoutMs))
    await Promise.race([
      Promise.allSettled(sends),
      new Promise<void>((resolve) => { this.#clock.setTimeout(resolve, this.#settings.leaveTimeoutMs) })
    ])
  }

  /** the node stops: no more suspicion timers, pending probes fail */
  halt (): void {
    for (const timer of this.#suspectTimers.values()) {
      this.#clock.clearTimeout(timer)
    }
    this.#suspectTimers.clear()
    for (const waiter of this.#pending.values()) {
      waiter.done(false)
    }
    this.#pending.clear()
  }

  // ---------------------------------------------------------------- public view

  members (): Member[] {
    const out: Member[] = []
    for (const record of this.#known.values()) {
      out.push(this.#view(record))
    }
    return out
  }

  member (did: string): Member | undefined {
    const record = this.#known.get(did)
    return record === undefined ? undefined : this.#view(record)
  }

  /** the state of `did`'s record as held (isolation not applied), if known */
  stateOf (did: string): MemberState | undefined {
    return this.#known.get(did)?.state
  }

  /** the addresses `did` advertises, if known */
  addrsOf (did: string): string[] {
    return this.#known.get(did)?.addrs ?? []
  }

  onMembers (listener: (member: Member, previous: MemberState | undefined) => void): () => void {
    this.#listeners.add(listener)
    return () => { this.#listeners.delete(listener) }
  }

  setMeta (key: string, value: string): void {
    if (this.#self.meta[key] === value) {
      return
    }
    this.#self.meta = { ...this.#self.meta, [key]: value }
    this.#announceSelf()
  }

  setLoad (load: number): void {
    if (!Number.isFinite(load)) {
      throw new RangeError(`Cannot advertise load: expected a finite number, got ${load}`)
    }
    if (this.#self.load === load) {
      return
    }
    this.#self.load = load
    this.#announceSelf()
  }

  broadcast (topic: string, data: Uint8Array): void {
    this.#gossip.broadcast(topic, data)
  }

  onBroadcast (topic: string, handler: (data: Uint8Array, fromDid: string) => void): () => void {
    return this.#gossip.onBroadcast(topic, handler)
  }

  // ---------------------------------------------------------------- isolation

  /** the set of isolated peers changed */
  isolationChanged (): void {
    this.#ring.invalidate()
  }

  /** `did` is isolated now: it looks dead here */
  isolated (did: string): void {
    this.#detectors.delete(did)
    const record = this.#known.get(did)
    if (record !== undefined) {
      this.#clock.clearTimeout(this.#suspectTimers.get(did))
      this.#suspectTimers.delete(did)
      this.#notify(record, record.state)
    }
  }

  /** `did` is no longer isolated: exchange full state so that both sides converge (refutations follow) */
  healed (did: string): void {
    const record = this.#known.get(did)
    if (record !== undefined) {
      this.#notify(record, 'dead')
      if (this.#components.started() && !this.#components.stopping()) {
        background(this.#tables.sync(did, true))
      }
    }
  }

  // ---------------------------------------------------------------- membership view

  #view (r: WireMember): Member {
    return memberView(r, this.#isolated.has(r.did) && r.state !== 'left' ? 'dead' : r.state, this.#rtt.get(r.did))
  }

  #notify (record: WireMember, previous: MemberState | undefined): void {
    if (this.#listeners.size === 0) {
      return
    }
    const current = this.#known.get(record.did)
    if (current === undefined) {
      return
    }
    const member = this.#view(current)
    for (const listener of this.#listeners) {
      try {
        listener(member, previous)
      } catch (err) {
        this.#log.error({ err }, 'mesh: membership listener threw')
      }
    }
  }

  /** alive or suspect members other than self, not isolated */
  others (): string[] {
    const out: string[] = []
    for (const [did, record] of this.#known) {
      if (did !== this.did && (record.state === 'alive' || record.state === 'suspect') && !this.#isolated.has(did)) {
        out.push(did)
      }
    }
    return out
  }

  /** gossip this node's changed record: at once, then at most once per ANNOUNCE_INTERVAL_MS (setLoad may be called often) */
  #announceSelf (): void {
    if (!this.#components.started() || this.#components.stopping()) {
      return
    }
    if (this.#announceTimer !== undefined) {
      return
    }
    const wait = this.#lastAnnounce + ANNOUNCE_INTERVAL_MS - this.#clock.now()
    if (wait > 0) {
      this.#announceTimer = this.#clock.setTimeout(() => {
        this.#announceTimer = undefined
        this.#announceSelf()
      }, wait)
      return
    }
    this.#lastAnnounce = this.#clock.now()
    this.#self.inc++
    this.#notify(this.#self, this.#self.state)
    this.#gossip.disseminate([{ k: 'm', m: this.#selfRecord() }], new Set([this.did]))
  }

  /**
   * This node's record as it goes on the wire: a copy signed with the node key (signed
   * again only when what it claims changed: incarnation, meta, load, addrs)
   */
  #selfRecord (): WireMember {
    const claim = memberClaim(this.#self)
    if (this.#signedSelf?.claim !== claim) {
      this.#signedSelf = { claim, record: signMember(this.#self, this.#components.key) }
    }
    return { ...this.#signedSelf.record, state: this.#self.state }
  }

  /** whether `w` may be believed (see {@link MemberTrust}) */
  #believable (w: WireMember, current: WireMember | undefined): boolean {
    return this.#trust.believable(w, current, this.#records())
  }

  * #records (): Iterable<WireMember> {
    yield * this.#known.values()
  }

  /**
   * Apply a member record heard from someone; true when it changed this node's view (the
   * caller then passes it on).
   */
  #merge (w: WireMember): boolean {
    if (w.did === this.did) {
      // a rumor about this node counts only if it carries a claim this node signed
      if (w.state !== 'alive' && w.inc >= this.#self.inc && !this.#components.stopping() && this.#believable(w, undefined)) {
        // refute: we are alive, at a higher incarnation than the rumor
        this.#self.inc = w.inc + 1
        this.#log.debug({ state: w.state, inc: w.inc }, 'mesh: refuting a rumor about this node')
        queueMicrotask(() => { this.#gossip.disseminate([{ k: 'm', m: this.#selfRecord() }], new Set([this.did])) })
      }
      return false
    }
    if (this.#isolated.has(w.did)) {
      return false
    }
    // records are never changed once held (parseWireMember's are the message's own), so
    // they are kept as they are, not copied: a simulation's nodes share them
    const current = this.#known.get(w.did)
    if (current === undefined) {
      if (w.state === 'dead' || w.state === 'left' || !this.#believable(w, undefined)) {
        return false
      }
      this.#known.set(w.did, w)
      this.#onStateChange(w.did, undefined)
      this.#notify(w, undefined)
      return true
    }
    if (!supersedes(w, current) || !this.#believable(w, current)) {
      return false
    }
    const previous = current.state
    this.#known.set(w.did, w)
    if (previous !== w.state) {
      this.#onStateChange(w.did, previous)
    } else if (this.#departed.has(w.did)) {
      this.#departed.set(w.did, this.#clock.now())
    }
    this.#notify(w, previous)
    return true
  }

  #onStateChange (did: string, previous: MemberState | undefined): void {
    const record = this.#known.get(did)
    if (record === undefined) {
      return
    }
    // the ring holds the alive and suspect members: only a move in or out of it changes it
    const live = record.state === 'alive' || record.state === 'suspect'
    if (live !== (previous === 'alive' || previous === 'suspect')) {
      if (live) {
        this.#ring.add(did)
      } else {
        this.#ring.remove(did)
      }
    }
    if (live) {
      this.#departed.delete(did)
    } else {
      this.#departed.set(did, this.#clock.now())
    }
    this.#clock.clearTimeout(this.#suspectTimers.get(did))
    this.#suspectTimers.delete(did)
    if (record.state === 'suspect') {
      const inc = record.inc
      this.#suspectTimers.set(did, this.#clock.setTimeout(() => {
        this.#suspectTimers.delete(did)
        const current = this.#known.get(did)
        if (current !== undefined && current.state === 'suspect' && current.inc === inc && !this.#components.stopping()) {
          this.#declare(did, 'dead')
        }
      }, this.#settings.suspectTimeoutMs))
    }
    if (!live) {
      this.#detectors.delete(did)
      this.#components.gone(did, new MeshError(`Member ${did} is ${record.state}`))
    }
  }

  /** this node's own verdict about another member (suspect or dead), disseminated */
  #declare (did: string, state: 'suspect' | 'dead'): void {
    const record = this.#known.get(did)
    if (record === undefined || this.#isolated.has(did)) {
      return
    }
    const next: WireMember = { ...record, state }
    if (this.#merge(next)) {
      this.#log.info({ did, name: next.name, state }, `mesh: member ${state}`)
      this.#gossip.disseminate([{ k: 'm', m: next }], new Set([this.did, did]))
    }
  }

  // ---------------------------------------------------------------- dissemination

  /**
   * push rumors at once to the gossip targets not in `exclude`: with gossipFanout 'auto',
   * the links on the ring arc up to `until` (the whole ring when undefined), each told the
   * part of the arc it passes them on within (see {@link Ring.arcs}); probes carry them
   * on where a push was lost
   */
  #push (rumors: Rumor[], exclude: Set<string>, until?: number): void {
    const send = (did: string, bytes: Uint8Array): void => {
      this.#components.send(did, bytes).catch((err: unknown) => {
        this.#log.debug({ err, did }, 'mesh: gossip send failed')
      })
    }
    const targets = this.#gossipTargets(exclude)
    if (this.#settings.gossipFanout !== 'auto') {
      const bytes = encodeMessage({ t: 'gossip', r: rumors })
      for (const did of targets) {
        send(did, bytes)
      }
      return
    }
    // a link left out (the sender, the rumors' subjects) leaves its part to the link before it
    for (const arc of this.#ring.arcs(targets, until)) {
      send(arc.did, encodeMessage({ t: 'gossip', r: rumors, u: arc.until }))
    }
  }

  /**
   * Where news goes at once: with gossipFanout 'auto', this node's links — its monitored
   * ring successors and its ring fingers (members 4, 8, 16, … places on), about
   * log2(n) + 1 members it probes anyway, so no new connection is needed and the news
   * reaches everyone in about log2(n) hops. With a number: that many random members,
   * those with a channel first.
   */
  #gossipTargets (exclude: Set<string>): string[] {
    const setting = this.#settings.gossipFanout
    if (setting !== 'auto') {
      return this.#pickTargets(setting, exclude)
    }
    return this.links().filter((did) => !exclude.has(did))
  }

  /** this node's links: its monitored ring successors, then its ring fingers */
  links (): string[] {
    return [...this.#ring.successors(), ...this.#ring.fingers()]
  }

  /**
   * up to `count` alive or suspect members not in `exclude`, those with an open channel
   * first. In a large mesh: this node's links that have one, then members drawn at random
   * from the ring — O(count + links) instead of a pass over the whole membership (an
   * indirect probe asks for helpers often under loss)
   */
  #pickTargets (count: number, exclude: Set<string>): string[] {
    const ring = this.#ring.order()
    const big = ring.length - 1 > PICK_SCAN_LIMIT
    return pickTargets({ random: this.#clock.random, self: this.did, ring, candidates: big ? this.links() : this.others(), sample: big, connected: (did) => this.#components.connected(did) }, count, exclude)
  }

  // ---------------------------------------------------------------- probing

  /** one probe round; the next one is expected `probeIntervalMs` after {@link Swim.roundDone} */
  probeRound (): void {
    const now = this.#clock.now()
    const lag = now - this.#expectedTick
    if (lag > this.#settings.probeIntervalMs / 4) {
      // acks to probes sent around now will be read late too: hold verdicts a while
      this.#calmUntil = now + 3 * this.#settings.probeIntervalMs
    }
    this.#probe(now < this.#calmUntil)
  }

  /** the round (probes and the node's housekeeping) is over: the next is due in an interval */
  roundDone (): void {
    this.#expectedTick = this.#clock.now() + this.#settings.probeIntervalMs
  }

  /** `lagging`: this node's timers ran late, so silence may be ours: no verdicts this round */
  #probe (lagging: boolean): void {
    const now = this.#clock.now()
    const s = this.#settings
    const monitored = this.#ring.successors()
    const monitoredSet = new Set(monitored)
    for (const did of this.#detectors.keys()) {
      if (!monitoredSet.has(did)) {
        this.#detectors.delete(did)
      }
    }
    for (const did of monitored) {
      let detector = this.#detectors.get(did)
      if (detector === undefined) {
        detector = new PhiAccrualDetector({
          window: s.phiWindow,
          minStdDevMs: s.phiMinStdDevMs,
          acceptablePauseMs: s.phiAcceptablePauseMs,
          firstHeartbeatEstimateMs: s.probeIntervalMs
        }, now)
        this.#detectors.set(did, detector)
      } else if (lagging) {
        // Lifeguard local health: a late timer says nothing about the peer
      } else if (detector.phi(now) > s.phiThreshold && !this.#indirecting.has(did) &&
        this.#known.get(did)?.state === 'alive') {
        background(this.#indirect(did))
      }
      background(this.#ping(did, s.probeIntervalMs * 4))
    }
    // one finger per round, in turn: keeps those links warm and checks them SWIM-style
    const fingers = this.#ring.fingers()
    const probes: string[] = []
    if (fingers.length > 0) {
      probes.push(fingers[this.#fingerCursor++ % fingers.length] as string)
    }
    if (s.randomProbes > 0) {
      const rest = shuffle(this.#clock.random, this.others().filter((did) => !monitoredSet.has(did) && !this.#indirecting.has(did) && !probes.includes(did)))
      probes.push(...rest.slice(0, s.randomProbes))
    }
    for (const did of probes) {
      if (this.#indirecting.has(did)) {
        continue
      }
      background(this.#ping(did, s.probeTimeoutMs).then(async (ok) => {
        if (!ok && !this.#components.stopping() && this.#known.get(did)?.state === 'alive') {
          await this.#indirect(did)
        }
      }))
    }
  }

  /** forget expired broadcast ids, and dead and left members after deadRetentionMs */
  expire (now: number): void {
    this.#gossip.expire(now)
    for (const [did, since] of this.#departed) {
      if (now - since > this.#settings.deadRetentionMs) {
        this.#departed.delete(did)
        this.#known.delete(did)
        this.#rtt.delete(did)
        this.#ring.forget(did)
      }
    }
  }

  /** whether this node knows no alive or suspect member but itself */
  alone (): boolean {
    return this.#ring.order().length <= 1
  }

  /** anti-entropy with one member (see TableSync.pushPull) */
  pushPull (): void {
    this.#tables.pushPull()
  }

  /** full-state exchange with one dead member that answers a probe (see TableSync.retryDead) */
  retryDead (): void {
    this.#tables.retryDead()
  }

  /** Join through `did`: send it this node's full table with `send` (its fresh channel) and wait for its own */
  async join (did: string, send: (bytes: Uint8Array) => Promise<void>, signal: AbortSignal): Promise<void> {
    await this.#tables.join(did, send, signal)
  }

  /** direct probe; resolves true on ack within `timeoutMs` */
  async #ping (did: string, timeoutMs: number): Promise<boolean> {
    return this.#request(did, (s) => {
      const message: Message = { t: 'ping', s }
      const rumors = this.#gossip.takePiggyback()
      if (rumors !== undefined) {
        message.r = rumors
      }
      return message
    }, timeoutMs)
  }

  /** send a message carrying a fresh sequence number; resolves true when `did` acks it within `timeoutMs` */
  async #request (did: string, build: (seq: number) => Message, timeoutMs: number): Promise<boolean> {
    const s = ++this.#seq
    return new Promise<boolean>((resolve) => {
      const timer = this.#clock.setTimeout(() => {
        this.#pending.delete(s)
        resolve(false)
      }, timeoutMs)
      this.#pending.set(s, {
        did,
        sentAt: this.#clock.monotonic(),
        done: (ok) => {
          this.#clock.clearTimeout(timer)
          this.#pending.delete(s)
          resolve(ok)
        }
      })
      this.#send(did, build(s)).catch(() => {
        this.#pending.get(s)?.done(false)
      })
    })
  }

  /** ask others to probe `did`; suspect it when none can reach it */
  async #indirect (did: string): Promise<void> {
    if (this.#indirecting.has(did)) {
      return
    }
    this.#indirecting.add(did)
    try {
      const s = ++this.#seq
      const helpers = this.#pickTargets(this.#settings.indirectProbes, new Set([this.did, did]))
      const asked = this.#clock.now()
      const reached = await new Promise<boolean>((resolve) => {
        const timer = this.#clock.setTimeout(() => {
          this.#indirectWaiters.delete(s)
          resolve(false)
        }, this.#settings.indirectTimeoutMs)
        this.#indirectWaiters.set(s, () => {
          this.#clock.clearTimeout(timer)
          this.#indirectWaiters.delete(s)
          resolve(true)
        })
        for (const helper of helpers) {
          background(this.#send(helper, { t: 'preq', s, target: did }))
        }
        // Lifeguard: one more direct try alongside the indirect ones
        background(this.#ping(did, this.#settings.indirectTimeoutMs).then((ok) => {
          if (ok) {
            this.#indirectWaiters.get(s)?.()
          }
        }))
      })
      const late = this.#clock.now() - asked > 1.5 * this.#settings.indirectTimeoutMs
      if (late) {
        // this node's own event loop stalled during the wait (Lifeguard local health)
        this.#calmUntil = this.#clock.now() + 3 * this.#settings.probeIntervalMs
      }
      if (reached) {
        this.#detectors.get(did)?.heartbeat(this.#clock.now())
      } else if (!late && this.#clock.now() >= this.#calmUntil && !this.#components.stopping() && this.#known.get(did)?.state === 'alive') {
        this.#declare(did, 'suspect')
      }
    } finally {
      this.#indirecting.delete(did)
    }
  }

  // ---------------------------------------------------------------- messages

  /** a message from `from` on the membership channel */
  onMessage (from: string, message: Message): void {
    switch (message.t) {
      case 'ping': {
        const reply: Message = { t: 'ack', s: message.s }
        if (!this.#known.has(from)) {
          // a member this node has not heard of probes it (news of its join missed this
          // node): ask for its record rather than wait for a push-pull
          reply.who = true
        }
        const rumors = this.#gossip.takePiggyback()
        if (rumors !== undefined) {
          reply.r = rumors
        }
        background(this.#send(from, reply))
        if (message.r !== undefined) {
          this.#gossip.receive(from, message.r)
        }
        break
      }
      case 'ack': {
        const pending = this.#pending.get(message.s)
        if (pending !== undefined && pending.did === from) {
          if (this.#known.has(from)) {
            this.#rtt.set(from, Math.round((this.#clock.monotonic() - pending.sentAt) * 100) / 100)
          }
          pending.done(true)
        }
        this.#detectors.get(from)?.heartbeat(this.#clock.now())
        if (message.who === true && pending !== undefined && pending.did === from && !this.#components.stopping()) {
          background(this.#send(from, { t: 'gossip', r: [{ k: 'm', m: this.#selfRecord() }] }))
        }
        if (message.r !== undefined) {
          this.#gossip.receive(from, message.r)
        }
        break
      }
      case 'preq': {
        if (typeof message.target !== 'string' || this.#isolated.has(message.target) || message.target === this.did) {
          break
        }
        background(this.#ping(message.target, this.#settings.indirectTimeoutMs).then(async (ok) => {
          if (ok) {
            await this.#send(from, { t: 'pack', s: message.s, target: message.target })
          }
        }).catch(() => {}))
        break
      }
      case 'pack': {
        if (!this.#isolated.has(message.target)) {
          this.#indirectWaiters.get(message.s)?.()
        }
        break
      }
      case 'sync':
        this.#tables.onSync(from, message)
        break
      case 'digest':
        this.#tables.onDigest(from, message)
        break
      case 'gossip':
        if (typeof message.a === 'number') {
          background(this.#send(from, { t: 'ack', s: message.a }))
        }
        this.#gossip.receive(from, message.r, typeof message.u === 'number' && Number.isInteger(message.u) && message.u >= 0 && message.u < 2 ** 32 ? message.u : undefined)
        break
    }
  }

  async #send (did: string, message: Message): Promise<void> {
    await this.#components.send(did, encodeMessage(message))
  }
}
