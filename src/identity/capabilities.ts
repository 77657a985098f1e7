/**
 * Capability tokens: Biscuit v3 tokens (https://doc.biscuitsec.org) whose root block is
 * signed by a trusted root key (a did:key; the node's own key by default) and whose later
 * blocks attenuate what the token allows. The whole chain travels in the token and is
 * checked offline: every block's signature, the chain of block keys, expiry, the
 * requested ability on the requested resource, and a local revocation list.
 *
 * What a token says, in Biscuit datalog:
 *
 * - the root (authority) block: `subject("did:key:…")`, `right(ABILITY, RESOURCE)` for each
 *   grant, `expires(DATE)` and `check if time($t), $t <= DATE`;
 * - each delegation block: `subject("did:key:…")` (who it is delegated to),
 *   `attenuated(ABILITY, RESOURCE)` facts, `expires(DATE)` and the checks
 *   `check if time($t), $t <= DATE` and `check if operation($op), resource_pattern($p),
 *   attenuated($a, $p), $a == $op || $a == "*"`.
 *
 * Biscuit only trusts facts of the root block and of the verifier, and a block's own
 * checks see only the root block's and its own facts: a delegation can add checks (narrow)
 * but never grant (escalate). Resources are `/`-separated names; a pattern is a name, a
 * prefix ending in `/*`, or `*`. Abilities are names (`deploy`, `logs`, `invoke`, …) or `*`.
 *
 * Biscuit tokens are bearer tokens: whoever holds one may use it or attenuate it further.
 * `subject` records to whom each link was delegated (the lineage); it is not a proof of
 * possession.
 *
 * Why Biscuit and not UCAN 1.0: both carry the whole chain and verify offline. UCAN 1.0
 * binds each delegation to issuer and audience DIDs and needs a separately signed
 * invocation (proof of possession), but its JS implementations are young (`iso-ucan`
 * 0.5, ~600 downloads a month) or implement the older 0.9/0.10 model (`@ucanto/*`) on a
 * DAG-CBOR/IPLD stack. Biscuit has a specification and a maintained Rust core (this
 * is its wasm build), makes escalation impossible by construction (later blocks add
 * checks; their facts are never trusted), gives every block a revocation id, and fits in
 * one base64url string for an Authorization header. Its costs: bearer semantics, a
 * hand-loaded 2 MB wasm on Node 20 (see biscuit.ts) and ~0.5 ms per verification.
 */
