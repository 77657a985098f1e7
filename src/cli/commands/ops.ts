import type { Command } from 'commander'
import { writeFile } from 'node:fs/promises'
import { resolve } from 'node:path'
import { adminBytes, adminJson, adminStream, AdminRequestError } from '../../daemon/lite.ts'
import type { AdminStatus, BraneProfile, ReloadReport } from '../../daemon/index.ts'
import { formatSize, parseDuration } from '../../manifest/lite.ts'
import type { LogRecord } from '../../observe/index.ts'
import { OmegaError, UsageError } from '../../errors.ts'
import { homeOption, type CliContext } from '../context.ts'
import { firstLine, table } from '../table.ts'

/** Commands that talk to a running daemon through its admin API */
export function opsCommands (program: Command, ctx: CliContext): void {
  const signal = ctx.signal === undefined ? {} : { signal: ctx.signal }

  program.command('ps')
    .description('List the branes of the running daemon: state, placement, routes')
    .option('--json', 'print as JSON')
    .action(async (opts: { json?: boolean }, command: Command) => {
      const status = await adminJson<AdminStatus>(ctx.home(homeOption(command)), '/v1/status', signal)
      if (opts.json === true) {
        ctx.stdout.write(JSON.stringify(status, null, 2) + '\n')
        return
      }
      ctx.stdout.write(`node ${status.did}\nmanifest ${status.manifest}\ngateway ${status.gateway} (up since ${status.startedAt})\n${status.dashboard === undefined ? '' : `dashboard ${status.dashboard} (sign in: omega dashboard)\n`}\n`)
      ctx.stdout.write(table(['brane', 'state', 'substrate', 'profile', 'lifecycle', 'routes', 'image'], status.branes.map((b) => [
        String(b.name), String(b.state), String(b.substrate ?? ''), String(b.profile ?? ''), String(b.lifecycle ?? ''),
        Array.isArray(b.routes) ? b.routes.join(' ') || '—' : '—',
        b.state === 'running'
          ? String(b.source ?? '')
          : `${firstLine(typeof b.reason === 'string' ? b.reason : undefined)}${b.state === 'failed' ? ` (attempt ${String(b.attempts)}, next ${String(b.retryAt)})` : ''}`
      ])))
      const resolvers = (status.resolvers ?? []) as Array<Record<string, unknown>>
      if (resolvers.length > 0) {
        ctx.stdout.write('\n' + table(['resolver', 'mode', 'host', 'brane', 'state', 'public url', 'restarts'], resolvers.map((r) => [
          String(r.name), String(r.mode), String(r.host), String(r.brane ?? '—'), String(r.state), String(r.url ?? '—'), String(r.restarts ?? 0)
        ])))
      }
    })

  program.command('dashboard')
    .description('Print a one-time sign-in link to the running node\'s live dashboard, and open it in a browser where one can be started')
    .option('--no-open', 'only print the link')
    .option('--json', 'print the address and the link as JSON')
    .action(async (opts: { open: boolean, json?: boolean }, command: Command) => {
      const { url, link } = await adminJson<{ url: string, link: string }>(ctx.home(homeOption(command)), '/v1/dashboard', signal)
      if (opts.json === true) {
        ctx.stdout.write(JSON.stringify({ url, link }, null, 2) + '\n')
        return
      }
      ctx.stdout.write(`${link}\n`)
      ctx.stderr.write(`omega: this link signs one browser in to ${url} within 5 minutes, once\n`)
      if (opts.open && ctx.isTTY) {
        openBrowser(link)
      }
    })
}

/** Hands `url` to the desktop's opener (xdg-open, open, start), if there is one; quietly does nothing else */
function openBrowser (url: string): void {
  const [cmd, ...args] = process.platform === 'darwin' ? ['open', url] : process.platform === 'win32' ? ['cmd', '/c', 'start', '', url] : ['xdg-open', url]
  import('node:child_process').then(({ spawn }) => {
    const child = spawn(cmd as string, args, { stdio: 'ignore', detached: true })
    child.on('error', () => {})
    child.unref()
  }, () => {})
}

