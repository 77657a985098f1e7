/**
 * What a manifest asks of the mesh on a node: the `[brane.X.network]` and
 * `[brane.X.discovery]` tables of the branes this node may run (its substrate, and its
 * name against `peers` / `hosts`) become listen addresses and discovery settings when
 * the node starts (`omega node --manifest FILE`, or the deployment it ran before a restart).
 */
import picomatch from 'picomatch'
import type { Plan } from '../manifest/index.ts'

export interface MeshSettings {
  /** extra listen multiaddrs (`quic_port`, `tcp_port`) */
  readonly listen: readonly string[]
  /** bootstrap multiaddrs with /p2p/ (`[brane.X.discovery] bootstrap`) */
  readonly bootstrap: readonly string[]
  readonly mdns: boolean
  /** overlay discovery: the `peers` glob to match in `tailscale status` / `netbird status` */
  readonly tailscale?: { readonly peers: string, readonly port?: number, readonly transport: 'tcp' | 'quic' }
  readonly netbird?: { readonly peers: string, readonly port?: number, readonly transport: 'tcp' | 'quic' }
  /** what was left out, and why (e.g. a bootstrap address without /p2p/) */
  readonly notes: readonly string[]
}

export interface NodeIdentity {
  readonly name: string
  readonly substrate: string
  /** the IP the extra listen addresses bind (the node's own listen IP) */
  readonly ip: string
}

/** The mesh settings the branes `node` may run ask for */
export function meshSettingsFor (plan: Plan, node: NodeIdentity): MeshSettings {
  const listen = new Set<string>()
  const bootstrap = new Set<string>()
  const notes: string[] = []
  let mdns = false
  let tailscale: MeshSettings['tailscale']
  let netbird: MeshSettings['netbird']
  const family = node.ip.includes(':') ? 'ip6' : 'ip4'
  for (const brane of plan.branes) {
    if (brane.substrate !== node.substrate ||
      (brane.peers !== undefined && !picomatch.isMatch(node.name, brane.peers)) ||
      (brane.hosts.length > 0 && !brane.hosts.some((h) => h === node.name || picomatch.isMatch(node.name, h)))) {
      continue
    }
    const network = brane.network ?? {}
    const discovery = brane.discovery ?? {}
    const quic = typeof network.quic_port === 'number' ? network.quic_port : undefined
    const tcp = typeof network.tcp_port === 'number' ? network.tcp_port : undefined
    if (quic !== undefined) {
      listen.add(`/${family}/${node.ip}/udp/${quic}/quic-v1`)
    }
    if (tcp !== undefined) {
      listen.add(`/${family}/${node.ip}/tcp/${tcp}`)
    }
    const modes = ([] as unknown[]).concat(discovery.mode ?? [])
    if (network.mdns === true || modes.includes('mdns')) {
      mdns = true
    }
    const port = quic ?? tcp
    const overlay = { peers: brane.peers ?? '*', transport: quic === undefined ? 'tcp' as const : 'quic' as const, ...(port === undefined ? {} : { port }) }
    if (network.overlay === 'tailscale' || modes.includes('tailscale')) {
      tailscale ??= overlay
    }
    if (network.overlay === 'netbird' || modes.includes('netbird')) {
      netbird ??= overlay
    }
    for (const addr of ([] as unknown[]).concat(discovery.bootstrap ?? [])) {
      if (typeof addr !== 'string') {
        continue
      }
      if (addr.includes('/p2p/')) {
        bootstrap.add(addr)
      } else {
        notes.push(`brane "${brane.name}": bootstrap ${addr} has no /p2p/<peer id>, so it cannot be dialled securely; add the peer id`)
      }
    }
  }
  return {
    listen: [...listen],
    bootstrap: [...bootstrap],
    mdns,
    ...(tailscale === undefined ? {} : { tailscale }),
    ...(netbird === undefined ? {} : { netbird }),
    notes
  }
}
