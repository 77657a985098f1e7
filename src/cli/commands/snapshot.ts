import type { Command } from 'commander'
import { readFile, stat, writeFile } from 'node:fs/promises'
import { resolve } from 'node:path'
import { adminJson, adminStream, AdminRequestError, MAX_RESTORE_BODY_BYTES } from '../../daemon/lite.ts'
import type { RestoreReport, SnapshotDocument } from '../../daemon/index.ts'
import { SnapshotError } from '../../errors.ts'
import { homeOption, type CliContext } from '../context.ts'

/** Progress lines go to stderr past this many bytes, one per step */
const PROGRESS_STEP_BYTES = 16 * 2 ** 20

/** `omega snapshot BRANE -o FILE` and `omega restore BRANE FILE` */
export function snapshotCommands (program: Command, ctx: CliContext): void {
  snapshotCommand(program, ctx)
  restoreCommand(program, ctx)
}

/** `omega snapshot BRANE -o FILE` (and `omega gaia snapshot`) */
export function snapshotCommand (program: Command, ctx: CliContext): void {
  program.command('snapshot')
    .description('Save the linear memory of a running pinned brane to a file signed by this node (between two of its calls)')
    .argument('<brane>', 'the brane (its lifecycle must be "pinned")')
    .requiredOption('-o, --output <file>', 'where to write the snapshot (JSON)')
    .action(async (brane: string, opts: { output: string }, command: Command) => {
      const { contentAddress } = await import('../../identity/index.ts')
      const file = resolve(ctx.cwd, opts.output)
      let text = ''
      let next = PROGRESS_STEP_BYTES
      await daemonRefusal(async () => {
        for await (const chunk of adminStream(ctx.home(homeOption(command)), `/v1/snapshot?brane=${encodeURIComponent(brane)}`, {
          method: 'POST',
          ...(ctx.signal === undefined ? {} : { signal: ctx.signal })
        })) {
          text += chunk
          if (text.length >= next) {
            ctx.stderr.write(`omega: received ${mib(text.length)} of snapshot…\n`)
            next += PROGRESS_STEP_BYTES
          }
        }
      })
      const doc = JSON.parse(text) as SnapshotDocument
      const bytes = Buffer.from(text)
      await writeFile(file, bytes)
      const memory = doc.memories.reduce((sum, m) => sum + m.byteLength, 0)
      ctx.stdout.write(`snapshot of brane "${doc.brane}" (${doc.component}) written to ${opts.output}: ${size(bytes.byteLength)}, ` +
        `${size(memory)} of memory in ${doc.memories.length === 1 ? '1 memory' : `${doc.memories.length} memories`}, ${contentAddress(bytes)}\n`)
    })
}

function restoreCommand (program: Command, ctx: CliContext): void {
  program.command('restore')
    .description('Put a running pinned brane back in the state of a snapshot this node took (checked whole first: signature and digests)')
    .argument('<brane>', 'the brane (its lifecycle must be "pinned")')
    .argument('<file>', 'a file written by "omega snapshot"')
    .action(async (brane: string, file: string, _opts: unknown, command: Command) => {
      const path = resolve(ctx.cwd, file)
      const { size: fileBytes } = await stat(path)
      if (fileBytes > MAX_RESTORE_BODY_BYTES) {
        throw new SnapshotError(`Cannot restore "${file}": it holds ${size(fileBytes)}, more than the ${size(MAX_RESTORE_BODY_BYTES)} a node accepts`)
      }
      let doc: unknown
      try {
        doc = JSON.parse(await readFile(path, 'utf8'))
      } catch (err) {
        throw new SnapshotError(`Cannot restore "${file}": it is not a snapshot document (not JSON)`, { cause: err })
      }
      if (fileBytes >= PROGRESS_STEP_BYTES) {
        ctx.stderr.write(`omega: sending ${mib(fileBytes)} of snapshot…\n`)
      }
      const report = await daemonRefusal(async () => adminJson<RestoreReport>(ctx.home(homeOption(command)), `/v1/restore?brane=${encodeURIComponent(brane)}`, {
        body: doc,
        ...(ctx.signal === undefined ? {} : { signal: ctx.signal })
      }))
      ctx.stdout.write(`restored brane "${report.brane}" to its snapshot of ${report.createdAt}: ${size(report.bytes)} of memory\n`)
    })
}

/** The daemon refused the operation itself (422): report its error, with its name, as is */
async function daemonRefusal<T> (call: () => Promise<T>): Promise<T> {
  try {
    return await call()
  } catch (err) {
    if (err instanceof AdminRequestError && err.status === 422) {
      const refused = new SnapshotError(err.message)
      refused.name = err.remoteName ?? 'OmegaError'
      throw refused
    }
    throw err
  }
}

function mib (bytes: number): string {
  return `${(bytes / 2 ** 20).toFixed(1)} MiB`
}

function size (bytes: number): string {
  return bytes < 1024 ? `${bytes} B` : bytes < 2 ** 20 ? `${(bytes / 1024).toFixed(1)} KiB` : mib(bytes)
}
