/**
 * Snapshot files: one JSON document holding a pinned brane's linear memory (gzip,
 * then base64), a BLAKE3 digest per memory, and the node's Ed25519 signature over
 * the canonical JSON of everything else. `omega snapshot` writes one, `omega restore`
 * sends it back; the node checks it whole before anything is touched.
 */
import { constants as bufferConstants } from 'node:buffer'
import { promisify } from 'node:util'
import { constants as zlibConstants, gunzip, gzip } from 'node:zlib'
import { SnapshotError } from '../errors.ts'
import { blake3Hex, signDocument, verifyDocument, type NodeKey } from '../identity/index.ts'
import type { BraneSnapshot, GlobalState, Lifecycle } from '../runtime/wasm/index.ts'

const gzipAsync = promisify(gzip)
const gunzipAsync = promisify(gunzip)

/** The `format` of a snapshot document */
export const SNAPSHOT_FORMAT = 'omega-snapshot'
/** The version of the snapshot document this node writes and reads */
export const SNAPSHOT_VERSION = 1
/** The largest linear memory wasm32 has: 4 GiB */
const MAX_MEMORY_BYTES = 2 ** 32
const WASM_PAGE_BYTES = 65_536
const HEX_64 = /^[0-9a-f]{64}$/

/** One linear memory in a snapshot: where it is in the payload and what it hashes to */
export interface SnapshotMemory {
  /** its position among the instance's memories (and in the payload) */
  readonly index: number
  readonly byteLength: number
  /** BLAKE3 of its bytes, 64 hex digits */
  readonly blake3: string
}

/**
 * A signed snapshot of a pinned brane. `signature` is the node key's Ed25519
 * signature (base64url) of the canonical JSON of every other field.
 */
export interface SnapshotDocument {
  readonly format: typeof SNAPSHOT_FORMAT
  readonly version: typeof SNAPSHOT_VERSION
  readonly brane: string
  /** the component's content address, `b3:…` */
  readonly component: string
  /** the did:key of the node that took it and signed it */
  readonly node: string
  /** ISO 8601 */
  readonly createdAt: string
  readonly lifecycle: Lifecycle
  readonly memories: readonly SnapshotMemory[]
  /** the instance's exported mutable globals */
  readonly globals: readonly GlobalState[]
  /** how `payload` is encoded: the memories one after another, gzip, base64 */
  readonly encoding: 'gzip+base64'
  readonly payload: string
  readonly signature: string
}

/** Options of {@link sealSnapshot} */
export interface SealSnapshotOptions {
  /** @default new Date() */
  readonly now?: Date
}

/** A verified snapshot: what a brane restores, and when it was taken */
export interface OpenedSnapshot extends BraneSnapshot {
  readonly createdAt: string
}

/** Options of {@link openSnapshot} */
export interface OpenSnapshotOptions {
  /** this node's did: only snapshots it signed are accepted */
  readonly did: string
  /** the brane it is for: a snapshot of another brane is refused */
  readonly brane: string
}

/**
 * Turns a brane's snapshot into a signed document.
 *
 * @example
 * ```ts
 * const doc = await sealSnapshot(await brane.snapshot(), nodeKey)
 * await writeFile('counter.snap', JSON.stringify(doc))
 * ```
 */
export async function sealSnapshot (snapshot: BraneSnapshot, key: NodeKey, options: SealSnapshotOptions = {}): Promise<SnapshotDocument> {
  // level 1: memories are mostly zero pages, which any level shrinks about as well,
  // and a 64 MiB memory compresses several times faster than at the default level
  const compressed = await gzipAsync(Buffer.concat(snapshot.memories), { level: zlibConstants.Z_BEST_SPEED })
  const unsigned: Omit<SnapshotDocument, 'signature'> = {
    format: SNAPSHOT_FORMAT,
    version: SNAPSHOT_VERSION,
    brane: snapshot.brane,
    component: snapshot.componentId,
    node: key.did,
    createdAt: (options.now ?? new Date()).toISOString(),
    lifecycle: snapshot.lifecycle,
    memories: snapshot.memories.map((bytes, index) => ({ index, byteLength: bytes.byteLength, blake3: blake3Hex(bytes) })),
    globals: snapshot.globals,
    encoding: 'gzip+base64',
    payload: compressed.toString('base64')
  }
  return signDocument(unsigned, key)
}

/**
 * Checks a snapshot document whole (its shape, that this node signed it, the
 * signature, every memory's digest) and decodes it. Nothing is restored here.
 *
 * @throws SnapshotError naming what failed: not a snapshot, signed by another node,
 * a signature or digest that does not verify (the file was changed), another brane
 */
