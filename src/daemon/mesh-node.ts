/**
 * A node of a mesh: `omega node`. The same LocalNode as `omega up`, joined to the other
 * nodes by the mesh. There is no control plane: a deployment signed by a trusted key
 * reaches every node by gossip, each node keeps the newest (last writer wins by signed
 * hybrid-logical-clock time), computes the same placement from its membership view, runs
 * its share, and forwards events and requests for the rest to the nodes that run them.
 * Replicated state follows the replicas of each brane.
 */
import { createHash } from 'node:crypto'
import { open } from 'node:fs/promises'
import { join } from 'node:path'
import { BraneNotFoundError, DeploymentError, OmegaError, PeerUnavailableError, RejectedEventError, RetryableEventError, TargetUnavailableError } from '../errors.ts'
import type { AbortOptions, BraneEvent, BraneHttpRequest, BraneHttpResponse, HttpHandler, Logger } from '../interfaces/index.ts'
import { loadOrCreateNodeKey, RevocationList, verify, verifyCapability, type ContentAddress, type NodeKey } from '../identity/index.ts'
import { checkManifest, loadManifest, type BranePlan, type Plan } from '../manifest/index.ts'
import { canonicalJson, edgeKey, signTrace, type DeliveryCopy, type EventTarget, type Hop, type TraceEndRecord } from '../dispatch/index.ts'
import { MeshNode, type DiscoveryInit, type Member, type MembershipSettings, type Substrate } from '../mesh/index.ts'
import { probeFrontier } from '../runtime/microvm/index.ts'
import {
  compareHlc, deliverInOrder, deploymentId, EventCustody, formatHlc, MAX_BATCH_EVENTS, MAX_BATCH_FRAME_BYTES, sendEventBatch, serveEventBatches, HybridClock, materialise, meshSettingsFor, place, Registry, RemoteError, Rpc, verifyDeployment,
  type BranePlacement, type DeploymentDocument
} from '../biome/index.ts'
import { LocalNode, type LocalNodeInit } from './local-node.ts'
import type { AdminRoute } from './admin.ts'

export interface MeshNodeInit extends Omit<LocalNodeInit, 'placement' | 'adminRoutes'> {
  /** this node's name, matched by `peers` globs, e.g. "lab.lan/transform-pool-1" */
  name: string
  substrate: Substrate
  /** libp2p listen addresses. @default ['/ip4/127.0.0.1/tcp/0'] */
  listen?: string[]
  /** multiaddrs (with /p2p/) of nodes to join through */
  bootstrap?: string[]
  discovery?: DiscoveryInit
  membership?: Partial<MembershipSettings>
  /** whether this node can run microVMs. @default what the host probe finds */
  frontier?: boolean
  /**
   * did:keys whose deployments this node accepts, besides its own. They are also roots
   * for capability tokens: a deployment signed by another key is accepted when it
   * carries a token from one of them granting `deploy` on each of its branes to that key
   */
  trust?: readonly string[]
  /** how long a joining node waits to hear from a peer before serving. @default 5000 */
  healTimeoutMs?: number
  /**
   * a manifest whose `[brane.X.network]` / `[brane.X.discovery]` settings apply to this
   * node from the start (its listen ports, mDNS, overlay, bootstrap). @default the
   * deployment this node ran before it restarted, if any
   */
  manifest?: string
  /**
   * the swarm key of a private mesh (`omega biome swarm-key`): only nodes holding it can
   * connect. Without one the mesh is open: any node that reaches the listen address can
   * join, forward events and requests to this node's branes and exchange their state
   * (deployments and revocations still need a trusted signature)
   */
  swarmKey?: Uint8Array
  /**
   * did:keys of the only nodes this node connects to or believes member records of
   * (besides itself; see MeshInit.admit). @default any node
   */
  admit?: readonly string[]
}

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

/** What `omega deploy` sends */
export interface DeployRequest {
  readonly document: unknown
  /** content address → base64 bytes of each image the node may lack */
  readonly blobs?: Readonly<Record<string, string>>
}

/** What a node answers to a deployment */
export interface DeployReport {
  readonly id: string
  readonly name: string
  readonly deployer: string
  readonly time: string
  /** false when the node already had this or a newer deployment */
  readonly accepted: boolean
}

const DEPLOY_TOPIC = 'omega/deploy'
const REVOKE_TOPIC = 'omega/revoke'
/** The deployment name this node runs */
const DEPLOYMENT = 'default'
/** Bytes of an image per RPC answer */
const BLOB_CHUNK = 1024 * 1024
/** How often state is reconciled with one other replica (anti-entropy, ms) */
const ANTI_ENTROPY_MS = 2_000
/** How often the backlog per brane is advertised (for `replicas = "auto"`, ms) */
const BACKLOG_MS = 2_000
/** Undelivered events per extra replica of a `replicas = "auto"` brane */
const AUTO_EVENTS_PER_REPLICA = 500
/** Largest mesh frame: an event or HTTP body (16 MiB at most) with its envelope */
const MESH_FRAME_BYTES = 17 * 1024 * 1024
/** How long a forwarded delivery may take beyond the target brane's own deadline (ms) */
const DELIVERY_GRACE_MS = 10_000
/** How long a call waits for a brane that the placement just moved to this node (ms) */
const ARRIVAL_WAIT_MS = 10_000
/** How long a leaving node waits for its running deliveries to settle (ms) */
const LEAVE_DRAIN_MS = 5_000
/** How long a leaving node may spend handing its queued events over (ms) */
const LEAVE_HANDOVER_MS = 15_000
/** Most revoked ids one message may carry */
const MAX_REVOCATIONS_PER_MESSAGE = 1024

