/**
 * Epidemic dissemination for the membership protocol ({@link Swim}): rumors (member
 * records and broadcasts) are pushed at once to a fanout of peers and ride on probes and
 * acks (`retransmitMult` × log10(n + 1) times, up to 2 KiB per message); broadcasts are
 * deduplicated by id and delivered to this node's handlers.
 */
import { randomBytes } from 'node:crypto'
import { MeshError } from '../errors.ts'
import type { Logger } from '../interfaces/index.ts'
import { parseWireMember } from './membership.ts'
import type { WireMember } from './membership.ts'

/** Largest broadcast payload @default 256 KiB */
export const MAX_BROADCAST_BYTES = 256 * 1024

export type Rumor =
  | { k: 'm', m: WireMember }
  | { k: 'b', id: string, o: string, topic: string, d: string }

interface Piggy {
  rumor: Rumor
  size: number
  left: number
}

const MAX_PIGGYBACK_BYTES = 2 * 1024
const SEEN_TTL_MS = 120_000
const SEEN_MAX = 20_000

/** What dissemination needs from the membership protocol */
export interface GossipComponents {
  /** this node's did */
  did: string
  logger: Logger
  /** peers this node isolates: their broadcasts are dropped */
  isolated: ReadonlySet<string>
  started: () => boolean
  stopping: () => boolean
  /** wall-clock ms (this.#components.now(), or a simulation's clock) */
  now: () => number
  /** members known (self included), for the retransmit count */
  memberCount: () => number
  /** each rumor rides on this many × ceil(log10(n + 1)) probe messages */
  retransmitMult: number
  /**
   * send rumors at once to a fanout of peers not in `exclude`; `until`: the ring arc this
   * node passes them on within (see Ring.arcs), the whole ring when undefined
   */
  push: (rumors: Rumor[], exclude: Set<string>, until?: number) => void
  /** apply a member record; true when it was news */
  merge: (w: WireMember) => boolean
}

/** The rumors of one node: what to piggy-back next, which broadcasts it has seen */
export class Gossip {
  readonly did: string
  readonly #components: GossipComponents
  readonly #log: Logger
  readonly #isolated: ReadonlySet<string>
  readonly #broadcastHandlers = new Map<string, Set<(data: Uint8Array, fromDid: string) => void>>()
  readonly #piggyback = new Map<string, Piggy>()
  readonly #seen = new Map<string, number>()

  constructor (components: GossipComponents) {
    this.#components = components
    this.did = components.did
    this.#log = components.logger
    this.#isolated = components.isolated
  }

  broadcast (topic: string, data: Uint8Array): void {
    if (data.byteLength > MAX_BROADCAST_BYTES) {
      throw new RangeError(`Cannot broadcast on "${topic}": ${data.byteLength} bytes exceeds the limit of ${MAX_BROADCAST_BYTES}; send large payloads over a channel (open())`)
    }
    if (!this.#components.started() || this.#components.stopping()) {
      throw new MeshError(`Cannot broadcast on "${topic}": the mesh node is not running`)
    }
    const id = randomBytes(12).toString('base64url')
    this.#seen.set(id, this.#components.now() + SEEN_TTL_MS)
    const rumor: Rumor = { k: 'b', id, o: this.did, topic, d: Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString('base64') }
    this.disseminate([rumor], new Set([this.did]))
  }

  onBroadcast (topic: string, handler: (data: Uint8Array, fromDid: string) => void): () => void {
    let handlers = this.#broadcastHandlers.get(topic)
    if (handlers === undefined) {
      handlers = new Set()
      this.#broadcastHandlers.set(topic, handlers)
    }
    handlers.add(handler)
    return () => { handlers.delete(handler) }
  }

