/**
 * A deterministic simulation of a mesh: thousands of nodes, each running the real
 * membership protocol ({@link Swim}: probes, phi accrual, suspicion, ring-arc gossip,
 * signed records, push-pull), in one process, over a virtual network on a virtual clock.
 * Only the transport and the node's round loop are the simulation's: the loop mirrors
 * {@link MeshNode}'s (probe round, expiry, idle channels, push-pull, reconnect), and a
 * message is the same JSON frame a node sends, delivered after a latency drawn from the
 * network model. A run is reproducible from its seed.
 */
import { publicKeyFromRaw } from '@libp2p/crypto/keys'
import { peerIdFromPublicKey } from '@libp2p/peer-id'
import { nodeKeyFromSeed } from '../../identity/index.ts'
import type { NodeKey } from '../../identity/index.ts'
import type { Logger } from '../../interfaces/index.ts'
import { DEFAULT_MEMBERSHIP } from '../membership.ts'
import type { Member, MemberState, MembershipSettings, WireMember } from '../membership.ts'
import { Swim } from '../swim.ts'
import type { Message } from '../swim.ts'
import { Prng } from './prng.ts'
import { Scheduler, type Owner } from './scheduler.ts'

/** The virtual network */
export interface NetworkSettings {
  /**
   * round trip between two nodes: `rttMinMs` + `rttSpreadMs` × their distance, nodes
   * being scattered uniformly on a unit square (mean distance ≈ 0.52) @default 2
   */
  rttMinMs: number
  /** @default 150 (mean RTT ≈ 80 ms, at most ≈ 210 ms) */
  rttSpreadMs: number
  /** mean of the exponential jitter added to each message's one-way delay @default 5 */
  jitterMs: number
  /** probability that a message is lost on the wire @default 0 */
  loss: number
  /**
   * what a loss does: 'stream' (the real transport, TCP or QUIC): the message arrives
   * after a retransmission timeout (max(`rtoMinMs`, 2 × RTT)) and later messages between
   * the same two nodes wait behind it; 'datagram': it is gone @default 'stream'
   */
  lossMode: 'stream' | 'datagram'
  /** @default 200 (Linux's minimum RTO) */
  rtoMinMs: number
  /**
   * round trips a new channel costs before its first frame (TCP, Noise, stream
   * negotiation); a dial to a node that is gone or cut off fails after dialTimeoutMs and
   * sends nothing @default 2
   */
  handshakeRtts: number
}

export const DEFAULT_NETWORK: Readonly<NetworkSettings> = Object.freeze({
  rttMinMs: 2,
  rttSpreadMs: 150,
  jitterMs: 5,
  loss: 0,
  lossMode: 'stream',
  rtoMinMs: 200,
  handshakeRtts: 2
})

export interface SimulationInit {
  /** the seed of every random choice (keys, latencies, losses, the protocol's own) */
  seed: number
  network?: Partial<NetworkSettings>
  /** the protocol's settings @default DEFAULT_MEMBERSHIP */
  membership?: Partial<MembershipSettings>
}

/** Messages and payload bytes sent (the JSON frames; framing and encryption not counted) */
export interface Traffic {
  messages: number
  bytes: number
  /** new channels opened (dials that succeeded) */
  dials: number
  /** dials to nodes that were gone or cut off */
  failedDials: number
  byType: Record<string, { messages: number, bytes: number }>
}

/** How far one piece of news (a join, a death) spread */
export interface Spread {
  kind: 'join' | 'death'
  did: string
  /** virtual ms of the event */
  at: number
  /** nodes that should learn it (running from the event to now, the subject excepted) */
  observers: number
  /** ms from the event until each observer that learned it did, sorted */
  delays: number[]
}

const SILENT: Logger = { debug: () => {}, info: () => {}, warn: () => {}, error: () => {}, isLevelEnabled: () => false }
const NO_ONE: ReadonlySet<string> = new Set()
const decoder = new TextDecoder()

