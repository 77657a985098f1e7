/**
 * The daemon: where the manifest, the runtime, the gateway and (later) the mesh meet.
 */
export { LocalNode, type LocalNodeInit, type BraneStatus, type ReloadReport } from './local-node.ts'
export { RequestObserver, requestLine, type BraneProfile } from './observer.ts'
export { resolveImage, isImagePath, type ResolvedImageFile } from './images.ts'
export { AdminServer, adminJson, adminStream, DaemonNotRunningError, AdminRequestError, ADMIN_SOCKET } from './admin.ts'
export type { AdminStatus, AdminInit, AdminComponents, AdminClientOptions } from './admin.ts'
export { linkCheck, type LinkResult } from './link-check.ts'
