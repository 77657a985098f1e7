/**
 * The daemon: where the manifest, the runtime, the gateway and the mesh meet.
 */
import type { AbortOptions } from '../interfaces/index.ts'
import { OmegaMeshNode, type MeshNodeInit } from './mesh-node.ts'
export { LocalNode, type LocalNodeInit, type BraneStatus, type ReloadReport, type RestoreReport } from './local-node.ts'
export { openSnapshot, sealSnapshot, SNAPSHOT_FORMAT, SNAPSHOT_VERSION } from './snapshot.ts'
export type { OpenedSnapshot, OpenSnapshotOptions, SealSnapshotOptions, SnapshotDocument, SnapshotMemory } from './snapshot.ts'
export { RequestObserver, requestLine, type BraneProfile } from './observer.ts'
export { resolveImage, isImagePath, type ResolvedImageFile } from './images.ts'
export { AdminServer, adminBytes, adminJson, adminResource, adminStream, parseAdminCall, DaemonNotRunningError, AdminRequestError, ADMIN_SOCKET, MAX_RELOAD_BODY_BYTES, MAX_RESTORE_BODY_BYTES } from './admin.ts'
export type { AdminCall, AdminStatus, AdminInit, AdminComponents, AdminClientOptions } from './admin.ts'
export { linkCheck, type LinkResult } from './link-check.ts'
export { OmegaMeshNode }
export type { MeshNodeInit, PeerRow, DeployRequest, DeployReport, AppRow } from './mesh-node.ts'

/**
 * Start a node: of a mesh (`omega node`), or alone (`omega up`, with `lone`). The mesh
 * stack (libp2p) loads only for a node that joins a mesh (see join.ts), so that `omega
 * up` and the other commands never pay for it.
 */
export async function startNode (init: MeshNodeInit, options: AbortOptions = {}): Promise<OmegaMeshNode> {
  return OmegaMeshNode.start(init, options)
}
