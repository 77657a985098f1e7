/**
 * The part of identity that loads nothing heavy (no Biscuit wasm): node keys, admin
 * tokens, the home directory. For the CLI's client side, which must start fast.
 */
export { defaultHome } from './home.ts'
export { loadOrCreateNodeKey, readNodeKeyFile, NodeKey, publicKeyFromDid } from './keys.ts'
export { issueAdminToken } from './tokens.ts'
