import type { Command } from 'commander'
import { readFile, writeFile } from 'node:fs/promises'
import { resolve } from 'node:path'
import { adminJson } from '../../daemon/lite.ts'
import type { Capability } from '../../identity/index.ts'
import { UsageError } from '../../errors.ts'
import { parseDuration } from '../../manifest/lite.ts'
import { homeOption, type CliContext } from '../context.ts'

interface GrantOptions {
  to: string
  cap: string[]
  ttl: string
  output?: string
}

function collect (value: string, all: string[]): string[] {
  return [...all, value]
}

async function capabilities (texts: readonly string[]): Promise<Capability[]> {
  const { parseCapability } = await import('../../identity/index.ts')
  if (texts.length === 0) {
    throw new UsageError('Give at least one --cap ABILITY:RESOURCE, e.g. --cap deploy:brane/* or --cap invoke:brane/hello')
  }
  try {
    return texts.map(parseCapability)
  } catch (err) {
    throw new UsageError((err as Error).message)
  }
}

function ttlSeconds (text: string): number {
  const ms = parseDuration(text)
  if (ms === undefined || ms < 1000) {
    throw new UsageError(`Invalid --ttl "${text}": expected a duration of at least 1s, such as 15m, 1h or 30d`)
  }
  return Math.floor(ms / 1000)
}

async function subject (did: string): Promise<string> {
  const { isRootDid } = await import('../../identity/index.ts')
  if (!isRootDid(did)) {
    throw new UsageError(`Invalid --to "${did}": expected an Ed25519 did:key (see "omega id")`)
  }
  return did
}

/** A token given inline, or the path of a file holding one */
async function readToken (ctx: CliContext, text: string): Promise<string> {
  if (/^[A-Za-z0-9_=-]+$/.test(text) && text.length > 64) {
    return text
  }
  try {
    return (await readFile(resolve(ctx.cwd, text), 'utf8')).trim()
  } catch (err) {
    throw new UsageError(`Cannot read token "${text}": it is neither a token nor a readable file`, { cause: err })
  }
}

async function roots (ctx: CliContext, command: Command, extra: readonly string[]): Promise<string[]> {
  const { isRootDid, loadOrCreateNodeKey } = await import('../../identity/index.ts')
  for (const did of extra) {
    if (!isRootDid(did)) {
      throw new UsageError(`Invalid --root "${did}": expected an Ed25519 did:key`)
    }
  }
  const key = await loadOrCreateNodeKey(ctx.home(homeOption(command)))
  return [key.did, ...extra]
}

async function output (ctx: CliContext, token: string, file: string | undefined): Promise<void> {
  if (file === undefined) {
    ctx.stdout.write(`${token}\n`)
  } else {
    await writeFile(resolve(ctx.cwd, file), `${token}\n`, { mode: 0o600 })
    ctx.stdout.write(`token written to ${file}\n`)
  }
}

