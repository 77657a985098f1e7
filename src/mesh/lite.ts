/**
 * What of the mesh loads nothing heavy: the mesh of one a lone node (`omega up`) runs on
 */
export { LoneMesh, type LoneMeshInit, type NodeMesh } from './lone.ts'