/** `omega logs` (and `omega gaia logs`) */
export function logsCommand (program: Command, ctx: CliContext): void {
  const signal = ctx.signal === undefined ? {} : { signal: ctx.signal }
  program.command('logs')
    .description('Show the logs of the running daemon: requests (REQ … RES … END) and guest output')
    .option('-b, --brane <name>', 'only this brane')
    .option('-s, --since <duration>', 'only the last DURATION, e.g. 30s, 5m', '')
    .option('-n, --limit <count>', 'at most this many past lines', '1000')
    .option('-f, --follow', 'keep printing new lines until interrupted')
    .option('--json', 'one JSON record per line')
    .action(async (opts: { brane?: string, since: string, limit: string, follow?: boolean, json?: boolean }, command: Command) => {
      const params = new URLSearchParams()
      if (opts.brane !== undefined) {
        params.set('brane', opts.brane)
      }
      if (opts.since !== '') {
        const ms = parseDuration(opts.since)
        if (ms === undefined) {
          throw new UsageError(`Invalid --since "${opts.since}": expected a duration such as "30s" or "5m"`)
        }
        params.set('since', String(Date.now() - ms))
      }
      const limit = Number(opts.limit)
      if (!Number.isInteger(limit) || limit < 0) {
        throw new UsageError(`Invalid --limit "${opts.limit}": expected a whole number`)
      }
      params.set('limit', String(limit))
      if (opts.follow === true) {
        params.set('follow', '1')
      }
      let pending = ''
      try {
        for await (const chunk of adminStream(ctx.home(homeOption(command)), `/v1/logs?${params.toString()}`, signal)) {
          pending += chunk
          let newline = pending.indexOf('\n')
          while (newline !== -1) {
            const line = pending.slice(0, newline)
            pending = pending.slice(newline + 1)
            if (line !== '') {
              ctx.stdout.write(opts.json === true ? line + '\n' : formatRecord(JSON.parse(line) as LogRecord))
            }
            newline = pending.indexOf('\n')
          }
        }
      } catch (err) {
        // Ctrl-C ends --follow: that is the normal way out
        if (!(opts.follow === true && ctx.signal?.aborted === true)) {
          throw err
        }
      }
    })
}

export function reloadCommand (program: Command, ctx: CliContext): void {
  program.command('reload')
    .description('Hot-reload the running daemon: validate the manifest, warm new and changed branes beside the old, switch atomically, drain the old')
    .argument('[file]', 'manifest to load (default: the one running)')
    .option('--brane <name>', 'change only this brane (refused if the manifest changes any other); what a token for deploy on brane/NAME allows')
    .action(async (file: string | undefined, opts: { brane?: string }, command: Command) => {
      let report: ReloadReport
      try {
        const query = opts.brane === undefined ? '' : `?brane=${encodeURIComponent(opts.brane)}`
        report = await adminJson<ReloadReport>(ctx.home(homeOption(command)), `/v1/reload${query}`, {
          body: file === undefined ? {} : { file: resolve(ctx.cwd, file) },
          ...(ctx.signal === undefined ? {} : { signal: ctx.signal })
        })
      } catch (err) {
        if (err instanceof AdminRequestError && err.status === 422) {
          // the daemon kept running what it had: report why, with the daemon's error kind
          const refused = new OmegaError(`Reload refused, nothing changed: ${err.message}`)
          refused.name = err.remoteName ?? 'OmegaError'
          throw refused
        }
        throw err
      }
      const list = (names: readonly string[]): string => names.length === 0 ? '—' : names.join(', ')
      ctx.stdout.write(`reloaded: added ${list(report.added)} · changed ${list(report.changed)} · removed ${list(report.removed)} · unchanged ${list(report.unchanged)}\n`)
    })
}

export function profileCommand (program: Command, ctx: CliContext): void {
  program.command('profile')
    .description('Show where a brane\'s time goes: P50/P99/max of cold start, execution, CPU and memory (max: peak linear memory), and requests per second')
    .requiredOption('-b, --brane <name>', 'the brane')
    .option('--p50', 'the P50 row of the cold/exec/cpu/mem table (with --p99: both rows)')
    .option('--p99', 'the P99 row of the cold/exec/cpu/mem table (with --p50: both rows)')
    .option('--pprof <file>', 'sample the CPU of the brane\'s workers and write a pprof file (gzipped profile.proto, for go tool pprof or Pyroscope)')
    .option('--seconds <n>', 'with --pprof: how long to sample, up to 60', '5')
    .option('--json', 'print as JSON')
    .addHelpText('after', '\nExamples:\n  $ omega profile --brane api --p50 --p99\n  $ omega profile --brane api --pprof api.pb.gz --seconds 10 && go tool pprof -http=: api.pb.gz')
    .action(async (opts: { brane: string, p50?: boolean, p99?: boolean, pprof?: string, seconds: string, json?: boolean }, command: Command) => {
      if (opts.pprof !== undefined) {
        await cpuProfile(ctx, ctx.home(homeOption(command)), { brane: opts.brane, file: opts.pprof, seconds: opts.seconds, json: opts.json === true })
        return
      }
      const profile = await adminJson<BraneProfile>(ctx.home(homeOption(command)), `/v1/profile?brane=${encodeURIComponent(opts.brane)}`, ctx.signal === undefined ? {} : { signal: ctx.signal })
      if (opts.json === true) {
        ctx.stdout.write(JSON.stringify(profile, null, 2) + '\n')
        return
      }
      const parts = [['total', profile.total, 'ms'], ['cold', profile.cold, 'ms'], ['exec', profile.exec, 'ms'], ['cpu', profile.cpu, 'ms'], ['mem', profile.mem, 'bytes']] as const
      const cell = (unit: 'ms' | 'bytes', v: number | undefined): string => v === undefined ? '—' : unit === 'ms' ? msCell(v) : formatSize(Math.round(v))
      if (opts.p50 === true || opts.p99 === true) {
        // the seeds' view: one row per percentile, one column per figure, then the rate
        const columns = parts.filter(([name]) => name !== 'total')
        const rows = (['p50', 'p99'] as const).filter((p) => opts[p] === true).map((p) => [p.toUpperCase(), ...columns.map(([, summary, unit]) => cell(unit, summary?.[p]))])
        ctx.stdout.write(table(['', ...columns.map(([name]) => name)], rows))
        ctx.stdout.write(`RPS ${rate(profile.reqPerSec)} (last ${profile.windowSeconds}s; ${profile.requests} requests, ${profile.errors} errors)\n`)
        return
      }
      ctx.stdout.write(`brane ${profile.brane}: ${profile.requests} requests, ${profile.errors} errors, ${profile.reqPerSec.toFixed(1)} req/s (last ${profile.windowSeconds}s)\n\n`)
      const rows: string[][] = []
      for (const [name, summary, unit] of parts) {
        if (summary !== undefined) {
          rows.push([name, cell(unit, summary.p50), cell(unit, summary.p99), cell(unit, summary.max), String(summary.count)])
        }
      }
      ctx.stdout.write(rows.length === 0 ? 'No requests yet\n' : table(['', 'p50', 'p99', 'max', 'samples'], rows))
    })
}

