/**
 * A node: `omega node`, and `omega up`, the same node alone (a mesh of one, mesh/lone.ts:
 * no libp2p, every brane here, its manifests run from their files). Its branes run in a
 * LocalNode. There is no control plane: a deployment signed by a trusted key reaches every
 * node by gossip, each node keeps the newest of each app (last writer wins by signed
 * hybrid-logical-clock time), combines the apps into one plan, computes the same placement
 * from its membership view, runs its share, and forwards events and requests for the rest
 * to the nodes that run them. Replicated state follows the replicas of each brane.
 */
import { join } from 'node:path'
import { BraneNotFoundError, DeploymentError, OmegaError } from '../errors.ts'
import type { AbortOptions, HttpHandler, Logger } from '../interfaces/index.ts'
import { loadOrCreateNodeKey, RevocationList, type ContentAddress, type NodeKey } from '../identity/index.ts'
import { combineApps, type BranePlan, type CombinedApps, type Plan, type ResolverPlan } from '../manifest/index.ts'
import { edgeKey, signTrace, type DeliveryCopy, type EventTarget, type Hop, type TraceEndRecord } from '../dispatch/index.ts'
import type { DiscoveryInit, Member, MembershipSettings, Substrate } from '../mesh/index.ts'
import { LoneMesh, type NodeMesh } from '../mesh/lite.ts'
import {
  authorizeDeployment, compareHlc, DeploymentGossip, deploymentId, EventCustody, fetchBlobs, formatHlc, Forwarder, HybridClock, type HlcTime, materialise, place, planOf, Registry,
  RevocationGossip, Rpc, runsResolver, serveBlobs, advertisedBacklogs, StateSync, verifyDeployment, versionOf,
  type BranePlacement, type DeploymentDocument
} from '../biome/index.ts'
import { LocalNode, type LocalNodeInit } from './local-node.ts'
import { meshAdminRoutes, type DeployReport, type DeployRequest } from './mesh-admin.ts'
import { joinMesh, MESH_FRAME_BYTES } from './join.ts'
import { localEdges, meshEdges, type PeerRow } from './dashboard-state.ts'
import { appRows, peerRows, type AppRow, type PlacementView } from './mesh-views.ts'

export type { AppRow, DeployReport, DeployRequest, PeerRow, PlacementView }