export async function openSnapshot (doc: unknown, options: OpenSnapshotOptions): Promise<OpenedSnapshot> {
  const what = `Cannot restore snapshot into brane "${options.brane}"`
  const invalid = shapeProblems(doc)
  if (invalid.length > 0) {
    throw new SnapshotError(`${what}: not an Omega snapshot document (${invalid.join('; ')})`)
  }
  const document = doc as SnapshotDocument
  if (document.node !== options.did) {
    throw new SnapshotError(`${what}: it was signed by ${document.node}, not by this node's key (${options.did}); only snapshots this node took can be restored here`)
  }
  let signed = false
  try {
    signed = verifyDocument(document, document.node)
  } catch (err) {
    throw new SnapshotError(`${what}: the node identity "${document.node}" is not a valid did:key`, { cause: err })
  }
  // check the payload even when the signature fails, to say whether the memory changed
  const decoded = await decodePayload(document)
  const problems: string[] = []
  if (!signed) {
    problems.push(`the signature does not verify against ${document.node} (the document was changed after it was signed)`)
  }
  problems.push(...decoded.problems)
  if (problems.length > 0) {
    throw new SnapshotError(`${what}: ${problems.join('; ')}`)
  }
  if (document.brane !== options.brane) {
    throw new SnapshotError(`${what}: it is a snapshot of brane "${document.brane}"`)
  }
  return {
    brane: document.brane,
    componentId: document.component,
    lifecycle: document.lifecycle,
    createdAt: document.createdAt,
    memories: decoded.memories,
    globals: document.globals
  }
}

/** The payload's memories, and what does not match the header */
async function decodePayload (doc: SnapshotDocument): Promise<{ memories: Uint8Array[], problems: string[] }> {
  const total = doc.memories.reduce((sum, m) => sum + m.byteLength, 0)
  let bytes: Buffer
  try {
    // never inflate past what the header declares
    bytes = await gunzipAsync(Buffer.from(doc.payload, 'base64'), { maxOutputLength: Math.max(1, total) })
  } catch (err) {
    return { memories: [], problems: [`the payload is not valid gzip of ${total} bytes (${(err as Error).message}): it was changed or truncated`] }
  }
  if (bytes.byteLength !== total) {
    return { memories: [], problems: [`the payload holds ${bytes.byteLength} bytes, the memories ${total}`] }
  }
  const memories: Uint8Array[] = []
  const problems: string[] = []
  let offset = 0
  for (const memory of doc.memories) {
    const slice = bytes.subarray(offset, offset + memory.byteLength)
    offset += memory.byteLength
    if (blake3Hex(slice) !== memory.blake3) {
      problems.push(`memory ${memory.index} does not match its BLAKE3 digest: the payload was changed`)
    }
    memories.push(slice)
  }
  return { memories, problems }
}

/** What is missing or malformed in a would-be snapshot document */
function shapeProblems (doc: unknown): string[] {
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) {
    return ['expected a JSON object']
  }
  const d = doc as Record<string, unknown>
  const problems: string[] = []
  if (d.format !== SNAPSHOT_FORMAT) {
    problems.push(`format: expected "${SNAPSHOT_FORMAT}"`)
  }
  if (d.version !== SNAPSHOT_VERSION) {
    problems.push(`version: expected ${SNAPSHOT_VERSION}, got ${JSON.stringify(d.version)}`)
  }
  for (const key of ['brane', 'component', 'node', 'createdAt', 'payload', 'signature'] as const) {
    if (typeof d[key] !== 'string') {
      problems.push(`${key}: expected a string`)
    }
  }
  if (d.lifecycle !== 'pinned') {
    problems.push('lifecycle: expected "pinned"')
  }
  if (d.encoding !== 'gzip+base64') {
    problems.push('encoding: expected "gzip+base64"')
  }
  if (!Array.isArray(d.memories) || !d.memories.every((m, i) => isMemory(m, i))) {
    problems.push('memories: expected [{ index, byteLength, blake3 }] in order, each a whole number of 64 KiB pages up to 4 GiB')
  } else if ((d.memories as SnapshotMemory[]).reduce((sum, m) => sum + m.byteLength, 0) > bufferConstants.MAX_LENGTH) {
    problems.push('memories: more bytes than this node can hold at once')
  }
  if (!Array.isArray(d.globals) || !d.globals.every(isGlobal)) {
    problems.push('globals: expected [{ type: "number" | "bigint", value }]')
  }
  return problems
}

function isMemory (value: unknown, index: number): boolean {
  const m = value as Partial<SnapshotMemory> | null
  return m !== null && typeof m === 'object' && m.index === index &&
    Number.isInteger(m.byteLength) && (m.byteLength as number) >= 0 && (m.byteLength as number) <= MAX_MEMORY_BYTES &&
    (m.byteLength as number) % WASM_PAGE_BYTES === 0 && typeof m.blake3 === 'string' && HEX_64.test(m.blake3)
}

function isGlobal (value: unknown): boolean {
  const g = value as Partial<GlobalState> | null
  return g !== null && typeof g === 'object' && typeof g.value === 'string' &&
    ((g.type === 'number' && /^[0-9a-f]{16}$/.test(g.value)) || (g.type === 'bigint' && /^-?\d{1,20}$/.test(g.value)))
}
