/**
 * Joining a mesh: the node's listen addresses, bootstrap peers and discovery, from the
 * command line and from the manifests of the apps it may run, and the libp2p node itself
 * (loaded here, on first use: a lone node never loads it)
 */
import type { AbortOptions } from '../interfaces/index.ts'
import type { NodeKey } from '../identity/index.ts'
import { combineApps, loadManifest, type Plan } from '../manifest/index.ts'
import type { DiscoveryInit } from '../mesh/index.ts'
import type { NodeMesh } from '../mesh/lite.ts'
import { meshSettingsFor, planOf, type DeploymentDocument, type Registry } from '../biome/index.ts'
import type { MeshNodeInit } from './mesh-node.ts'

/** Largest mesh frame: an event or HTTP body (16 MiB at most) with its envelope */
export const MESH_FRAME_BYTES = 17 * 1024 * 1024

/** Open the registry and join the mesh: the mesh stack (libp2p) loads here, on first use */
export async function joinMesh (init: MeshNodeInit, key: NodeKey, registry: Registry, options: AbortOptions): Promise<NodeMesh> {
  await registry.open(options)
  const [{ MeshNode }, { probeFrontier }] = await Promise.all([import('../mesh/index.ts'), import('../runtime/microvm/index.ts')])
  const probe = init.frontier === undefined ? await probeFrontier() : undefined
  const { listen, bootstrap, discovery } = await meshOptions(init, registry.list(), options)
  return MeshNode.create({
    key,
    name: init.name,
    substrate: init.substrate,
    frontier: init.frontier ?? probe?.frontier ?? false,
    ...(probe?.vfio === true ? { meta: { vfio: '1' } } : {}),
    listen,
    ...(init.announce === undefined || init.announce.length === 0 ? {} : { announce: init.announce }),
    bootstrap,
    ...(discovery === undefined ? {} : { discovery }),
    ...(init.membership === undefined ? {} : { membership: init.membership }),
    channels: { maxFrameBytes: MESH_FRAME_BYTES },
    ...(init.swarmKey === undefined ? {} : { swarmKey: init.swarmKey }),
    ...(init.admit === undefined ? {} : { admit: init.admit }),
    logger: init.logging.forComponent('mesh')
  }, options)
}

/**
 * Listen addresses, bootstrap peers and discovery: the command line's, plus what the
 * manifest's branes that may run here ask for (see biome/network.ts)
 */
async function meshOptions (init: MeshNodeInit, previous: readonly DeploymentDocument[], options: AbortOptions): Promise<{ listen: string[], bootstrap: string[], discovery: DiscoveryInit | undefined }> {
  const listen = init.listen ?? ['/ip4/127.0.0.1/tcp/0']
  let plan: Plan | undefined
  const apps = previous.filter((doc) => doc.removed !== true)
  if (init.manifest !== undefined) {
    plan = (await loadManifest(init.manifest, options)).plan
  } else if (apps.length > 0) {
    plan = combineApps(apps.map((doc) => ({ name: doc.name, plan: planOf(doc) })), { conflicts: 'skip' }).plan
  }
  if (plan === undefined) {
    return { listen, bootstrap: init.bootstrap ?? [], discovery: init.discovery }
  }
  const ip = /^\/ip[46]\/([^/]+)\//.exec(listen[0] ?? '')?.[1] ?? '127.0.0.1'
  const wanted = meshSettingsFor(plan, { name: init.name, substrate: init.substrate, ip })
  for (const note of wanted.notes) {
    init.logging.forComponent('biome').warn({}, note)
  }
  const discovery: DiscoveryInit = {
    ...init.discovery,
    ...(wanted.mdns ? { mdns: true } : {}),
    ...(wanted.tailscale === undefined || init.discovery?.tailscale !== undefined ? {} : { tailscale: wanted.tailscale }),
    ...(wanted.netbird === undefined || init.discovery?.netbird !== undefined ? {} : { netbird: wanted.netbird })
  }
  return {
    listen: [...new Set([...listen, ...wanted.listen])],
    bootstrap: [...new Set([...(init.bootstrap ?? []), ...wanted.bootstrap])],
    discovery: Object.keys(discovery).length === 0 ? undefined : discovery
  }
}