export interface MeshNodeInit extends Omit<LocalNodeInit, 'placement' | 'adminRoutes'> {
  /** this node's name, matched by `peers` globs, e.g. "lab.lan/transform-pool-1" */
  name: string
  substrate: Substrate
  /**
   * a node with no peers (`omega up`): no mesh stack, no deployments; every brane of
   * these manifests (each an app) runs here, whatever its substrate or `peers`, and
   * reloads from its file. The mesh options below do not apply.
   */
  lone?: { readonly files: readonly string[] }
  /** libp2p listen addresses. @default ['/ip4/127.0.0.1/tcp/0'] */
  listen?: string[]
  /** multiaddrs this node advertises instead of its listen addresses (see MeshInit.announce). @default the listen addresses */
  announce?: string[]
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

/** An app this node has prepared: its newest deployment, materialised, and its plan */
interface PreparedApp {
  readonly doc: DeploymentDocument
  readonly id: string
  readonly file: string
  readonly plan: Plan
}

/** A plan with no branes */
const NOTHING: CombinedApps = { plan: { file: '', branes: [], edges: [], resolvers: [] }, refused: new Map() }
/** How often state is reconciled with one other replica (anti-entropy, ms) */
const ANTI_ENTROPY_MS = 2_000
/** How often the backlog per brane is advertised (for `replicas = "auto"`, ms) */
const BACKLOG_MS = 2_000
/** Undelivered events per extra replica of a `replicas = "auto"` brane */
const AUTO_EVENTS_PER_REPLICA = 500
/** How long a call waits for a brane that the placement just moved to this node (ms) */
const ARRIVAL_WAIT_MS = 10_000
/** How long a leaving node waits for its running deliveries to settle (ms) */
const LEAVE_DRAIN_MS = 5_000
/** How long a leaving node may spend handing its queued events over (ms) */
const LEAVE_HANDOVER_MS = 15_000

export class OmegaMeshNode {
  readonly did: string
  readonly mesh: NodeMesh
  readonly #init: MeshNodeInit
  readonly #key: NodeKey
  readonly #registry: Registry
  readonly #clock: HybridClock
  readonly #rpc: Rpc
  readonly #forwarder: Forwarder
  readonly #stateSync: StateSync
  readonly #deployments: DeploymentGossip
  readonly #revocationGossip: RevocationGossip
  /** hands queued events over when leaving; keeps copies elsewhere with durability = "replicated" */
  readonly #custody: EventCustody
  readonly #log: Logger
  readonly #trust: ReadonlySet<string>
  /** revoked capability tokens: until the local node runs, a list of its own */
  #revocations: RevocationList
  #local: LocalNode | undefined
  /** the apps prepared to run, by name */
  readonly #apps = new Map<string, PreparedApp>()
  /** the apps combined into one plan, oldest deployment first (a later one that collides is refused) */
  #combined: CombinedApps = NOTHING
  /** {@link versionOf} the deployments of `#apps` (and the removals): what the peers compare */
  #version: string | undefined
  #placement = new Map<string, BranePlacement>()
  /** the placement this node has finished applying (what `omega biome placement` shows) */
  #applied = new Map<string, BranePlacement>()
  /** the version of `#applied` */
  #appliedVersion: string | undefined
  #retryTimer: NodeJS.Timeout | undefined
  #healing = true
  /** reconciliations and deployments run one at a time */
  #chain: Promise<unknown> = Promise.resolve()
  #reconcileTimer: NodeJS.Timeout | undefined
  #timers: NodeJS.Timeout[] = []
  #stopping = false
  /** the peers that say they are still catching up (HEAL) */
  readonly #healingPeers = new Set<string>()
  /** when each peer whose deployment differs was last asked for it (ms) */
  readonly #asked = new Map<string, number>()

