/**
 * The supervisor: keeps the branes that run matching the plan. It loads a plan beside
 * what runs (reusing every brane whose plan and component did not change, rolling a
 * failed load back: generation.ts), hands back the replaced branes to drain, and starts
 * again, with back-off, the branes that could not start. Loads and retries run one at a
 * time. Starting a brane is the {@link BraneStarter}'s job: the supervisor never looks at
 * its profile or runtime.
 */
import { OmegaError } from '../errors.ts'
import type { AbortOptions, Logger } from '../interfaces/index.ts'
import type { Plan } from '../manifest/index.ts'
import { loadGeneration, type BraneStarter, type Generation, type GenerationSettings, type RunningBrane } from './generation.ts'

/** Back-off between start attempts of a failed brane: 1 s, doubling, at most 5 min */
export function retryDelayMs (attempts: number): number {
  return Math.min(1000 * 2 ** Math.min(attempts - 1, 20), 300_000)
}

export interface SupervisorInit {
  /** what starts the branes of `plan` */
  readonly starter: (plan: Plan) => BraneStarter
  readonly log: Logger
  /** a brane that could not start now runs (a retry worked): route to it */
  readonly started: (name: string) => void
  /** ms to wait before the next start of a brane that failed `attempts` times. @default {@link retryDelayMs} */
  readonly retryDelayMs?: (attempts: number) => number
}

/** What a load switched to, and what it replaced */
export interface Load {
  readonly generation: Generation
  /** the branes carried over unchanged */
  readonly reused: ReadonlySet<string>
  /** the branes no longer running: the caller drains them once nothing routes to them */
  readonly replaced: readonly RunningBrane[]
}

export class Supervisor {
  #generation: Generation
  readonly #init: SupervisorInit
  readonly #timers = new Map<string, NodeJS.Timeout>()
  readonly #stopping = new AbortController()
  #chain: Promise<unknown> = Promise.resolve()

  /** `generation`: what runs now (its failed branes are retried from {@link retryFailed}) */
  constructor (generation: Generation, init: SupervisorInit) {
    this.#generation = generation
    this.#init = init
  }

  get generation (): Generation {
    return this.#generation
  }

  /** aborted once the supervisor stops */
  get signal (): AbortSignal {
    return this.#stopping.signal
  }

  /** Run `work` after the loads and retries before it, and before those after it */
  async serially<T> (work: () => Promise<T>): Promise<T> {
    const run = this.#chain.then(work)
    this.#chain = run.catch(() => {})
    return run
  }

  /**
   * Load `plan` beside what runs and switch to it; the failed branes of the new
   * generation are retried. Call it inside {@link serially}.
   *
   * @throws what the load throws: then nothing changed
   */
  async load (plan: Plan, options: AbortOptions, settings: GenerationSettings = {}): Promise<Load> {
    if (this.#stopping.signal.aborted) {
      throw new OmegaError('The node is stopping')
    }
    const old = this.#generation
    const { generation, reused } = await loadGeneration(plan, old.running, this.#init.starter(plan), this.#init.log, options, settings)
    this.#generation = generation
    this.retryFailed()
    return { generation, reused, replaced: [...old.running.values()].filter((r) => !reused.has(r.plan.name)) }
  }

  /** Schedule a start of every brane of the running generation that could not start */
  retryFailed (): void {
    for (const name of this.#generation.failed.keys()) {
      this.#scheduleRetry(name)
    }
  }

  #scheduleRetry (name: string): void {
    const failure = this.#generation.failed.get(name)
    if (failure === undefined || this.#stopping.signal.aborted) {
      return
    }
    const delay = (this.#init.retryDelayMs ?? retryDelayMs)(failure.attempts)
    this.#generation.failed.set(name, { ...failure, retryAt: Date.now() + delay })
    // one pending retry per brane (a load may schedule it again)
    clearTimeout(this.#timers.get(name))
    const timer = setTimeout(() => {
      this.#timers.delete(name)
      this.serially(async () => { await this.#retry(name) }).catch(() => {})
    }, delay)
    timer.unref()
    this.#timers.set(name, timer)
  }

  async #retry (name: string): Promise<void> {
    const generation = this.#generation
    const failure = generation.failed.get(name)
    if (failure === undefined || this.#stopping.signal.aborted) {
      return
    }
    let started: Awaited<ReturnType<BraneStarter>>
    try {
      started = await this.#init.starter(generation.plan)(failure.plan, undefined, { signal: this.#stopping.signal })
    } catch (err) {
      generation.failed.set(name, { ...failure, error: err as Error, attempts: failure.attempts + 1 })
      this.#init.log.warn({ brane: name, attempts: failure.attempts + 1, error: (err as Error).name }, `brane ${name} still cannot start: ${(err as Error).message}`)
      this.#scheduleRetry(name)
      return
    }
    if ('reason' in started || this.#stopping.signal.aborted || this.#generation !== generation) {
      // placed elsewhere now, or the node moved on while it started
      if (!('reason' in started)) {
        await started.close()
      }
      return
    }
    generation.failed.delete(name)
    generation.running.set(name, started)
    if (started.events !== undefined) {
      generation.events.set(name, started.events)
    }
    this.#init.started(name)
    this.#init.log.info({ brane: name, attempts: failure.attempts + 1 }, `brane ${name} started after ${failure.attempts} failed attempts`)
  }

  /** No more loads or retries: pending retries are dropped, a running load or retry finishes */
  async stop (): Promise<void> {
    this.#stopping.abort(new OmegaError('The node is stopping'))
    for (const timer of this.#timers.values()) {
      clearTimeout(timer)
    }
    this.#timers.clear()
    await this.#chain
  }
}
