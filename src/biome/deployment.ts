/**
 * Deployments: a manifest, signed by its deployer, with the content addresses of the
 * component files it names, so that any node can check it offline and fetch the exact
 * bytes from any peer that has them.
 *
 * A document carries the manifest text as written (TOML, JSON or YAML). On a node it is
 * materialised into a directory of its own: the manifest file, and each image path at
 * the same place relative to it, so the manifest loads unchanged.
 */
import { mkdir, readFile, rename, stat, writeFile } from 'node:fs/promises'
import { basename, dirname, isAbsolute, join, relative, resolve, sep } from 'node:path'
import { DeploymentError } from '../errors.ts'
import { blake3Hex, canonicalJson, contentAddress, signDocument, verifyCapability, verifyDocument, type ContentAddress, type NodeKey } from '../identity/index.ts'
import type { AbortOptions, Logger } from '../interfaces/index.ts'
import { appNameOf, checkManifest, formatIssues, isAppName, type Plan } from '../manifest/index.ts'
import { imageStore, isImagePath } from '../store/index.ts'
import { compareHlc, isHlcTime, type HlcTime } from './hlc.ts'
import type { Broadcaster, Rpc } from './rpc.ts'

/** Most bytes of manifest text a deployment may carry (it is gossiped to every node) */
export const MAX_MANIFEST_BYTES = 128 * 1024

/** One component file a deployment needs */
export interface DeploymentImage {
  /** the manifest's `image` value: a path relative to the manifest, or `NAME:TAG` */
  readonly image: string
  readonly hash: ContentAddress
  readonly size: number
}

export interface DeploymentDocument {
  readonly version: 1
  /** the app's name: a newer deployment of the same name replaces it; other apps run beside it */
  readonly name: string
  /**
   * the app is undeployed: this document (with an empty manifest and no images) replaces
   * it, so that an older deployment of it heard later loses, as any older one does
   */
  readonly removed?: true
  readonly manifest: {
    /** file name (no directory), which gives the format */
    readonly file: string
    readonly text: string
  }
  readonly images: readonly DeploymentImage[]
  /** did:key of the deployer, who signed it */
  readonly deployer: string
  /** when it was deployed: orders deployments of one name (last writer wins) */
  readonly time: HlcTime
  /** a capability token that allows the deployer to deploy (checked by the nodes) */
  readonly token?: string
  /** base64url Ed25519 signature by `deployer` of the canonical JSON of the rest */
  readonly signature: string
}

/** What a deployer builds: the document and where each image's bytes are */
export interface PreparedDeployment {
  readonly document: DeploymentDocument
  /** content address → a file holding those bytes */
  readonly blobs: ReadonlyMap<ContentAddress, string>
}

export interface PrepareOptions extends AbortOptions {
  /** the app's name. @default the manifest's `[app] name`, or its file name without the extension */
  name?: string
  /** Omega home of the deployer, for `NAME:TAG` images */
  home: string
  time: HlcTime
  token?: string
}

/**
 * Validate `manifestFile`, find every image it names, and sign the whole as `key`.
 *
 * @throws ManifestError (as checkManifest) for an invalid manifest
 * @throws DeploymentError when an image path is absolute, or the manifest is too large
 */
export async function prepareDeployment (manifestFile: string, key: NodeKey, options: PrepareOptions): Promise<PreparedDeployment> {
  const text = await readFile(manifestFile, 'utf8')
  if (Buffer.byteLength(text) > MAX_MANIFEST_BYTES) {
    throw new DeploymentError(`Cannot deploy ${manifestFile}: a manifest may hold at most ${MAX_MANIFEST_BYTES} bytes`)
  }
  const { plan } = checkManifest(text, manifestFile)
  const name = options.name ?? appNameOf(manifestFile, plan)
  if (!isAppName(name)) {
    throw new DeploymentError(`Invalid app name "${name}": 1 to 64 of a-z 0-9 . _ - (name it with --app NAME or [app] name in the manifest)`)
  }
  const images: DeploymentImage[] = []
  const blobs = new Map<ContentAddress, string>()
  const seen = new Set<string>()
  for (const brane of plan.branes) {
    const image = brane.image
    if (image === undefined || seen.has(image)) {
      continue
    }
    seen.add(image)
    let path: string
    if (isImagePath(image)) {
      if (isAbsolute(image)) {
        throw new DeploymentError(`Cannot deploy brane "${brane.name}": image "${image}" is an absolute path, which other nodes do not have; write it relative to the manifest, or add it to the store ("omega image add FILE NAME:TAG") and use the tag`)
      }
      path = resolve(dirname(manifestFile), image)
    } else {
      path = (await imageStore({ home: options.home }).resolve(image, options)).path
    }
    const bytes = await readFile(path).catch((err: unknown) => {
      throw new DeploymentError(`Cannot deploy brane "${brane.name}": cannot read image "${image}" at ${path}: ${(err as Error).message}`, { cause: err })
    })
    const hash = contentAddress(bytes)
    images.push({ image, hash, size: bytes.byteLength })
    blobs.set(hash, path)
  }
  const unsigned = {
    version: 1 as const,
    name,
    manifest: { file: basename(manifestFile), text },
    images,
    deployer: key.did,
    time: options.time,
    ...(options.token === undefined ? {} : { token: options.token })
  }
  return { document: signDocument(unsigned, key), blobs }
}