  private constructor (init: MeshNodeInit, key: NodeKey, registry: Registry, mesh: NodeMesh, revocations: RevocationList) {
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
    this.#forwarder = new Forwarder({
      rpc: this.#rpc,
      name: init.name,
      replicas: (brane) => this.#replicasElsewhere(brane),
      alive: (did) => this.mesh.member(did)?.state === 'alive',
      localEvents: async (brane, options) => this.#arriving(brane, (local) => local.localEvents(brane), options),
      localHttp: async (brane, options) => this.#arriving(brane, (local) => local.localHttp(brane), options),
      unplaced: (brane) => this.#placement.get(brane)?.reason ?? 'placement pending',
      deadlineMs: (brane) => this.#brane(brane)?.limits.deadlineMs ?? 30_000,
      nameOf: (did) => this.mesh.member(did)?.name ?? did
    })
    this.#stateSync = new StateSync({
      rpc: this.#rpc,
      store: () => this.local.state,
      replicas: (brane) => this.#replicasElsewhere(brane),
      fanout: (brane) => Number(this.#brane(brane)?.state?.fanout ?? Infinity),
      stateful: (brane) => typeof brane === 'string' && this.#brane(brane)?.grants.state !== undefined,
      member: (did) => this.mesh.member(did)?.state,
      logger: this.#log
    })
    this.#deployments = new DeploymentGossip({
      rpc: this.#rpc,
      mesh,
      list: () => this.#registry.list(),
      accept: async (doc, from, settings) => this.#serially(async () => this.#accept(doc, from, settings)),
      logger: this.#log
    })
    this.#revocationGossip = new RevocationGossip({ rpc: this.#rpc, mesh, key, trust: this.#trust, list: () => this.#revocations, logger: this.#log })
    this.#custody = new EventCustody({
      did: key.did,
      rpc: this.#rpc,
      members: () => this.mesh.members(),
      queue: () => this.#stopping ? undefined : this.#local?.queue,
      deployment: () => this.#version,
      edges: () => new Set(this.#combined.plan.edges.map(edgeKey)),
      kick: () => { this.#local?.kick() },
      logger: init.logging.forComponent('custody')
    })
    this.#registerRpc()
  }

  /** Join the mesh, catch up with it (HEAL), then serve; alone (`lone`), just serve */
  static async start (init: MeshNodeInit, options: AbortOptions = {}): Promise<OmegaMeshNode> {
    const key = await loadOrCreateNodeKey(init.home, options)
    const registry = new Registry({ root: join(init.home, 'biome') })
    const revocations = await new RevocationList(init.home).load()
    const mesh = init.lone === undefined ? await joinMesh(init, key, registry, options) : new LoneMesh({ key, name: init.name, substrate: init.substrate })
    const node = new OmegaMeshNode(init, key, registry, mesh, revocations)
    try {
      await (init.lone === undefined ? node.#start(options) : node.#startAlone(init.lone.files, options))
    } catch (err) {
      await node.stop()
      throw err
    }
    return node
  }

  /** Alone: the branes of `files` run here, and nothing of the mesh runs */
  async #startAlone (files: readonly string[], options: AbortOptions): Promise<void> {
    // `omega apps` of a node alone: the apps of its files, every brane here
    const apps = async (): Promise<AppRow[]> => {
      const local = this.local
      const rows = new Map<string, AppRow>()
      for (const brane of local.plan.branes) {
        const name = brane.app ?? ''
        const row = rows.get(name) ?? { name, id: 'file', deployer: this.did, time: local.startedAt, status: 'running', manifest: brane.manifest ?? local.plan.file, placement: {} }
        rows.set(name, { ...row, placement: { ...row.placement, [brane.name]: [this.#init.name] } })
      }
      return [...rows.values()].sort((a, b) => a.name < b.name ? -1 : 1)
    }
    this.#local = await LocalNode.start(files, { ...this.#init, adminRoutes: new Map([['/v1/apps', { action: 'ps', handle: apps }]]) }, options)
    this.#revocations = this.#local.revocations ?? this.#revocations
    this.#healing = false
  }

  async #start (options: AbortOptions): Promise<void> {
    this.#deployments.listen()
    this.#revocationGossip.listen()
    this.mesh.setMeta('heal', '1')
    await this.mesh.start()
    // HEAL: hear from the mesh before serving, so a rejoining node runs what the others run
    if ((this.#init.bootstrap?.length ?? 0) > 0 || this.#init.discovery !== undefined) {
      await this.#catchUp(options)
    }
    await this.#prepare(undefined, options)
    const localInit = {
      ...this.#init,
      placement: {
        runsHere: (brane: BranePlan) => this.#placement.get(brane.name)?.nodes.includes(this.did) ?? false,
        runsResolver: (resolver: ResolverPlan) => runsResolver(resolver, this.did, this.#placement, this.mesh.members()),
        elsewhere: (brane: BranePlan) => this.#describe(brane),
        events: (brane: string) => this.#remoteEvents(brane),
        http: (brane: string) => this.#remoteHttp(brane),
        replication: {
          replicate: async (copies: readonly DeliveryCopy[], opts: AbortOptions) => { await this.#custody.replicate(copies, opts) },
          settled: (over: ReadonlyArray<{ eventId: string, edge: string }>) => { this.#custody.settled(over) }
        }
      },
      adminRoutes: meshAdminRoutes(this),
      meshView: {
        name: this.#init.name,
        peers: () => this.peers(),
        placement: () => new Map([...this.#applied.values()].map((p) => [p.brane, p.nodes.map((d) => this.mesh.member(d)?.name ?? d)])),
        edges: async (opts: AbortOptions) => meshEdges(this.#local, this.#peers().filter((m) => m.state === 'alive').map((m) => m.did), async (did) => (await this.#rpc.call(did, 'edges', {}, undefined, opts)).result),
        trace: async (id: string, opts: AbortOptions) => this.trace(id, opts)
      },
      trustedRoots: [...this.#trust],
      deployerOf: (brane: string) => this.#apps.get(this.#brane(brane)?.app ?? '')?.doc.deployer ?? this.did
    }
    try {
      this.#local = await LocalNode.start(this.#apps.size === 0 ? undefined : this.#combined.plan, localInit, options)
    } catch (err) {
      if (this.#apps.size === 0 || (err as Error).name === 'AbortError') {
        throw err
      }
      // serve the mesh anyway; the deployments are tried again (and say why) until they run
      this.#log.error({ version: this.#version, err: (err as Error).message }, 'cannot run the deployments this node had; starting without them and retrying')
      this.#local = await LocalNode.start(undefined, localInit, options)
    }
    // the node's own list from now on; revocations made here reach every node
    this.#revocations = this.#local.revocations ?? this.#revocations
    this.#revocationGossip.announce()
    this.#local.state.onUpdate((brane, update, origin) => {
      if (origin === 'local') {
        this.#stateSync.push(brane, update)
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
          this.#stateSync.reconcileWith(member.did, this.#statefulHere()).catch(() => {})
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

  get dashboardUrl (): string | undefined {
    return this.#local?.dashboardUrl
  }

  get local (): LocalNode {
    if (this.#local === undefined) {
      throw new OmegaError('The node is still starting')
    }
    return this.#local
  }

  /** The deployments of the apps this node runs, by app name */
  get apps (): ReadonlyMap<string, DeploymentDocument> {
    return new Map([...this.#apps].map(([name, app]) => [name, app.doc]))
  }

  /** The plan of a brane of the running apps */
  #brane (name: string): BranePlan | undefined {
    return this.#combined.plan.branes.find((b) => b.name === name)
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
    await Promise.all(peers.map(async (peer) => { await this.#deployments.pull(peer.did, { reconcile: false, options }) }))
  }

  /**
   * Take a deployment (or a removal) submitted here (`omega deploy`, `omega undeploy`):
   * check it, keep its images, and gossip it to every node when it is the newest of its app.
   *
   * @throws DeploymentError when it is malformed, wrongly signed, from an untrusted key, or
   * collides with another app (a brane name, a route, a resolver), or removes no app
   */
  async deploy (request: DeployRequest, options: AbortOptions = {}): Promise<DeployReport> {
    const doc = verifyDeployment(request.document)
    this.#authorize(doc)
    if (doc.removed === true) {
      const known = this.#registry.get(doc.name)
      if (known === undefined || known.removed === true) {
        throw new DeploymentError(`No app named "${doc.name}" runs on this mesh${this.#apps.size === 0 ? '' : ` (apps: ${[...this.#apps.keys()].join(', ')})`}`)
      }
    }
    for (const [hash, base64] of Object.entries(request.blobs ?? {})) {
      await this.#registry.putBlob(Buffer.from(base64, 'base64'), hash as ContentAddress)
    }
    const accepted = await this.#serially(async () => this.#accept(doc, undefined, { options, refuseCollisions: true }))
    if (accepted) {
      this.#deployments.announce(doc)
    }
    return { id: deploymentId(doc), name: doc.name, ...(doc.removed === true ? { removed: true } : {}), deployer: doc.deployer, time: formatHlc(doc.time), accepted }
  }

  /** Whether `doc` may run here (see {@link authorizeDeployment}) */
  #authorize (doc: DeploymentDocument): void {
    authorizeDeployment(doc, { trust: this.#trust, current: this.#registry.get(doc.name), revoked: this.#revocations })
  }

  /**
   * Keep `doc` if it is the newest of its app, with its images; then run it. Serialised.
   * `refuseCollisions` (a deployment submitted here): refuse it when it collides with
   * another app; heard from the mesh, it is kept, and every node refuses the same one to run.
   */
  async #accept (doc: DeploymentDocument, from: string | undefined, settings: { reconcile?: boolean, options?: AbortOptions, refuseCollisions?: boolean } = {}): Promise<boolean> {
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
    if (doc.removed !== true) {
      // only a deployment that materialises and whose manifest loads is kept
      const { plan } = await this.#materialise(doc, from, settings.options ?? {})
      if (settings.refuseCollisions === true) {
        combineApps([...this.#ordered().filter((app) => app.doc.name !== doc.name), { doc, plan }].map((app) => ({ name: app.doc.name, plan: app.plan })))
      }
    }
    if (!await this.#registry.offer(doc)) {
      return false
    }
    this.#log.info({ app: doc.name, id: deploymentId(doc), removed: doc.removed, deployer: doc.deployer, time: formatHlc(doc.time), from }, doc.removed === true ? 'app undeployed' : 'new deployment')
    if (settings.reconcile !== false && this.#local !== undefined) {
      await this.#reconcile()
    }
    return true
  }

  /** Fetch the images of `doc` this node lacks, from `from` first, then from any live node */
  async #fetchBlobs (doc: DeploymentDocument, from: string | undefined, options: AbortOptions): Promise<void> {
    await fetchBlobs(doc, {
      registry: this.#registry,
      rpc: this.#rpc,
      sources: () => [...new Set([...(from === undefined ? [] : [from]), ...this.#peers().filter((m) => m.state === 'alive').map((m) => m.did)])],
      logger: this.#log,
      ...options
    })
  }

  /** Fetch the images of `doc` and write it out; its plan (validated when it arrived) runs from there */
  async #materialise (doc: DeploymentDocument, from: string | undefined, options: AbortOptions): Promise<{ file: string, plan: Plan }> {
    await this.#fetchBlobs(doc, from, options)
    const file = await materialise(doc, this.#registry.deployDir, this.#init.home, (hash) => this.#registry.blobPath(hash), options)
    return { file, plan: { ...planOf(doc), file } }
  }

  /** The prepared apps, oldest deployment first (the order every node combines them in) */
  #ordered (): PreparedApp[] {
    return [...this.#apps.values()].sort((a, b) => compareHlc(a.doc.time, b.doc.time) || (a.doc.name < b.doc.name ? -1 : 1))
  }

  /**
   * Prepare every app of the registry (materialised, plan loaded), drop the removed ones,
   * combine them, and place the result. An app that cannot be prepared keeps its previous
   * version, if any, and is tried again at the next reconciliation.
   */
  async #prepare (from: string | undefined, options: AbortOptions): Promise<void> {
    const docs = this.#registry.list()
    let failed: Error | undefined
    for (const doc of docs) {
      const id = deploymentId(doc)
      if (doc.removed === true) {
        this.#apps.delete(doc.name)
        continue
      }
      if (this.#apps.get(doc.name)?.id === id) {
        continue
      }
      try {
        const { file, plan } = await this.#materialise(doc, from, options)
        this.#apps.set(doc.name, { doc, id, file, plan })
      } catch (err) {
        if ((err as Error).name === 'AbortError') {
          throw err
        }
        this.#log.error({ app: doc.name, id, err: (err as Error).message }, 'cannot prepare an app; it is tried again')
        failed ??= err as Error
      }
    }
    // the version of what runs: an app whose newest deployment could not be prepared runs
    // its previous one (so that it is applied once it can be)
    const prepared = docs.filter((doc) => doc.removed === true || this.#apps.get(doc.name)?.id === deploymentId(doc))
    this.#version = versionOf([...prepared, ...[...this.#apps.values()].filter((app) => !prepared.includes(app.doc)).map((app) => app.doc)])
    this.#combined = this.#apps.size === 0 ? NOTHING : combineApps(this.#ordered().map((app) => ({ name: app.doc.name, plan: app.plan })), { conflicts: 'skip' })
    for (const [app, reason] of this.#combined.refused) {
      this.#log.error({ app }, `not running: ${reason}`)
    }
    this.mesh.setMeta('deploy', this.#version ?? '')
    this.#placement = this.#place(this.#combined.plan)
    if (failed !== undefined) {
      throw failed
    }
  }

  #place (plan: Plan): Map<string, BranePlacement> {
    const backlog = advertisedBacklogs(this.mesh.members())
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

  /** Run the newest deployment of each app with the placement of the current membership view */
  async #reconcile (): Promise<void> {
    const local = this.#local
    if (local === undefined || this.#stopping) {
      return
    }
    const mine = (p: ReadonlyMap<string, BranePlacement>): string[] => [...p.values()].filter((b) => b.nodes.includes(this.did)).map((b) => b.brane).sort()
    const applied = mine(this.#applied)
    try {
      await this.#prepare(undefined, {})
    } catch (err) {
      // what could be prepared runs; the rest is tried again soon
      this.#retrySoon(err as Error)
    }
    // #prepare placed the combined plan with the current membership view
    const plan = this.#combined.plan
    const placement = this.#placement
    const now = mine(placement)
    if (this.#appliedVersion === this.#version && applied.join(',') === now.join(',')) {
      this.#applied = placement
      // the branes here are the same, but a resolver may come here with a brane this node now leads
      await local.placementChanged()
      return
    }
    // a stateful brane that comes here brings its state from the nodes that held it
    const gained = now.filter((b) => !applied.includes(b) && plan.branes.some((p) => p.name === b && p.grants.state !== undefined))
    if (gained.length > 0) {
      await Promise.allSettled(this.#peers().filter((m) => m.state === 'alive').map(async (m) => { await this.#stateSync.reconcileWith(m.did, gained, { anyPeer: true }) }))
    }
    try {
      const report = await local.apply(plan)
      this.#log.info({ version: this.#version, apps: [...this.#apps.keys()].join(','), runs: now.join(','), ...report }, 'placement applied')
    } catch (err) {
      // what runs is still the previous placement: say so, and try again soon
      this.#retrySoon(err as Error)
      return
    }
    this.#applied = placement
    this.#appliedVersion = this.#version
    this.mesh.setMeta('branes', now.join(','))
    local.kick()
  }

  #retrySoon (err: Error): void {
    this.#log.error({ version: this.#version, err: err.message }, 'cannot apply the deployments; retrying in 5 s')
    clearTimeout(this.#retryTimer)
    this.#retryTimer = setTimeout(() => { this.#scheduleReconcile() }, 5_000).unref()
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
    return this.#placement.has(brane) ? this.#forwarder.events(brane) : undefined
  }

  #remoteHttp (brane: string): HttpHandler | undefined {
    return this.#placement.has(brane) ? this.#forwarder.http(brane) : undefined
  }

  #registerRpc (): void {
    this.#forwarder.serve()
    serveBlobs(this.#rpc, this.#registry)
    this.#deployments.serve()
    this.#revocationGossip.serve()
    this.#stateSync.serve()
    this.#rpc.register('edges', async () => ({ result: this.#local === undefined ? [] : [...localEdges(this.#local)] }))
    this.#rpc.register('hops', async ({ params }) => {
      const { id } = params as { id: string }
      const found = this.#local?.traceHops(id)
      return { result: found === undefined ? null : { traceId: found.traceId, hops: found.hops.map((h) => ({ ...h, node: this.#init.name })) } }
    })
  }

  /** Branes granted `state` that run here */
  #statefulHere (): string[] {
    return this.#combined.plan.branes.filter((b) => b.grants.state !== undefined && this.#placement.get(b.name)?.nodes.includes(this.did) === true).map((b) => b.name)
  }

  /** Every ANTI_ENTROPY_MS: reconcile each stateful brane with one random other replica */
  async #antiEntropy (): Promise<void> {
    if (this.#stopping || this.#local === undefined) {
      return
    }
    // a node that missed a deployment's gossip (or could not take it then) asks again
    const ours = versionOf(this.#registry.list())
    for (const peer of this.#peers()) {
      const theirs = peer.meta.deploy
      if (peer.state !== 'alive' || theirs === undefined || theirs === '' || theirs === this.#version || theirs === ours) {
        continue
      }
      if (Date.now() - (this.#asked.get(peer.did) ?? 0) > 5 * ANTI_ENTROPY_MS) {
        this.#asked.set(peer.did, Date.now())
        await this.#deployments.pull(peer.did)
      }
    }
    for (const brane of this.#statefulHere()) {
      const others = this.#replicasElsewhere(brane).filter((did) => this.mesh.member(did)?.state === 'alive')
      const peer = others[Math.floor(Math.random() * others.length)]
      if (peer !== undefined) {
        await this.#stateSync.reconcileWith(peer, [brane])
      }
    }
  }

  /**
   * Exchange deployments and revocations with a node that (re)joined: each side pulls
   * what the other has, and the newer deployment wins on both
   */
  async #offerDeployments (peer: string): Promise<void> {
    try {
      await this.#revocationGossip.pull(peer)
      await this.#deployments.pull(peer)
      // and it pulls ours
      await this.#rpc.call(peer, 'deployments.pull', {})
    } catch (err) {
      this.#log.debug({ peer, err: (err as Error).message }, 'deployment exchange failed')
    }
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
    for (const brane of this.#combined.plan.branes) {
      if (brane.replicas.kind !== 'auto') {
        continue
      }
      // coarse, so the gossip carries changes of scale rather than every event (0 once drained)
      const depth = backlog.get(brane.name) ?? 0
      this.mesh.setMeta(`q.${brane.name}`, String(depth < AUTO_EVENTS_PER_REPLICA ? 0 : Math.round(depth / 100) * 100))
    }
    this.mesh.setLoad(Math.round(pending))
    if (this.#combined.plan.branes.some((b) => b.replicas.kind === 'auto')) {
      this.#scheduleReconcile()
    }
  }

  /** What `omega apps` lists: every app with its version, status and placement */
  appRows (): AppRow[] {
    return appRows({
      docs: this.#registry.list(),
      apps: this.#apps,
      refused: this.#combined.refused,
      applied: this.#applied,
      upToDate: this.#appliedVersion === this.#version,
      nameOf: (did) => this.mesh.member(did)?.name ?? did
    })
  }

  /** The seeds' peers table */
  peers (brane?: string): PeerRow[] {
    return peerRows({ members: this.mesh.members(), self: this.did, placement: this.#placement, healing: this.#healing, version: this.#version ?? '', edges: this.#combined.plan.edges }, brane)
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

  /** A time later than every deployment this node holds: what a deployer stamps its deployment with */
  clock (): HlcTime {
    for (const doc of this.#registry.list()) {
      this.#clock.observe(doc.time)
    }
    return this.#clock.now()
  }

  /** What `omega biome placement` shows: where each brane of the running apps is placed */
  placementView (): PlacementView {
    return {
      // the one deployment's id, or a digest of every app's (see versionOf)
      deployment: this.#appliedVersion ?? null,
      apps: Object.fromEntries([...this.#apps].map(([name, app]) => [name, app.id])),
      placement: [...this.#applied.values()].map((p) => ({ ...p, names: p.nodes.map((d) => this.mesh.member(d)?.name ?? d) }))
    }
  }

  /**
   * Cut this node off from the peers named (names or did:keys); none heals (partition drills)
   *
   * @throws BraneNotFoundError naming the peers this node does not know
   */
  isolate (wanted: readonly string[]): { isolated: string[] } {
    const dids = this.#peers().filter((m) => wanted.includes(m.name) || wanted.includes(m.did)).map((m) => m.did)
    const unknown = wanted.filter((w) => !this.#peers().some((m) => m.name === w || m.did === w))
    if (unknown.length > 0) {
      throw new BraneNotFoundError(`Unknown peers: ${unknown.join(', ')} (see "omega biome peers")`)
    }
    this.mesh.isolate(dids)
    this.#scheduleReconcile()
    return { isolated: dids }
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
    if (local !== undefined && this.#apps.size > 0) {
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
