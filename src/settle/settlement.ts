/**
 * Metering and settlement: sums what each brane used for its deployer (invocations, CPU
 * ms, memory MiB·s, bytes in/out) from the observer's usage records, and cuts a signed,
 * hash-chained receipt every `intervalMs` (when anything ran) and one at stop.
 */
import { join } from 'node:path'
import type { NodeKey } from '../identity/index.ts'
import type { Logger, Startable, Usage } from '../interfaces/index.ts'
import { signReceipt, type Receipt, type UsageLine } from './receipt.ts'
import { ReceiptStore, SETTLE_DB } from './store.ts'

/** One request or event delivery, as the observer reports it */
export type MeteredUsage = Usage

export interface SettlementComponents {
  readonly key: NodeKey
  readonly logger: Logger
  /** who deployed `brane` on this node. @default the node itself */
  readonly deployerOf?: (brane: string) => string
}

export interface SettlementInit {
  /** the node's home: receipts go to `<home>/settle.db` */
  home: string
  /** ms between periodic receipts. @default 60000 */
  intervalMs?: number
}

const MIB = 2 ** 20

type Totals = { -readonly [K in keyof UsageLine]: UsageLine[K] }

/** Thousandths: receipts carry fixed-precision numbers */
function round3 (value: number): number {
  return Math.round(value * 1000) / 1000
}

export class Settlement implements Startable {
  readonly #components: SettlementComponents
  readonly #home: string
  readonly #intervalMs: number
  #store: ReceiptStore | undefined
  #timer: NodeJS.Timeout | undefined
  /** brane → deployer → totals of the current period */
  #totals = new Map<string, Map<string, Totals>>()
  #periodStart = new Date()
  #last: Receipt | undefined

  constructor (components: SettlementComponents, init: SettlementInit) {
    this.#components = components
    this.#home = init.home
    this.#intervalMs = init.intervalMs ?? 60_000
  }

  start (): void {
    this.#store = new ReceiptStore(join(this.#home, SETTLE_DB))
    this.#last = this.#store.last()
    this.#periodStart = new Date(Math.max(Date.now(), this.#last === undefined ? 0 : Date.parse(this.#last.to)))
    this.#timer = setInterval(() => {
      if (this.#totals.size > 0) {
        this.cut()
      }
    }, this.#intervalMs)
    this.#timer.unref()
  }

  /** Add one request's or delivery's usage to the current period */
  record (usage: MeteredUsage): void {
    const deployer = this.#components.deployerOf?.(usage.brane) ?? this.#components.key.did
    let byDeployer = this.#totals.get(usage.brane)
    if (byDeployer === undefined) {
      byDeployer = new Map()
      this.#totals.set(usage.brane, byDeployer)
    }
    let t = byDeployer.get(deployer)
    if (t === undefined) {
      t = { brane: usage.brane, deployer, invocations: 0, failures: 0, cpuMs: 0, memMiBs: 0, bytesIn: 0, bytesOut: 0 }
      byDeployer.set(deployer, t)
    }
    t.invocations++
    t.failures += usage.ok ? 0 : 1
    t.cpuMs += usage.cpuMs
    t.memMiBs += (usage.memBytes / MIB) * (usage.durationMs / 1000)
    t.bytesIn += usage.bytesIn
    t.bytesOut += usage.bytesOut
  }

  /** Usage of the current period so far (not yet in a receipt) */
  pending (): UsageLine[] {
    return [...this.#totals.values()].flatMap((m) => [...m.values()]).map((t) => ({ ...t, cpuMs: round3(t.cpuMs), memMiBs: round3(t.memMiBs) }))
  }

  /** Sign, chain and store a receipt for the current period; start a new period */
  cut (): Receipt {
    const store = this.#store
    if (store === undefined) {
      throw new Error('Cannot cut a settlement receipt: settlement is not started')
    }
    const to = new Date(Math.max(Date.now(), this.#periodStart.getTime()))
    const usage = this.pending().sort((a, b) => a.brane < b.brane ? -1 : a.brane > b.brane ? 1 : a.deployer < b.deployer ? -1 : 1)
    const receipt = signReceipt(this.#components.key, this.#last, { from: this.#periodStart.toISOString(), to: to.toISOString() }, usage)
    store.append(receipt)
    this.#last = receipt
    this.#totals = new Map()
    this.#periodStart = to
    this.#components.logger.info({ seq: receipt.seq, lines: usage.length }, 'settlement receipt written')
    return receipt
  }

  /** Receipts stored so far (from `since`, ISO 8601) */
  receipts (since?: string): Receipt[] {
    return this.#store?.list(since) ?? []
  }

  /** The latest receipt: the head of this node's chain */
  head (): Receipt | undefined {
    return this.#store?.last()
  }

  /** Cut the final receipt and close the store */
  stop (): void {
    if (this.#timer !== undefined) {
      clearInterval(this.#timer)
      this.#timer = undefined
    }
    if (this.#store !== undefined) {
      this.cut()
      this.#store.close()
      this.#store = undefined
    }
  }
}