/** `omega token issue | delegate | inspect | verify | revoke` */
export function tokenCommands (program: Command, ctx: CliContext): void {
  const token = program.command('token').description('Capability tokens (Biscuit): grant abilities on resources, delegate with attenuation, revoke')

  token.command('issue')
    .description('Issue a token signed by this node\'s key (a root) granting abilities to a did:key')
    .requiredOption('--to <did>', 'the subject: who receives the token')
    .option('--cap <ability:resource>', 'a grant, e.g. deploy:brane/* or logs:brane/fetch (repeatable)', collect, [])
    .option('--ttl <duration>', 'lifetime', '1h')
    .option('--key <file>', 'sign with this Ed25519 PEM key (another root) instead of the node key')
    .option('-o, --output <file>', 'write the token to a file (mode 0600)')
    .action(async (opts: GrantOptions & { key?: string }, command: Command) => {
      const { issueCapability, loadOrCreateNodeKey, readNodeKeyFile } = await import('../../identity/index.ts')
      const key = opts.key === undefined
        ? await loadOrCreateNodeKey(ctx.home(homeOption(command)))
        : await readNodeKeyFile(resolve(ctx.cwd, opts.key))
      await output(ctx, issueCapability(key, { subject: await subject(opts.to), capabilities: await capabilities(opts.cap), ttlSeconds: ttlSeconds(opts.ttl) }), opts.output)
    })

  token.command('delegate')
    .description('Delegate a token to another did:key with fewer (or equal) rights and an expiry no later than its own')
    .argument('<token>', 'the parent token, or a file holding it')
    .requiredOption('--to <did>', 'who receives the delegated token')
    .option('--cap <ability:resource>', 'a grant the parent allows (repeatable)', collect, [])
    .option('--ttl <duration>', 'lifetime (capped by the parent\'s)', '1h')
    .option('--root <did>', 'a trusted root besides this node (repeatable)', collect, [])
    .option('-o, --output <file>', 'write the token to a file (mode 0600)')
    .action(async (text: string, opts: GrantOptions & { root: string[] }, command: Command) => {
      const { delegateCapability } = await import('../../identity/index.ts')
      const parent = await readToken(ctx, text)
      const child = delegateCapability(parent, {
        roots: await roots(ctx, command, opts.root), subject: await subject(opts.to), capabilities: await capabilities(opts.cap), ttlSeconds: ttlSeconds(opts.ttl)
      })
      await output(ctx, child, opts.output)
    })

  token.command('inspect')
    .description('Show a token\'s chain: each link\'s subject, grants, expiry and id (signatures are checked)')
    .argument('<token>', 'a token, or a file holding it')
    .option('--root <did>', 'a trusted root besides this node (repeatable)', collect, [])
    .option('--json', 'print JSON')
    .action(async (text: string, opts: { root: string[], json?: boolean }, command: Command) => {
      const { inspectCapability } = await import('../../identity/index.ts')
      const read = inspectCapability(await readToken(ctx, text), { roots: await roots(ctx, command, opts.root) })
      if (opts.json === true) {
        ctx.stdout.write(JSON.stringify({ ...read, links: read.links.map(({ source: _source, ...l }) => l) }, null, 2) + '\n')
        return
      }
      ctx.stdout.write(`root     ${read.root}\nsubject  ${read.subject ?? '—'}\nexpires  ${read.expires ?? '—'}\nid       ${read.id}\n`)
      read.links.forEach((l, i) => {
        ctx.stdout.write(`\nlink ${i} ${i === 0 ? '(issued)' : '(delegated)'} to ${l.subject ?? '—'}\n  grants   ${l.capabilities.map((c) => `${c.ability}:${c.resource}`).join(', ') || '—'}\n  expires  ${l.expires ?? '—'}\n  id       ${l.id}\n`)
      })
    })

  token.command('verify')
    .description('Check offline that a token allows ABILITY on RESOURCE (exit 14 and the reason if not)')
    .argument('<token>', 'a token, or a file holding it')
    .requiredOption('--cap <ability:resource>', 'what to check, e.g. deploy:brane/fetch')
    .option('--root <did>', 'a trusted root besides this node (repeatable)', collect, [])
    .action(async (text: string, opts: { cap: string, root: string[] }, command: Command) => {
      const { RevocationList, verifyCapability } = await import('../../identity/index.ts')
      const home = ctx.home(homeOption(command))
      const wanted = (await capabilities([opts.cap]))[0] as Capability
      const revoked = await new RevocationList(home).load()
      const ok = verifyCapability(await readToken(ctx, text), { ...wanted, roots: await roots(ctx, command, opts.root), revoked })
      ctx.stdout.write(`ok: ${ok.subject} may ${wanted.ability} on ${wanted.resource} (root ${ok.root}, ${ok.lineage.length} link${ok.lineage.length === 1 ? '' : 's'})\n`)
    })

  token.command('revoke')
    .description('Revoke a token (and everything delegated from it) by id or by the token itself; tells the running daemon')
    .argument('<id-or-token>', 'a 128-hex-digit id from "omega token inspect", a token, or a file holding one')
    .option('--root <did>', 'a trusted root besides this node (repeatable)', collect, [])
    .action(async (text: string, opts: { root: string[] }, command: Command) => {
      const { RevocationList, inspectCapability } = await import('../../identity/index.ts')
      const home = ctx.home(homeOption(command))
      const id = /^[0-9a-f]{128}$/.test(text) ? text : inspectCapability(await readToken(ctx, text), { roots: await roots(ctx, command, opts.root) }).id
      try {
        await adminJson(home, `/v1/revoke?id=${id}`, { method: 'POST', ...(ctx.signal === undefined ? {} : { signal: ctx.signal }) })
        ctx.stdout.write(`revoked ${id} (the running daemon refuses it from now on)\n`)
      } catch (err) {
        if ((err as Error).name !== 'DaemonNotRunningError') {
          throw err
        }
        await (await new RevocationList(home).load()).revoke(id)
        ctx.stdout.write(`revoked ${id} (no daemon running: written to ${home}/revoked.json)\n`)
      }
    })
}
