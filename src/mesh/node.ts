/**
 * A mesh node: libp2p (TCP, optionally QUIC; Noise; yamux; identify; ping) plus a
 * SWIM/Lifeguard-style membership protocol with phi-accrual failure detection, epidemic
 * broadcast, and framed channels for other modules' protocols.
 *
 * Membership messages travel as JSON frames over one long-lived `/omega/swim/1` stream
 * per peer pair (opened lazily, reused). See {@link MembershipSettings} for the protocol.
 */
import './polyfill.ts'
import { createHash, createPrivateKey, randomBytes } from 'node:crypto'
import { setMaxListeners } from 'node:events'
import { noise } from '@chainsafe/libp2p-noise'
import { identify } from '@libp2p/identify'
import { mdns } from '@libp2p/mdns'
import { ping } from '@libp2p/ping'
import { tcp } from '@libp2p/tcp'
import { preSharedKey } from '@libp2p/pnet'
import { yamux } from '@libp2p/yamux'
import { generateKeyPairFromSeed, publicKeyFromRaw } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey, peerIdFromPublicKey } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import type { Multiaddr } from '@multiformats/multiaddr'
import { createLibp2p } from 'libp2p'
import type { Connection, Libp2p, PeerId, Stream } from '@libp2p/interface'
import { MeshDialError, MeshError } from '../errors.ts'
import { didFromPublicKey, publicKeyFromDid } from '../identity/index.ts'
import type { NodeKey } from '../identity/index.ts'
import type { AbortOptions, Logger, Startable } from '../interfaces/index.ts'
import { discoverDnsSd, discoverOverlay } from './discovery/index.ts'
import type { DiscoveryInit } from './discovery/index.ts'
import { StreamFrameChannel } from './frames.ts'
import type { FrameChannel, FrameChannelSettings } from './frames.ts'
import { DEFAULT_MEMBERSHIP, MemberVerifier, memberClaim, parseWireMember, signMember, supersedes } from './membership.ts'
import type { Member, MemberState, MembershipSettings, Substrate, WireMember } from './membership.ts'
import { PhiAccrualDetector } from './phi.ts'
import { combineSignals } from './signals.ts'

/** The membership protocol's stream protocol id */
export const SWIM_PROTOCOL = '/omega/swim/1'
/** Largest broadcast payload @default 256 KiB */
export const MAX_BROADCAST_BYTES = 256 * 1024
/** Port dialled on overlay (Tailscale/NetBird) and DNS-SD peers when none is given */
export const DEFAULT_MESH_PORT = 4001

export interface MeshInit {
  /** the node's key; the libp2p private key is derived from it so peerId and did match */
  key: NodeKey
  /** e.g. "lab.lan/transform-pool-1" (matched by manifest `peers` globs) */
  name: string
  substrate: Substrate
  /** advertises it can run microVMs @default false */
  frontier?: boolean
  /** listen multiaddrs; a `/udp/N/quic-v1` address enables QUIC @default ['/ip4/127.0.0.1/tcp/0'] */
  listen?: string[]
  /** multiaddrs with /p2p/ (static discovery); redialled while this node knows no live member */
  bootstrap?: string[]
  discovery?: DiscoveryInit
  membership?: Partial<MembershipSettings>
  /** frame channel limits for {@link MeshNode.open} and {@link MeshNode.handle} */
  channels?: Partial<FrameChannelSettings>
  /** small key/values advertised from the start */
  meta?: Record<string, string>
  /**
   * a private swarm: only nodes holding the same pre-shared key (libp2p pnet, the
   * `/key/swarm/psk/1.0.0/` format) can connect at all. TCP only: QUIC listen addresses
   * are refused with a key
   */
  swarmKey?: Uint8Array
  /**
   * did:keys of the nodes this node admits (itself always): libp2p's connection gater
   * refuses connections to and from any other peer, and member records of other dids are
   * dropped even when an admitted peer passes them on. @default any node (an open mesh)
   */
  admit?: readonly string[]
  logger: Logger
}

type Rumor =
  | { k: 'm', m: WireMember }
  | { k: 'b', id: string, o: string, topic: string, d: string }

type Message =
  | { t: 'ping', s: number, r?: Rumor[] }
  | { t: 'ack', s: number, r?: Rumor[] }
  | { t: 'preq', s: number, target: string }
  | { t: 'pack', s: number, target: string }
  | { t: 'sync', m: WireMember[], reply: boolean }
  | { t: 'gossip', r: Rumor[], a?: number }

interface Entry {
  record: WireMember
  changedAt: number
  rttMs?: number
  suspectTimer?: NodeJS.Timeout | undefined
}

interface Piggy {
  rumor: Rumor
  size: number
  left: number
}

const encoder = new TextEncoder()
const decoder = new TextDecoder()
const MAX_PIGGYBACK_BYTES = 2 * 1024
const SEEN_TTL_MS = 120_000
const SEEN_MAX = 20_000
/** setMeta/setLoad changes are gossiped at most this often (each bumps the incarnation) */
const ANNOUNCE_INTERVAL_MS = 1000
/** a refused member record is logged once per did and reason in this interval */
const REFUSAL_LOG_INTERVAL_MS = 60_000
const REFUSAL_LOG_MAX = 1024

function encode (message: Message): Uint8Array {
  return encoder.encode(JSON.stringify(message))
}

/** the 32-byte seed inside a NodeKey's PKCS#8 export */
function seedOf (key: NodeKey): Uint8Array {
  const der = createPrivateKey(key.exportPem()).export({ format: 'der', type: 'pkcs8' })
  return new Uint8Array(der.subarray(der.length - 32))
}

/** did:key of an Ed25519 libp2p peer id */
export function didOfPeerId (peerId: PeerId): string {
  if (peerId.type !== 'Ed25519') {
    throw new MeshError(`Cannot derive did:key of peer ${peerId.toString()}: it is a ${peerId.type} key, Omega nodes use Ed25519`)
  }
  return didFromPublicKey(peerId.publicKey.raw)
}

/** the libp2p peer id of an Ed25519 did:key */
export function peerIdOfDid (did: string): PeerId {
  return peerIdFromPublicKey(publicKeyFromRaw(publicKeyFromDid(did)))
}

/** run a promise in the background; its failure is already handled or does not matter */
function background (promise: Promise<unknown>): void {
  promise.catch(() => {})
}

