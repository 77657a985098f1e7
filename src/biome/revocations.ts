/**
 * Revocation gossip: the ids of revoked capability tokens travel between nodes (on
 * {@link REVOKE_TOPIC}, and in answer to a rejoining node) as messages signed by the
 * node that revoked them; a node takes only those signed by a key it trusts.
 */
import { signDocument, verifyDocument, type NodeKey, type RevocationList } from '../identity/index.ts'
import type { Logger } from '../interfaces/index.ts'
import type { Broadcaster, Rpc } from './rpc.ts'

/** The broadcast topic of revocations */
export const REVOKE_TOPIC = 'omega/revoke'
/** Most revoked ids one message may carry */
export const MAX_REVOCATIONS_PER_MESSAGE = 1024

/**
 * Revoked token ids as a message signed by `key`: `{ ids, by, signature }` (signature
 * over the canonical JSON of `{ ids, by }`)
 */
export function sealRevocations (ids: readonly string[], key: NodeKey): Uint8Array {
  const unsigned = { ids: ids.slice(0, MAX_REVOCATIONS_PER_MESSAGE), by: key.did }
  return new TextEncoder().encode(JSON.stringify(signDocument(unsigned, key)))
}

/** The ids of a {@link sealRevocations} message signed by one of `trusted`, else undefined */
export function openRevocations (data: Uint8Array, trusted: ReadonlySet<string>): string[] | undefined {
  try {
    const message = JSON.parse(new TextDecoder().decode(data)) as { ids?: unknown, by?: unknown, signature?: unknown }
    const { ids, by, signature } = message
    if (!Array.isArray(ids) || ids.length > MAX_REVOCATIONS_PER_MESSAGE || typeof by !== 'string' || typeof signature !== 'string' || !trusted.has(by)) {
      return undefined
    }
    if (!verifyDocument({ ids, by, signature }, by)) {
      return undefined
    }
    return ids.filter((id): id is string => typeof id === 'string' && /^[0-9a-f]{128}$/.test(id))
  } catch {
    return undefined
  }
}

/** What revocation gossip needs from its node */
export interface RevocationGossipComponents {
  rpc: Rpc
  mesh: Broadcaster
  /** this node's key, which signs the revocations made here */
  key: NodeKey
  /** the keys whose revocations count */
  trust: ReadonlySet<string>
  /** the node's revocation list now */
  list: () => RevocationList
  logger: Logger
}

/** Revocations made on one node reach every node; a rejoining node pulls what it missed */
export class RevocationGossip {
  readonly #components: RevocationGossipComponents
  readonly #log: Logger

  constructor (components: RevocationGossipComponents) {
    this.#components = components
    this.#log = components.logger
  }

  /** keep the revocations other nodes broadcast */
  listen (): void {
    const { trust } = this.#components
    this.#components.mesh.onBroadcast(REVOKE_TOPIC, (data, from) => {
      // gossip is relayed by any member: only a revocation signed by a trusted key counts
      const ids = openRevocations(data, trust)
      if (ids === undefined) {
        this.#log.warn({ from }, 'ignored revocations not signed by a trusted key')
        return
      }
      this.#components.list().add(ids).catch((err: unknown) => {
        this.#log.error({ from, err: (err as Error).message }, 'could not keep revocations')
      })
    })
  }

  /** broadcast every revocation made on the node's list (as it is now) */
  announce (): void {
    const { key, mesh } = this.#components
    this.#components.list().onRevoked((id) => {
      mesh.broadcast(REVOKE_TOPIC, sealRevocations([id], key))
    })
  }

  /** answer other nodes' pulls with the newest ids */
  serve (): void {
    this.#components.rpc.register('revocations', async () => ({ body: sealRevocations(this.#components.list().ids().slice(-MAX_REVOCATIONS_PER_MESSAGE), this.#components.key) }))
  }

  /** take the revocations `peer` holds (signed by a trusted key) */
  async pull (peer: string): Promise<void> {
    const revoked = openRevocations((await this.#components.rpc.call(peer, 'revocations', {})).body, this.#components.trust)
    await this.#components.list().add(revoked ?? [])
  }
}
