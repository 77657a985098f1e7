/**
 * Settlement receipts: what a node ran for whom over a period, signed by the node's
 * Ed25519 key and hash-chained (each receipt names the BLAKE3 digest of the previous
 * receipt's canonical bytes), so a third party can check a run of them offline.
 *
 * Encoding: canonical JSON (keys sorted at every level, no whitespace; the same
 * `canonicalJson` as trace records). The signature covers the canonical JSON of the
 * receipt without `signature`; the chain digest covers the whole receipt (with it).
 * An export is JSON Lines: one canonical receipt per line, then one export trailer
 * (signed too) naming the last receipt, so a truncated export is detected.
 */
import { SettlementVerificationError } from '../errors.ts'
import { blake3Hex, canonicalJson, signDocument, verifyDocument, type NodeKey } from '../identity/index.ts'

/** `prev` of the first receipt of a node */
export const GENESIS = '0'.repeat(64)

/** Usage of one brane deployed by one deployer over a receipt's period */
export interface UsageLine {
  readonly brane: string
  /** did:key of whoever deployed the brane on this node */
  readonly deployer: string
  /** requests and event deliveries handled (failed ones included) */
  readonly invocations: number
  readonly failures: number
  /** guest CPU time, ms (execution time where CPU time is not measured) */
  readonly cpuMs: number
  /** linear memory × wall time, MiB·s */
  readonly memMiBs: number
  readonly bytesIn: number
  readonly bytesOut: number
}

export interface Receipt {
  readonly v: 1
  readonly kind: 'receipt'
  /** the signing node, did:key */
  readonly node: string
  /** 0, 1, 2, … per node, without gaps */
  readonly seq: number
  /** BLAKE3 (hex) of the previous receipt's canonical bytes; {@link GENESIS} for seq 0 */
  readonly prev: string
  /** the metered period, ISO 8601 */
  readonly from: string
  readonly to: string
  readonly usage: readonly UsageLine[]
  /** base64url Ed25519 signature */
  readonly signature: string
}

export interface ExportTrailer {
  readonly v: 1
  readonly kind: 'export'
  readonly node: string
  readonly count: number
  readonly firstSeq: number
  readonly lastSeq: number
  /** BLAKE3 of the last receipt's canonical bytes */
  readonly head: string
  readonly exportedAt: string
  readonly signature: string
}

function signed<T extends { signature: string }> (key: NodeKey, body: Omit<T, 'signature'>): T {
  return signDocument(body, key) as unknown as T
}

/** The canonical bytes of a receipt (what the next one's `prev` digests) */
export function receiptBytes (receipt: Receipt | ExportTrailer): Buffer {
  return Buffer.from(canonicalJson(receipt))
}

export function receiptDigest (receipt: Receipt): string {
  return blake3Hex(receiptBytes(receipt))
}

/** Sign the receipt that follows `previous` (undefined: the node's first) */
export function signReceipt (key: NodeKey, previous: Receipt | undefined, period: { from: string, to: string }, usage: readonly UsageLine[]): Receipt {
  return signed<Receipt>(key, {
    v: 1,
    kind: 'receipt',
    node: key.did,
    seq: previous === undefined ? 0 : previous.seq + 1,
    prev: previous === undefined ? GENESIS : receiptDigest(previous),
    from: period.from,
    to: period.to,
    usage
  })
}

/** The JSON Lines export of `receipts` (consecutive, one node), with its signed trailer */
export function exportReceipts (key: NodeKey, receipts: readonly Receipt[], now = new Date()): string {
  const last = receipts.at(-1)
  const trailer = signed<ExportTrailer>(key, {
    v: 1,
    kind: 'export',
    node: key.did,
    count: receipts.length,
    firstSeq: receipts[0]?.seq ?? 0,
    lastSeq: last?.seq ?? -1,
    head: last === undefined ? GENESIS : receiptDigest(last),
    exportedAt: now.toISOString()
  })
  return [...receipts, trailer].map((r) => canonicalJson(r) + '\n').join('')
}

export interface VerifyReport {
  readonly node: string
  readonly count: number
  readonly firstSeq: number
  readonly lastSeq: number
  readonly head: string
  /** totals per brane and deployer over every receipt */
  readonly totals: readonly UsageLine[]
}

function fail (where: string, why: string): never {
  throw new SettlementVerificationError(`Settlement receipts invalid at ${where}: ${why}`)
}

function checkSignature (where: string, doc: Receipt | ExportTrailer): void {
  const { signature } = doc
  if (typeof signature !== 'string' || !/^[A-Za-z0-9_-]{86}$/.test(signature)) {
    fail(where, 'the signature is not 64 bytes of base64url')
  }
  const bytes = Buffer.from(signature, 'base64url')
  // base64url's last character carries 2 unused bits: only the canonical spelling is accepted
  if (bytes.toString('base64url') !== signature) {
    fail(where, 'the signature is not in canonical base64url')
  }
  let ok = false
  try {
    ok = verifyDocument(doc, doc.node)
  } catch (err) {
    fail(where, `the signer "${String(doc.node)}" is not an Ed25519 did:key (${(err as Error).message})`)
  }
  if (!ok) {
    fail(where, `the signature does not verify against ${doc.node}`)
  }
}

const USAGE_KEYS = ['brane', 'deployer', 'invocations', 'failures', 'cpuMs', 'memMiBs', 'bytesIn', 'bytesOut']

