/**
 * A mesh of one: the node `omega up` runs. It has a mesh's membership (this node, alive)
 * and nobody to talk to: no listen address, no peers, and none of the libp2p stack loaded.
 * Broadcasts reach nobody, and opening a channel to a peer fails at once.
 */
import { PeerUnavailableError } from '../errors.ts'
import type { NodeKey } from '../identity/index.ts'
import type { AbortOptions } from '../interfaces/index.ts'
import type { FrameChannel } from './frames.ts'
import type { Member, MemberState, Substrate } from './membership.ts'
import type { MeshNode } from './node.ts'

/** What a node needs of its mesh: a {@link MeshNode}, or a {@link LoneMesh} */
export type NodeMesh = Pick<MeshNode, 'addrs' | 'members' | 'member' | 'onMembers' | 'setMeta' | 'setLoad' | 'broadcast' | 'onBroadcast' | 'handle' | 'open' | 'isolate' | 'start' | 'stop'>

export interface LoneMeshInit {
  key: NodeKey
  name: string
  substrate: Substrate
}

export class LoneMesh implements NodeMesh {
  readonly addrs: string[] = []
  #self: Member

  constructor (init: LoneMeshInit) {
    this.#self = {
      did: init.key.did,
      peerId: '',
      name: init.name,
      substrate: init.substrate,
      frontier: false,
      addrs: [],
      state: 'alive',
      incarnation: 0,
      meta: {}
    }
  }

  async start (): Promise<void> {}

  async stop (): Promise<void> {}

  members (): Member[] {
    return [this.#self]
  }

  member (did: string): Member | undefined {
    return did === this.#self.did ? this.#self : undefined
  }

  /** Nobody joins or leaves a mesh of one */
  onMembers (_listener: (member: Member, previous: MemberState | undefined) => void): () => void {
    return () => {}
  }

  setMeta (key: string, value: string): void {
    this.#self = { ...this.#self, meta: { ...this.#self.meta, [key]: value } }
  }

  setLoad (load: number): void {
    this.#self = { ...this.#self, load }
  }

  broadcast (_topic: string, _data: Uint8Array): void {}

  onBroadcast (_topic: string, _handler: (data: Uint8Array, fromDid: string) => void): () => void {
    return () => {}
  }

  handle (_protocol: string, _handler: (channel: FrameChannel) => void): void {}

  async open (peerDid: string, _protocol: string, _options?: AbortOptions): Promise<FrameChannel> {
    throw new PeerUnavailableError(`No peer ${peerDid}: this node runs alone (omega up); start mesh nodes with "omega node"`)
  }

  isolate (_peerDids: readonly string[]): void {}
}
