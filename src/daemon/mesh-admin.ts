/**
 * The admin API routes of a node in a mesh (`omega deploy`, `undeploy`, `apps`, `biome
 * …`), served beside the node's own (see admin.ts)
 */
import { BraneNotFoundError } from '../errors.ts'
import type { AdminRoute } from './admin.ts'
import type { OmegaMeshNode } from './mesh-node.ts'

/** What `omega deploy` sends */
export interface DeployRequest {
  readonly document: unknown
  /** content address → base64 bytes of each image the node may lack */
  readonly blobs?: Readonly<Record<string, string>>
}

/** What a node answers to a deployment */
export interface DeployReport {
  readonly id: string
  /** the app's name */
  readonly name: string
  /** it undeploys the app */
  readonly removed?: boolean
  readonly deployer: string
  readonly time: string
  /** false when the node already had this or a newer deployment */
  readonly accepted: boolean
}

export function meshAdminRoutes (node: OmegaMeshNode): ReadonlyMap<string, AdminRoute> {
  return new Map<string, AdminRoute>([
    // a deployment, or a removal of an app
    ['/v1/deploy', { action: 'deploy', handle: async (_q, body, options) => node.deploy(body as DeployRequest, options) }],
    ['/v1/apps', { action: 'ps', handle: async () => node.appRows() }],
    ['/v1/biome/peers', { action: 'ps', handle: async (q) => node.peers(q.get('brane') ?? undefined) }],
    // a deployer stamps its deployment later than anything this node has seen
    ['/v1/biome/clock', { action: 'deploy', handle: async () => node.clock() }],
    ['/v1/biome/placement', { action: 'ps', handle: async () => node.placementView() }],
    ['/v1/biome/trace', {
      action: 'trace',
      handle: async (q, _body, options) => {
        const record = await node.trace(q.get('id') ?? '', options)
        if (record === undefined) {
          throw new BraneNotFoundError(`No node holds a trace of "${q.get('id') ?? ''}"`)
        }
        return record
      }
    }],
    ['/v1/biome/isolate', {
      action: 'isolate',
      handle: async (_q, body) => {
        const names = (body as { peers?: unknown } | undefined)?.peers
        return node.isolate(Array.isArray(names) ? names.map(String) : [])
      }
    }]
  ])
}
