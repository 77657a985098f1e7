/**
 * A mesh node: libp2p (TCP, optionally QUIC; Noise; yamux; identify; ping) plus a
 * SWIM/Lifeguard-style membership protocol with phi-accrual failure detection, epidemic
 * broadcast, and framed channels for other modules' protocols.
 *
 * Membership messages travel as JSON frames over one long-lived `/omega/swim/1` stream
 * per peer pair (opened lazily, reused). The protocol itself is in `swim.ts`; this file is
 * its transport and the node's wiring. See {@link MembershipSettings} for the protocol.
 */
import './polyfill.ts'
import { createPrivateKey } from 'node:crypto'
import { setMaxListeners } from 'node:events'
import { noise } from '@chainsafe/libp2p-noise'
import { noiseCrypto } from './noise-crypto.ts'
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
import type { ComponentLogger, Connection, Libp2p, Logger as Libp2pLogger, PeerId, Stream } from '@libp2p/interface'
import { MeshDialError, MeshError } from '../errors.ts'
import { didFromPublicKey, publicKeyFromDid } from '../identity/index.ts'
import type { NodeKey } from '../identity/index.ts'
import type { AbortOptions, Logger, Startable } from '../interfaces/index.ts'
import { discoverDnsSd, discoverOverlay } from './discovery/index.ts'
import type { DiscoveryInit } from './discovery/index.ts'
import { StreamFrameChannel } from './frames.ts'
import type { FrameChannel, FrameChannelSettings } from './frames.ts'
import { DEFAULT_MEMBERSHIP } from './membership.ts'
import type { Member, MemberState, MembershipSettings, Substrate } from './membership.ts'
import { combineSignals } from '../util/index.ts'
import { MAX_BROADCAST_BYTES } from './gossip.ts'
import { Swim, background } from './swim.ts'
import type { Message } from './swim.ts'

/** The membership protocol's stream protocol id */
export const SWIM_PROTOCOL = '/omega/swim/1'
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
  /**
   * multiaddrs this node advertises instead of its listen addresses (in its member record
   * and to libp2p's identify), for a node reached through a port forward, a NAT or a relay:
   * peers dial these. Without /p2p/ (this node's id is added). @default the listen addresses
   */
  announce?: string[]
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