function shuffle<T> (items: T[]): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1))
    const a = items[i] as T
    items[i] = items[j] as T
    items[j] = a
  }
  return items
}

function ringHash (did: string): number {
  return createHash('sha256').update(did).digest().readUInt32BE(0)
}

/**
 * One Omega node in the mesh.
 *
 * Trust. Every member record a node makes about itself is signed with its node key (see
 * {@link memberClaim}: all it claims, not its state); a record is believed only when its
 * signature verifies with the key of its did and its peerId is that key's, wherever it
 * comes from (sync, gossip, piggy-backed on probes). Others may still assert `suspect`
 * or `dead` about a member at its signed incarnation (SWIM); the member refutes with a
 * newly signed, higher one. Names: a name belongs to the first did this node believed
 * claiming it, for as long as that member is alive or suspect here; a record of another
 * did claiming it meanwhile is refused, and once the holder is dead, has left or is
 * forgotten, the next claim takes it (so nodes may disagree while two live nodes claim
 * one name). With {@link MeshInit.admit}, only the listed dids connect or are believed.
 * Refused records are logged at warn, once a minute per did and reason.
 *
 * @example
 * ```ts
 * const node = await MeshNode.create({ key, name: 'lab.lan/a', substrate: 'biome', bootstrap: [addr], logger })
 * await node.start()
 * node.onMembers((m, previous) => { ... })
 * node.broadcast('manifests', bytes)
 * await node.stop()
 * ```
 */
export class MeshNode implements Startable {
  readonly did: string
  readonly peerId: string
  readonly #libp2p: Libp2p
  readonly #init: MeshInit
  readonly #settings: MembershipSettings
  readonly #log: Logger
  readonly #self: WireMember
  readonly #entries = new Map<string, Entry>()
  readonly #ringHashes = new Map<string, number>()
  readonly #listeners = new Set<(member: Member, previous: MemberState | undefined) => void>()
  readonly #broadcastHandlers = new Map<string, Set<(data: Uint8Array, fromDid: string) => void>>()
  readonly #protocols = new Map<string, (channel: FrameChannel) => void>()
  readonly #sessions = new Map<string, FrameChannel[]>()
  readonly #opening = new Map<string, Promise<FrameChannel>>()
  readonly #pending = new Map<number, { did: string, sentAt: number, done: (ok: boolean) => void }>()
  readonly #indirectWaiters = new Map<number, () => void>()
  readonly #indirecting = new Set<string>()
  readonly #detectors = new Map<string, PhiAccrualDetector>()
  readonly #piggyback = new Map<string, Piggy>()
  readonly #seen = new Map<string, number>()
  readonly #syncWaiters = new Map<string, () => void>()
  readonly #isolated = new Set<string>()
  readonly #isolatedPeers: Set<string>
  readonly #verifier = new MemberVerifier()
  readonly #admit: ReadonlySet<string> | undefined
  readonly #refusals = new Map<string, number>()
  #signedSelf: { claim: string, record: WireMember } | undefined
  #seq = 0
  #fingerCursor = 0
  readonly #activity = new Map<string, number>()
  #ringCache: string[] | undefined
  #fingerCache: string[] | undefined
  #expectedTick = 0
  #discoveryListening = false
  #announceTimer: NodeJS.Timeout | undefined
  #lastAnnounce = 0
  #calmUntil = 0
  #started = false
  #stopping = false
  #timer: NodeJS.Timeout | undefined
  #lastPushPull = 0
  #lastReconnect = 0
  #lastDiscovery = 0
  #shutdown = new AbortController()

