/**
 * Peer discovery sources other than static bootstrap and mDNS (which libp2p provides).
 */
import type { DnsSdInit } from './dns-sd.ts'
import type { OverlayInit } from './overlay.ts'

export interface DiscoveryInit {
  /** libp2p mDNS (multicast on one interface: only inside a network namespace in tests) */
  mdns?: boolean
  dnsSd?: DnsSdInit
  /** peers from `tailscale status --json` */
  tailscale?: OverlayInit
  /** peers from `netbird status --json` */
  netbird?: OverlayInit
  /** re-run dns-sd/tailscale/netbird discovery this often @default 30000 */
  intervalMs?: number
}

export { browseDnsSd, discoverDnsSd, dnsSdAddrs } from './dns-sd.ts'
export type { DnsSdInit, DnsSdInstance } from './dns-sd.ts'
export { discoverOverlay, overlayAddrs, parseNetbirdStatus, parseTailscaleStatus } from './overlay.ts'
export type { OverlayInit, OverlayPeer } from './overlay.ts'
