/**
 * Biome: what turns single nodes into a mesh with no control plane — signed deployments
 * replicated to every node (last writer wins by hybrid-logical-clock time), the same
 * rendezvous placement computed everywhere, events and requests forwarded to the node
 * that runs a brane, and replicated CRDT state.
 */
export { HybridClock, compareHlc, formatHlc, type HlcTime } from './hlc.ts'
export { DeploymentError } from '../errors.ts'
export { deploymentId, materialise, prepareDeployment, verifyDeployment, type DeploymentDocument, type DeploymentImage, type PreparedDeployment } from './deployment.ts'
export { Registry } from './registry.ts'
export { place, ineligible, wantedReplicas, weight, META_VFIO, type BranePlacement, type Candidate } from './placement.ts'
export { StateStore, type StateStoreInit, type UpdateListener, type UpdateOrigin } from './state.ts'
export { Rpc, RemoteError, RPC_PROTOCOL, type RpcChannel, type RpcTransport, type RpcHandler, type RpcReply, type RpcRequest } from './rpc.ts'
export { meshSettingsFor, type MeshSettings, type NodeIdentity } from './network.ts'
export { EventCustody, type CustodyComponents } from './custody.ts'
export { deliverInOrder, sendEventBatch, serveEventBatches, DELIVER_BATCH, MAX_BATCH_EVENTS, MAX_BATCH_FRAME_BYTES } from './forward.ts'
