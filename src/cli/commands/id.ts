import type { Command } from 'commander'
import { homeOption, type CliContext } from '../context.ts'

export function idCommand (program: Command, ctx: CliContext): void {
  program.command('id')
    .description('Print this node\'s identity (did:key), creating its Ed25519 key on first use')
    .option('--json', 'print the did and the key file as JSON')
    .action(async (opts: { json?: boolean }, command: Command) => {
      const { loadOrCreateNodeKey } = await import('../../identity/index.ts')
      const home = ctx.home(homeOption(command))
      const key = await loadOrCreateNodeKey(home, ctx.signal === undefined ? {} : { signal: ctx.signal })
      ctx.stdout.write(opts.json === true ? JSON.stringify({ did: key.did, home }) + '\n' : `${key.did}\n`)
    })
}
