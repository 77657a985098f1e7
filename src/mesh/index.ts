/**
 * The mesh: Omega nodes that find each other (static bootstrap, mDNS, DNS-SD, Tailscale,
 * NetBird), agree on who is alive (SWIM/Lifeguard-style probing with phi-accrual failure
 * detection), disseminate low-rate control messages epidemically, and exchange framed,
 * back-pressured byte streams — on js-libp2p.
 */
// must come first: libp2p needs Promise.withResolvers, which Node 20 lacks
import './polyfill.ts'

export { MeshNode, SWIM_PROTOCOL, DEFAULT_MESH_PORT, didOfPeerId, peerIdOfDid } from './node.ts'
export { MAX_BROADCAST_BYTES } from './gossip.ts'
export type { MeshInit } from './node.ts'
export { DEFAULT_MEMBERSHIP } from './membership.ts'
export type { Member, MemberState, MembershipSettings, Substrate } from './membership.ts'
export { DEFAULT_FRAME_SETTINGS, StreamFrameChannel } from './frames.ts'
export type { FrameChannel, FrameChannelSettings } from './frames.ts'
export { PhiAccrualDetector } from './phi.ts'
export type { PhiSettings } from './phi.ts'
export {
  browseDnsSd, discoverDnsSd, dnsSdAddrs, discoverOverlay, overlayAddrs, parseNetbirdStatus, parseTailscaleStatus
} from './discovery/index.ts'
export type { DiscoveryInit, DnsSdInit, DnsSdInstance, OverlayInit, OverlayPeer } from './discovery/index.ts'
export { MeshChannelError, MeshDialError, MeshError, DiscoveryError } from '../errors.ts'