/** One simulated node: the real {@link Swim} with a virtual transport and round loop */
export class SimNode implements Owner {
  readonly did: string
  readonly key: NodeKey
  readonly swim: Swim
  readonly index: number
  /** position on the unit square (latency) */
  readonly x: number
  readonly y: number
  readonly addrs: string[]
  running = false
  /** when this node started (virtual ms) */
  startedAt = 0
  /** peers with an open channel, and when it last carried a frame */
  readonly channels = new Map<string, number>()
  /** per peer: when the last message sent to it arrives (streams deliver in order) */
  readonly arrivals = new Map<string, number>()
  lastPushPull = 0
  lastReconnect = 0
  bootstrap: string | undefined

  constructor (sim: Simulation, index: number, key: NodeKey, x: number, y: number) {
    this.did = key.did
    this.key = key
    this.index = index
    this.x = x
    this.y = y
    const peerId = peerIdFromPublicKey(publicKeyFromRaw(key.publicKey)).toString()
    this.swim = new Swim({
      key,
      logger: SILENT,
      isolated: NO_ONE,
      started: () => this.running,
      stopping: () => !this.running,
      send: async (did, bytes) => { await sim.send(this, did, bytes) },
      connected: (did) => this.channels.has(did),
      gone: (did) => { this.channels.delete(did); this.arrivals.delete(did) },
      clock: sim.scheduler.clock(this)
    }, {
      peerId,
      name: `sim/node-${index}`,
      substrate: 'biome',
      frontier: false,
      meta: {},
      admit: undefined,
      settings: sim.settings
    })
    this.addrs = [`/ip4/10.${(index >> 16) & 255}.${(index >> 8) & 255}.${index & 255}/tcp/4001/p2p/${peerId}`]
  }
}

/** A simulated mesh: see the module's comment */
export class Simulation {
  readonly settings: MembershipSettings
  readonly network: NetworkSettings
  readonly scheduler: Scheduler
  readonly #nodes = new Map<string, SimNode>()
  readonly #all: SimNode[] = []
  readonly #net: Prng
  readonly #keys: Prng
  readonly #choice: Prng
  #partition: Map<string, number> | undefined
  #traffic: Traffic = { messages: 0, bytes: 0, dials: 0, failedDials: 0, byType: {} }
  readonly #watched = new Map<string, { spread: Spread, wanted: MemberState, seen: Map<string, number> }>()
  readonly #suspicions = new Set<string>()
  #churn: { joinsPerSec: number, deathsPerSec: number, active: Owner & { running: boolean } } | undefined

  constructor (init: SimulationInit) {
    const root = new Prng(init.seed)
    this.#net = root.fork()
    this.#keys = root.fork()
    this.#choice = root.fork()
    this.scheduler = new Scheduler(root.fork())
    this.settings = { ...DEFAULT_MEMBERSHIP, ...init.membership }
    this.network = { ...DEFAULT_NETWORK, ...init.network }
  }

  /** virtual ms since the simulation's epoch */
  get now (): number {
    return this.scheduler.now
  }

  /** the running nodes */
  running (): SimNode[] {
    return this.#all.filter((n) => n.running)
  }

  /** every node ever started, crashed ones included */
  nodes (): readonly SimNode[] {
    return this.#all
  }

  node (did: string): SimNode | undefined {
    return this.#nodes.get(did)
  }