import { createPrivateKey } from 'node:crypto'
import { mkdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { CapabilityTokenError } from '../errors.ts'
import { biscuit } from './biscuit.ts'
import { didFromPublicKey, publicKeyFromDid, type NodeKey } from './keys.ts'
import { writeFileAtomic } from '../util/index.ts'
import type { Biscuit, PrivateKey, PublicKey } from '@biscuit-auth/biscuit-wasm'

export { CapabilityTokenError }

/** One grant: `ability` on every resource `resource` matches */
export interface Capability {
  readonly ability: string
  readonly resource: string
}

export interface IssueCapabilityOptions {
  /** the did:key the token is issued to */
  subject: string
  capabilities: readonly Capability[]
  /** @default 3600 */
  ttlSeconds?: number
  /** ms since the epoch. @default Date.now() */
  now?: number
}

export interface DelegateCapabilityOptions extends IssueCapabilityOptions {
  /** trusted root dids the parent token must verify against */
  roots: readonly string[]
}

/** One link of a token's chain, as `inspect` reads it */
export interface CapabilityLink {
  readonly subject: string | undefined
  readonly capabilities: readonly Capability[]
  readonly expires: string | undefined
  /** the Biscuit revocation id of this block (revoking it revokes this link and all delegated from it) */
  readonly id: string
  readonly source: string
}

export interface CapabilityInfo {
  /** the did:key of the root key that signed the first block */
  readonly root: string
  readonly links: readonly CapabilityLink[]
  /** the subject of the last link that names one */
  readonly subject: string | undefined
  /** the earliest expiry of the chain (ISO 8601) */
  readonly expires: string | undefined
  /** revocation id of the last link: the id `omega token revoke` takes for this token */
  readonly id: string
}

export interface VerifyCapabilityOptions {
  /** the ability the request needs, e.g. `deploy` */
  ability: string
  /** the resource it acts on, e.g. `brane/fetch` */
  resource: string
  /** trusted root did:keys */
  roots: readonly string[]
  /** ms since the epoch. @default Date.now() */
  now?: number
  /** revoked ids (any block of the chain): a {@link RevocationList} or a set */
  revoked?: { has: (id: string) => boolean }
}

export interface VerifiedCapability {
  /** who the last link was delegated to (the root block's subject if never delegated) */
  readonly subject: string
  readonly root: string
  /** the subjects of every link, root first */
  readonly lineage: readonly string[]
  readonly id: string
  readonly expires: string | undefined
}

const MAX_TOKEN_CHARS = 64 * 1024
/**
 * Bounds of one authorisation. Facts and iterations bound the work; the time limit is a
 * safety net only (biscuit's default, 1 ms, fails the first runs while the wasm is cold)
 */
const RUN_LIMITS = { max_facts: 1000, max_iterations: 100, max_time_micro: 1_000_000 }
const NAME = /^(?:\*|[A-Za-z0-9_.:@-]+(?:\/[A-Za-z0-9_.:@*-]+)*)$/
const PKCS8_SEED_OFFSET = 16

function checkCapabilities (capabilities: readonly Capability[]): void {
  if (capabilities.length === 0) {
    throw new TypeError('Cannot issue capability token: no capability given (expected ABILITY:RESOURCE, e.g. deploy:brane/*)')
  }
  for (const { ability, resource } of capabilities) {
    if (!/^(?:\*|[a-z][a-z0-9_-]*)$/.test(ability)) {
      throw new TypeError(`Cannot issue capability token: ability "${ability}" is not a lowercase name or "*"`)
    }
    if (!NAME.test(resource) || (resource.includes('*') && resource !== '*' && !resource.endsWith('/*')) || resource.indexOf('*') !== resource.lastIndexOf('*')) {
      throw new TypeError(`Cannot issue capability token: resource "${resource}" is not a name, a prefix ending in "/*" or "*"`)
    }
  }
}

/** Parse `ABILITY:RESOURCE` (as the CLI takes it) */
export function parseCapability (text: string): Capability {
  const at = text.indexOf(':')
  if (at <= 0 || at === text.length - 1) {
    throw new TypeError(`Cannot parse capability "${text}": expected ABILITY:RESOURCE, e.g. deploy:brane/* or invoke:route/hello`)
  }
  const capability = { ability: text.slice(0, at), resource: text.slice(at + 1) }
  checkCapabilities([capability])
  return capability
}

/** Every pattern that matches `resource`: itself, each `prefix/*` above it, and `*` */
export function resourcePatterns (resource: string): string[] {
  const patterns = [resource, '*']
  const parts = resource.split('/')
  for (let i = parts.length - 1; i >= 1; i--) {
    patterns.push(`${parts.slice(0, i).join('/')}/*`)
  }
  if (resource.endsWith('/*')) {
    // a request on a whole family (e.g. all branes' logs) needs a grant on that family or wider
    patterns.splice(0, 1, resource)
  }
  return [...new Set(patterns)]
}

/** True if pattern `outer` covers every resource `inner` covers */
function covers (outer: string, inner: string): boolean {
  if (outer === '*' || outer === inner) {
    return true
  }
  if (outer.endsWith('/*')) {
    const prefix = outer.slice(0, -1)
    return inner.startsWith(prefix) && inner !== '*'
  }
  return false
}

function allows (granted: readonly Capability[], wanted: Capability): boolean {
  return granted.some((g) => (g.ability === '*' || g.ability === wanted.ability) && covers(g.resource, wanted.resource))
}

/** Decoded root keys (biscuit-wasm only borrows them), bounded like keys.ts's cache */
const ROOT_KEYS_MAX = 256
const rootKeys = new Map<string, PublicKey>()

function rootPublicKey (did: string): PublicKey {
  let key = rootKeys.get(did)
  if (key === undefined) {
    key = biscuit().PublicKey.fromBytes(publicKeyFromDid(did), 0)
    if (rootKeys.size >= ROOT_KEYS_MAX) {
      const oldest = rootKeys.keys().next().value
      if (oldest !== undefined) {
        rootKeys.get(oldest)?.free()
        rootKeys.delete(oldest)
      }
    }
    rootKeys.set(did, key)
  }
  return key
}

function expiry (options: IssueCapabilityOptions): Date {
  const ttl = options.ttlSeconds ?? 3600
  if (!Number.isFinite(ttl) || ttl <= 0) {
    throw new RangeError(`Cannot issue capability token: ttl must be a positive number of seconds, got ${ttl}`)
  }
  return new Date(Math.floor((options.now ?? Date.now()) / 1000 + ttl) * 1000)
}

function code (subject: string, fact: 'right' | 'attenuated', capabilities: readonly Capability[], expires: Date): { source: string, params: Record<string, unknown> } {
  publicKeyFromDid(subject)
  const params: Record<string, unknown> = { subject, expires }
  const lines = ['subject({subject});', 'expires({expires});', 'check if time($t), $t <= {expires};']
  capabilities.forEach((c, i) => {
    params[`a${i}`] = c.ability
    params[`r${i}`] = c.resource
    lines.push(`${fact}({a${i}}, {r${i}});`)
  })
  if (fact === 'attenuated') {
    lines.push('check if operation($op), resource_pattern($p), attenuated($a, $p), $a == $op || $a == "*";')
  }
  return { source: lines.join('\n'), params: Object.fromEntries(Object.entries(params).map(([k, v]) => [k, v instanceof Date ? { date: v.toISOString() } : v])) }
}

function privateKeyOf (key: NodeKey): PrivateKey {
  const der = createPrivateKey(key.exportPem()).export({ format: 'der', type: 'pkcs8' })
  return biscuit().PrivateKey.fromBytes(new Uint8Array(der.subarray(PKCS8_SEED_OFFSET, PKCS8_SEED_OFFSET + 32)), 0)
}

/**
 * Issue a token signed by `root` (the first link) granting `capabilities` to `subject`.
 *
 * @example
 * ```ts
 * const token = issueCapability(nodeKey, { subject: alice, capabilities: [{ ability: 'deploy', resource: 'brane/*' }] })
 * ```
 */
export function issueCapability (root: NodeKey, options: IssueCapabilityOptions): string {
  checkCapabilities(options.capabilities)
  const { source, params } = code(options.subject, 'right', options.capabilities, expiry(options))
  const builder = biscuit().Biscuit.builder()
  builder.addCodeWithParameters(source, params, {})
  const key = privateKeyOf(root)
  const token = builder.build(key)
  try {
    return token.toBase64()
  } finally {
    token.free()
    key.free()
  }
}

function parse (token: string, roots: readonly string[]): { token: Biscuit, root: string } {
  if (typeof token !== 'string' || token.length === 0 || token.length > MAX_TOKEN_CHARS || !/^[A-Za-z0-9_=-]+$/.test(token)) {
    throw new CapabilityTokenError('Malformed capability token: expected a base64url Biscuit token', 'malformed')
  }
  let lastError: unknown
  for (const root of roots) {
    try {
      return { token: biscuit().Biscuit.fromBase64(token, rootPublicKey(root)), root }
    } catch (err) {
      lastError = err
    }
  }
  const reason = describe(lastError)
  if (reason.includes('Signature') || reason.includes('signature')) {
    throw new CapabilityTokenError(`Capability token refused: a signature of its chain does not verify against the trusted roots (${roots.length}): ${reason}`, 'signature')
  }
  throw new CapabilityTokenError(`Capability token refused: it does not decode as a Biscuit signed by a trusted root (${roots.length} trusted): ${reason}`, 'malformed')
}

function describe (err: unknown): string {
  if (err instanceof Error) {
    return err.message
  }
  return JSON.stringify(err) ?? String(err)
}

/** "block 1: check if …" for each failed check of a biscuit FailedLogic error, else the raw error */
function failedChecks (detail: string): string {
  try {
    const parsed = JSON.parse(detail) as { FailedLogic?: { Unauthorized?: { checks?: unknown[] }, NoMatchingPolicy?: { checks?: unknown[] } } }
    const checks = parsed.FailedLogic?.Unauthorized?.checks ?? parsed.FailedLogic?.NoMatchingPolicy?.checks
    if (checks === undefined) {
      return detail
    }
    if (checks.length === 0) {
      return 'the root link does not grant it'
    }
    const links = checks.map((c) => (c as { Block?: { block_id: number } }).Block?.block_id).filter((id) => id !== undefined)
    return `${links.length === 1 ? 'link' : 'links'} ${[...new Set(links)].join(', ')} of the chain narrowed it away`
  } catch {
    return detail
  }
}

const FACT = /^(subject|right|attenuated|expires)\((.*)\);$/

function readLink (source: string, id: string): CapabilityLink {
  let subject: string | undefined
  let expires: string | undefined
  const capabilities: Capability[] = []
  for (const line of source.split('\n')) {
    const match = FACT.exec(line.trim())
    if (match === null) {
      continue
    }
    const args = match[2] ?? ''
    if (match[1] === 'subject') {
      subject = JSON.parse(args) as string
    } else if (match[1] === 'expires') {
      expires = args
    } else {
      const pair = JSON.parse(`[${args}]`) as unknown[]
      if (typeof pair[0] === 'string' && typeof pair[1] === 'string') {
        capabilities.push({ ability: pair[0], resource: pair[1] })
      }
    }
  }
  return { subject, capabilities, expires, id, source }
}

function info (parsed: Biscuit, root: string): CapabilityInfo {
  const ids = parsed.getRevocationIdentifiers() as string[]
  const links: CapabilityLink[] = []
  for (let i = 0; i < parsed.countBlocks(); i++) {
    links.push(readLink(parsed.getBlockSource(i), ids[i] ?? ''))
  }
  const subject = links.findLast((l) => l.subject !== undefined)?.subject
  const expires = links.map((l) => l.expires).filter((e): e is string => e !== undefined).sort()[0]
  return { root, links, subject, expires, id: ids.at(-1) ?? '' }
}

/**
 * What a token says (every link, its ids), after checking its signatures against `roots`.
 * It does not check expiry, revocation or any ability: use {@link verifyCapability}.
 */
export function inspectCapability (token: string, options: { roots: readonly string[] }): CapabilityInfo {
  const { token: parsed, root } = parse(token, options.roots)
  try {
    return info(parsed, root)
  } finally {
    parsed.free()
  }
}

/** The effective grants of a chain: those of the root block, narrowed by each delegation */
function effective (links: readonly CapabilityLink[]): Capability[] {
  let granted = [...(links[0]?.capabilities ?? [])]
  for (const link of links.slice(1)) {
    const narrowed: Capability[] = []
    for (const g of granted) {
      for (const a of link.capabilities) {
        if ((a.ability === '*' || a.ability === g.ability || g.ability === '*') && (covers(a.resource, g.resource) || covers(g.resource, a.resource))) {
          narrowed.push({ ability: a.ability === '*' ? g.ability : a.ability, resource: covers(a.resource, g.resource) ? g.resource : a.resource })
        }
      }
    }
    granted = narrowed
  }
  return granted
}

/**
 * Delegate `token` to `subject` with `capabilities`, each of which the token must already
 * allow (a delegation can only narrow). The expiry is at most the parent's.
 *
 * @throws {CapabilityTokenError} `escalation` if a capability is not covered by the parent
 */
export function delegateCapability (token: string, options: DelegateCapabilityOptions): string {
  checkCapabilities(options.capabilities)
  const { token: parsed, root } = parse(token, options.roots)
  try {
    return delegateParsed(parsed, root, options)
  } finally {
    parsed.free()
  }
}

function delegateParsed (parsed: Biscuit, root: string, options: DelegateCapabilityOptions): string {
  const parent = info(parsed, root)
  const granted = effective(parent.links)
  for (const wanted of options.capabilities) {
    if (!allows(granted, wanted)) {
      throw new CapabilityTokenError(`Cannot delegate ${wanted.ability}:${wanted.resource}: the parent token allows only ${granted.map((g) => `${g.ability}:${g.resource}`).join(', ') || 'nothing'}`, 'escalation')
    }
  }
  let expires = expiry(options)
  if (parent.expires !== undefined && new Date(parent.expires) < expires) {
    expires = new Date(parent.expires)
  }
  const { source, params } = code(options.subject, 'attenuated', options.capabilities, expires)
  const block = biscuit().Biscuit.block_builder()
  block.addCodeWithParameters(source, params, {})
  const child = parsed.appendBlock(block)
  try {
    return child.toBase64()
  } finally {
    child.free()
  }
}

/**
 * Verify `token` offline: its chain of signatures from a trusted root, every link's
 * expiry and attenuation, `ability` on `resource`, and revocation of any link.
 *
 * @throws {CapabilityTokenError} with `reason` `malformed`, `signature`, `revoked`, `expired` or `denied`
 * @example
 * ```ts
 * const { subject } = verifyCapability(token, { ability: 'deploy', resource: 'brane/fetch', roots: [node.did], revoked })
 * ```
 */
export function verifyCapability (token: string, options: VerifyCapabilityOptions): VerifiedCapability {
  const { token: parsed, root } = parse(token, options.roots)
  try {
    return verifyParsed(parsed, root, options)
  } finally {
    // wasm-bindgen objects hold wasm memory until freed (the finalizer runs late, if at all)
    parsed.free()
  }
}

function verifyParsed (parsed: Biscuit, root: string, options: VerifyCapabilityOptions): VerifiedCapability {
  const ids = parsed.getRevocationIdentifiers() as string[]
  const revokedId = ids.find((id) => options.revoked?.has(id) === true)
  if (revokedId !== undefined) {
    throw new CapabilityTokenError(`Capability token refused: it is revoked (id ${revokedId.slice(0, 16)}…)`, 'revoked')
  }
  const now = new Date(options.now ?? Date.now())
  const builder = new (biscuit().AuthorizerBuilder)()
  const params: Record<string, unknown> = { now: { date: now.toISOString() }, op: options.ability }
  const lines = ['time({now});', 'operation({op});']
  resourcePatterns(options.resource).forEach((p, i) => {
    params[`p${i}`] = p
    lines.push(`resource_pattern({p${i}});`)
  })
  lines.push('allow if operation($op), resource_pattern($p), right($a, $p), $a == $op || $a == "*";')
  builder.addCodeWithParameters(lines.join('\n'), params, {})
  try {
    const authorizer = builder.buildAuthenticated(parsed)
    try {
      authorizer.authorizeWithLimits(RUN_LIMITS)
    } finally {
      authorizer.free()
    }
  } catch (err) {
    const detail = describe(err)
    if (detail.includes('time($t)')) {
      const read = info(parsed, root)
      throw new CapabilityTokenError(`Capability token refused: it expired (${read.expires ?? 'expiry unknown'}, now ${now.toISOString()})`, 'expired', { cause: err })
    }
    if (detail.includes('RunLimit')) {
      throw new CapabilityTokenError(`Capability token refused: its checks exceed the verifier's limits (${detail})`, 'denied', { cause: err })
    }
    throw new CapabilityTokenError(`Capability token refused: it does not allow "${options.ability}" on "${options.resource}": ${failedChecks(detail)}`, 'denied', { cause: err })
  }
  const read = info(parsed, root)
  const lineage = read.links.map((l) => l.subject ?? '')
  return { subject: read.subject ?? '', root, lineage, id: read.id, expires: read.expires }
}

/** True if `did` is a did:key this module can use as a root */
export function isRootDid (did: string): boolean {
  try {
    rootPublicKey(did)
    return true
  } catch {
    return false
  }
}

/** The did:key of a raw Ed25519 key, re-exported for callers holding a Biscuit root key */
export { didFromPublicKey }

/** File in the Omega home that holds revoked token ids */
export const REVOCATIONS_FILE = 'revoked.json'

/**
 * Revoked capability token ids (Biscuit revocation ids, 128 hex digits), persisted in
 * `<home>/revoked.json`. Revoking the id of a link refuses that link and every token
 * delegated from it. `onRevoked` lets the mesh gossip revocations; `add` takes revocations
 * heard from peers (it does not call the hooks again).
 */
export class RevocationList {
  readonly #file: string
  readonly #ids = new Set<string>()
  readonly #listeners = new Set<(id: string) => void>()

  constructor (home: string) {
    this.#file = join(home, REVOCATIONS_FILE)
  }

  get file (): string {
    return this.#file
  }

  /** Read the persisted list (missing file: empty) */
  async load (): Promise<this> {
    try {
      const ids = JSON.parse(await readFile(this.#file, 'utf8')) as unknown
      if (Array.isArray(ids)) {
        for (const id of ids) {
          if (typeof id === 'string') {
            this.#ids.add(id)
          }
        }
      }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
        throw new CapabilityTokenError(`Cannot read revocation list "${this.#file}": ${describe(err)}`, 'malformed', { cause: err })
      }
    }
    return this
  }

  has (id: string): boolean {
    return this.#ids.has(id)
  }

  get size (): number {
    return this.#ids.size
  }

  ids (): string[] {
    return [...this.#ids]
  }

  /** Revoke `id`, persist the list (atomically) and tell every `onRevoked` listener */
  async revoke (id: string): Promise<void> {
    if (!/^[0-9a-f]{128}$/.test(id)) {
      throw new TypeError(`Cannot revoke "${id}": expected a token id of 128 hex digits (see "omega token inspect")`)
    }
    await this.add([id])
    for (const listener of this.#listeners) {
      listener(id)
    }
  }

  /** Add ids (e.g. heard from peers) and persist them, without calling the hooks */
  async add (ids: readonly string[]): Promise<void> {
    const before = this.#ids.size
    for (const id of ids) {
      this.#ids.add(id)
    }
    if (this.#ids.size === before) {
      return
    }
    await mkdir(join(this.#file, '..'), { recursive: true, mode: 0o700 })
    await writeFileAtomic(this.#file, JSON.stringify([...this.#ids], null, 1), { mode: 0o600 })
  }

  /** Call `listener(id)` on each local revocation; returns a function that removes it */
  onRevoked (listener: (id: string) => void): () => void {
    this.#listeners.add(listener)
    return () => { this.#listeners.delete(listener) }
  }
}