const decoder = new TextDecoder()
/** libp2p's component logger when nobody asked for its debug output */
const SILENT_LIBP2P_LOG: Libp2pLogger = Object.assign(() => {}, {
  enabled: false,
  error: () => {},
  trace: () => {},
  newScope: (): Libp2pLogger => SILENT_LIBP2P_LOG
})
const SILENT_LIBP2P_LOGGER: ComponentLogger = { forComponent: () => SILENT_LIBP2P_LOG }
/** one for every node of this process: their static keys are few, handshakes' keys short-lived */
const NOISE_CRYPTO = noiseCrypto()

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
  readonly #swim: Swim
  readonly #protocols = new Map<string, (channel: FrameChannel) => void>()
  readonly #sessions = new Map<string, FrameChannel[]>()
  readonly #opening = new Map<string, Promise<FrameChannel>>()
  readonly #isolated = new Set<string>()
  readonly #isolatedPeers: Set<string>
  readonly #admit: ReadonlySet<string> | undefined
  readonly #activity = new Map<string, number>()
  #discoveryListening = false
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
    this.#swim = new Swim({
      key: init.key,
      logger: init.logger,
      isolated: this.#isolated,
      started: () => this.#started,
      stopping: () => this.#stopping,
      send: async (did, bytes) => {
        this.#activity.set(did, Date.now())
        const channel = await this.#channelTo(did)
        await channel.send(bytes)
      },
      connected: (did) => this.#sessions.has(did),
      gone: (did, reason) => {
        for (const channel of this.#sessions.get(did) ?? []) {
          channel.abort(reason)
        }
        this.#sessions.delete(did)
      }
    }, {
      peerId: this.peerId,
      name: init.name,
      substrate: init.substrate,
      frontier: init.frontier ?? false,
      meta: { ...init.meta },
      admit: this.#admit,
      settings: this.#settings
    })
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
    const announce = (init.announce ?? []).map((a) => {
      try {
        return multiaddr(a)
      } catch (err) {
        throw new TypeError(`Cannot create mesh node: announce: "${a}" is not a multiaddr: ${(err as Error).message}`, { cause: err })
      }
    })
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
      // libp2p's own debug logging only when asked for (DEBUG=libp2p:*): each of its loggers
      // (one per connection and stream) asked the tty whether to colour, ~20 µs apiece
      ...(process.env.DEBUG === undefined || process.env.DEBUG === '' ? { logger: SILENT_LIBP2P_LOGGER } : {}),
      privateKey,
      addresses: { listen, ...(announce.length === 0 ? {} : { announce: announce.map((a) => a.toString()) }) },
      transports,
      connectionEncrypters: [noise({ crypto: NOISE_CRYPTO })],
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
    return this.#swim.name
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
    this.#swim.start(this.addrs, Date.now() + this.#settings.probeIntervalMs)
    this.#timer = setTimeout(() => { this.#tick() }, this.#settings.probeIntervalMs)
    this.#lastReconnect = Date.now()
    // the first full-state exchange comes one reconnect interval after the start, not a
    // whole push-pull interval: news that went round while this node was joining (or a
    // bootstrap peer that died mid-join) is repaired at once (found by the simulation under churn)
    this.#lastPushPull = Date.now() - this.#settings.pushPullIntervalMs + this.#settings.reconnectIntervalMs
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
    const state = this.#swim.stateOf(did)
    if (state === undefined || state === 'dead') {
      background(this.#join(id).catch((err: unknown) => { this.#log.debug({ err, did }, 'mesh: join via discovered peer failed') }))
    }
  }

  async stop (): Promise<void> {
    if (!this.#started) {
      return
    }
    this.#stopping = true
    clearTimeout(this.#timer)
    // announce the leave: straight to every member we have a channel to, plus a fanout
    await this.#swim.leave(this.#sessions.keys())
    this.#shutdown.abort(new MeshError('The mesh node stopped'))
    this.#swim.halt()
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
    return this.#swim.members()
  }

  member (did: string): Member | undefined {
    return this.#swim.member(did)
  }

  onMembers (listener: (member: Member, previous: MemberState | undefined) => void): () => void {
    return this.#swim.onMembers(listener)
  }

  /** Advertise a small key/value (gossiped; changes go out at once, then at most once a second) */
  setMeta (key: string, value: string): void {
    this.#swim.setMeta(key, value)
  }

  /**
   * Advertise this node's load (any finite number; gossiped at most once a second).
   *
   * @throws {RangeError} if `load` is not finite
   */
  setLoad (load: number): void {
    this.#swim.setLoad(load)
  }

  /**
   * Epidemic dissemination of `data` to every alive member, deduplicated. For low-rate
   * control messages (manifests, revocations); the sender's own handlers are not called.
   *
   * @throws {RangeError} if `data` is larger than {@link MAX_BROADCAST_BYTES}
   * @throws {MeshError} if the node is not started
   */
  broadcast (topic: string, data: Uint8Array): void {
    this.#swim.broadcast(topic, data)
  }

  onBroadcast (topic: string, handler: (data: Uint8Array, fromDid: string) => void): () => void {
    return this.#swim.onBroadcast(topic, handler)
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
    this.#swim.isolationChanged()
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
      background(this.#libp2p.hangUp(peer))
      this.#swim.isolated(did)
    }
    for (const did of healed) {
      this.#swim.healed(did)
    }
  }

  // ---------------------------------------------------------------- rounds

  #tick (): void {
    if (!this.#started || this.#stopping) {
      return
    }
    try {
      this.#swim.probeRound()
      this.#housekeeping()
    } catch (err) {
      this.#log.error({ err }, 'mesh: probe round failed')
    }
    this.#swim.roundDone()
    this.#timer = setTimeout(() => { this.#tick() }, this.#settings.probeIntervalMs)
  }

  /** close membership channels (and then connections) idle for idleCloseMs to members that are not links */
  #closeIdle (now: number): void {
    const keep = new Set(this.#swim.links())
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
    this.#swim.expire(now)
    this.#closeIdle(now)
    if (now - this.#lastPushPull >= s.pushPullIntervalMs) {
      this.#lastPushPull = now
      this.#swim.pushPull()
    }
    if (now - this.#lastReconnect >= s.reconnectIntervalMs) {
      this.#lastReconnect = now
      if (this.#swim.alone()) {
        background(this.#joinBootstrap())
      }
      this.#swim.retryDead()
    }
    const discoveryInterval = this.#init.discovery?.intervalMs ?? 30_000
    if (now - this.#lastDiscovery >= discoveryInterval) {
      this.#lastDiscovery = now
      background(this.#runDiscovery())
    }
  }

  // ---------------------------------------------------------------- channels

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
    const addrs = this.#swim.addrsOf(did)
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
          this.#activity.set(did, Date.now())
          this.#swim.onMessage(did, message)
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
    await this.#swim.join(did, async (bytes) => { await channel.send(bytes) }, signal)
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
