/**
 * Trace end records: the hops of a trace, summarised and signed by the node that
 * produced them, so anyone with the record can check it offline against the node's
 * did:key. The signature covers the canonical JSON of the record without `signature`
 * (keys sorted, no whitespace), including a BLAKE3 digest of the hops.
 */
import { blake3Hex, verify, type NodeKey } from '../identity/index.ts'
import type { Hop } from './queue.ts'

export interface TraceEndRecord {
  readonly version: 1
  readonly traceId: string
  /** the node that signed, did:key */
  readonly node: string
  readonly hops: readonly Hop[]
  /** BLAKE3 of the canonical JSON of `hops` */
  readonly hopsDigest: string
  readonly count: number
  readonly bytes: number
  /** ms since the epoch */
  readonly startedAt: number
  readonly endedAt: number
  readonly signedAt: string
  /** base64url Ed25519 signature */
  readonly signature: string
}

/** JSON with object keys sorted at every level and no whitespace */
export function canonicalJson (value: unknown): string {
  if (value === null || typeof value !== 'object') {
    return JSON.stringify(value)
  }
  if (Array.isArray(value)) {
    return `[${value.map(canonicalJson).join(',')}]`
  }
  const entries = Object.entries(value as Record<string, unknown>)
    .filter(([, v]) => v !== undefined)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
  return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`
}

/** Build and sign the end record of a trace */
export function signTrace (traceId: string, hops: readonly Hop[], key: NodeKey, now = new Date()): TraceEndRecord {
  const unsigned = {
    version: 1 as const,
    traceId,
    node: key.did,
    hops,
    hopsDigest: blake3Hex(Buffer.from(canonicalJson(hops))),
    count: hops.length,
    bytes: hops.reduce((sum, h) => sum + h.bytes, 0),
    startedAt: Math.min(...hops.map((h) => h.startedAt)),
    endedAt: Math.max(...hops.map((h) => h.endedAt)),
    signedAt: now.toISOString()
  }
  const signature = Buffer.from(key.sign(Buffer.from(canonicalJson(unsigned)))).toString('base64url')
  return { ...unsigned, signature }
}

/**
 * Check an end record offline: the hops match their digest and the signature verifies
 * against the record's node did:key. Returns the reasons it fails (empty when valid).
 */
export function verifyTrace (record: TraceEndRecord): string[] {
  const problems: string[] = []
  if (record === null || typeof record !== 'object' || record.version !== 1 || !Array.isArray(record.hops) || typeof record.signature !== 'string') {
    return ['not a trace end record']
  }
  const { signature, ...unsigned } = record
  if (blake3Hex(Buffer.from(canonicalJson(record.hops))) !== record.hopsDigest) {
    problems.push('the hops do not match hopsDigest')
  }
  if (record.count !== record.hops.length) {
    problems.push('count does not match the hops')
  }
  let valid = false
  try {
    valid = verify(record.node, Buffer.from(canonicalJson(unsigned)), Buffer.from(signature, 'base64url'))
  } catch (err) {
    problems.push(`bad node identity: ${(err as Error).message}`)
    return problems
  }
  if (!valid) {
    problems.push(`the signature does not verify against ${record.node}`)
  }
  return problems
}