export class OmegaMeshNode {
  readonly did: string
  readonly mesh: MeshNode
  readonly #init: MeshNodeInit
  readonly #key: NodeKey
  readonly #registry: Registry
  readonly #clock: HybridClock
  readonly #rpc: Rpc
  /** hands queued events over when leaving; keeps copies elsewhere with durability = "replicated" */
  readonly #custody: EventCustody
  readonly #log: Logger
  readonly #trust: ReadonlySet<string>
  /** revoked capability tokens: until the local node runs, a list of its own */
  #revocations: RevocationList
  #local: LocalNode | undefined
  /** the deployment running now, its plan and its placement */
  #current: { doc: DeploymentDocument, id: string, file: string, plan: Plan } | undefined
  #placement = new Map<string, BranePlacement>()
  /** the placement this node has finished applying (what `omega biome placement` shows) */
  #applied = new Map<string, BranePlacement>()
  /** the deployment of `#applied` */
  #appliedId: string | undefined
  #retryTimer: NodeJS.Timeout | undefined
  #healing = true
  /** reconciliations and deployments run one at a time */
  #chain: Promise<unknown> = Promise.resolve()
  #reconcileTimer: NodeJS.Timeout | undefined
  #timers: NodeJS.Timeout[] = []
  #stopping = false
  /** the peers that say they are still catching up (HEAL) */
  readonly #healingPeers = new Set<string>()
  /** requests forwarded so far (spreads them over the replicas) */
  #requests = 0
  /** when each peer whose deployment differs was last asked for it (ms) */
  readonly #asked = new Map<string, number>()

  private constructor (init: MeshNodeInit, key: NodeKey, registry: Registry, mesh: MeshNode, revocations: RevocationList) {
    this.#revocations = revocations
    this.#init = init
    this.#key = key
    this.did = key.did
    this.#registry = registry
    this.mesh = mesh
    this.#clock = new HybridClock(key.did)
    this.#log = init.logging.forComponent('biome')
    this.#trust = new Set([key.did, ...(init.trust ?? [])])
    this.#rpc = new Rpc(mesh, { logger: init.logging.forComponent('rpc'), maxFrameBytes: MESH_FRAME_BYTES })
    this.#custody = new EventCustody({
      did: key.did,
      rpc: this.#rpc,
      members: () => this.mesh.members(),
      queue: () => this.#stopping ? undefined : this.#local?.queue,
      deployment: () => this.#current?.id,
      edges: () => new Set(this.#current?.plan.edges.map(edgeKey) ?? []),
      kick: () => { this.#local?.kick() },
      logger: init.logging.forComponent('custody')
    })
    this.#registerRpc()
  }

  /** Join the mesh, catch up with it (HEAL), then serve */
  static async start (init: MeshNodeInit, options: AbortOptions = {}): Promise<OmegaMeshNode> {
    const key = await loadOrCreateNodeKey(init.home, options)
    const registry = new Registry({ root: join(init.home, 'biome') })
    await registry.open(options)
    const revocations = await new RevocationList(init.home).load()
    const probe = init.frontier === undefined ? await probeFrontier() : undefined
    const { listen, bootstrap, discovery } = await meshOptions(init, registry.get(DEPLOYMENT), options)
    const mesh = await MeshNode.create({
      key,
      name: init.name,
      substrate: init.substrate,
      frontier: init.frontier ?? probe?.frontier ?? false,
      ...(probe?.vfio === true ? { meta: { vfio: '1' } } : {}),
      listen,
      bootstrap,
      ...(discovery === undefined ? {} : { discovery }),
      ...(init.membership === undefined ? {} : { membership: init.membership }),
      channels: { maxFrameBytes: MESH_FRAME_BYTES },
      ...(init.swarmKey === undefined ? {} : { swarmKey: init.swarmKey }),
      ...(init.admit === undefined ? {} : { admit: init.admit }),
      logger: init.logging.forComponent('mesh')
    }, options)
    const node = new OmegaMeshNode(init, key, registry, mesh, revocations)
    try {
      await node.#start(options)
    } catch (err) {
      await node.stop()
      throw err
    }
    return node
  }

