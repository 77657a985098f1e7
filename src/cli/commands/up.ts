import type { Command } from 'commander'
import { watch } from 'node:fs'
import { basename, dirname, resolve } from 'node:path'
import { hostname } from 'node:os'
import type { LocalNode, OmegaMeshNode } from '../../daemon/index.ts'
import { UsageError } from '../../errors.ts'
import { homeOption, type CliContext } from '../context.ts'
import { firstLine, table } from '../table.ts'

interface UpOptions {
  watch?: boolean
  port: string
  metricsPort?: string
  host: string
  logFormat: 'json' | 'pretty'
  logLevel: 'debug' | 'info' | 'warn' | 'error'
  trustRoot: string[]
  settleInterval?: string
  dashboard: string | false
}

/** Where the dashboard listens unless told otherwise (another port when this one is taken) */
export const DEFAULT_DASHBOARD = '127.0.0.1:7070'

/** `--dashboard [HOST:]PORT` (`--no-dashboard`: false) → where the dashboard listens */
export function dashboardOption (value: string | false): { host: string, port: number, anyPortIfTaken: boolean } | undefined {
  if (value === false) {
    return undefined
  }
  const match = /^(?:(\[[^\]]+\]|[^:]+):)?(\d+)$/.exec(value)
  if (match === null) {
    throw new UsageError(`Invalid --dashboard "${value}": expected [HOST:]PORT, e.g. 127.0.0.1:7070`)
  }
  const host = (match[1] ?? '127.0.0.1').replace(/^\[(.*)\]$/, '$1')
  return { host, port: portOption('--dashboard', match[2] as string), anyPortIfTaken: value === DEFAULT_DASHBOARD }
}

/** The line `omega up` and `omega node` print of their dashboard (none when it is off) */
export function dashboardLine (url: string | undefined): string {
  return url === undefined ? '' : `omega: dashboard ${url} (sign in: omega dashboard)\n`
}

/** The options `omega up` and `omega node` share for the dashboard */
export function dashboardOptions (command: Command): Command {
  return command
    .option('--dashboard <[host:]port>', 'serve the live dashboard here (sign in with "omega dashboard")', DEFAULT_DASHBOARD)
    .option('--no-dashboard', 'serve no dashboard')
}

