/**
 * Trace end records: the hops of a trace, summarised and signed by the node that
 * produced them, so anyone with the record can check it offline against the node's
 * did:key. The signature covers the canonical JSON of the record without `signature`
 * (keys sorted, no whitespace), including a BLAKE3 digest of the hops.
 */
import { blake3Hex, canonicalJson, signDocument, verifyDocument, type NodeKey } from '../identity/index.ts'
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
  return signDocument(unsigned, key)
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
  if (blake3Hex(Buffer.from(canonicalJson(record.hops))) !== record.hopsDigest) {
    problems.push('the hops do not match hopsDigest')
  }
  if (record.count !== record.hops.length) {
    problems.push('count does not match the hops')
  }
  let valid = false
  try {
    valid = verifyDocument(record, record.node)
  } catch (err) {
    problems.push(`bad node identity: ${(err as Error).message}`)
    return problems
  }
  if (!valid) {
    problems.push(`the signature does not verify against ${record.node}`)
  }
  return problems
}
