import type { Command } from 'commander'
import { readFile, writeFile } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { ADMIN_SOCKET, adminJson } from '../../daemon/lite.ts'
import { socketAnswers } from '../../util/index.ts'
import type { DeadLetter, TraceEndRecord } from '../../dispatch/index.ts'
import { TraceVerificationError } from '../../errors.ts'

export { TraceVerificationError }
import { homeOption, type CliContext } from '../context.ts'
import { table } from '../table.ts'

/** `omega trace` and `omega dlq`: the event side of a running daemon */
export function eventCommands (program: Command, ctx: CliContext): void {
  const signal = ctx.signal === undefined ? {} : { signal: ctx.signal }

  const trace = program.command('trace')
    .description('Show the hops of an event\'s trace and the end record the node signed for it')
    .argument('<id>', 'an event id (e.g. raw.batch:b3:9af2…), a trace id, or an unambiguous prefix')
    .option('--json', 'print the signed end record as JSON')
    .option('-o, --output <file>', 'write the signed end record to a file (check it later with "omega trace verify FILE")')
    .action(async (id: string, opts: { json?: boolean, output?: string }, command: Command) => {
      const record = await adminJson<TraceEndRecord>(ctx.home(homeOption(command)), `/v1/trace?id=${encodeURIComponent(id)}`, signal)
      if (opts.output !== undefined) {
        await writeFile(resolve(ctx.cwd, opts.output), JSON.stringify(record, null, 2) + '\n')
      }
      if (opts.json === true) {
        ctx.stdout.write(JSON.stringify(record, null, 2) + '\n')
        return
      }
      ctx.stdout.write(await renderTrace(record))
    })

  trace.command('verify')
    .description('Check a signed trace end record offline: the hops match their digest and the node\'s signature verifies')
    .argument('<file>', 'a record written by "omega trace ID -o FILE"')
    .action(async (file: string) => {
      const { verifyTrace } = await import('../../dispatch/index.ts')
      let record: TraceEndRecord
      try {
        record = JSON.parse(await readFile(resolve(ctx.cwd, file), 'utf8')) as TraceEndRecord
      } catch (err) {
        throw new TraceVerificationError(`Cannot read trace record ${file}: ${(err as Error).message}`)
      }
      const problems = verifyTrace(record)
      if (problems.length > 0) {
        throw new TraceVerificationError(`Trace record ${file} does not verify: ${problems.join('; ')}`)
      }
      ctx.stdout.write(`✓ ${file}: trace ${record.traceId}, ${record.count} hops, signed by ${record.node}\n`)
    })

  const dlq = program.command('dlq').description('The dead-letter queue: deliveries that failed every attempt')
  dlq.command('ls', { isDefault: true })
    .description('List dead deliveries')
    .option('--json', 'print as JSON')
    .action(async (opts: { json?: boolean }, command: Command) => {
      const dead = await adminJson<DeadLetter[]>(ctx.home(homeOption(command)), '/v1/dlq', signal)
      if (opts.json === true) {
        ctx.stdout.write(JSON.stringify(dead, null, 2) + '\n')
      } else if (dead.length === 0) {
        ctx.stdout.write('The dead-letter queue is empty\n')
      } else {
        ctx.stdout.write(table(['id', 'event', 'edge', 'attempts', 'failed', 'last error'], dead.map((d) => [
          String(d.id), d.eventId, d.edge, String(d.attempts), new Date(d.failedAt).toISOString(), d.lastError
        ])))
      }
    })
  dlq.command('replay')
    .description('Put dead deliveries back in the queue (all, or the given ids)')
    .argument('[ids...]', 'delivery ids from "omega dlq ls"')
    .action(async (ids: string[], _opts: unknown, command: Command) => {
      const query = ids.map((id) => `id=${encodeURIComponent(id)}`).join('&')
      const { replayed } = await adminJson<{ replayed: number }>(ctx.home(homeOption(command)), `/v1/dlq/replay${query === '' ? '' : `?${query}`}`, { ...signal, body: {} })
      ctx.stdout.write(`replayed ${replayed} ${replayed === 1 ? 'delivery' : 'deliveries'}\n`)
    })
}

export async function renderTrace (record: TraceEndRecord): Promise<string> {
  const { verifyTrace } = await import('../../dispatch/index.ts')
  const problems = verifyTrace(record)
  const ms = (v: number): string => `${v.toFixed(2)}ms`
  let out = `trace ${record.traceId}: ${record.count} hops, ${record.bytes} B, ${ms(record.endedAt - record.startedAt)}\n\n`
  // a trace gathered across a mesh names the node that recorded each hop (the sender)
  const nodes = record.hops.map((h) => (h as { node?: unknown }).node)
  const withNode = nodes.some((n) => typeof n === 'string')
  out += table(['#', ...(withNode ? ['node'] : []), 'from', 'to', 'topic', 'bytes', 'attempt', 'took', 'outcome'], record.hops.map((h, i) => [
    String(i + 1), ...(withNode ? [String(nodes[i] ?? '')] : []), h.from, h.to, h.topic, String(h.bytes) + (h.compressed ? ' (compressed)' : ''), String(h.attempt), ms(h.endedAt - h.startedAt), h.outcome
  ]))
  out += `\nend record signed by ${record.node} at ${record.signedAt}: ${problems.length === 0 ? 'signature ok' : `INVALID (${problems.join('; ')})`}\n`
  return out
}

/** `omega queue check` and `omega queue salvage`: the node's event queue file, with no daemon running */
export function queueCommands (program: Command, ctx: CliContext): void {
  const queue = program.command('queue')
    .description('Look after the node\'s durable event queue ($OMEGA_HOME/queue.db)')
  const pathOf = (command: Command): string => join(ctx.home(homeOption(command)), 'queue.db')

  queue.command('check')
    .description('Check the queue with SQLite\'s quick_check (exit 17 when it is damaged)')
    .action(async (_opts: unknown, command: Command) => {
      const { checkQueue, QueueError } = await import('../../dispatch/index.ts')
      const report = checkQueue(pathOf(command))
      if (report.problems.length === 0) {
        ctx.stdout.write(`${report.path}: ok (${report.bytes} bytes)\n`)
        return
      }
      throw new QueueError(`${report.path} is damaged:\n${report.problems.map((p) => `  ${p}`).join('\n')}\nRun "omega queue salvage" (with the node stopped) to copy every readable event into a new queue`)
    })

  queue.command('salvage')
    .description('Copy every readable event and delivery into a new queue, keep the damaged file beside it (the node must be stopped)')
    .action(async (_opts: unknown, command: Command) => {
      const { salvageQueue, QueueError } = await import('../../dispatch/index.ts')
      const home = ctx.home(homeOption(command))
      if (await socketAnswers(join(home, ADMIN_SOCKET))) {
        throw new QueueError('A node is running with this home: stop it before salvaging its queue')
      }
      const report = salvageQueue(pathOf(command))
      ctx.stdout.write(`salvaged ${report.events} events and ${report.deliveries} deliveries into ${pathOf(command)}; ${report.lost} rows could not be read; the damaged file is ${report.damaged}\n`)
    })
}
