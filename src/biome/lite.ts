/**
 * The part of the biome module a one-node daemon (`omega up`) needs: the replicated
 * state store, without the mesh protocols (deployments, placement, RPC, forwarding,
 * blobs, revocation gossip) that the rest of the module loads.
 */
export { StateStore, type StateStoreInit, type UpdateListener, type UpdateOrigin } from './state.ts'