export function upCommand (program: Command, ctx: CliContext): void {
  dashboardOptions(program.command('up'))
    .description('Run manifests on this machine, each an app: every substrate maps to this node, every standard brane is served by the HTTP gateway')
    .argument('<files...>', 'manifest files (TOML, JSON or YAML); several run side by side as apps (no two may share a brane name or a route)')
    .option('-p, --port <port>', 'gateway port (0 picks a free one)', '8080')
    .option('--host <address>', 'gateway address', '127.0.0.1')
    .option('--metrics-port <port>', 'also serve Prometheus metrics at http://HOST:PORT/metrics')
    .option('-w, --watch', 'hot-reload when the manifest file changes')
    .option('--log-format <format>', 'json or pretty', 'pretty')
    .option('--log-level <level>', 'debug, info, warn or error', 'info')
    .option('--trust-root <did>', 'also accept capability tokens rooted at this did:key (repeatable)', (did: string, all: string[]) => [...all, did], [])
    .option('--settle-interval <duration>', 'time between settlement receipts, e.g. 60s or 5m', '60s')
    .action(async (files: string[], opts: UpOptions, command: Command) => {
      // first: a brane worker boots on another core while this thread loads the daemon
      // and reads the manifest; the first brane takes it (it is stopped if none does)
      const { prebootWorker, releaseStandbyWorker } = await import('../../runtime/wasm/lite.ts')
      prebootWorker()
      const manifests = files.map((file) => resolve(ctx.cwd, file))
      const lone = await start(manifests, opts, command).finally(releaseStandbyWorker)
      const node = lone.local
      ctx.stdout.write(`omega: node ${node.did}\nomega: gateway ${node.url}\n${node.metricsUrl === undefined ? '' : `omega: metrics ${node.metricsUrl}\n`}${dashboardLine(node.dashboardUrl)}\n`)
      ctx.stdout.write(table(['brane', 'state', 'routes', 'image'], node.branes.map((b) => [
        b.name, b.state, b.routes.join(' ') || '—', b.state === 'running' ? `${b.source ?? ''} ${b.id?.slice(0, 15) ?? ''}…` : firstLine(b.reason)
      ])))
      for (const b of node.branes.filter((b) => b.state === 'failed')) {
        ctx.stderr.write(`omega: brane ${b.name} cannot start (the others serve; retried with back-off, see "omega ps"): ${b.reason ?? ''}\n`)
      }
      for (const r of node.resolvers) {
        ctx.stdout.write(`omega: resolver ${r.name} (${r.mode}) ${r.host}${r.brane === undefined ? '' : ` → ${r.brane}`}\n`)
      }
      ctx.stdout.write(`\n${opts.watch === true ? `Watching ${files.join(', ')} for changes. ` : ''}Press Ctrl-C to stop.\n`)
      const stopWatching = opts.watch === true ? manifests.map((manifest) => watchManifest(manifest, node, ctx)) : []
      await waitForAbort(ctx.signal)
      for (const stop of stopWatching) {
        stop()
      }
      ctx.stdout.write('omega: stopping\n')
      await lone.stop()
    })

  /** Checks the options, then starts the node: a node alone, the same as a mesh node with no mesh */
  async function start (manifests: readonly string[], opts: UpOptions, command: Command): Promise<OmegaMeshNode> {
    // one concurrent load of the daemon's module graph, not four in a row
    const [{ isRootDid }, { parseDuration }, { createLogging, telemetryFromEnv }, { startNode }] = await Promise.all([
      import('../../identity/index.ts'), import('../../manifest/index.ts'), import('../../observe/index.ts'), import('../../daemon/index.ts')
    ])
    const port = portOption('--port', opts.port)
    const metricsPort = opts.metricsPort === undefined ? undefined : portOption('--metrics-port', opts.metricsPort)
    const dashboard = dashboardOption(opts.dashboard)
    if (opts.logFormat !== 'json' && opts.logFormat !== 'pretty') {
      throw new UsageError(`Invalid --log-format "${String(opts.logFormat)}": expected "json" or "pretty"`)
    }
    const logging = createLogging(ctx.stderr, { format: opts.logFormat, level: opts.logLevel })
    const signal = ctx.signal === undefined ? {} : { signal: ctx.signal }
    for (const did of opts.trustRoot) {
      if (!isRootDid(did)) {
        throw new UsageError(`Invalid --trust-root "${did}": expected an Ed25519 did:key (see "omega id")`)
      }
    }
    const telemetry = otelOption(telemetryFromEnv, ctx.env)
    const settleIntervalMs = parseDuration(opts.settleInterval ?? '60s')
    if (settleIntervalMs === undefined || settleIntervalMs <= 0) {
      throw new UsageError(`Invalid --settle-interval "${String(opts.settleInterval)}": expected a duration such as 60s or 5m`)
    }
    return startNode({
      lone: { files: manifests },
      name: hostname(),
      substrate: 'habitat',
      home: ctx.home(homeOption(command)),
      host: opts.host,
      port,
      logging,
      ...(metricsPort === undefined ? {} : { metricsPort }),
      ...(dashboard === undefined ? {} : { dashboard }),
      trustedRoots: opts.trustRoot,
      settleIntervalMs,
      ...(telemetry === undefined ? {} : { telemetry })
    }, signal)
  }
}

/**
 * Reload when the manifest changes. Editors often replace a file instead of writing it,
 * so watch the directory and match the name; a burst of events makes one reload.
 */
function watchManifest (manifest: string, node: LocalNode, ctx: CliContext): () => void {
  let timer: NodeJS.Timeout | undefined
  const watcher = watch(dirname(manifest), (_event, name) => {
    if (name !== basename(manifest)) {
      return
    }
    clearTimeout(timer)
    timer = setTimeout(() => {
      node.reload(manifest).then((report) => {
        const list = (names: readonly string[]): string => names.length === 0 ? '—' : names.join(', ')
        ctx.stdout.write(`omega: reloaded: added ${list(report.added)} · changed ${list(report.changed)} · removed ${list(report.removed)}\n`)
      }, (err: unknown) => {
        ctx.stderr.write(`omega: reload refused, still running the previous version: ${err instanceof Error ? err.message : String(err)}\n`)
      })
    }, 150)
  })
  return () => {
    clearTimeout(timer)
    watcher.close()
  }
}

/** OpenTelemetry export as the `OTEL_*` variables ask (see `telemetryFromEnv`); a bad endpoint is a usage error */
export function otelOption<T> (fromEnv: (env: CliContext['env']) => T, env: CliContext['env']): T {
  try {
    return fromEnv(env)
  } catch (err) {
    throw new UsageError(err instanceof Error ? err.message : String(err))
  }
}

export function portOption (flag: string, value: string): number {
  const port = Number(value)
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new UsageError(`Invalid ${flag} "${value}": expected an integer from 0 to 65535`)
  }
  return port
}

export async function waitForAbort (signal: AbortSignal | undefined): Promise<void> {
  if (signal === undefined) {
    return
  }
  await new Promise<void>((resolve) => {
    if (signal.aborted) {
      resolve()
      return
    }
    // a ref'd timer keeps the process alive until the signal fires
    const keepAlive = setInterval(() => {}, 60_000)
    signal.addEventListener('abort', () => {
      clearInterval(keepAlive)
      resolve()
    }, { once: true })
  })
}
