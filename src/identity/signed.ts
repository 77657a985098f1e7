/**
 * Signed documents: a JSON document carries `signature`, the Ed25519 signature (base64url)
 * of its signer over the canonical JSON of the document without that field (keys sorted
 * at every level, no whitespace, undefined values left out). Trace end records,
 * settlement receipts, snapshots, deployments and revocation messages use it; anyone with
 * the document and the signer's did:key can check it offline.
 */
import { verify, type NodeKey } from './keys.ts'

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

/**
 * `unsigned` with `signature`: `key`'s signature over its canonical JSON.
 *
 * @example
 * ```ts
 * const doc = signDocument({ ids, by: key.did }, key)
 * verifyDocument(doc, key.did) // true
 * ```
 */
export function signDocument<T extends object> (unsigned: T, key: Pick<NodeKey, 'sign'>): T & { signature: string } {
  const signature = Buffer.from(key.sign(Buffer.from(canonicalJson(unsigned)))).toString('base64url')
  return { ...unsigned, signature }
}

/**
 * Whether `doc.signature` is `did`'s signature over the canonical JSON of `doc` without
 * `signature`.
 *
 * @throws what {@link verify} throws when `did` is not an Ed25519 did:key
 */
export function verifyDocument<T extends { readonly signature: string }> (doc: T, did: string): boolean {
  const { signature, ...unsigned } = doc
  return verify(did, Buffer.from(canonicalJson(unsigned)), Buffer.from(signature, 'base64url'))
}
