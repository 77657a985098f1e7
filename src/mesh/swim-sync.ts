/**
 * Anti-entropy of the membership table (swim.ts): push-pull with one member by a digest of
 * the table (one number per ring segment; records cross only for the segments that differ:
 * a whole table crossed the wire each time before, 4.5 MB at 10 000 members, found by the
 * simulation), full-state exchange with a dead member that answers again (partition
 * healing), and the table exchange of a join.
 */
import type { Rumor } from './gossip.ts'
import { parseWireMember, type WireMember } from './membership.ts'
import { shuffle } from './ring.ts'
import { background, differingSegments, encodeMessage, segmentOf, segmentsOf, tableDigest, type Message } from './swim-wire.ts'

/** What table sync needs of its node's protocol */
export interface TableHost {
  readonly did: string
  /** the member records held, self included */
  records: () => Iterable<WireMember>
  /** this node's record as it goes on the wire (signed) */
  selfRecord: () => WireMember
  isolated: (did: string) => boolean
  knows: (did: string) => boolean
  /** take a record (the trust and precedence rules); whether it changed anything */
  merge: (record: WireMember) => boolean
  disseminate: (rumors: Rumor[], exclude: Set<string>) => void
  send: (did: string, message: Message) => Promise<void>
  /** a direct probe: whether `did` answered within `timeoutMs` */
  ping: (did: string, timeoutMs: number) => Promise<boolean>
  /** the members held dead */
  deadMembers: () => string[]
  /** the other members */
  others: () => string[]
  connected: (did: string) => boolean
  random: () => number
  stopping: () => boolean
  probeTimeoutMs: () => number
}

export class TableSync {
  readonly #host: TableHost
  /** joins waiting for the table of the member they joined through */
  readonly #waiters = new Map<string, () => void>()

  constructor (host: TableHost) {
    this.#host = host
  }

  /** anti-entropy with one member, one with a channel if any (repair without a new handshake) */
  pushPull (): void {
    const host = this.#host
    const target = shuffle(host.random, host.others().filter((did) => host.connected(did)))[0] ?? shuffle(host.random, host.others())[0]
    if (target !== undefined) {
      background(host.send(target, { t: 'digest', d: this.#digest() }))
    }
  }

  /**
   * full-state exchange with one dead member that answers a probe (partition healing):
   * the probe first, so that the table is not encoded every reconnect interval for a
   * member that is gone for good
   */
  retryDead (): void {
    const host = this.#host
    const dead = shuffle(host.random, host.deadMembers().filter((did) => !host.isolated(did)))[0]
    if (dead !== undefined) {
      background(host.ping(dead, host.probeTimeoutMs() * 4).then(async (ok) => {
        if (ok && !host.stopping()) {
          await host.send(dead, { t: 'digest', d: this.#digest() })
        }
      }))
    }
  }

  /**
   * Join through `did`: send it this node's full table with `send` (its fresh channel)
   * and wait for its own.
   */
  async join (did: string, send: (bytes: Uint8Array) => Promise<void>, signal: AbortSignal): Promise<void> {
    const replied = new Promise<void>((resolve, reject) => {
      const onAbort = (): void => { reject(signal.reason) }
      signal.addEventListener('abort', onAbort, { once: true })
      this.#waiters.set(did, () => {
        signal.removeEventListener('abort', onAbort)
        this.#waiters.delete(did)
        resolve()
      })
    })
    try {
      await send(encodeMessage({ t: 'sync', m: this.#table(), reply: true }))
      await replied
    } finally {
      this.#waiters.delete(did)
    }
  }

  /** a member's records (of some segments, or all); with `reply`, it asks for ours */
  onSync (from: string, message: Extract<Message, { t: 'sync' }>): void {
    const host = this.#host
    if (!Array.isArray(message.m)) {
      return
    }
    // pass on only what is likely news to the mesh too: the sender's own record (a
    // joiner announcing itself) and changes to members this node already knew (a healed
    // partition); a joiner learning the whole table must not re-gossip all of it
    const fresh: Rumor[] = []
    for (const raw of message.m) {
      const w = parseWireMember(raw)
      if (w === undefined) {
        continue
      }
      const known = host.knows(w.did)
      if (host.merge(w) && (known || w.did === from)) {
        fresh.push({ k: 'm', m: w })
      }
    }
    if (fresh.length > 0) {
      host.disseminate(fresh, new Set([host.did, from]))
    }
    if (message.reply) {
      background(this.sync(from, false, segmentsOf(message.seg)))
    }
    this.#waiters.get(from)?.()
  }

  /** a member's digest: send ours of the segments that differ, and ask for theirs */
  onDigest (from: string, message: Extract<Message, { t: 'digest' }>): void {
    const differ = differingSegments(this.#digest(), message.d)
    if (differ.length > 0) {
      background(this.sync(from, true, new Set(differ)))
    }
  }

  /** send the records held (of `segments` only, when given); `reply`: ask for the other's (of the same segments) */
  async sync (did: string, reply: boolean, segments?: ReadonlySet<number>): Promise<void> {
    const message: Message = { t: 'sync', m: this.#table(segments), reply }
    if (segments !== undefined) {
      message.seg = [...segments]
    }
    await this.#host.send(did, message)
  }

  /** the push-pull digest of the records held (isolated members left out, as in #table) */
  #digest (): number[] {
    return tableDigest(this.#host.records(), (record) => record.did === this.#host.did || !this.#host.isolated(record.did))
  }

  /** the records held (isolated members left out), or those of the ring `segments` */
  #table (segments?: ReadonlySet<number>): WireMember[] {
    const out: WireMember[] = []
    for (const record of this.#host.records()) {
      if (segments !== undefined && !segments.has(segmentOf(record.did))) {
        continue
      }
      if (record.did === this.#host.did) {
        out.push(this.#host.selfRecord())
      } else if (!this.#host.isolated(record.did)) {
        out.push(record)
      }
    }
    return out
  }
}