/** A signed document that undeploys the app `name` (see {@link DeploymentDocument.removed}) */
export function prepareRemoval (name: string, key: NodeKey, options: Pick<PrepareOptions, 'time' | 'token'>): DeploymentDocument {
  if (!isAppName(name)) {
    throw new DeploymentError(`Invalid app name "${name}": 1 to 64 of a-z 0-9 . _ - (see "omega apps")`)
  }
  const unsigned = {
    version: 1 as const,
    name,
    removed: true as const,
    manifest: { file: REMOVED_FILE, text: '' },
    images: [],
    deployer: key.did,
    time: options.time,
    ...(options.token === undefined ? {} : { token: options.token })
  }
  return signDocument(unsigned, key)
}

/** The manifest file name of a removal */
const REMOVED_FILE = 'removed'

/** The ids of the documents hashed so far */
const IDS = new WeakMap<DeploymentDocument, string>()

/** A short, stable id of a document: BLAKE3 of its canonical JSON, 16 hex digits */
export function deploymentId (doc: DeploymentDocument): string {
  // a node compares the ids of every app it holds at each reconciliation and anti-entropy
  // round: a document (never changed once made) is hashed once
  let id = IDS.get(doc)
  if (id === undefined) {
    id = blake3Hex(Buffer.from(canonicalJson(doc))).slice(0, 16)
    IDS.set(doc, id)
  }
  return id
}

/** Most apps a mesh carries (a pull answers with all of them) */
export const MAX_APPS = 256

/**
 * One id for every deployment a node holds (removals too), the same on every node that
 * holds the same ones: the id of the only one, or a digest of all their ids
 */
export function versionOf (docs: readonly DeploymentDocument[]): string | undefined {
  if (docs.length <= 1) {
    return docs[0] === undefined ? undefined : deploymentId(docs[0])
  }
  return blake3Hex(Buffer.from(docs.map(deploymentId).sort().join(','))).slice(0, 16)
}

/**
 * Check a document received from anywhere: its shape, its signature, and that its
 * manifest is valid. Whether the deployer may deploy is decided by the caller.
 *
 * @throws DeploymentError naming what is wrong
 */
export function verifyDeployment (value: unknown): DeploymentDocument {
  const doc = value as Partial<DeploymentDocument> | null
  const bad = (what: string): never => { throw new DeploymentError(`Refusing a deployment: ${what}`) }
  if (typeof doc !== 'object' || doc === null || doc.version !== 1) {
    return bad('not a version 1 deployment document')
  }
  if (typeof doc.name !== 'string' || !isAppName(doc.name)) {
    return bad('"name" must be 1 to 64 of a-z 0-9 . _ -')
  }
  if (doc.removed !== undefined && (doc.removed !== true || doc.manifest?.text !== '' || doc.manifest.file !== REMOVED_FILE || !Array.isArray(doc.images) || doc.images.length > 0)) {
    return bad(`a removal must have "removed": true, an empty manifest "${REMOVED_FILE}" and no images`)
  }
  const m = doc.manifest
  if (typeof m !== 'object' || m === null || typeof m.file !== 'string' || typeof m.text !== 'string' || m.file !== basename(m.file) || m.file === '' || m.file.startsWith('.')) {
    return bad('"manifest" must hold a plain file name and the text')
  }
  if (Buffer.byteLength(m.text) > MAX_MANIFEST_BYTES) {
    return bad(`the manifest is larger than ${MAX_MANIFEST_BYTES} bytes`)
  }
  if (!Array.isArray(doc.images) || !doc.images.every((i: DeploymentImage) => typeof i === 'object' && i !== null && typeof i.image === 'string' && typeof i.hash === 'string' && /^b3:[0-9a-f]{64}$/.test(i.hash) && Number.isSafeInteger(i.size) && i.size >= 0)) {
    return bad('"images" must list { image, hash: "b3:<64 hex>", size }')
  }
  if (typeof doc.deployer !== 'string' || !isHlcTime(doc.time) || typeof doc.signature !== 'string' || (doc.token !== undefined && typeof doc.token !== 'string')) {
    return bad('"deployer", "time" and "signature" are required')
  }
  let valid = false
  try {
    valid = verifyDocument(doc as DeploymentDocument, doc.deployer)
  } catch (err) {
    throw new DeploymentError(`Refusing a deployment: the deployer "${doc.deployer}" is not an Ed25519 did:key`, { cause: err })
  }
  if (!valid) {
    return bad(`the signature does not match the content and the deployer ${doc.deployer}`)
  }
  if (doc.removed === true) {
    return doc as DeploymentDocument
  }
  try {
    planOf(doc as DeploymentDocument)
  } catch (err) {
    const issues = (err as { issues?: Parameters<typeof formatIssues>[0] }).issues
    throw new DeploymentError(`Refusing a deployment: its manifest is invalid: ${issues === undefined ? (err as Error).message : formatIssues(issues)}`, { cause: err })
  }
  return doc as DeploymentDocument
}

