/**
 * Resolvers publish the gateway (or one brane of it) under a public host by running the
 * provider's CLI, one supervised process per `[resolver.NAME]`: its output is read for the
 * public URL, a process that exits (or announces no URL in time) is restarted with
 * exponential back-off, and stop terminates it (SIGTERM, then SIGKILL after a grace
 * period) and runs the provider's removal command where it has one. `local` runs no
 * process: the gateway itself serves the resolver's host name.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { createInterface } from 'node:readline'
import { OmegaError } from '../errors.ts'
import type { Logger, Startable } from '../interfaces/index.ts'
import type { ResolverPlan } from '../manifest/index.ts'
import { providerCommand, type ProviderCommand } from './providers.ts'

export interface ResolverStatus {
  readonly name: string
  readonly mode: ResolverPlan['mode']
  readonly host: string
  readonly brane?: string
  /**
   * `up` once the public URL is known (always for `local`); `elsewhere`: another node of
   * the mesh runs it (the one that leads its brane)
   */
  readonly state: 'starting' | 'up' | 'restarting' | 'stopped' | 'elsewhere'
  readonly url?: string
  readonly pid?: number
  readonly restarts: number
  readonly lastError?: string
}

export interface ResolversComponents {
  readonly logger: Logger
  /** told whenever a resolver's public URL changes (the gateway routes its host) */
  readonly onChange?: () => void
}

export interface ResolversInit {
  /** the gateway's port on 127.0.0.1 (what providers forward to) */
  port: number
  /** environment of provider processes. @default the daemon's */
  env?: Readonly<Record<string, string | undefined>>
  /** first restart delay, doubled per consecutive failure. @default 500 */
  backoffMs?: number
  /** @default 30000 */
  maxBackoffMs?: number
  /** a provider that prints no URL within this is restarted. @default 30000 */
  readyTimeoutMs?: number
  /** SIGTERM → SIGKILL grace on stop. @default 5000 */
  graceMs?: number
}

type ResolvedInit = Required<Omit<ResolversInit, 'env'>> & Pick<ResolversInit, 'env'>

class ResolverProcess {
  readonly plan: ResolverPlan
  readonly #command: ProviderCommand
  readonly #init: ResolvedInit
  readonly #log: Logger
  readonly #onChange: () => void
  #child: ChildProcess | undefined
  #url: string | undefined
  #state: ResolverStatus['state'] = 'starting'
  #restarts = 0
  #failures = 0
  #lastError: string | undefined
  #timer: NodeJS.Timeout | undefined
  #stopping = false

  constructor (plan: ResolverPlan, command: ProviderCommand, init: ResolvedInit, log: Logger, onChange: () => void) {
    this.plan = plan
    this.#command = command
    this.#init = init
    this.#log = log
    this.#onChange = onChange
  }

  get url (): string | undefined {
    return this.#url
  }

