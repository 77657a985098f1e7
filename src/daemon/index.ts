/**
 * The daemon: where the manifest, the runtime, the gateway and (later) the mesh meet.
 */
export { LocalNode, type LocalNodeInit, type BraneStatus } from './local-node.ts'
export { resolveImage, isImagePath, type ResolvedImageFile } from './images.ts'
