import type { Command } from 'commander'
import { readFile, writeFile } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { UsageError } from '../../errors.ts'
import { parseDuration } from '../../manifest/lite.ts'
import { homeOption, type CliContext } from '../context.ts'
import { table } from '../table.ts'

/** `--since`: an ISO 8601 time, or a duration back from now (`1h`, `7d`) */
function since (text: string | undefined, now: number): string | undefined {
  if (text === undefined) {
    return undefined
  }
  const ms = parseDuration(text)
  if (ms !== undefined) {
    return new Date(now - ms).toISOString()
  }
  const at = Date.parse(text)
  if (Number.isNaN(at)) {
    throw new UsageError(`Invalid --since "${text}": expected an ISO 8601 time (2026-11-29T10:00:00Z) or a duration back from now (1h, 7d)`)
  }
  return new Date(at).toISOString()
}

/** `omega settle export | verify` */
export function settleCommands (program: Command, ctx: CliContext): void {
  const settle = program.command('settle').description('Settlement receipts: what this node ran for whom, signed and hash-chained')

  settle.command('export')
    .description('Write this node\'s receipts (JSON Lines, canonical JSON, with a signed trailer) for offline verification')
    .option('--since <time>', 'receipts whose period ends at or after this ISO time, or this long ago (e.g. 24h)')
    .option('-o, --output <file>', 'write to a file instead of stdout')
    .action(async (opts: { since?: string, output?: string }, command: Command) => {
      const { exportReceipts, ReceiptStore, SETTLE_DB } = await import('../../settle/index.ts')
      const { loadOrCreateNodeKey } = await import('../../identity/index.ts')
      const home = ctx.home(homeOption(command))
      const key = await loadOrCreateNodeKey(home)
      let store: InstanceType<typeof ReceiptStore>
      try {
        store = new ReceiptStore(join(home, SETTLE_DB), { readonly: true })
      } catch (err) {
        throw new UsageError(`No settlement receipts in ${home} (no ${SETTLE_DB}): run "omega up" first`, { cause: err })
      }
      let text: string
      let count: number
      try {
        const receipts = store.list(since(opts.since, Date.now()))
        count = receipts.length
        text = exportReceipts(key, receipts)
      } finally {
        store.close()
      }
      if (opts.output === undefined) {
        ctx.stdout.write(text)
      } else {
        await writeFile(resolve(ctx.cwd, opts.output), text)
        ctx.stdout.write(`${count} receipt${count === 1 ? '' : 's'} written to ${opts.output}\n`)
      }
    })

  settle.command('verify')
    .description('Check an export offline: every signature, the BLAKE3 chain, order, gaps and truncation (exit 15 naming the first bad receipt)')
    .argument('<file>', 'a file written by "omega settle export"')
    .option('--node <did>', 'require the receipts to be signed by this node')
    .option('--json', 'print the report as JSON')
    .action(async (file: string, opts: { node?: string, json?: boolean }) => {
      const { verifyExport } = await import('../../settle/index.ts')
      const report = verifyExport(await readFile(resolve(ctx.cwd, file), 'utf8'), opts.node === undefined ? {} : { node: opts.node })
      if (opts.json === true) {
        ctx.stdout.write(JSON.stringify(report, null, 2) + '\n')
        return
      }
      ctx.stdout.write(`ok: ${report.count} receipt${report.count === 1 ? '' : 's'} (seq ${report.firstSeq}–${report.lastSeq}) signed by ${report.node}, chain intact, head b3:${report.head}\n\n`)
      ctx.stdout.write(table(['brane', 'deployer', 'invocations', 'failures', 'cpu ms', 'mem MiB·s', 'bytes in', 'bytes out'], report.totals.map((t) => [
        t.brane, `${t.deployer.slice(0, 16)}…${t.deployer.slice(-6)}`, String(t.invocations), String(t.failures), t.cpuMs.toFixed(1), t.memMiBs.toFixed(3), String(t.bytesIn), String(t.bytesOut)
      ])))
    })
}