/** The plans of the documents checked so far: a deployment's manifest is validated once */
const PLANS = new WeakMap<DeploymentDocument, Plan>()

/**
 * The plan of a deployment's manifest, validated on the first call for this document
 * (verifyDeployment makes that call). Its `file` is the manifest's file name: where the
 * deployment is materialised gives the path that image paths are relative to.
 *
 * @throws ManifestError for an invalid manifest
 */
export function planOf (doc: DeploymentDocument): Plan {
  let plan = PLANS.get(doc)
  if (plan === undefined) {
    plan = checkManifest(doc.manifest.text, doc.manifest.file).plan
    PLANS.set(doc, plan)
  }
  return plan
}

/** Whether `a` replaces `b` (a later signed time; the same time means the same deployment) */
export function isNewer (a: DeploymentDocument, b: DeploymentDocument | undefined): boolean {
  return b === undefined || compareHlc(a.time, b.time) > 0
}

/**
 * Write `doc` out under `root` as a directory where its manifest loads unchanged: the
 * manifest file, and each image path relative to it, taken from `blob(hash)`. `NAME:TAG`
 * images are added to the store of `home` instead. Returns the manifest's path.
 *
 * @throws DeploymentError when an image path would leave the directory
 */
export async function materialise (doc: DeploymentDocument, root: string, home: string, blob: (hash: ContentAddress) => string, options: AbortOptions = {}): Promise<string> {
  const id = deploymentId(doc)
  const dir = resolve(root, id)
  // the manifest sits as deep as its deepest `../` image needs
  const depth = Math.max(0, ...doc.images.filter((i) => isImagePath(i.image)).map((i) => i.image.split(/[\\/]/).filter((s) => s === '..').length))
  const manifestDir = join(dir, ...Array.from({ length: depth }, (_, n) => `m${n}`))
  const manifestFile = join(manifestDir, doc.manifest.file)
  if (await exists(manifestFile)) {
    return manifestFile
  }
  const staging = `${dir}.tmp-${process.pid}-${Date.now()}`
  const stagedManifest = join(staging, relative(dir, manifestFile))
  await mkdir(dirname(stagedManifest), { recursive: true })
  for (const image of doc.images) {
    options.signal?.throwIfAborted()
    const bytes = await readFile(blob(image.hash))
    if (contentAddress(bytes) !== image.hash) {
      throw new DeploymentError(`Cannot materialise deployment ${id}: the stored bytes of ${image.hash} do not match it`)
    }
    if (!isImagePath(image.image)) {
      const file = join(staging, `${image.hash.slice(3)}.wasm`)
      await writeFile(file, bytes)
      await imageStore({ home }).add(file, image.image, options)
      continue
    }
    if (isAbsolute(image.image)) {
      throw new DeploymentError(`Cannot materialise deployment ${id}: image "${image.image}" is an absolute path`)
    }
    const target = resolve(dirname(stagedManifest), image.image)
    if (!target.startsWith(staging + sep)) {
      throw new DeploymentError(`Cannot materialise deployment ${id}: image "${image.image}" leaves the deployment's directory`)
    }
    await mkdir(dirname(target), { recursive: true })
    await writeFile(target, bytes)
  }
  await writeFile(stagedManifest, doc.manifest.text)
  await rename(staging, dir).catch(async (err: NodeJS.ErrnoException) => {
    // another call materialised it first
    if (err.code !== 'ENOTEMPTY' && err.code !== 'EEXIST') {
      throw err
    }
  })
  return manifestFile
}

async function exists (path: string): Promise<boolean> {
  return stat(path).then(() => true, () => false)
}

export interface AuthorizeOptions {
  /** the keys whose deployments the node runs, and the roots of capability tokens */
  trust: ReadonlySet<string>
  /** the deployment `doc` would replace, if any */
  current: DeploymentDocument | undefined
  /** revoked token ids */
  revoked: { has: (id: string) => boolean }
}