  #rumorKey (rumor: Rumor): string {
    return rumor.k === 'm' ? `m:${rumor.m.did}` : `b:${rumor.id}`
  }

  /** queue rumors for piggy-backing and push them at once to a fanout of peers (within the ring arc up to `until`) */
  disseminate (rumors: Rumor[], exclude: Set<string>, until?: number): void {
    if (rumors.length === 0 || !this.#components.started()) {
      return
    }
    const transmits = this.#components.retransmitMult * Math.ceil(Math.log10(this.#components.memberCount() + 1))
    for (const rumor of rumors) {
      const size = JSON.stringify(rumor).length
      this.#piggyback.set(this.#rumorKey(rumor), { rumor, size, left: transmits })
    }
    this.#components.push(rumors, exclude, until)
  }

  /** the rumors to ride on the next probe or ack, if any */
  takePiggyback (): Rumor[] | undefined {
    if (this.#piggyback.size === 0) {
      return undefined
    }
    const out: Rumor[] = []
    const taken: Array<[string, Piggy]> = []
    let bytes = 0
    for (const entry of this.#piggyback) {
      const p = entry[1]
      if (bytes + p.size > MAX_PIGGYBACK_BYTES && out.length > 0) {
        break
      }
      out.push(p.rumor)
      taken.push(entry)
      bytes += p.size
    }
    // re-insert at the end: least-sent rumors go first next time. Not while iterating: a
    // Map's iterator visits entries set during the iteration, so a rumor re-inserted there
    // rode the same message again and again (up to 2 KiB), spending its transmissions
    // at once and crowding out the others (found by the simulation under churn)
    for (const [key, p] of taken) {
      p.left--
      this.#piggyback.delete(key)
      if (p.left > 0) {
        this.#piggyback.set(key, p)
      }
    }
    return out
  }

  /** apply rumors; pass on those that were news (within the ring arc up to `until`, when pushed with one) */
  receive (from: string, rumors: unknown, until?: number): void {
    if (!Array.isArray(rumors)) {
      return
    }
    const fresh: Rumor[] = []
    for (const raw of rumors as unknown[]) {
      const rumor = raw as Partial<Rumor> | null
      if (rumor === null || typeof rumor !== 'object') {
        continue
      }
      if (rumor.k === 'm') {
        const w = parseWireMember(rumor.m)
        if (w !== undefined && this.#components.merge(w)) {
          fresh.push({ k: 'm', m: w })
        }
      } else if (rumor.k === 'b' && typeof rumor.id === 'string' && typeof rumor.o === 'string' &&
        typeof rumor.topic === 'string' && typeof rumor.d === 'string') {
        if (this.#seen.has(rumor.id) || this.#isolated.has(rumor.o)) {
          continue
        }
        this.#seen.set(rumor.id, this.#components.now() + SEEN_TTL_MS)
        const b = { k: 'b' as const, id: rumor.id, o: rumor.o, topic: rumor.topic, d: rumor.d }
        fresh.push(b)
        this.#deliver(b)
      }
    }
    if (fresh.length > 0) {
      // nobody needs to be told about itself (a joiner, in particular, is not dialled for it)
      const subjects = fresh.flatMap((r) => r.k === 'm' ? [r.m.did] : [])
      this.disseminate(fresh, new Set([this.did, from, ...subjects]), until)
    }
  }

  #deliver (rumor: { o: string, topic: string, d: string }): void {
    const handlers = this.#broadcastHandlers.get(rumor.topic)
    if (handlers === undefined || handlers.size === 0) {
      return
    }
    const data = new Uint8Array(Buffer.from(rumor.d, 'base64'))
    for (const handler of handlers) {
      try {
        handler(data, rumor.o)
      } catch (err) {
        this.#log.error({ err, topic: rumor.topic }, 'mesh: broadcast handler threw')
      }
    }
  }

  /** forget broadcast ids older than their time to live (or beyond SEEN_MAX) */
  expire (now: number): void {
    for (const [id, expires] of this.#seen) {
      if (expires > now && this.#seen.size <= SEEN_MAX) {
        break
      }
      this.#seen.delete(id)
    }
  }
}