  async #start (options: AbortOptions): Promise<void> {
    this.mesh.onBroadcast(DEPLOY_TOPIC, (data, from) => {
      let doc: DeploymentDocument
      try {
        doc = verifyDeployment(JSON.parse(new TextDecoder().decode(data)))
      } catch (err) {
        this.#log.warn({ from, err: (err as Error).message }, 'ignored a deployment')
        return
      }
      this.#serially(async () => this.#accept(doc, from)).catch((err: unknown) => {
        this.#log.warn({ from, err: (err as Error).message }, 'could not take a deployment')
      })
    })
    this.mesh.onBroadcast(REVOKE_TOPIC, (data, from) => {
      // gossip is relayed by any member: only a revocation signed by a trusted key counts
      const ids = openRevocations(data, this.#trust)
      if (ids === undefined) {
        this.#log.warn({ from }, 'ignored revocations not signed by a trusted key')
        return
      }
      this.#revocations.add(ids).catch((err: unknown) => {
        this.#log.error({ from, err: (err as Error).message }, 'could not keep revocations')
      })
    })
    this.mesh.setMeta('heal', '1')
    await this.mesh.start()
    // HEAL: hear from the mesh before serving, so a rejoining node runs what the others run
    if ((this.#init.bootstrap?.length ?? 0) > 0 || this.#init.discovery !== undefined) {
      await this.#catchUp(options)
    }
    const doc = this.#registry.get(DEPLOYMENT)
    if (doc !== undefined) {
      await this.#prepare(doc, undefined, options)
    }
    const localInit = {
      ...this.#init,
      placement: {
        runsHere: (brane: BranePlan) => this.#placement.get(brane.name)?.nodes.includes(this.did) ?? false,
        elsewhere: (brane: BranePlan) => this.#describe(brane),
        events: (brane: string) => this.#remoteEvents(brane),
        http: (brane: string) => this.#remoteHttp(brane),
        replication: {
          replicate: async (copies: readonly DeliveryCopy[], opts: AbortOptions) => { await this.#custody.replicate(copies, opts) },
          settled: (over: ReadonlyArray<{ eventId: string, edge: string }>) => { this.#custody.settled(over) }
        }
      },
      adminRoutes: this.#adminRoutes(),
      trustedRoots: [...this.#trust],
      deployerOf: () => this.#current?.doc.deployer ?? this.did
    }
    try {
      this.#local = await LocalNode.start(this.#current?.file, localInit, options)
    } catch (err) {
      if (this.#current === undefined || (err as Error).name === 'AbortError') {
        throw err
      }
      // serve the mesh anyway; the deployment is tried again (and says why) until it runs
      this.#log.error({ deployment: this.#current.id, err: (err as Error).message }, 'cannot run the deployment this node had; starting without it and retrying')
      this.#local = await LocalNode.start(undefined, localInit, options)
    }
    // the node's own list from now on; revocations made here reach every node
    this.#revocations = this.#local.revocations ?? this.#revocations
    this.#revocations.onRevoked((id) => {
      this.mesh.broadcast(REVOKE_TOPIC, sealRevocations([id], this.#key))
    })
    this.#local.state.onUpdate((brane, update, origin) => {
      if (origin === 'local') {
        this.#pushState(brane, update)
      }
    })
    this.mesh.onMembers((member, previous) => {
      // a node gone: the copies of its queued events held here become deliveries of this node
      this.#custody.memberChanged(member, previous)
      // placement depends on each member's state and on whether it is still catching up
      const healing = member.meta.heal === '1'
      if (member.did !== this.did && this.#healingPeers.has(member.did) !== healing) {
        if (healing) {
          this.#healingPeers.add(member.did)
        } else {
          this.#healingPeers.delete(member.did)
        }
        this.#scheduleReconcile()
      }
      if (member.did !== this.did && member.state !== previous) {
        this.#scheduleReconcile()
        if (member.state === 'alive' && previous !== undefined) {
          // a node came back (HEAL): bring it up to date, both ways
          this.#reconcileStateWith(member.did).catch(() => {})
          this.#offerDeployments(member.did).catch(() => {})
        }
      }
    })
    this.#healing = false
    this.mesh.setMeta('heal', '0')
    await this.#serially(async () => this.#reconcile())
    this.#timers.push(setInterval(() => { this.#antiEntropy().catch(() => {}) }, ANTI_ENTROPY_MS).unref())
    this.#timers.push(setInterval(() => { this.#advertiseBacklog() }, BACKLOG_MS).unref())
    if (this.#init.swarmKey === undefined) {
      this.#log.warn({}, 'open mesh: any node that reaches this node\'s listen addresses can join it; give every node the same --swarm-key to make it private')
    }
    this.#log.info({ did: this.did, name: this.#init.name, addrs: this.mesh.addrs, gateway: this.#local.url, private: this.#init.swarmKey !== undefined }, 'mesh node up')
  }

  get url (): string {
    return this.#local?.url ?? ''
  }

  get local (): LocalNode {
    if (this.#local === undefined) {
      throw new OmegaError('The node is still starting')
    }
    return this.#local
  }

  /** The deployment running now */
  get deployment (): DeploymentDocument | undefined {
    return this.#current?.doc
  }

  /** Where each brane of the running deployment is placed, as far as this node has applied it */
  get placement (): ReadonlyMap<string, BranePlacement> {
    return this.#applied
  }

  /** Wait up to `healTimeoutMs` for a live peer, then take the newest deployments the peers have */
  async #catchUp (options: AbortOptions): Promise<void> {
    const until = Date.now() + (this.#init.healTimeoutMs ?? 5_000)
    while (Date.now() < until && !this.#peers().some((m) => m.state === 'alive')) {
      options.signal?.throwIfAborted()
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
    const peers = this.#peers().filter((m) => m.state === 'alive').slice(0, 3)
    await Promise.all(peers.map(async (peer) => { await this.#pullDeployments(peer.did, { reconcile: false, options }) }))
  }

  /**
   * Take a deployment submitted here (`omega deploy`): check it, keep its images, and
   * gossip it to every node when it is the newest.
   *
   * @throws DeploymentError when it is malformed, wrongly signed, or from an untrusted key
   */
  async deploy (request: DeployRequest, options: AbortOptions = {}): Promise<DeployReport> {
    const doc = verifyDeployment(request.document)
    this.#authorize(doc)
    for (const [hash, base64] of Object.entries(request.blobs ?? {})) {
      await this.#registry.putBlob(Buffer.from(base64, 'base64'), hash as ContentAddress)
    }
    const accepted = await this.#serially(async () => this.#accept(doc, undefined, { options }))
    if (accepted) {
      this.mesh.broadcast(DEPLOY_TOPIC, new TextEncoder().encode(JSON.stringify(doc)))
    }
    return { id: deploymentId(doc), name: doc.name, deployer: doc.deployer, time: formatHlc(doc.time), accepted }
  }

  /**
   * A deployment is allowed when a trusted key signed it, or when it carries a capability
   * token, rooted in a trusted key, that grants `deploy` on each of its branes to the key
   * that signed it (the signature is the proof that the deployer holds the token's key)
   */
  #authorize (doc: DeploymentDocument): void {
    if (doc.name !== DEPLOYMENT) {
      throw new DeploymentError(`Refusing deployment "${doc.name}": this node runs one deployment, named "${DEPLOYMENT}"`)
    }
    if (this.#trust.has(doc.deployer)) {
      return
    }
    if (doc.token === undefined) {
      throw new DeploymentError(`Refusing a deployment signed by ${doc.deployer}: this node trusts deployments from ${[...this.#trust].join(', ')} (start it with --trust DID, or deploy with a capability token from a trusted key: omega deploy --token)`)
    }
    // it replaces the running deployment whole: the token must cover the branes it removes too
    const current = this.#registry.get(doc.name)
    const names = new Set([
      ...checkManifest(doc.manifest.text, doc.manifest.file).plan.branes.map((b) => b.name),
      ...(current === undefined ? [] : checkManifest(current.manifest.text, current.manifest.file).plan.branes.map((b) => b.name))
    ])
    for (const name of names) {
      let subject: string
      try {
        subject = verifyCapability(doc.token, { ability: 'deploy', resource: `brane/${name}`, roots: [...this.#trust], revoked: this.#revocations }).subject
      } catch (err) {
        throw new DeploymentError(`Refusing a deployment signed by ${doc.deployer}: its token does not allow deploy on brane/${name}: ${(err as Error).message}`, { cause: err })
      }
      if (subject !== doc.deployer) {
        throw new DeploymentError(`Refusing a deployment signed by ${doc.deployer}: its token was delegated to ${subject}, not to the key that signed it`)
      }
    }
  }

  /** Keep `doc` if it is the newest, with its images; then run it. Serialised. */
  async #accept (doc: DeploymentDocument, from: string | undefined, settings: { reconcile?: boolean, options?: AbortOptions } = {}): Promise<boolean> {
    this.#authorize(doc)
    try {
      this.#clock.observe(doc.time)
    } catch (err) {
      throw new DeploymentError(`Refusing deployment ${deploymentId(doc)}: ${(err as Error).message}`, { cause: err })
    }
    const known = this.#registry.get(doc.name)
    if (known !== undefined && compareHlc(doc.time, known.time) <= 0) {
      return false
    }
    await this.#fetchBlobs(doc, from, settings.options ?? {})
    // only a deployment that materialises and whose manifest loads is kept
    const file = await materialise(doc, this.#registry.deployDir, this.#init.home, (hash) => this.#registry.blobPath(hash), settings.options ?? {})
    await loadManifest(file, settings.options ?? {})
    if (!await this.#registry.offer(doc)) {
      return false
    }
    this.#log.info({ id: deploymentId(doc), deployer: doc.deployer, time: formatHlc(doc.time), from }, 'new deployment')
    if (settings.reconcile !== false && this.#local !== undefined) {
      await this.#reconcile()
    }
    return true
  }

  /** Fetch the images of `doc` this node lacks, from `from` first, then from any live node */
  async #fetchBlobs (doc: DeploymentDocument, from: string | undefined, options: AbortOptions): Promise<void> {
    for (const image of doc.images) {
      if (await this.#registry.hasBlob(image.hash)) {
        continue
      }
      const sources = [...new Set([...(from === undefined ? [] : [from]), ...this.#peers().filter((m) => m.state === 'alive').map((m) => m.did)])]
      let fetched = false
      for (const peer of sources) {
        try {
          const chunks: Uint8Array[] = []
          for (let offset = 0; offset < image.size || offset === 0; offset += BLOB_CHUNK) {
            const { body } = await this.#rpc.call(peer, 'blob', { hash: image.hash, offset, length: BLOB_CHUNK }, undefined, options)
            chunks.push(body)
            if (body.byteLength < BLOB_CHUNK) {
              break
            }
          }
          await this.#registry.putBlob(Buffer.concat(chunks), image.hash)
          fetched = true
          break
        } catch (err) {
          this.#log.debug({ peer, hash: image.hash, err: (err as Error).message }, 'image fetch failed, trying another node')
        }
      }
      if (!fetched) {
        throw new DeploymentError(`Cannot take deployment ${deploymentId(doc)}: no node gave the bytes of image "${image.image}" (${image.hash})`)
      }
    }
  }

  /** Materialise `doc` and load its plan */
  async #prepare (doc: DeploymentDocument, from: string | undefined, options: AbortOptions): Promise<void> {
    const id = deploymentId(doc)
    if (this.#current?.id === id) {
      return
    }
    await this.#fetchBlobs(doc, from, options)
    const file = await materialise(doc, this.#registry.deployDir, this.#init.home, (hash) => this.#registry.blobPath(hash), options)
    const { plan } = await loadManifest(file, options)
    this.#current = { doc, id, file, plan }
    this.mesh.setMeta('deploy', id)
    this.#placement = this.#place(plan)
  }

  #place (plan: Plan): Map<string, BranePlacement> {
    const backlog = this.#backlogs()
    // a node still catching up (HEAL) takes a brane only when no node in step can
    const members = this.mesh.members().map((m) => m.did !== this.did && m.state === 'alive' && m.meta.heal === '1' ? { ...m, state: 'suspect' as const } : m)
    return place(plan, members, {
      auto: (brane) => brane.replicas.kind === 'auto' ? brane.replicas.min + Math.floor((backlog.get(brane.name) ?? 0) / AUTO_EVENTS_PER_REPLICA) : 1
    })
  }

  #scheduleReconcile (): void {
    if (this.#stopping) {
      return
    }
    clearTimeout(this.#reconcileTimer)
    this.#reconcileTimer = setTimeout(() => {
      this.#serially(async () => this.#reconcile()).catch((err: unknown) => {
        this.#log.error({ err: (err as Error).message }, 'reconcile failed')
      })
    }, 50)
  }

  /** Run the newest deployment with the placement of the current membership view */
  async #reconcile (): Promise<void> {
    const local = this.#local
    const doc = this.#registry.get(DEPLOYMENT)
    if (local === undefined || doc === undefined || this.#stopping) {
      return
    }
    const mine = (p: ReadonlyMap<string, BranePlacement>): string[] => [...p.values()].filter((b) => b.nodes.includes(this.did)).map((b) => b.brane).sort()
    const applied = mine(this.#applied)
    await this.#prepare(doc, undefined, {})
    const current = this.#current
    if (current === undefined) {
      return
    }
    const placement = this.#place(current.plan)
    const now = mine(placement)
    if (this.#appliedId === current.id && applied.join(',') === now.join(',') && local.plan.file === current.file) {
      this.#placement = placement
      this.#applied = placement
      local.kick()
      return
    }
    // a stateful brane that comes here brings its state from the nodes that held it
    const gained = now.filter((b) => !applied.includes(b) && current.plan.branes.some((p) => p.name === b && p.grants.state !== undefined))
    this.#placement = placement
    if (gained.length > 0) {
      await Promise.allSettled(this.#peers().filter((m) => m.state === 'alive').map(async (m) => { await this.#reconcileStateWith(m.did, gained, { anyPeer: true }) }))
    }
    try {
      const report = await local.reload(current.file)
      this.#log.info({ deployment: current.id, runs: now.join(','), ...report }, 'placement applied')
    } catch (err) {
      // what runs is still the previous placement: say so, and try again soon
      this.#log.error({ deployment: current.id, err: (err as Error).message }, 'cannot apply the placement; retrying in 5 s')
      clearTimeout(this.#retryTimer)
      this.#retryTimer = setTimeout(() => { this.#scheduleReconcile() }, 5_000).unref()
      return
    }
    this.#applied = placement
    this.#appliedId = current.id
    this.mesh.setMeta('branes', now.join(','))
    local.kick()
  }

  async #serially<T> (work: () => Promise<T>): Promise<T> {
    const run = this.#chain.then(work)
    this.#chain = run.catch(() => {})
    return run
  }

  #peers (): Member[] {
    return this.mesh.members().filter((m) => m.did !== this.did)
  }

  #describe (brane: BranePlan): string {
    const placed = this.#placement.get(brane.name)
    if (placed === undefined || placed.nodes.length === 0) {
      return `not placed: ${placed?.reason ?? 'no placement yet'}`
    }
    return `runs on ${placed.nodes.map((did) => this.mesh.member(did)?.name ?? did).join(', ')}`
  }

  /** The nodes running `brane` other than this one, alive ones first, then suspect ones, in placement order */
  #replicasElsewhere (brane: string): string[] {
    const nodes = (this.#placement.get(brane)?.nodes ?? []).filter((did) => did !== this.did)
    const state = (did: string): string | undefined => this.mesh.member(did)?.state
    return [...nodes.filter((did) => state(did) === 'alive'), ...nodes.filter((did) => state(did) === 'suspect')]
  }

  /**
   * The replica to send `key`'s call to: spread over the alive replicas by `key` (an event
   * id: a retry after a failure goes to the same node only while nothing changed)
   */
  #pick (brane: string, key: string): string | undefined {
    const nodes = this.#replicasElsewhere(brane)
    const alive = nodes.filter((did) => this.mesh.member(did)?.state === 'alive')
    const pool = alive.length > 0 ? alive : nodes
    return pool.length === 0 ? undefined : pool[createHash('sha256').update(key).digest().readUInt32BE(0) % pool.length]
  }

  /**
   * The local handler of `brane`; when the placement just moved it here and it is still
   * starting, wait for that (at most ARRIVAL_WAIT_MS) instead of turning the call away
   */
  async #arriving<T> (brane: string, find: (local: LocalNode) => T | undefined, options: AbortOptions): Promise<T | undefined> {
    const local = this.#local
    if (local === undefined || this.#stopping) {
      return undefined
    }
    const found = find(local)
    if (found !== undefined || this.#placement.get(brane)?.nodes.includes(this.did) !== true) {
      return found
    }
    let timer: NodeJS.Timeout | undefined
    await Promise.race([
      this.#chain,
      new Promise((resolve) => { timer = setTimeout(resolve, ARRIVAL_WAIT_MS) }),
      ...(options.signal === undefined ? [] : [new Promise((resolve) => { options.signal?.addEventListener('abort', resolve, { once: true }) })])
    ]).finally(() => { clearTimeout(timer) })
    return find(local)
  }

  #remoteEvents (brane: string): EventTarget | undefined {
    if (!this.#placement.has(brane)) {
      return undefined
    }
    const remote: EventTarget = {
      deliver: async (event: BraneEvent, options: AbortOptions = {}) => {
        const target = this.#pick(brane, `${event.id}:${event.attempt}`)
        if (target === undefined) {
          // placed here now, and still starting
          const here = await this.#arriving(brane, (local) => local.localEvents(brane), options)
          if (here !== undefined) {
            await here.deliver(event, options)
            return
          }
          throw new TargetUnavailableError(`No node runs brane "${brane}" right now (${this.#placement.get(brane)?.reason ?? 'placement pending'})`)
        }
        const { payload, ...meta } = event
        // the target's own deadline stops a late handler there; this only covers a node that never answers
        const deadlineMs = this.#current?.plan.branes.find((b) => b.name === brane)?.limits.deadlineMs ?? 30_000
        try {
          await this.#rpc.call(target, 'deliver', { brane, event: meta }, payload, { ...options, timeoutMs: deadlineMs + DELIVERY_GRACE_MS })
        } catch (err) {
          throw asLocalError(err, `brane "${brane}" on ${this.mesh.member(target)?.name ?? target}`)
        }
      },
      // several events of one edge in one frame, to one node, which handles them in order
      maxBatch: MAX_BATCH_EVENTS,
      deliverBatch: async (events: readonly BraneEvent[]): Promise<Array<PromiseSettledResult<void>>> => {
        if (events.reduce((sum, e) => sum + e.payload.byteLength, 0) > MAX_BATCH_FRAME_BYTES) {
          // large payloads: one frame each, as single deliveries
          return deliverInOrder({ deliver: remote.deliver }, events)
        }
        const first = events[0] as BraneEvent
        const target = this.#pick(brane, `${first.id}:${first.attempt}`)
        if (target === undefined) {
          const here = await this.#arriving(brane, (local) => local.localEvents(brane), {})
          if (here !== undefined) {
            return deliverInOrder(here, events)
          }
          throw new TargetUnavailableError(`No node runs brane "${brane}" right now (${this.#placement.get(brane)?.reason ?? 'placement pending'})`)
        }
        const where = `brane "${brane}" on ${this.mesh.member(target)?.name ?? target}`
        const deadlineMs = this.#current?.plan.branes.find((b) => b.name === brane)?.limits.deadlineMs ?? 30_000
        try {
          const outcomes = await sendEventBatch(this.#rpc, target, brane, events, { timeoutMs: deadlineMs * events.length + DELIVERY_GRACE_MS })
          return outcomes.map((o) => o.status === 'fulfilled' ? o : { status: 'rejected' as const, reason: asLocalError(o.reason, where) })
        } catch (err) {
          throw asLocalError(err, where)
        }
      }
    }
    return remote
  }

  #remoteHttp (brane: string): HttpHandler | undefined {
    if (!this.#placement.has(brane)) {
      return undefined
    }
    return {
      handle: async (request: BraneHttpRequest, options: AbortOptions = {}): Promise<BraneHttpResponse> => {
        const target = this.#pick(brane, `${++this.#requests}`)
        if (target === undefined) {
          const here = await this.#arriving(brane, (local) => local.localHttp(brane), options)
          if (here !== undefined) {
            return here.handle(request, options)
          }
          throw new TargetUnavailableError(`No node runs brane "${brane}" right now (${this.#placement.get(brane)?.reason ?? 'placement pending'})`)
        }
        const { body, ...meta } = request
        try {
          const reply = await this.#rpc.call(target, 'http', { brane, request: meta }, body, options)
          const result = reply.result as { status: number, headers: Array<[string, string]> }
          return { status: result.status, headers: result.headers, body: reply.body }
        } catch (err) {
          throw asLocalError(err, `brane "${brane}" on ${this.mesh.member(target)?.name ?? target}`)
        }
      }
    }
  }

  #registerRpc (): void {
    this.#rpc.register('deliver', async ({ params, body }, options) => {
      const { brane, event } = params as { brane: string, event: Omit<BraneEvent, 'payload'> }
      const target = await this.#arriving(brane, (local) => local.localEvents(brane), options)
      if (target === undefined) {
        throw new TargetUnavailableError(`Brane "${brane}" does not run on ${this.#init.name}`)
      }
      await target.deliver({ ...event, payload: body }, options)
      return {}
    })
    serveEventBatches(this.#rpc, async (brane, options) => {
      const target = await this.#arriving(brane, (local) => local.localEvents(brane), options)
      if (target === undefined) {
        throw new TargetUnavailableError(`Brane "${brane}" does not run on ${this.#init.name}`)
      }
      return target
    })
    this.#rpc.register('http', async ({ params, body }, options) => {
      const { brane, request } = params as { brane: string, request: Omit<BraneHttpRequest, 'body'> }
      const handler = await this.#arriving(brane, (local) => local.localHttp(brane), options)
      if (handler === undefined) {
        throw new TargetUnavailableError(`Brane "${brane}" does not run on ${this.#init.name}`)
      }
      const response = await handler.handle({ ...request, body }, options)
      return { result: { status: response.status, headers: response.headers }, body: response.body }
    })
    this.#rpc.register('blob', async ({ params }) => {
      const { hash, offset, length } = params as { hash: ContentAddress, offset: number, length: number }
      if (!/^b3:[0-9a-f]{64}$/.test(hash) || !await this.#registry.hasBlob(hash)) {
        throw new BraneNotFoundError(`No image ${String(hash)} on this node`)
      }
      if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(length) || length < 0) {
        throw new RangeError('blob: offset and length must be whole numbers')
      }
      const file = await open(this.#registry.blobPath(hash))
      try {
        const chunk = Buffer.alloc(Math.min(length, BLOB_CHUNK))
        const { bytesRead } = await file.read(chunk, 0, chunk.byteLength, offset)
        return { body: chunk.subarray(0, bytesRead) }
      } finally {
        await file.close()
      }
    })
    this.#rpc.register('deployments', async () => ({ result: this.#registry.list() }))
    this.#rpc.register('deployments.pull', async ({ from }) => {
      // answered at once; the pull runs after, serialised with everything else
      this.#pullDeployments(from).catch(() => {})
      return {}
    })
    this.#rpc.register('revocations', async () => ({ body: sealRevocations(this.#revocations.ids().slice(-MAX_REVOCATIONS_PER_MESSAGE), this.#key) }))
    this.#rpc.register('state.push', async ({ params, body, from }) => {
      const { brane } = params as { brane: string }
      this.#checkStatePeer(brane, from)
      this.local.state.apply(brane, body, from)
      return {}
    })
    this.#rpc.register('state.sync', async ({ params, body, from }) => {
      // the caller sends its state vector; answer what it lacks, and our state vector
      const { brane } = params as { brane: string }
      this.#checkStatePeer(brane, from)
      const state = this.local.state
      return { result: { vector: Buffer.from(state.stateVector(brane)).toString('base64'), from }, body: state.diff(brane, body) }
    })
    this.#rpc.register('hops', async ({ params }) => {
      const { id } = params as { id: string }
      const found = this.#local?.traceHops(id)
      return { result: found === undefined ? null : { traceId: found.traceId, hops: found.hops.map((h) => ({ ...h, node: this.#init.name })) } }
    })
  }

  /**
   * State travels only for branes of the running deployment granted `state`, and only
   * between members of the mesh (a replica now, or one that held it before a move)
   */
  #checkStatePeer (brane: unknown, from: string): void {
    const stateful = this.#current?.plan.branes.some((b) => b.name === brane && b.grants.state !== undefined) === true
    const member = this.mesh.member(from)
    if (!stateful || member === undefined || member.state === 'dead' || member.state === 'left') {
      throw new BraneNotFoundError(`No replicated state of brane "${String(brane)}" here for ${from}`)
    }
  }

  /** Branes granted `state` that run here */
  #statefulHere (): string[] {
    const plan = this.#current?.plan
    return plan === undefined ? [] : plan.branes.filter((b) => b.grants.state !== undefined && this.#placement.get(b.name)?.nodes.includes(this.did) === true).map((b) => b.name)
  }

  #pushState (brane: string, update: Uint8Array): void {
    const fanout = Number(this.#current?.plan.branes.find((b) => b.name === brane)?.state?.fanout ?? Infinity)
    for (const did of this.#replicasElsewhere(brane).slice(0, fanout)) {
      this.#rpc.call(did, 'state.push', { brane }, update).catch((err: unknown) => {
        this.#log.debug({ brane, peer: did, err: (err as Error).message }, 'state push failed (anti-entropy will carry it)')
      })
    }
  }

  /** Exchange what each side lacks of every shared stateful brane with `peer` */
  async #reconcileStateWith (peer: string, branes = this.#statefulHere(), settings: { anyPeer?: boolean } = {}): Promise<void> {
    for (const brane of branes) {
      if (settings.anyPeer !== true && !this.#replicasElsewhere(brane).includes(peer)) {
        continue
      }
      try {
        const state = this.local.state
        const reply = await this.#rpc.call(peer, 'state.sync', { brane }, state.stateVector(brane))
        state.apply(brane, reply.body, peer)
        const theirs = Buffer.from((reply.result as { vector: string }).vector, 'base64')
        const missing = state.diff(brane, theirs)
        if (missing.byteLength > 2) {
          await this.#rpc.call(peer, 'state.push', { brane }, missing)
        }
      } catch (err) {
        this.#log.debug({ brane, peer, err: (err as Error).message }, 'state sync failed')
      }
    }
  }

  /** Every ANTI_ENTROPY_MS: reconcile each stateful brane with one random other replica */
  async #antiEntropy (): Promise<void> {
    if (this.#stopping || this.#local === undefined) {
      return
    }
    // a node that missed a deployment's gossip (or could not take it then) asks again
    const ours = this.#registry.get(DEPLOYMENT)
    for (const peer of this.#peers()) {
      const theirs = peer.meta.deploy
      if (peer.state !== 'alive' || theirs === undefined || theirs === this.#current?.id || (ours !== undefined && theirs === deploymentId(ours))) {
        continue
      }
      if (Date.now() - (this.#asked.get(peer.did) ?? 0) > 5 * ANTI_ENTROPY_MS) {
        this.#asked.set(peer.did, Date.now())
        await this.#pullDeployments(peer.did)
      }
    }
    for (const brane of this.#statefulHere()) {
      const others = this.#replicasElsewhere(brane).filter((did) => this.mesh.member(did)?.state === 'alive')
      const peer = others[Math.floor(Math.random() * others.length)]
      if (peer !== undefined) {
        await this.#reconcileStateWith(peer, [brane])
      }
    }
  }

  /**
   * Exchange deployments and revocations with a node that (re)joined: each side pulls
   * what the other has, and the newer deployment wins on both
   */
  async #offerDeployments (peer: string): Promise<void> {
    try {
      const revoked = openRevocations((await this.#rpc.call(peer, 'revocations', {})).body, this.#trust)
      await this.#revocations.add(revoked ?? [])
      await this.#pullDeployments(peer)
      // and it pulls ours
      await this.#rpc.call(peer, 'deployments.pull', {})
    } catch (err) {
      this.#log.debug({ peer, err: (err as Error).message }, 'deployment exchange failed')
    }
  }

  /** Take the deployments `peer` has that are newer than ours (and run them, unless `reconcile` is false) */
  async #pullDeployments (peer: string, settings: { reconcile?: boolean, options?: AbortOptions } = {}): Promise<void> {
    try {
      const { result } = await this.#rpc.call(peer, 'deployments', {}, undefined, settings.options)
      for (const raw of Array.isArray(result) ? result.slice(0, 16) as unknown[] : []) {
        const doc = verifyDeployment(raw)
        await this.#serially(async () => this.#accept(doc, peer, settings))
      }
    } catch (err) {
      this.#log.debug({ peer, err: (err as Error).message }, 'could not take the deployments of a peer')
    }
  }

  #backlogs (): Map<string, number> {
    const total = new Map<string, number>()
    for (const member of this.mesh.members()) {
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

  #advertiseBacklog (): void {
    const local = this.#local
    if (local === undefined || this.#stopping) {
      return
    }
    const backlog = local.backlog()
    let pending = 0
    for (const depth of backlog.values()) {
      pending += depth
    }
    for (const brane of this.#current?.plan.branes ?? []) {
      if (brane.replicas.kind !== 'auto') {
        continue
      }
      // coarse, so the gossip carries changes of scale rather than every event (0 once drained)
      const depth = backlog.get(brane.name) ?? 0
      this.mesh.setMeta(`q.${brane.name}`, String(depth < AUTO_EVENTS_PER_REPLICA ? 0 : Math.round(depth / 100) * 100))
    }
    this.mesh.setLoad(Math.round(pending))
    if (this.#current?.plan.branes.some((b) => b.replicas.kind === 'auto') === true) {
      this.#scheduleReconcile()
    }
  }

  /** The seeds' peers table */
  peers (brane?: string): PeerRow[] {
    const plan = this.#current?.plan
    const ours = this.#current?.id
    const rows = this.mesh.members().map((m): PeerRow => {
      const self = m.did === this.did
      const branes = self
        ? [...this.#placement.values()].filter((p) => p.nodes.includes(this.did)).map((p) => p.brane)
        : (m.meta.branes ?? '').split(',').filter((b) => b !== '')
      const status: PeerRow['status'] = m.state === 'dead'
        ? 'DEAD'
        : m.state === 'left'
          ? 'LEFT'
          : m.state === 'suspect'
            ? 'TAIL'
            : (self ? this.#healing : m.meta.heal === '1' || m.meta.deploy !== ours) ? 'HEAL' : 'HEAD'
      const edges = plan?.edges ?? []
      return {
        name: m.name,
        did: m.did,
        status,
        self,
        substrate: m.substrate,
        ...(m.rttMs === undefined ? {} : { rttMs: m.rttMs }),
        ...(m.load === undefined ? {} : { load: m.load }),
        branes,
        edgesIn: edges.filter((e) => branes.includes(e.to)).length,
        edgesOut: edges.filter((e) => branes.includes(e.from)).length,
        addrs: m.addrs
      }
    })
    return (brane === undefined ? rows : rows.filter((r) => r.branes.includes(brane))).sort((a, b) => a.name < b.name ? -1 : 1)
  }

  /** The hops of a trace from every live node, merged and signed by this node */
  async trace (id: string, options: AbortOptions = {}): Promise<TraceEndRecord | undefined> {
    const found = this.#local?.traceHops(id)
    let traceId = found?.traceId
    const hops: Hop[] = (found?.hops ?? []).map((h) => ({ ...h, node: this.#init.name }))
    const answers = await Promise.allSettled(this.#peers().filter((m) => m.state === 'alive').map(async (m) => this.#rpc.call(m.did, 'hops', { id: traceId ?? id }, undefined, options)))
    for (const answer of answers) {
      if (answer.status !== 'fulfilled') {
        continue
      }
      const result = answer.value.result as { traceId: string, hops: Hop[] } | null
      if (result !== null) {
        traceId ??= result.traceId
        hops.push(...result.hops)
      }
    }
    if (traceId === undefined || hops.length === 0) {
      return undefined
    }
    hops.sort((a, b) => a.startedAt - b.startedAt)
    return signTrace(traceId, hops, this.#key)
  }

  #adminRoutes (): ReadonlyMap<string, AdminRoute> {
    return new Map<string, AdminRoute>([
      ['/v1/deploy', { action: 'deploy', handle: async (_q, body, options) => this.deploy(body as DeployRequest, options) }],
      ['/v1/biome/peers', { action: 'ps', handle: async (q) => this.peers(q.get('brane') ?? undefined) }],
      // a deployer stamps its deployment later than anything this node has seen
      ['/v1/biome/clock', {
        action: 'deploy',
        handle: async () => {
          const running = this.#registry.get(DEPLOYMENT)
          if (running !== undefined) {
            this.#clock.observe(running.time)
          }
          return this.#clock.now()
        }
      }],
      ['/v1/biome/placement', {
        action: 'ps',
        handle: async () => ({ deployment: this.#current?.id ?? null, placement: [...this.#applied.values()].map((p) => ({ ...p, names: p.nodes.map((d) => this.mesh.member(d)?.name ?? d) })) })
      }],
      ['/v1/biome/trace', {
        action: 'trace',
        handle: async (q, _body, options) => {
          const record = await this.trace(q.get('id') ?? '', options)
          if (record === undefined) {
            throw new BraneNotFoundError(`No node holds a trace of "${q.get('id') ?? ''}"`)
          }
          return record
        }
      }],
      ['/v1/biome/isolate', {
        action: 'isolate',
        handle: async (_q, body) => {
          const names = (body as { peers?: unknown } | undefined)?.peers
          const wanted = Array.isArray(names) ? names.map(String) : []
          const dids = this.#peers().filter((m) => wanted.includes(m.name) || wanted.includes(m.did)).map((m) => m.did)
          const unknown = wanted.filter((w) => !this.#peers().some((m) => m.name === w || m.did === w))
          if (unknown.length > 0) {
            throw new BraneNotFoundError(`Unknown peers: ${unknown.join(', ')} (see "omega biome peers")`)
          }
          this.mesh.isolate(dids)
          this.#scheduleReconcile()
          return { isolated: dids }
        }
      }]
    ])
  }

  async stop (): Promise<void> {
    if (this.#stopping) {
      return
    }
    // from now on calls from other nodes are turned away (they go to another replica)
    this.#stopping = true
    clearTimeout(this.#reconcileTimer)
    clearTimeout(this.#retryTimer)
    for (const timer of this.#timers) {
      clearInterval(timer)
    }
    // leave nothing queued behind: take no more work, let running deliveries settle, hand the rest over
    const local = this.#local
    if (local !== undefined && this.#current !== undefined) {
      try {
        await local.quiesce(LEAVE_DRAIN_MS)
        await this.#custody.handOver({ timeoutMs: LEAVE_HANDOVER_MS, queue: local.queue })
      } catch (err) {
        this.#log.error({ err: (err as Error).message }, 'could not hand queued events over before leaving')
      }
    }
    this.#custody.close()
    // closing the RPC first fails what queued work waits on (fetches, exchanges) at once
    this.#rpc.close()
    await this.#chain.catch(() => {})
    await this.#local?.stop()
    await this.mesh.stop()
  }
}

/**
 * Revoked token ids as a message signed by `key`: `{ ids, by, signature }` (signature
 * over the canonical JSON of `{ ids, by }`)
 */
function sealRevocations (ids: readonly string[], key: NodeKey): Uint8Array {
  const unsigned = { ids: ids.slice(0, MAX_REVOCATIONS_PER_MESSAGE), by: key.did }
  const signature = Buffer.from(key.sign(Buffer.from(canonicalJson(unsigned)))).toString('base64url')
  return new TextEncoder().encode(JSON.stringify({ ...unsigned, signature }))
}

/** The ids of a {@link sealRevocations} message signed by one of `trusted`, else undefined */
function openRevocations (data: Uint8Array, trusted: ReadonlySet<string>): string[] | undefined {
  try {
    const message = JSON.parse(new TextDecoder().decode(data)) as { ids?: unknown, by?: unknown, signature?: unknown }
    const { ids, by, signature } = message
    if (!Array.isArray(ids) || ids.length > MAX_REVOCATIONS_PER_MESSAGE || typeof by !== 'string' || typeof signature !== 'string' || !trusted.has(by)) {
      return undefined
    }
    if (!verify(by, Buffer.from(canonicalJson({ ids, by })), Buffer.from(signature, 'base64url'))) {
      return undefined
    }
    return ids.filter((id): id is string => typeof id === 'string' && /^[0-9a-f]{128}$/.test(id))
  } catch {
    return undefined
  }
}

/**
 * Listen addresses, bootstrap peers and discovery: the command line's, plus what the
 * manifest's branes that may run here ask for (see biome/network.ts)
 */
async function meshOptions (init: MeshNodeInit, previous: DeploymentDocument | undefined, options: AbortOptions): Promise<{ listen: string[], bootstrap: string[], discovery: DiscoveryInit | undefined }> {
  const listen = init.listen ?? ['/ip4/127.0.0.1/tcp/0']
  let plan: Plan | undefined
  if (init.manifest !== undefined) {
    plan = (await loadManifest(init.manifest, options)).plan
  } else if (previous !== undefined) {
    plan = checkManifest(previous.manifest.text, previous.manifest.file).plan
  }
  if (plan === undefined) {
    return { listen, bootstrap: init.bootstrap ?? [], discovery: init.discovery }
  }
  const ip = /^\/ip[46]\/([^/]+)\//.exec(listen[0] ?? '')?.[1] ?? '127.0.0.1'
  const wanted = meshSettingsFor(plan, { name: init.name, substrate: init.substrate, ip })
  for (const note of wanted.notes) {
    init.logging.forComponent('biome').warn({}, note)
  }
  const discovery: DiscoveryInit = {
    ...init.discovery,
    ...(wanted.mdns ? { mdns: true } : {}),
    ...(wanted.tailscale === undefined || init.discovery?.tailscale !== undefined ? {} : { tailscale: wanted.tailscale }),
    ...(wanted.netbird === undefined || init.discovery?.netbird !== undefined ? {} : { netbird: wanted.netbird })
  }
  return {
    listen: [...new Set([...listen, ...wanted.listen])],
    bootstrap: [...new Set([...(init.bootstrap ?? []), ...wanted.bootstrap])],
    discovery: Object.keys(discovery).length === 0 ? undefined : discovery
  }
}

/**
 * An error from another node, as the local caller should see it: unreachable nodes are
 * "unavailable" (the event waits, the request gets 503), and the remote handler's own
 * error keeps its name (retry, reject, deadline, …)
 */

function asLocalError (err: unknown, where: string): Error {
  if (err instanceof PeerUnavailableError) {
    return new TargetUnavailableError(`Cannot reach ${where}: ${err.message}`, { cause: err })
  }
  if (err instanceof RemoteError) {
    switch (err.remoteName) {
      case 'TargetUnavailableError':
        return new TargetUnavailableError(`${where}: ${err.message}`, { cause: err })
      case 'RetryableEventError':
        return new RetryableEventError(err.message, { cause: err })
      case 'RejectedEventError':
        return new RejectedEventError(err.message, { cause: err })
      default: {
        const local = new OmegaError(`${where}: ${err.message}`, { cause: err })
        local.name = err.remoteName
        return local
      }
    }
  }
  return err instanceof Error ? err : new Error(String(err))
}