/**
 * A deployment (or a removal) is allowed when a trusted key signed it, or when it carries
 * a capability token, rooted in a trusted key and delegated to the key that signed it (the
 * signature is the proof that the deployer holds the token's key), that grants `deploy`
 * on the whole app (`app/NAME`) or on each of its branes (`brane/NAME`)
 *
 * @throws DeploymentError saying why it is refused
 */
export function authorizeDeployment (doc: DeploymentDocument, options: AuthorizeOptions): void {
  const { trust } = options
  if (trust.has(doc.deployer)) {
    return
  }
  if (doc.token === undefined) {
    throw new DeploymentError(`Refusing a deployment signed by ${doc.deployer}: this node trusts deployments from ${[...trust].join(', ')} (start it with --trust DID, or deploy with a capability token from a trusted key: omega deploy --token)`)
  }
  /** why the token does not allow deploy on `resource`, or undefined when it does */
  const denial = (resource: string): DeploymentError | undefined => {
    let subject: string
    try {
      subject = verifyCapability(doc.token as string, { ability: 'deploy', resource, roots: [...trust], revoked: options.revoked }).subject
    } catch (err) {
      return new DeploymentError(`Refusing a deployment signed by ${doc.deployer}: its token does not allow deploy on ${resource}: ${(err as Error).message}`, { cause: err })
    }
    return subject === doc.deployer ? undefined : new DeploymentError(`Refusing a deployment signed by ${doc.deployer}: its token was delegated to ${subject}, not to the key that signed it`)
  }
  const wholeApp = denial(`app/${doc.name}`)
  if (wholeApp === undefined) {
    return
  }
  // it replaces the app whole: a token for its branes must cover the branes it removes too
  const current = options.current
  const branesOf = (d: DeploymentDocument | undefined): string[] => d === undefined || d.removed === true ? [] : planOf(d).branes.map((b) => b.name)
  const names = new Set([...branesOf(doc), ...branesOf(current)])
  if (names.size === 0) {
    throw wholeApp
  }
  for (const name of names) {
    const refused = denial(`brane/${name}`)
    if (refused !== undefined) {
      throw refused
    }
  }
}

/** The broadcast topic of deployments */
export const DEPLOY_TOPIC = 'omega/deploy'

/** What deployment gossip needs from its node */
export interface DeploymentGossipComponents {
  rpc: Rpc
  mesh: Broadcaster
  /** the deployments this node holds */
  list: () => DeploymentDocument[]
  /** take `doc`, heard from `from`, when it is the newest (serialised with the node's other work) */
  accept: (doc: DeploymentDocument, from: string, settings: { reconcile?: boolean, options?: AbortOptions }) => Promise<boolean>
  logger: Logger
}

/**
 * Deployment gossip: a new deployment is broadcast to every node; a node that (re)joins
 * or sees a peer run another deployment pulls the peer's (`deployments`), or asks the
 * peer to pull its own (`deployments.pull`).
 */
export class DeploymentGossip {
  readonly #components: DeploymentGossipComponents
  readonly #log: Logger

  constructor (components: DeploymentGossipComponents) {
    this.#components = components
    this.#log = components.logger
  }

  /** take the deployments other nodes broadcast */
  listen (): void {
    this.#components.mesh.onBroadcast(DEPLOY_TOPIC, (data, from) => {
      let doc: DeploymentDocument
      try {
        doc = verifyDeployment(JSON.parse(new TextDecoder().decode(data)))
      } catch (err) {
        this.#log.warn({ from, err: (err as Error).message }, 'ignored a deployment')
        return
      }
      this.#components.accept(doc, from, {}).catch((err: unknown) => {
        this.#log.warn({ from, err: (err as Error).message }, 'could not take a deployment')
      })
    })
  }

  /** send `doc` to every node */
  announce (doc: DeploymentDocument): void {
    this.#components.mesh.broadcast(DEPLOY_TOPIC, new TextEncoder().encode(JSON.stringify(doc)))
  }

  /** Take the deployments `peer` has that are newer than ours (and run them, unless `reconcile` is false) */
  async pull (peer: string, settings: { reconcile?: boolean, options?: AbortOptions } = {}): Promise<void> {
    try {
      const { result } = await this.#components.rpc.call(peer, 'deployments', {}, undefined, settings.options)
      for (const raw of Array.isArray(result) ? result.slice(0, MAX_APPS) as unknown[] : []) {
        const doc = verifyDeployment(raw)
        await this.#components.accept(doc, peer, settings)
      }
    } catch (err) {
      this.#log.debug({ peer, err: (err as Error).message }, 'could not take the deployments of a peer')
    }
  }

  /** answer other nodes' pulls */
  serve (): void {
    const rpc = this.#components.rpc
    rpc.register('deployments', async () => ({ result: this.#components.list() }))
    rpc.register('deployments.pull', async ({ from }) => {
      // answered at once; the pull runs after, serialised with everything else
      this.pull(from).catch(() => {})
      return {}
    })
  }
}