  #create (listen = true): SimNode {
    const index = this.#all.length
    const node = new SimNode(this, index, nodeKeyFromSeed(this.#keys.bytes32()), this.#keys.next(), this.#keys.next())
    this.#nodes.set(node.did, node)
    this.#all.push(node)
    if (listen) {
      this.#listen(node)
    }
    return node
  }

  #listen (node: SimNode): void {
    node.swim.onMembers((member, previous) => { this.#observe(node, member, previous) })
  }

  #run (node: SimNode, firstRoundIn: number): void {
    node.running = true
    node.startedAt = this.now
    // as MeshNode.start: the first push-pull one reconnect interval after the start
    node.lastPushPull = Math.floor(this.now - this.settings.pushPullIntervalMs + this.settings.reconnectIntervalMs)
    node.lastReconnect = this.now
    node.swim.start(node.addrs, Math.floor(this.now + firstRoundIn))
    this.scheduler.schedule(firstRoundIn, () => { this.#tick(node) }, node)
  }

  /**
   * Start `count` nodes that already know each other, as after a formation: each is handed
   * every node's signed record in one full-state message (the real merge, through
   * {@link Swim.onMessage}); their rounds start at random phases.
   */
  form (count: number): SimNode[] {
    const nodes: SimNode[] = []
    for (let i = 0; i < count; i++) {
      nodes.push(this.#create(false))
    }
    for (const node of nodes) {
      this.#run(node, 1 + this.#choice.next() * this.settings.probeIntervalMs)
    }
    // one frozen copy of each record for every node (as a process holding them all would)
    const table: WireMember[] = nodes.map((n) => {
      const w = n.swim.record()
      Object.freeze(w.addrs)
      Object.freeze(w.meta)
      return Object.freeze(w)
    })
    for (const node of nodes) {
      node.swim.onMessage(node.did, { t: 'sync', m: table, reply: false })
      this.#listen(node)
      // nodes of a real mesh started at different times: their push-pulls are not in step
      node.lastPushPull = Math.floor(this.now - this.#choice.next() * this.settings.pushPullIntervalMs)
      node.lastReconnect = Math.floor(this.now - this.#choice.next() * this.settings.reconnectIntervalMs)
    }
    return nodes
  }

  /** A new node joins through a running node (`via`, or one chosen at random), as MeshNode's bootstrap join */
  join (via?: string): SimNode {
    const live = this.running()
    const bootstrap = via ?? live[this.#choice.int(live.length)]?.did
    const node = this.#create()
    node.bootstrap = bootstrap
    this.#run(node, this.settings.probeIntervalMs)
    this.#joinBootstrap(node)
    return node
  }

  #joinBootstrap (node: SimNode): void {
    const did = node.bootstrap
    if (did === undefined) {
      return
    }
    const controller = new AbortController()
    const timer = this.scheduler.schedule(this.settings.dialTimeoutMs, () => { controller.abort(new Error('join timed out')) }, node)
    node.swim.join(did, async (bytes) => { await this.send(node, did, bytes) }, controller.signal).then(
      () => { this.scheduler.cancel(timer) },
      () => { this.scheduler.cancel(timer) })
  }

  /** `did`'s process dies: no leave, no more messages or timers */
  crash (did: string): void {
    const node = this.#nodes.get(did)
    if (node !== undefined) {
      node.running = false
      node.swim.halt()
    }
  }

  /** nodes in different groups cannot reach each other (nodes in no group reach only nodes in none) */
  partition (groups: ReadonlyArray<readonly string[]>): void {
    const of = new Map<string, number>()
    groups.forEach((group, i) => { for (const did of group) { of.set(did, i + 1) } })
    this.#partition = of
  }

  heal (): void {
    this.#partition = undefined
  }

  #reachable (a: string, b: string): boolean {
    const p = this.#partition
    return p === undefined || (p.get(a) ?? 0) === (p.get(b) ?? 0)
  }

  /**
   * Churn: nodes join (through a random running node) and crash at these rates
   * (Poisson), until {@link Simulation.stopChurn}
   */
  churn (joinsPerSec: number, deathsPerSec: number): void {
    this.stopChurn()
    const active = { running: true }
    this.#churn = { joinsPerSec, deathsPerSec, active }
    const next = (rate: number, act: () => void): void => {
      if (rate <= 0) {
        return
      }
      this.scheduler.schedule(this.#choice.exponential(1000 / rate), () => { act(); next(rate, act) }, active)
    }
    next(joinsPerSec, () => { this.join() })
    next(deathsPerSec, () => {
      const live = this.running()
      const victim = live[this.#choice.int(live.length)]
      if (victim !== undefined && live.length > 2) {
        this.crash(victim.did)
      }
    })
  }

  stopChurn (): void {
    if (this.#churn !== undefined) {
      this.#churn.active.running = false
      this.#churn = undefined
    }
  }

  /** advance virtual time by `ms` */
  async run (ms: number): Promise<void> {
    await this.scheduler.runUntil(this.now + ms)
  }

  /** advance until `done()` holds (checked every `stepMs`) or `maxMs` passed; whether it held */
  async runUntil (done: () => boolean, maxMs: number, stepMs = 50): Promise<boolean> {
    const end = this.now + maxMs
    while (!done()) {
      if (this.now >= end) {
        return false
      }
      await this.scheduler.runUntil(Math.min(end, this.now + stepMs))
    }
    return true
  }

  // ---------------------------------------------------------------- the node's round loop

  /** as MeshNode's #tick and #housekeeping (discovery aside) */
  #tick (node: SimNode): void {
    const s = this.settings
    node.swim.probeRound()
    const now = Math.floor(this.now)
    node.swim.expire(now)
    this.#closeIdle(node, now)
    if (now - node.lastPushPull >= s.pushPullIntervalMs) {
      node.lastPushPull = now
      node.swim.pushPull()
    }
    if (now - node.lastReconnect >= s.reconnectIntervalMs) {
      node.lastReconnect = now
      if (node.swim.alone()) {
        this.#joinBootstrap(node)
      }
      node.swim.retryDead()
    }
    node.swim.roundDone()
    this.scheduler.schedule(s.probeIntervalMs, () => { this.#tick(node) }, node)
  }

  #closeIdle (node: SimNode, now: number): void {
    let keep: Set<string> | undefined
    for (const [did, last] of node.channels) {
      if (now - last < this.settings.idleCloseMs) {
        continue
      }
      keep ??= new Set(node.swim.links())
      if (!keep.has(did)) {
        node.channels.delete(did)
        node.arrivals.delete(did)
      }
    }
  }

  // ---------------------------------------------------------------- the network

  /**
   * `from` sends one membership frame to `to`: written at once on an open channel (lost
   * if `to` is gone); otherwise a dial first, which fails after dialTimeoutMs when `to` is
   * gone or cut off
   */
  async send (from: SimNode, to: string, bytes: Uint8Array): Promise<void> {
    if (!from.running) {
      return
    }
    const now = this.now
    const target = this.#nodes.get(to)
    const reachable = target !== undefined && target.running && this.#reachable(from.did, to)
    const open = from.channels.has(to)
    if (!open && !reachable) {
      this.#traffic.failedDials++
      await new Promise<void>((resolve, reject) => {
        this.scheduler.schedule(this.settings.dialTimeoutMs, () => { reject(new Error(`Cannot dial ${to}: timed out`)) }, from)
      })
      return
    }
    from.channels.set(to, now)
    this.#count(bytes)
    if (!reachable) {
      return
    }
    const net = this.network
    const rtt = net.rttMinMs + net.rttSpreadMs * Math.hypot(from.x - target.x, from.y - target.y)
    let arrival = now + rtt / 2 + this.#net.exponential(net.jitterMs)
    if (!open) {
      this.#traffic.dials++
      arrival += net.handshakeRtts * rtt
    }
    if (net.loss > 0 && this.#net.next() < net.loss) {
      if (net.lossMode === 'datagram') {
        return
      }
      arrival += Math.max(net.rtoMinMs, 2 * rtt)
    }
    if (net.lossMode === 'stream') {
      arrival = Math.max(arrival, from.arrivals.get(to) ?? 0)
      from.arrivals.set(to, arrival)
    }
    this.scheduler.at(arrival, () => { this.#deliver(from.did, target, bytes) }, target)
  }

  #deliver (from: string, node: SimNode, bytes: Uint8Array): void {
    if (!this.#reachable(from, node.did)) {
      return
    }
    node.channels.set(from, this.now)
    let message: Message
    try {
      message = JSON.parse(decoder.decode(bytes)) as Message
    } catch {
      return
    }
    node.swim.onMessage(from, message)
  }

  #count (bytes: Uint8Array): void {
    const t = this.#traffic
    t.messages++
    t.bytes += bytes.byteLength
    // every frame starts with {"t":"<type>"
    const type = bytes[6] === 0x70 ? (bytes[7] === 0x69 ? 'ping' : bytes[7] === 0x72 ? 'preq' : 'pack') : bytes[6] === 0x61 ? 'ack' : bytes[6] === 0x73 ? 'sync' : bytes[6] === 0x64 ? 'digest' : 'gossip'
    const slot = t.byType[type] ??= { messages: 0, bytes: 0 }
    slot.messages++
    slot.bytes += bytes.byteLength
  }

  /** traffic since the last reset */
  traffic (): Traffic {
    return this.#traffic
  }

  resetTraffic (): void {
    this.#traffic = { messages: 0, bytes: 0, dials: 0, failedDials: 0, byType: {} }
  }

  // ---------------------------------------------------------------- what the nodes learn

  /**
   * Record when each running node learns that `did` is in `state` (alive: a join; dead:
   * a death); read it with {@link Simulation.spread}
   */
  watch (did: string, kind: Spread['kind']): void {
    this.#watched.set(did, { spread: { kind, did, at: this.now, observers: 0, delays: [] }, wanted: kind === 'join' ? 'alive' : 'dead', seen: new Map() })
    // a node that already holds it learned it at once
    for (const node of this.#all) {
      if (node.running && node.did !== did && node.swim.stateOf(did) === (kind === 'join' ? 'alive' : 'dead')) {
        this.#watched.get(did)?.seen.set(node.did, this.now)
      }
    }
  }

  /** how far the watched news about `did` spread so far */
  spread (did: string): Spread | undefined {
    const watched = this.#watched.get(did)
    if (watched === undefined) {
      return undefined
    }
    const { spread, seen } = watched
    const delays: number[] = []
    let observers = 0
    for (const node of this.#all) {
      if (!node.running || node.did === did || node.startedAt > spread.at) {
        continue
      }
      observers++
      const t = seen.get(node.did)
      if (t !== undefined) {
        delays.push(t - spread.at)
      }
    }
    delays.sort((a, b) => a - b)
    return { ...spread, observers, delays }
  }

  unwatch (did: string): void {
    this.#watched.delete(did)
  }

  /** distinct suspicions (member, incarnation) of a running node not cut off by a partition */
  get falseSuspicions (): number {
    return this.#suspicions.size
  }

  resetSuspicions (): void {
    this.#suspicions.clear()
  }

  #observe (observer: SimNode, member: Member, previous: MemberState | undefined): void {
    if (member.did === observer.did) {
      return
    }
    const watched = this.#watched.get(member.did)
    if (watched !== undefined && member.state === watched.wanted && !watched.seen.has(observer.did)) {
      watched.seen.set(observer.did, this.now)
    }
    if (member.state === 'suspect' && previous !== 'suspect') {
      const subject = this.#nodes.get(member.did)
      if (subject?.running === true && this.#partition === undefined) {
        this.#suspicions.add(`${member.did} ${member.incarnation}`)
      }
    }
  }
}

/** `q` quantile (0..1) of sorted `values` (nearest rank) */
export function quantile (sorted: readonly number[], q: number): number {
  if (sorted.length === 0) {
    return Number.NaN
  }
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))] as number
}

/** ms until `fraction` of the spread's observers learned it, or undefined if they have not yet */
export function reached (spread: Spread, fraction: number): number | undefined {
  const needed = Math.ceil(fraction * spread.observers)
  if (needed === 0) {
    return 0
  }
  return spread.delays.length >= needed ? spread.delays[needed - 1] : undefined
}