function msCell (v: number): string {
  return `${v < 10 ? v.toFixed(2) : v.toFixed(1)}ms`
}

/** `1.41 K`, `312`, `2.05 M` */
function rate (perSecond: number): string {
  if (perSecond >= 1e6) {
    return `${(perSecond / 1e6).toFixed(2)} M`
  }
  return perSecond >= 1000 ? `${(perSecond / 1000).toFixed(2)} K` : perSecond.toFixed(perSecond < 10 ? 2 : 0)
}

/**
 * `omega gaia logs|profile|snapshot`: the seeds' spelling of `omega logs`, `omega profile`
 * and `omega snapshot` (the same commands, options and output)
 */
export function gaiaCommands (program: Command, ctx: CliContext, snapshot: (program: Command, ctx: CliContext) => void): void {
  const gaia = program.command('gaia').description('The operator pool\'s views, as the seeds spell them: logs, profile, snapshot')
  logsCommand(gaia, ctx)
  profileCommand(gaia, ctx)
  snapshot(gaia, ctx)
}

/** `omega profile --pprof FILE`: asks the daemon for a CPU profile, writes it, says what it holds */
async function cpuProfile (ctx: CliContext, home: string, opts: { brane: string, file: string, seconds: string, json: boolean }): Promise<void> {
  const seconds = Number(opts.seconds)
  if (!(seconds > 0 && seconds <= 60)) {
    throw new UsageError(`Invalid --seconds "${opts.seconds}": expected a number of seconds above 0 and at most 60`)
  }
  const file = resolve(ctx.cwd, opts.file)
  ctx.stderr.write(`profiling brane ${opts.brane} for ${seconds} s…`)
  // a dot a second on a terminal, so that a long profile does not look stuck
  const ticker = ctx.isTTY ? setInterval(() => { ctx.stderr.write('.') }, 1_000) : undefined
  let bytes: Buffer
  try {
    bytes = await adminBytes(home, `/v1/profile/cpu?brane=${encodeURIComponent(opts.brane)}&seconds=${seconds}`, {
      method: 'POST',
      ...(ctx.signal === undefined ? {} : { signal: ctx.signal })
    })
  } finally {
    clearInterval(ticker)
    ctx.stderr.write('\n')
  }
  await writeFile(file, bytes)
  const { decodePprof } = await import('../../observe/index.ts')
  const profile = await decodePprof(bytes)
  const samples = profile.sample.length
  const cpuMs = profile.sample.reduce((sum, s) => sum + Number(s.value[1] ?? 0), 0) / 1e6
  const threadKey = profile.stringTable.strings.indexOf('thread')
  const workers = new Set(profile.sample.flatMap((s) => s.label.filter((l) => Number(l.key) === threadKey).map((l) => Number(l.str)))).size
  if (opts.json) {
    ctx.stdout.write(JSON.stringify({ brane: opts.brane, file, bytes: bytes.byteLength, samples, cpuMs, workers }, null, 2) + '\n')
    return
  }
  const held = samples === 0
    ? 'no samples (the brane was idle)'
    : `${samples} samples, ${cpuMs.toFixed(1)} ms of CPU across ${workers} worker${workers === 1 ? '' : 's'}`
  ctx.stdout.write(`${file}: ${formatSize(bytes.byteLength)}, ${held}\n`)
}

/** `13:41:07.118 fetch.034 REQ …`: the instance that wrote a line where it is known, else the brane */
function formatRecord (record: LogRecord): string {
  const time = new Date(record.time).toISOString().slice(11, 23)
  const stream = record.kind === 'stdout' || record.kind === 'stderr' ? `[${record.kind}] ` : ''
  const instance = record.fields?.instance
  return `${time} ${typeof instance === 'string' ? instance : record.brane} ${stream}${record.message}\n`
}
