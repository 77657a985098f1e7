/**
 * Identity: BLAKE3 content addresses, the node's Ed25519 key (did:key), signatures, and
 * where Omega keeps its files.
 *
 * @example
 * ```ts
 * import { loadOrCreateNodeKey, verify, contentAddress, defaultHome } from '../identity/index.ts'
 *
 * const key = await loadOrCreateNodeKey(defaultHome(env))
 * const signature = key.sign(bytes)
 * verify(key.did, bytes, signature) // true
 * contentAddress(bytes) // 'b3:…'
 * ```
 */
export {
  CONTENT_ADDRESS_PREFIX,
  blake3Hex,
  contentAddress,
  createBlake3,
  formatContentAddress,
  isBlake3Hex,
  isContentAddress,
  parseContentAddress,
  toHex
} from './hash.ts'
export type { Blake3Hasher, ContentAddress } from './hash.ts'
export {
  DID_KEY_PREFIX,
  NODE_KEY_FILE,
  NodeKey,
  didFromPublicKey,
  generateNodeKey,
  loadOrCreateNodeKey,
  nodeKeyFromSeed,
  publicKeyFromDid,
  readNodeKeyFile,
  verify
} from './keys.ts'
export { canonicalJson, signDocument, verifyDocument } from './signed.ts'
export { defaultHome } from './home.ts'
export type { DefaultHomeOptions } from './home.ts'
export { NodeKeyError } from '../errors.ts'
export { issueAdminToken, verifyAdminToken, TokenError } from './tokens.ts'
export type { AdminTokenPayload, IssueTokenOptions, VerifyTokenOptions } from './tokens.ts'
export {
  REVOCATIONS_FILE,
  RevocationList,
  delegateCapability,
  inspectCapability,
  isRootDid,
  issueCapability,
  parseCapability,
  resourcePatterns,
  verifyCapability,
  CapabilityTokenError
} from './capabilities.ts'
export type {
  Capability,
  CapabilityInfo,
  CapabilityLink,
  DelegateCapabilityOptions,
  IssueCapabilityOptions,
  VerifiedCapability,
  VerifyCapabilityOptions
} from './capabilities.ts'
