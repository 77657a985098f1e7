/**
 * Biome: what turns single nodes into a mesh with no control plane — signed deployments
 * replicated to every node (last writer wins by hybrid-logical-clock time), the same
 * rendezvous placement computed everywhere, events and requests forwarded to the node
 * that runs a brane, and replicated CRDT state.
 */
export { HybridClock, compareHlc, formatHlc, type HlcTime } from './hlc.ts'
export { DeploymentError } from '../errors.ts'
export {
  authorizeDeployment, DEPLOY_TOPIC, DeploymentGossip, deploymentId, MAX_APPS, materialise, planOf, prepareDeployment, prepareRemoval, verifyDeployment, versionOf,
  type AuthorizeOptions, type DeploymentDocument, type DeploymentGossipComponents, type DeploymentImage, type PreparedDeployment
} from './deployment.ts'
export { Registry } from './registry.ts'
export { advertisedBacklogs, place, runsResolver, ineligible, wantedReplicas, weight, META_VFIO, type BranePlacement, type Candidate } from './placement.ts'
export { StateStore, StateSync, type StateStoreInit, type StateSyncComponents, type UpdateListener, type UpdateOrigin } from './state.ts'
export { Rpc, RemoteError, RPC_PROTOCOL, type Broadcaster, type RpcChannel, type RpcTransport, type RpcHandler, type RpcReply, type RpcRequest } from './rpc.ts'
export { meshSettingsFor, type MeshSettings, type NodeIdentity } from './network.ts'
export { EventCustody, type CustodyComponents } from './custody.ts'
export { deliverInOrder, sendEventBatch, serveEventBatches, Forwarder, DELIVER_BATCH, MAX_BATCH_EVENTS, MAX_BATCH_FRAME_BYTES, type ForwarderComponents } from './forward.ts'
export { REVOKE_TOPIC, MAX_REVOCATIONS_PER_MESSAGE, RevocationGossip, sealRevocations, openRevocations, type RevocationGossipComponents } from './revocations.ts'
export { BLOB_CHUNK, fetchBlobs, serveBlobs, type FetchBlobsOptions } from './blobs.ts'