/**
 * Check an export offline: every line canonical, every signature, one node, `seq`
 * consecutive, each `prev` the digest of the line before, periods in order, and the
 * trailer naming the last receipt. `node` pins the expected signer.
 *
 * @throws {SettlementVerificationError} naming the first bad line (and receipt seq)
 */
export function verifyExport (text: string, options: { node?: string } = {}): VerifyReport {
  const lines = text.split('\n')
  if (lines.at(-1) === '') {
    lines.pop()
  }
  if (lines.length === 0) {
    fail('line 1', 'the file is empty')
  }
  const receipts: Receipt[] = []
  let trailer: ExportTrailer | undefined
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i] ?? ''
    const where = `line ${i + 1}`
    let doc: Record<string, unknown>
    try {
      doc = JSON.parse(line) as Record<string, unknown>
    } catch {
      fail(where, 'not valid JSON')
    }
    if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) {
      fail(where, 'not a JSON object')
    }
    if (canonicalJson(doc) !== line) {
      fail(where, 'not in canonical form (keys sorted, no whitespace): the bytes were altered')
    }
    if (trailer !== undefined) {
      fail(where, 'a line follows the export trailer')
    }
    const at = typeof doc.seq === 'number' ? `${where} (receipt seq ${doc.seq})` : where
    if (doc.v !== 1 || typeof doc.node !== 'string') {
      fail(at, 'expected version 1 and a node did')
    }
    if (options.node !== undefined && doc.node !== options.node) {
      fail(at, `signed by ${doc.node}, expected ${options.node}`)
    }
    const first = receipts[0]
    if (first !== undefined && doc.node !== first.node) {
      fail(at, `signed by ${doc.node}, but the receipts before by ${first.node}`)
    }
    if (doc.kind === 'export') {
      trailer = doc as unknown as ExportTrailer
      checkSignature(where, trailer)
      continue
    }
    if (doc.kind !== 'receipt') {
      fail(at, `unknown kind ${JSON.stringify(doc.kind)}`)
    }
    const receipt = doc as unknown as Receipt
    if (!Number.isSafeInteger(receipt.seq) || receipt.seq < 0 || typeof receipt.prev !== 'string' || typeof receipt.from !== 'string' || typeof receipt.to !== 'string' || !Array.isArray(receipt.usage)) {
      fail(at, 'missing or invalid fields (seq, prev, from, to, usage)')
    }
    for (const u of receipt.usage) {
      if (u === null || typeof u !== 'object' || USAGE_KEYS.some((k) => !(k in u)) || Object.keys(u).length !== USAGE_KEYS.length) {
        fail(at, 'a usage line has missing or unknown fields')
      }
    }
    checkSignature(at, receipt)
    const previous = receipts.at(-1)
    if (previous === undefined) {
      if (receipt.seq === 0 && receipt.prev !== GENESIS) {
        fail(at, 'the first receipt of a node must have prev = 0…0')
      }
    } else {
      if (receipt.seq !== previous.seq + 1) {
        fail(at, `expected seq ${previous.seq + 1} after ${previous.seq}: ${receipt.seq < previous.seq + 1 ? 'receipts are out of order' : `receipt${receipt.seq - previous.seq > 2 ? 's' : ''} ${previous.seq + 1}${receipt.seq - previous.seq > 2 ? `–${receipt.seq - 1}` : ''} missing`}`)
      }
      if (receipt.prev !== receiptDigest(previous)) {
        fail(at, `prev does not match the BLAKE3 digest of receipt ${previous.seq}: the chain is broken`)
      }
      if (receipt.from < previous.to) {
        fail(at, `its period starts (${receipt.from}) before the previous one ended (${previous.to})`)
      }
    }
    if (receipt.to < receipt.from) {
      fail(at, 'its period ends before it starts')
    }
    receipts.push(receipt)
  }
  if (trailer === undefined) {
    fail(`line ${lines.length + 1}`, 'the export trailer is missing: the file is truncated')
  }
  const last = receipts.at(-1)
  if (trailer.count !== receipts.length || trailer.lastSeq !== (last?.seq ?? -1) || trailer.firstSeq !== (receipts[0]?.seq ?? 0) ||
    trailer.head !== (last === undefined ? GENESIS : receiptDigest(last))) {
    fail(`line ${lines.length}`, `the export trailer names ${trailer.count} receipts up to seq ${trailer.lastSeq}, the file holds ${receipts.length}${last === undefined ? '' : ` up to seq ${last.seq}`}: receipts were dropped or added`)
  }
  const totals = new Map<string, { -readonly [K in keyof UsageLine]: UsageLine[K] }>()
  for (const r of receipts) {
    for (const u of r.usage) {
      const key = `${u.brane}\u0000${u.deployer}`
      const t = totals.get(key)
      if (t === undefined) {
        totals.set(key, { ...u })
      } else {
        t.invocations += u.invocations
        t.failures += u.failures
        t.cpuMs += u.cpuMs
        t.memMiBs += u.memMiBs
        t.bytesIn += u.bytesIn
        t.bytesOut += u.bytesOut
      }
    }
  }
  return { node: trailer.node, count: receipts.length, firstSeq: trailer.firstSeq, lastSeq: trailer.lastSeq, head: trailer.head, totals: [...totals.values()] }
}