  private constructor (libp2p: Libp2p, init: MeshInit, isolatedPeers: Set<string>) {
    this.#libp2p = libp2p
    this.#isolatedPeers = isolatedPeers
    this.#init = init
    this.#log = init.logger
    this.#settings = { ...DEFAULT_MEMBERSHIP, ...init.membership }
    this.#admit = init.admit === undefined ? undefined : new Set([...init.admit, init.key.did])
    this.did = init.key.did
    this.peerId = libp2p.peerId.toString()
    this.#self = {
      did: this.did,
      peerId: this.peerId,
      name: init.name,
      substrate: init.substrate,
      frontier: init.frontier ?? false,
      addrs: [],
      state: 'alive',
      inc: Date.now(),
      meta: { ...init.meta }
    }
  }

  /** Build a node (libp2p created, not started). */
  static async create (init: MeshInit, options: AbortOptions = {}): Promise<MeshNode> {
    options.signal?.throwIfAborted()
    const privateKey = await generateKeyPairFromSeed('Ed25519', seedOf(init.key))
    if (peerIdFromPrivateKey(privateKey).toString() !== peerIdOfDid(init.key.did).toString()) {
      throw new MeshError('Cannot create mesh node: the libp2p key derived from the node key does not match its did')
    }
    const listen = init.listen ?? ['/ip4/127.0.0.1/tcp/0']
    if (init.swarmKey !== undefined && listen.some((a) => a.includes('/quic'))) {
      throw new MeshError('Cannot create mesh node: a private swarm (swarm key) runs over TCP only; QUIC connections cannot carry the pre-shared key protection: drop the /quic-v1 listen addresses')
    }
    const transports: Array<ReturnType<typeof tcp>> = [tcp()]
    if (listen.some((a) => a.includes('/quic'))) {
      const { quic } = await import('@chainsafe/libp2p-quic')
      transports.push(quic() as unknown as ReturnType<typeof tcp>)
    }
    const isolatedPeers = new Set<string>()
    let admitted: Set<string> | undefined
    if (init.admit !== undefined) {
      admitted = new Set([peerIdOfDid(init.key.did).toString()])
      for (const did of init.admit) {
        try {
          admitted.add(peerIdOfDid(did).toString())
        } catch (err) {
          throw new TypeError(`Cannot create mesh node: admit: "${did}" is not an Ed25519 did:key: ${(err as Error).message}`, { cause: err })
        }
      }
    }
    // a refused peer cannot connect either way (isolate() for drills, admit for good)
    const isolated = (peer: PeerId): boolean => {
      const id = peer.toString()
      return isolatedPeers.has(id) || (admitted !== undefined && !admitted.has(id))
    }
    const services: Record<string, (components: any) => unknown> = {
      identify: identify(),
      ping: ping()
    }
    if (init.discovery?.mdns === true) {
      services.mdns = mdns({ interval: 1000 })
    }
    const libp2p = await createLibp2p({
      start: false,
      privateKey,
      addresses: { listen },
      transports,
      connectionEncrypters: [noise()],
      ...(init.swarmKey === undefined ? {} : { connectionProtector: preSharedKey({ psk: init.swarmKey }) }),
      // a paused stream (slow reader) receives at most one window more: keep the window
      // (auto-tuned up to 16 MiB by default) below the read buffer limit that resets it
      streamMuxers: [yamux({
        streamOptions: {
          initialStreamWindowSize: 256 * 1024,
          maxStreamWindowSize: 2 * 1024 * 1024,
          maxReadBufferLength: 8 * 1024 * 1024,
          maxWriteBufferLength: Number.POSITIVE_INFINITY,
          inactivityTimeout: 120_000
        }
      })],
      connectionManager: {
        allow: ['/ip4/127.0.0.0/ipcidr/8'],
        maxConnections: 1024
      },
      connectionMonitor: { enabled: false },
      connectionGater: {
        denyDialMultiaddr: () => false,
        denyDialPeer: isolated,
        denyInboundEncryptedConnection: isolated,
        denyOutboundEncryptedConnection: isolated
      },
      services
    })
    return new MeshNode(libp2p, init, isolatedPeers)
  }

  get name (): string {
    return this.#self.name
  }

  get addrs (): string[] {
    return this.#libp2p.getMultiaddrs().map((a) => a.toString())
  }

  /** the libp2p node, for diagnostics */
  get libp2p (): Libp2p {
    return this.#libp2p
  }

  get settings (): Readonly<MembershipSettings> {
    return this.#settings
  }

  async start (): Promise<void> {
    if (this.#started) {
      return
    }
    this.#started = true
    this.#stopping = false
    this.#shutdown = new AbortController()
    // every dial and stream open listens on it for a moment: not a leak
    setMaxListeners(Number.POSITIVE_INFINITY, this.#shutdown.signal)
    const libp2p = this.#libp2p
    await libp2p.handle(SWIM_PROTOCOL, (stream, connection) => { this.#onSwimStream(stream, connection) }, {
      maxInboundStreams: 8,
      maxOutboundStreams: 8,
      force: true
    })
    for (const [protocol, handler] of this.#protocols) {
      await this.#register(protocol, handler)
    }
    if (!this.#discoveryListening) {
      this.#discoveryListening = true
      libp2p.addEventListener('peer:discovery', (evt) => { this.#onPeerDiscovery(evt.detail.id) })
    }
    await libp2p.start()
    if (this.#self.state !== 'alive') {
      // started again after stop(): a new life, above the 'left' the others hold
      this.#self.state = 'alive'
      this.#self.inc = Math.max(this.#self.inc + 1, Date.now())
      this.#entries.clear()
      this.#ringCache = undefined
    }
    this.#self.addrs = this.addrs
    this.#entries.set(this.did, { record: this.#self, changedAt: Date.now() })
    this.#notify(this.#self, undefined)
    this.#expectedTick = Date.now() + this.#settings.probeIntervalMs
    this.#timer = setTimeout(() => { this.#tick() }, this.#settings.probeIntervalMs)
    this.#lastReconnect = Date.now()
    this.#lastPushPull = Date.now()
    await Promise.all([
      this.#joinBootstrap(),
      this.#runDiscovery()
    ])
    this.#lastDiscovery = Date.now()
  }

  #onPeerDiscovery (id: PeerId): void {
    if (!this.#started || this.#stopping || id.equals(this.#libp2p.peerId) || id.type !== 'Ed25519') {
      return
    }
    const did = didOfPeerId(id)
    const entry = this.#entries.get(did)
    if (entry === undefined || entry.record.state === 'dead') {
      background(this.#join(id).catch((err: unknown) => { this.#log.debug({ err, did }, 'mesh: join via discovered peer failed') }))
    }
  }

  async stop (): Promise<void> {
    if (!this.#started) {
      return
    }
    this.#stopping = true
    clearTimeout(this.#timer)
    clearTimeout(this.#announceTimer)
    this.#announceTimer = undefined
    // announce the leave: straight to every member we have a channel to, plus a fanout
    this.#self.inc++
    this.#self.state = 'left'
    const rumor: Rumor = { k: 'm', m: this.#selfRecord() }
    const targets = new Set<string>(this.#sessions.keys())
    for (const did of this.#gossipTargets(new Set())) {
      targets.add(did)
    }
    // each target acknowledges (close() resolves before bytes reach the socket)
    const sends = [...targets].map(async (did) => this.#request(did, (a) => ({ t: 'gossip', r: [rumor], a }), this.#settings.leaveTimeoutMs))
    await Promise.race([
      Promise.allSettled(sends),
      new Promise((resolve) => setTimeout(resolve, this.#settings.leaveTimeoutMs).unref())
    ])
    this.#shutdown.abort(new MeshError('The mesh node stopped'))
    for (const entry of this.#entries.values()) {
      clearTimeout(entry.suspectTimer)
    }
    for (const waiter of this.#pending.values()) {
      waiter.done(false)
    }
    this.#pending.clear()
    try {
      await this.#libp2p.stop()
    } finally {
      this.#sessions.clear()
      this.#opening.clear()
      this.#started = false
    }
  }

  // ---------------------------------------------------------------- public view

  members (): Member[] {
    const out: Member[] = []
    for (const entry of this.#entries.values()) {
      out.push(this.#view(entry))
    }
    return out
  }

  member (did: string): Member | undefined {
    const entry = this.#entries.get(did)
    return entry === undefined ? undefined : this.#view(entry)
  }

  onMembers (listener: (member: Member, previous: MemberState | undefined) => void): () => void {
    this.#listeners.add(listener)
    return () => { this.#listeners.delete(listener) }
  }

  /** Advertise a small key/value (gossiped; changes go out at once, then at most once a second) */
  setMeta (key: string, value: string): void {
    if (this.#self.meta[key] === value) {
      return
    }
    this.#self.meta = { ...this.#self.meta, [key]: value }
    this.#announceSelf()
  }

  /**
   * Advertise this node's load (any finite number; gossiped at most once a second).
   *
   * @throws {RangeError} if `load` is not finite
   */
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

  /**
   * Epidemic dissemination of `data` to every alive member, deduplicated. For low-rate
   * control messages (manifests, revocations); the sender's own handlers are not called.
   *
   * @throws {RangeError} if `data` is larger than {@link MAX_BROADCAST_BYTES}
   * @throws {MeshError} if the node is not started
   */
  broadcast (topic: string, data: Uint8Array): void {
    if (data.byteLength > MAX_BROADCAST_BYTES) {
      throw new RangeError(`Cannot broadcast on "${topic}": ${data.byteLength} bytes exceeds the limit of ${MAX_BROADCAST_BYTES}; send large payloads over a channel (open())`)
    }
    if (!this.#started || this.#stopping) {
      throw new MeshError(`Cannot broadcast on "${topic}": the mesh node is not running`)
    }
    const id = randomBytes(12).toString('base64url')
    this.#seen.set(id, Date.now() + SEEN_TTL_MS)
    const rumor: Rumor = { k: 'b', id, o: this.did, topic, d: Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString('base64') }
    this.#disseminate([rumor], new Set([this.did]))
  }

  onBroadcast (topic: string, handler: (data: Uint8Array, fromDid: string) => void): () => void {
    let handlers = this.#broadcastHandlers.get(topic)
    if (handlers === undefined) {
      handlers = new Set()
      this.#broadcastHandlers.set(topic, handlers)
    }
    handlers.add(handler)
    return () => { handlers.delete(handler) }
  }

  /** Accept channels opened by peers on `protocol` (e.g. '/omega/events/1'); callable before or after start() */
  handle (protocol: string, handler: (channel: FrameChannel) => void): void {
    this.#protocols.set(protocol, handler)
    if (this.#started) {
      this.#register(protocol, handler).catch((err: unknown) => {
        this.#log.error({ err, protocol }, 'mesh: cannot register protocol handler')
      })
    }
  }

  async #register (protocol: string, handler: (channel: FrameChannel) => void): Promise<void> {
    await this.#libp2p.handle(protocol, (stream, connection) => {
      const did = didOfPeerId(connection.remotePeer)
      if (this.#isolated.has(did)) {
        stream.abort(new MeshDialError(`Peer ${did} is isolated`))
        return
      }
      handler(new StreamFrameChannel(stream, did, this.#init.channels))
    }, { maxInboundStreams: 1024, maxOutboundStreams: 1024, force: true })
  }

  /**
   * Open a framed channel to `peerDid` on `protocol`.
   *
   * @throws {MeshDialError} if the peer is isolated, unknown and unreachable, or refuses the protocol
   */
  async open (peerDid: string, protocol: string, options: AbortOptions = {}): Promise<FrameChannel> {
    options.signal?.throwIfAborted()
    if (!this.#started) {
      throw new MeshError(`Cannot open ${protocol} to ${peerDid}: the mesh node is not started`)
    }
    const stream = await this.#openStream(peerDid, protocol, options)
    return new StreamFrameChannel(stream, peerDid, this.#init.channels)
  }

  /**
   * TEST/OPS hook for partitions: drop every connection, stream, probe and gossip to and
   * from these peers until `isolate([])`; they look dead to this node (that verdict stays
   * local: it is not gossiped). Replaces the previous set.
   */
  isolate (peerDids: readonly string[]): void {
    const next = new Set(peerDids)
    this.#ringCache = undefined
    const healed = [...this.#isolated].filter((did) => !next.has(did))
    this.#isolated.clear()
    this.#isolatedPeers.clear()
    for (const did of next) {
      if (did === this.did) {
        continue
      }
      this.#isolated.add(did)
      const peer = peerIdOfDid(did)
      this.#isolatedPeers.add(peer.toString())
      for (const channel of this.#sessions.get(did) ?? []) {
        channel.abort(new MeshDialError(`Peer ${did} is isolated`))
      }
      this.#sessions.delete(did)
      this.#detectors.delete(did)
      background(this.#libp2p.hangUp(peer))
      const entry = this.#entries.get(did)
      if (entry !== undefined) {
        clearTimeout(entry.suspectTimer)
        this.#notify(entry.record, entry.record.state)
      }
    }
    // healed peers: exchange full state so that both sides converge (refutations follow)
    for (const did of healed) {
      const entry = this.#entries.get(did)
      if (entry !== undefined) {
        this.#notify(entry.record, 'dead')
        if (this.#started && !this.#stopping) {
          background(this.#sync(did, true))
        }
      }
    }
  }

  // ---------------------------------------------------------------- membership view

  #view (entry: Entry): Member {
    const r = entry.record
    const state: MemberState = this.#isolated.has(r.did) && r.state !== 'left' ? 'dead' : r.state
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
    if (entry.rttMs !== undefined) {
      member.rttMs = entry.rttMs
    }
    if (r.load !== undefined) {
      member.load = r.load
    }
    return member
  }

  #notify (record: WireMember, previous: MemberState | undefined): void {
    const entry = this.#entries.get(record.did)
    if (entry === undefined) {
      return
    }
    const member = this.#view(entry)
    for (const listener of this.#listeners) {
      try {
        listener(member, previous)
      } catch (err) {
        this.#log.error({ err }, 'mesh: membership listener threw')
      }
    }
  }

  /** alive or suspect members other than self, not isolated */
  #others (): string[] {
    const out: string[] = []
    for (const [did, entry] of this.#entries) {
      if (did !== this.did && (entry.record.state === 'alive' || entry.record.state === 'suspect') && !this.#isolated.has(did)) {
        out.push(did)
      }
    }
    return out
  }

  /** gossip this node's changed record: at once, then at most once per ANNOUNCE_INTERVAL_MS (setLoad may be called often) */
  #announceSelf (): void {
    if (!this.#started || this.#stopping) {
      return
    }
    if (this.#announceTimer !== undefined) {
      return
    }
    const wait = this.#lastAnnounce + ANNOUNCE_INTERVAL_MS - Date.now()
    if (wait > 0) {
      this.#announceTimer = setTimeout(() => {
        this.#announceTimer = undefined
        this.#announceSelf()
      }, wait)
      return
    }
    this.#lastAnnounce = Date.now()
    this.#self.inc++
    this.#notify(this.#self, this.#self.state)
    this.#disseminate([{ k: 'm', m: this.#selfRecord() }], new Set([this.did]))
  }

  /**
   * This node's record as it goes on the wire: a copy signed with the node key (signed
   * again only when what it claims changed: incarnation, meta, load, addrs)
   */
  #selfRecord (): WireMember {
    const claim = memberClaim(this.#self)
    if (this.#signedSelf?.claim !== claim) {
      this.#signedSelf = { claim, record: signMember(this.#self, this.#init.key) }
    }
    return { ...this.#signedSelf.record, state: this.#self.state }
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

  /** whether `w` may be believed: signed by its did, admitted, and its name not held by another live member */
  #believable (w: WireMember, current: WireMember | undefined): boolean {
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
    for (const [did, entry] of this.#entries) {
      const r = entry.record
      if (did !== w.did && r.name === w.name && (r.state === 'alive' || r.state === 'suspect')) {
        return this.#refuse(w, `name "${w.name}" belongs to ${did}`)
      }
    }
    return true
  }

  /**
   * Apply a member record heard from someone; true when it changed this node's view (the
   * caller then passes it on).
   */
  #merge (w: WireMember): boolean {
    if (w.did === this.did) {
      // a rumor about this node counts only if it carries a claim this node signed
      if (w.state !== 'alive' && w.inc >= this.#self.inc && !this.#stopping && this.#believable(w, undefined)) {
        // refute: we are alive, at a higher incarnation than the rumor
        this.#self.inc = w.inc + 1
        this.#log.debug({ state: w.state, inc: w.inc }, 'mesh: refuting a rumor about this node')
        queueMicrotask(() => { this.#disseminate([{ k: 'm', m: this.#selfRecord() }], new Set([this.did])) })
      }
      return false
    }
    if (this.#isolated.has(w.did)) {
      return false
    }
    const now = Date.now()
    const entry = this.#entries.get(w.did)
    if (entry === undefined) {
      if (w.state === 'dead' || w.state === 'left' || !this.#believable(w, undefined)) {
        return false
      }
      const record = { ...w, addrs: [...w.addrs], meta: { ...w.meta } }
      this.#entries.set(w.did, { record, changedAt: now })
      this.#onStateChange(w.did)
      this.#notify(record, undefined)
      return true
    }
    if (!supersedes(w, entry.record) || !this.#believable(w, entry.record)) {
      return false
    }
    const previous = entry.record.state
    entry.record = { ...w, addrs: [...w.addrs], meta: { ...w.meta } }
    entry.changedAt = now
    if (previous !== w.state) {
      this.#onStateChange(w.did)
    }
    this.#notify(entry.record, previous)
    return true
  }

  #onStateChange (did: string): void {
    this.#ringCache = undefined
    const entry = this.#entries.get(did)
    if (entry === undefined) {
      return
    }
    clearTimeout(entry.suspectTimer)
    entry.suspectTimer = undefined
    const record = entry.record
    if (record.state === 'suspect') {
      const inc = record.inc
      entry.suspectTimer = setTimeout(() => {
        const current = this.#entries.get(did)
        if (current !== undefined && current.record.state === 'suspect' && current.record.inc === inc && !this.#stopping) {
          this.#declare(did, 'dead')
        }
      }, this.#settings.suspectTimeoutMs)
      entry.suspectTimer.unref()
    }
    if (record.state === 'dead' || record.state === 'left') {
      this.#detectors.delete(did)
      for (const channel of this.#sessions.get(did) ?? []) {
        channel.abort(new MeshError(`Member ${did} is ${record.state}`))
      }
      this.#sessions.delete(did)
    }
  }

  /** this node's own verdict about another member (suspect or dead), disseminated */
  #declare (did: string, state: 'suspect' | 'dead'): void {
    const entry = this.#entries.get(did)
    if (entry === undefined || this.#isolated.has(did)) {
      return
    }
    const next: WireMember = { ...entry.record, state }
    if (this.#merge(next)) {
      this.#log.info({ did, name: next.name, state }, `mesh: member ${state}`)
      this.#disseminate([{ k: 'm', m: next }], new Set([this.did, did]))
    }
  }

  // ---------------------------------------------------------------- dissemination

  #rumorKey (rumor: Rumor): string {
    return rumor.k === 'm' ? `m:${rumor.m.did}` : `b:${rumor.id}`
  }

  /** queue rumors for piggy-backing and push them at once to a fanout of peers */
  #disseminate (rumors: Rumor[], exclude: Set<string>): void {
    if (rumors.length === 0 || !this.#started) {
      return
    }
    const transmits = this.#settings.retransmitMult * Math.ceil(Math.log10(this.#entries.size + 1))
    for (const rumor of rumors) {
      const size = JSON.stringify(rumor).length
      this.#piggyback.set(this.#rumorKey(rumor), { rumor, size, left: transmits })
    }
    const bytes = encode({ t: 'gossip', r: rumors })
    for (const did of this.#gossipTargets(exclude)) {
      this.#sendBytes(did, bytes)
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
    return [...this.#ring(), ...this.#fingers()].filter((did) => !exclude.has(did))
  }

  /** up to `count` alive members not in `exclude`, those with an open channel first */
  #pickTargets (count: number, exclude: Set<string>): string[] {
    const connected: string[] = []
    const others: string[] = []
    for (const did of this.#others()) {
      if (exclude.has(did)) {
        continue
      }
      (this.#sessions.has(did) ? connected : others).push(did)
    }
    shuffle(connected)
    shuffle(others)
    return connected.concat(others).slice(0, count)
  }

  #takePiggyback (): Rumor[] | undefined {
    if (this.#piggyback.size === 0) {
      return undefined
    }
    const out: Rumor[] = []
    let bytes = 0
    for (const [key, p] of this.#piggyback) {
      if (bytes + p.size > MAX_PIGGYBACK_BYTES && out.length > 0) {
        break
      }
      out.push(p.rumor)
      bytes += p.size
      p.left--
      this.#piggyback.delete(key)
      if (p.left > 0) {
        // re-insert at the end: least-sent rumors go first next time
        this.#piggyback.set(key, p)
      }
    }
    return out
  }

  /** apply rumors; pass on those that were news */
  #receiveRumors (from: string, rumors: unknown): void {
    if (!Array.isArray(rumors)) {
      return
    }
    const fresh: Rumor[] = []
    for (const raw of rumors as unknown[]) {
      const rumor = raw as Partial<Rumor> | null
      if (rumor === null || typeof rumor !== 'object') {
        continue
      }
      if (rumor.k === 'm') {
        const w = parseWireMember(rumor.m)
        if (w !== undefined && this.#merge(w)) {
          fresh.push({ k: 'm', m: w })
        }
      } else if (rumor.k === 'b' && typeof rumor.id === 'string' && typeof rumor.o === 'string' &&
        typeof rumor.topic === 'string' && typeof rumor.d === 'string') {
        if (this.#seen.has(rumor.id) || this.#isolated.has(rumor.o)) {
          continue
        }
        this.#seen.set(rumor.id, Date.now() + SEEN_TTL_MS)
        const b = { k: 'b' as const, id: rumor.id, o: rumor.o, topic: rumor.topic, d: rumor.d }
        fresh.push(b)
        this.#deliver(b)
      }
    }
    if (fresh.length > 0) {
      this.#disseminate(fresh, new Set([this.did, from]))
    }
  }

  #deliver (rumor: { o: string, topic: string, d: string }): void {
    const handlers = this.#broadcastHandlers.get(rumor.topic)
    if (handlers === undefined || handlers.size === 0) {
      return
    }
    const data = new Uint8Array(Buffer.from(rumor.d, 'base64'))
    for (const handler of handlers) {
      try {
        handler(data, rumor.o)
      } catch (err) {
        this.#log.error({ err, topic: rumor.topic }, 'mesh: broadcast handler threw')
      }
    }
  }

  // ---------------------------------------------------------------- probing

  #tick (): void {
    if (!this.#started || this.#stopping) {
      return
    }
    const now = Date.now()
    const lag = now - this.#expectedTick
    if (lag > this.#settings.probeIntervalMs / 4) {
      // acks to probes sent around now will be read late too: hold verdicts a while
      this.#calmUntil = now + 3 * this.#settings.probeIntervalMs
    }
    try {
      this.#probeRound(now < this.#calmUntil)
      this.#housekeeping()
    } catch (err) {
      this.#log.error({ err }, 'mesh: probe round failed')
    }
    this.#expectedTick = Date.now() + this.#settings.probeIntervalMs
    this.#timer = setTimeout(() => { this.#tick() }, this.#settings.probeIntervalMs)
  }

  /** self and the alive/suspect members, ordered by ring hash (cached until membership changes) */
  #ringOrder (): string[] {
    if (this.#ringCache !== undefined) {
      return this.#ringCache
    }
    const candidates = this.#others()
    candidates.push(this.did)
    const hash = (did: string): number => {
      let h = this.#ringHashes.get(did)
      if (h === undefined) {
        h = ringHash(did)
        this.#ringHashes.set(did, h)
      }
      return h
    }
    candidates.sort((a, b) => hash(a) - hash(b) || (a < b ? -1 : 1))
    this.#ringCache = candidates
    this.#fingerCache = undefined
    return candidates
  }

  /** the `monitors` ring successors of this node */
  #ring (): string[] {
    const candidates = this.#ringOrder()
    const at = candidates.indexOf(this.did)
    const out: string[] = []
    for (let i = 1; i < candidates.length && out.length < this.#settings.monitors; i++) {
      out.push(candidates[(at + i) % candidates.length] as string)
    }
    return out
  }

  /**
   * Ring fingers beyond the monitors, Chord style: the first member at or after
   * hash + 2^31, + 2^30, … (distinct ones, about log2(n)). Positions in hash space, not
   * indexes, so a join or a leave changes only the fingers whose interval it falls in.
   */
  #fingers (): string[] {
    const ring = this.#ringOrder()
    if (this.#fingerCache !== undefined) {
      return this.#fingerCache
    }
    const hashes = ring.map((did) => this.#ringHashes.get(did) ?? ringHash(did))
    const own = this.#ringHashes.get(this.did) ?? ringHash(this.did)
    const monitors = new Set(this.#ring())
    const out: string[] = []
    for (let bit = 31; bit >= 0; bit--) {
      const target = (own + 2 ** bit) % 2 ** 32
      // first member whose hash is >= target (wrapping)
      let lo = 0
      let hi = hashes.length
      while (lo < hi) {
        const mid = (lo + hi) >>> 1
        if ((hashes[mid] as number) < target) {
          lo = mid + 1
        } else {
          hi = mid
        }
      }
      const did = ring[lo % ring.length] as string
      if (did === this.did || monitors.has(did)) {
        break
      }
      if (!out.includes(did)) {
        out.push(did)
      }
    }
    this.#fingerCache = out
    return out
  }

  /** `lagging`: this node's timers ran late, so silence may be ours: no verdicts this round */
  #probeRound (lagging: boolean): void {
    const now = Date.now()
    const s = this.#settings
    const monitored = this.#ring()
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
        this.#entries.get(did)?.record.state === 'alive') {
        background(this.#indirect(did))
      }
      background(this.#ping(did, s.probeIntervalMs * 4))
    }
    // one finger per round, in turn: keeps those links warm and checks them SWIM-style
    const fingers = this.#fingers()
    const probes: string[] = []
    if (fingers.length > 0) {
      probes.push(fingers[this.#fingerCursor++ % fingers.length] as string)
    }
    const rest = shuffle(this.#others().filter((did) => !monitoredSet.has(did) && !this.#indirecting.has(did) && !probes.includes(did)))
    probes.push(...rest.slice(0, s.randomProbes))
    for (const did of probes) {
      if (this.#indirecting.has(did)) {
        continue
      }
      background(this.#ping(did, s.probeTimeoutMs).then(async (ok) => {
        if (!ok && !this.#stopping && this.#entries.get(did)?.record.state === 'alive') {
          await this.#indirect(did)
        }
      }))
    }
  }

  /** close membership channels (and then connections) idle for idleCloseMs to members that are not links */
  #closeIdle (now: number): void {
    const keep = new Set([...this.#ring(), ...this.#fingers()])
    for (const [did, channels] of this.#sessions) {
      const last = this.#activity.get(did) ?? 0
      if (keep.has(did) || now - last < this.#settings.idleCloseMs) {
        continue
      }
      this.#sessions.delete(did)
      this.#activity.delete(did)
      for (const channel of channels) {
        background(channel.close())
      }
      const peer = peerIdOfDid(did)
      const busy = this.#libp2p.getConnections(peer).some((c) => c.streams.some((st) => st.protocol !== SWIM_PROTOCOL && st.status === 'open'))
      if (!busy) {
        background(this.#libp2p.hangUp(peer))
      }
    }
  }

  #housekeeping (): void {
    const now = Date.now()
    const s = this.#settings
    for (const [id, expires] of this.#seen) {
      if (expires > now && this.#seen.size <= SEEN_MAX) {
        break
      }
      this.#seen.delete(id)
    }
    for (const [did, entry] of this.#entries) {
      if ((entry.record.state === 'dead' || entry.record.state === 'left') && now - entry.changedAt > s.deadRetentionMs) {
        this.#ringCache = undefined
        this.#entries.delete(did)
        this.#ringHashes.delete(did)
      }
    }
    this.#closeIdle(now)
    if (now - this.#lastPushPull >= s.pushPullIntervalMs) {
      this.#lastPushPull = now
      // a member this node already has a channel to: repair without a new handshake
      const target = shuffle(this.#others().filter((did) => this.#sessions.has(did)))[0] ?? shuffle(this.#others())[0]
      if (target !== undefined) {
        background(this.#sync(target, true))
      }
    }
    if (now - this.#lastReconnect >= s.reconnectIntervalMs) {
      this.#lastReconnect = now
      if (this.#others().length === 0) {
        background(this.#joinBootstrap())
      }
      const dead = shuffle([...this.#entries.values()]
        .filter((e) => e.record.state === 'dead' && !this.#isolated.has(e.record.did))
        .map((e) => e.record.did))[0]
      if (dead !== undefined) {
        background(this.#sync(dead, true))
      }
    }
    const discoveryInterval = this.#init.discovery?.intervalMs ?? 30_000
    if (now - this.#lastDiscovery >= discoveryInterval) {
      this.#lastDiscovery = now
      background(this.#runDiscovery())
    }
  }

  /** direct probe; resolves true on ack within `timeoutMs` */
  async #ping (did: string, timeoutMs: number): Promise<boolean> {
    return this.#request(did, (s) => {
      const message: Message = { t: 'ping', s }
      const rumors = this.#takePiggyback()
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
      const timer = setTimeout(() => {
        this.#pending.delete(s)
        resolve(false)
      }, timeoutMs)
      timer.unref()
      this.#pending.set(s, {
        did,
        sentAt: performance.now(),
        done: (ok) => {
          clearTimeout(timer)
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
      const asked = Date.now()
      const reached = await new Promise<boolean>((resolve) => {
        const timer = setTimeout(() => {
          this.#indirectWaiters.delete(s)
          resolve(false)
        }, this.#settings.indirectTimeoutMs)
        timer.unref()
        this.#indirectWaiters.set(s, () => {
          clearTimeout(timer)
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
      const late = Date.now() - asked > 1.5 * this.#settings.indirectTimeoutMs
      if (late) {
        // this node's own event loop stalled during the wait (Lifeguard local health)
        this.#calmUntil = Date.now() + 3 * this.#settings.probeIntervalMs
      }
      if (reached) {
        this.#detectors.get(did)?.heartbeat(Date.now())
      } else if (!late && Date.now() >= this.#calmUntil && !this.#stopping && this.#entries.get(did)?.record.state === 'alive') {
        this.#declare(did, 'suspect')
      }
    } finally {
      this.#indirecting.delete(did)
    }
  }

  // ---------------------------------------------------------------- messages

  #onMessage (from: string, message: Message): void {
    this.#activity.set(from, Date.now())
    switch (message.t) {
      case 'ping': {
        const reply: Message = { t: 'ack', s: message.s }
        const rumors = this.#takePiggyback()
        if (rumors !== undefined) {
          reply.r = rumors
        }
        background(this.#send(from, reply))
        if (message.r !== undefined) {
          this.#receiveRumors(from, message.r)
        }
        break
      }
      case 'ack': {
        const pending = this.#pending.get(message.s)
        if (pending !== undefined && pending.did === from) {
          const entry = this.#entries.get(from)
          if (entry !== undefined) {
            entry.rttMs = Math.round((performance.now() - pending.sentAt) * 100) / 100
          }
          pending.done(true)
        }
        this.#detectors.get(from)?.heartbeat(Date.now())
        if (message.r !== undefined) {
          this.#receiveRumors(from, message.r)
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
      case 'sync': {
        if (!Array.isArray(message.m)) {
          break
        }
        // pass on only what is likely news to the mesh too: the sender's own record (a
        // joiner announcing itself) and changes to members this node already knew (a healed
        // partition); a joiner learning the whole table must not re-gossip all of it
        const fresh: Rumor[] = []
        for (const raw of message.m) {
          const w = parseWireMember(raw)
          if (w === undefined) {
            continue
          }
          const known = this.#entries.has(w.did)
          if (this.#merge(w) && (known || w.did === from)) {
            fresh.push({ k: 'm', m: w })
          }
        }
        if (fresh.length > 0) {
          this.#disseminate(fresh, new Set([this.did, from]))
        }
        if (message.reply) {
          background(this.#sync(from, false))
        }
        this.#syncWaiters.get(from)?.()
        break
      }
      case 'gossip':
        if (typeof message.a === 'number') {
          background(this.#send(from, { t: 'ack', s: message.a }))
        }
        this.#receiveRumors(from, message.r)
        break
    }
  }

  #table (): WireMember[] {
    const out: WireMember[] = []
    for (const entry of this.#entries.values()) {
      if (entry.record === this.#self) {
        out.push(this.#selfRecord())
      } else if (!this.#isolated.has(entry.record.did)) {
        out.push(entry.record)
      }
    }
    return out
  }

  async #sync (did: string, reply: boolean): Promise<void> {
    await this.#send(did, { t: 'sync', m: this.#table(), reply })
  }

  // ---------------------------------------------------------------- channels

  async #send (did: string, message: Message): Promise<void> {
    this.#activity.set(did, Date.now())
    const channel = await this.#channelTo(did)
    await channel.send(encode(message))
  }

  #sendBytes (did: string, bytes: Uint8Array): void {
    this.#activity.set(did, Date.now())
    this.#channelTo(did).then(async (channel) => { await channel.send(bytes) }).catch((err: unknown) => {
      this.#log.debug({ err, did }, 'mesh: gossip send failed')
    })
  }

  async #channelTo (did: string): Promise<FrameChannel> {
    const existing = this.#sessions.get(did)?.[0]
    if (existing !== undefined) {
      return existing
    }
    let opening = this.#opening.get(did)
    if (opening === undefined) {
      opening = this.#openSwim(did).finally(() => { this.#opening.delete(did) })
      this.#opening.set(did, opening)
    }
    return opening
  }

  async #openSwim (did: string): Promise<FrameChannel> {
    const stream = await this.#openStream(did, SWIM_PROTOCOL, {})
    return this.#adoptSwim(stream, did)
  }

  async #openStream (did: string, protocol: string, options: AbortOptions): Promise<Stream> {
    if (this.#isolated.has(did)) {
      throw new MeshDialError(`Cannot open ${protocol} to ${did}: the peer is isolated`)
    }
    if (this.#stopping && protocol !== SWIM_PROTOCOL) {
      throw new MeshError(`Cannot open ${protocol} to ${did}: the mesh node is stopping`)
    }
    const { signal, clear } = combineSignals([AbortSignal.timeout(this.#settings.dialTimeoutMs), this.#shutdown.signal, options.signal])
    try {
      const connection = await this.#connect(did, signal)
      return await connection.newStream(protocol, { signal })
    } catch (err) {
      if (err instanceof MeshError || err instanceof MeshDialError) {
        throw err
      }
      throw new MeshDialError(`Cannot open ${protocol} to ${did}: ${(err as Error).message}`, { cause: err })
    } finally {
      clear()
    }
  }

  async #connect (did: string, signal: AbortSignal): Promise<Connection> {
    const peer = peerIdOfDid(did)
    const open = this.#libp2p.getConnections(peer).find((c) => c.status === 'open')
    if (open !== undefined) {
      return open
    }
    const addrs = this.#entries.get(did)?.record.addrs ?? []
    if (addrs.length > 0) {
      return this.#libp2p.dial(addrs.map((a) => multiaddr(a)), { signal })
    }
    return this.#libp2p.dial(peer, { signal })
  }

  #onSwimStream (stream: Stream, connection: Connection): void {
    let did: string
    try {
      did = didOfPeerId(connection.remotePeer)
    } catch (err) {
      stream.abort(err as Error)
      return
    }
    if (this.#isolated.has(did) || this.#stopping || (this.#admit !== undefined && !this.#admit.has(did))) {
      stream.abort(new MeshDialError('refused'))
      return
    }
    this.#adoptSwim(stream, did)
  }

  #adoptSwim (stream: Stream, did: string): FrameChannel {
    const channel = new StreamFrameChannel(stream, did, { maxFrameBytes: 2 * MAX_BROADCAST_BYTES + 64 * 1024 })
    let list = this.#sessions.get(did)
    if (list === undefined) {
      list = []
      this.#sessions.set(did, list)
    }
    list.push(channel)
    this.#activity.set(did, Date.now())
    background(this.#readSwim(channel, did))
    return channel
  }

  async #readSwim (channel: FrameChannel, did: string): Promise<void> {
    try {
      for await (const frame of channel.frames()) {
        if (this.#isolated.has(did)) {
          break
        }
        let message: Message
        try {
          message = JSON.parse(decoder.decode(frame)) as Message
        } catch {
          continue
        }
        if (typeof message === 'object' && message !== null) {
          this.#onMessage(did, message)
        }
      }
    } catch (err) {
      this.#log.debug({ err, did }, 'mesh: membership channel ended')
    } finally {
      const list = this.#sessions.get(did)
      if (list !== undefined) {
        const i = list.indexOf(channel)
        if (i >= 0) {
          list.splice(i, 1)
        }
        if (list.length === 0) {
          this.#sessions.delete(did)
        }
      }
    }
  }

  // ---------------------------------------------------------------- joining and discovery

  /** dial `target` (an address or a discovered peer id), exchange full state, wait for the reply */
  async #join (target: Multiaddr | Multiaddr[] | PeerId): Promise<void> {
    const { signal, clear } = combineSignals([AbortSignal.timeout(this.#settings.dialTimeoutMs), this.#shutdown.signal])
    try {
      await this.#joinWith(target, signal)
    } finally {
      clear()
    }
  }

  async #joinWith (target: Multiaddr | Multiaddr[] | PeerId, signal: AbortSignal): Promise<void> {
    const connection = await this.#libp2p.dial(target, { signal })
    const did = didOfPeerId(connection.remotePeer)
    if (did === this.did || this.#isolated.has(did)) {
      return
    }
    const stream = await connection.newStream(SWIM_PROTOCOL, { signal })
    const channel = this.#adoptSwim(stream, did)
    const replied = new Promise<void>((resolve, reject) => {
      const onAbort = (): void => { reject(signal.reason) }
      signal.addEventListener('abort', onAbort, { once: true })
      this.#syncWaiters.set(did, () => {
        signal.removeEventListener('abort', onAbort)
        this.#syncWaiters.delete(did)
        resolve()
      })
    })
    try {
      await channel.send(encode({ t: 'sync', m: this.#table(), reply: true }))
      await replied
    } finally {
      this.#syncWaiters.delete(did)
    }
  }

  async #joinBootstrap (): Promise<void> {
    const addrs = this.#init.bootstrap ?? []
    await Promise.all(addrs.map(async (addr) => {
      try {
        await this.#join(multiaddr(addr))
      } catch (err) {
        this.#log.warn({ err: (err as Error).message, addr }, 'mesh: bootstrap peer unreachable (will retry)')
      }
    }))
  }

  async #runDiscovery (): Promise<void> {
    const discovery = this.#init.discovery
    if (discovery === undefined || this.#stopping) {
      return
    }
    const found: string[] = []
    const runs: Array<Promise<void>> = []
    for (const kind of ['tailscale', 'netbird'] as const) {
      const config = discovery[kind]
      if (config !== undefined) {
        runs.push(discoverOverlay(kind, config, { signal: this.#shutdown.signal }).then((addrs) => { found.push(...addrs) }, (err: unknown) => {
          this.#log.warn({ err: (err as Error).message }, `mesh: ${kind} discovery failed`)
        }))
      }
    }
    if (discovery.dnsSd !== undefined) {
      runs.push(discoverDnsSd(discovery.dnsSd, { signal: this.#shutdown.signal }).then((addrs) => { found.push(...addrs) }, (err: unknown) => {
        this.#log.warn({ err: (err as Error).message }, 'mesh: dns-sd discovery failed')
      }))
    }
    await Promise.all(runs)
    const own = new Set(this.addrs)
    await Promise.all(found.filter((a) => !own.has(a)).map(async (addr) => {
      const ma = multiaddr(addr)
      const peer = ma.getComponents().find((c) => c.name === 'p2p')?.value
      if (peer !== undefined && peer === this.peerId) {
        return
      }
      try {
        await this.#join(ma)
      } catch (err) {
        this.#log.debug({ err: (err as Error).message, addr }, 'mesh: discovered peer unreachable')
      }
    }))
  }
}