  status (): ResolverStatus {
    return {
      name: this.plan.name,
      mode: this.plan.mode,
      host: this.plan.host,
      ...(this.plan.brane === undefined ? {} : { brane: this.plan.brane }),
      state: this.#state,
      ...(this.#url === undefined ? {} : { url: this.#url }),
      ...(this.#child?.pid === undefined || this.#state === 'stopped' ? {} : { pid: this.#child.pid }),
      restarts: this.#restarts,
      ...(this.#lastError === undefined ? {} : { lastError: this.#lastError })
    }
  }

  start (): void {
    this.#stopping = false
    this.#spawn()
  }

  #spawn (): void {
    const { command, args } = this.#command
    this.#state = this.#restarts === 0 ? 'starting' : 'restarting'
    const child = spawn(command, args, {
      stdio: ['ignore', 'pipe', 'pipe'],
      ...(this.#init.env === undefined ? {} : { env: this.#init.env as NodeJS.ProcessEnv })
    })
    this.#child = child
    // why this run ended, when Omega knows better than the exit status
    let why: string | undefined
    const ready = setTimeout(() => {
      if (this.#url === undefined && this.#child === child) {
        why = `${command} printed no public URL within ${this.#init.readyTimeoutMs} ms`
        child.kill('SIGTERM')
      }
    }, this.#init.readyTimeoutMs)
    ready.unref()
    const onLine = (line: string): void => {
      const url = this.#command.parse(line)
      if (url !== undefined && this.#child === child) {
        clearTimeout(ready)
        this.#failures = 0
        this.#state = 'up'
        if (url !== this.#url) {
          this.#url = url
          this.#log.info({ resolver: this.plan.name, url }, 'resolver published')
          this.#onChange()
        }
      }
    }
    for (const stream of [child.stdout, child.stderr]) {
      if (stream !== null) {
        createInterface({ input: stream, crlfDelay: Infinity }).on('line', onLine)
      }
    }
    child.once('error', (err: NodeJS.ErrnoException) => {
      why = err.code === 'ENOENT'
        ? `"${command}" is not installed (not found on PATH): install it or choose another resolver mode`
        : `cannot run ${command}: ${err.message}`
    })
    child.once('close', (code, signal) => {
      clearTimeout(ready)
      if (this.#child !== child) {
        return
      }
      if (this.#stopping) {
        this.#state = 'stopped'
        return
      }
      this.#lastError = why ?? `${command} exited (${signal ?? `code ${String(code)}`})`
      if (this.#url !== undefined) {
        // the publication is gone until the restarted process announces it again
        this.#url = undefined
        this.#onChange()
      }
      this.#failures++
      this.#restarts++
      this.#state = 'restarting'
      const delay = Math.min(this.#init.maxBackoffMs, this.#init.backoffMs * 2 ** (this.#failures - 1))
      this.#log.warn({ resolver: this.plan.name, delayMs: delay }, `${this.#lastError}: restarting`)
      this.#timer = setTimeout(() => {
        this.#timer = undefined
        if (!this.#stopping) {
          this.#spawn()
        }
      }, delay)
    })
  }

  async stop (): Promise<void> {
    this.#stopping = true
    if (this.#timer !== undefined) {
      clearTimeout(this.#timer)
      this.#timer = undefined
    }
    const child = this.#child
    if (child !== undefined && child.exitCode === null && child.signalCode === null) {
      const closed = new Promise<void>((resolve) => { child.once('close', () => { resolve() }) })
      child.kill('SIGTERM')
      const kill = setTimeout(() => { child.kill('SIGKILL') }, this.#init.graceMs)
      await closed
      clearTimeout(kill)
    }
    this.#state = 'stopped'
    const cleanup = this.#command.cleanup
    if (cleanup !== undefined) {
      await new Promise<void>((resolve) => {
        const run = spawn(cleanup.command, cleanup.args, { stdio: 'ignore', ...(this.#init.env === undefined ? {} : { env: this.#init.env as NodeJS.ProcessEnv }) })
        const timer = setTimeout(() => { run.kill('SIGKILL') }, this.#init.graceMs)
        run.once('error', () => { clearTimeout(timer); resolve() })
        run.once('close', (code) => {
          clearTimeout(timer)
          if (code !== 0) {
            this.#log.warn({ resolver: this.plan.name, code }, `${cleanup.command} ${cleanup.args.join(' ')} failed`)
          }
          resolve()
        })
      })
    }
    if (this.#url !== undefined) {
      this.#url = undefined
      this.#onChange()
    }
  }
}

/** Whether two plans publish the same thing the same way (a running process is kept) */
function samePublication (a: ResolverPlan, b: ResolverPlan): boolean {
  return a.name === b.name && a.mode === b.mode && a.host === b.host && a.brane === b.brane
}

/** The resolvers of the running plan: the providers this node runs, supervised */
export class Resolvers implements Startable {
  #plans: readonly ResolverPlan[]
  /** which provider resolvers this node runs (in a mesh: those of the branes it leads) */
  #here: (plan: ResolverPlan) => boolean
  #processes: ResolverProcess[] = []
  readonly #components: ResolversComponents
  readonly #init: ResolvedInit
  #started = false

  constructor (components: ResolversComponents, plans: readonly ResolverPlan[], init: ResolversInit, here: (plan: ResolverPlan) => boolean = () => true) {
    if (!Number.isInteger(init.port) || init.port <= 0) {
      throw new OmegaError(`Cannot start resolvers: the gateway port ${init.port} is not known`)
    }
    this.#components = components
    this.#plans = plans
    this.#here = here
    this.#init = {
      port: init.port,
      ...(init.env === undefined ? {} : { env: init.env }),
      backoffMs: init.backoffMs ?? 500,
      maxBackoffMs: init.maxBackoffMs ?? 30_000,
      readyTimeoutMs: init.readyTimeoutMs ?? 30_000,
      graceMs: init.graceMs ?? 5_000
    }
  }

  start (): void {
    this.#started = true
    // nothing runs yet, so nothing is stopped: the processes start now
    this.#apply().catch((err: unknown) => { this.#components.logger.error({ err }, 'cannot start the resolvers') })
  }

  /**
   * Take the resolvers of a new plan (a reload), or a new answer of which run here (the
   * mesh placed their branes elsewhere): start the new ones, stop those gone or changed,
   * keep the others running as they are
   */
  async update (plans: readonly ResolverPlan[], here: (plan: ResolverPlan) => boolean = this.#here): Promise<void> {
    this.#plans = plans
    this.#here = here
    if (this.#started) {
      await this.#apply()
    }
  }

  async #apply (): Promise<void> {
    const wanted = this.#plans.filter((plan) => plan.mode !== 'local' && this.#here(plan))
    const gone = this.#processes.filter((proc) => !wanted.some((plan) => samePublication(plan, proc.plan)))
    this.#processes = this.#processes.filter((proc) => !gone.includes(proc))
    for (const plan of wanted) {
      if (plan.mode === 'local' || this.#processes.some((proc) => samePublication(plan, proc.plan))) {
        continue
      }
      const proc = new ResolverProcess(plan, providerCommand(plan.mode, this.#init.port), this.#init,
        this.#components.logger, () => { this.#components.onChange?.() })
      this.#processes.push(proc)
      proc.start()
    }
    await Promise.all(gone.map(async (proc) => { await proc.stop() }))
    if (gone.length > 0) {
      this.#components.onChange?.()
    }
  }

  async stop (): Promise<void> {
    if (!this.#started) {
      return
    }
    this.#started = false
    await Promise.all(this.#processes.map(async (p) => { await p.stop() }))
    this.#processes.length = 0
  }

  /** Every resolver, `local` ones included */
  status (): ResolverStatus[] {
    return this.#plans.map((plan) => {
      const proc = this.#processes.find((p) => samePublication(p.plan, plan))
      if (proc !== undefined) {
        return proc.status()
      }
      const up = this.#started && plan.mode === 'local'
      return {
        name: plan.name,
        mode: plan.mode,
        host: plan.host,
        ...(plan.brane === undefined ? {} : { brane: plan.brane }),
        state: up ? 'up' : this.#started && !this.#here(plan) ? 'elsewhere' : 'stopped',
        ...(up ? { url: `http://${plan.host}:${this.#init.port}` } : {}),
        restarts: 0
      }
    })
  }

  /**
   * Host names the gateway should route to a brane: each resolver's declared host and,
   * once known, the host of its public URL
   */
  hostRoutes (): Array<{ host: string, brane: string }> {
    const out: Array<{ host: string, brane: string }> = []
    for (const plan of this.#plans) {
      if (plan.brane === undefined) {
        continue
      }
      out.push({ host: plan.host.toLowerCase(), brane: plan.brane })
      const url = this.#processes.find((p) => samePublication(p.plan, plan))?.url
      if (url !== undefined) {
        const host = new URL(url).hostname.toLowerCase()
        if (host !== plan.host.toLowerCase()) {
          out.push({ host, brane: plan.brane })
        }
      }
    }
    return out
  }
}
