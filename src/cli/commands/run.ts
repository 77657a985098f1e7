import type { Command } from 'commander'
import { readFile, stat } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { UsageError } from '../../errors.ts'
import type { Grants } from '../../manifest/index.ts'
import { homeOption, type CliContext } from '../context.ts'

interface RunOptions {
  dir: string[]
  env: string[]
  netHttp: string[]
  clock?: boolean
  random?: boolean
  memMax: string
  deadline?: string
}

/** What grants each capability key for `omega run`: its flag, or why it cannot */
function grantedBy (key: string): string {
  switch (key) {
    case 'fs.tmp': return '--dir HOST[::GUEST] (a host directory it may use)'
    case 'net.http': return '--net-http HOST[:PORT] (the hosts it may call over HTTP)'
    case 'clock': return '--clock'
    case 'random': return '--random'
    case 'env': return '--env NAME[=VALUE]'
    case 'emit': return 'an outgoing edge, which only a brane under "omega up" has'
    default: return `"${key}", which only a brane under "omega up" can be granted`
  }
}

function collect (value: string, previous: string[]): string[] {
  return [...previous, value]
}

export function runCommand (program: Command, ctx: CliContext): void {
  program.command('run')
    .description('Run a wasi:cli/run command component once, as "wasmtime run" does: its arguments are FILE and ARGS, its stdin, stdout and stderr are this process\'s, and omega exits with its exit code. Nothing is ambient: each grant is a flag, checked against its imports by the same rules as a brane\'s grants')
    .argument('<file>', 'a WASI 0.2 command component (.wasm)')
    .argument('[args...]', 'its arguments (put them after --)')
    .option('--dir <host[::guest]>', 'preopen a host directory, seen by the command at GUEST (default: HOST as written); repeatable', collect, [])
    .option('--env <name[=value]>', 'give it a variable; NAME alone copies this process\'s value; repeatable', collect, [])
    .option('--net-http <host[:port]>', 'let it call HOST over HTTP (wasi:http; the "net.http" allowlist rules; raw sockets are never granted); repeatable', collect, [])
    .option('--clock', 'let it read the clocks (wall and monotonic, to the millisecond, as a brane\'s clock grant by default)')
    .option('--random', 'let it read random bytes')
    .option('--mem-max <size>', 'cap on its linear memory', '64 MiB')
    .option('--deadline <duration>', 'stop it after this long (e.g. "30s"): exit 1')
    .addHelpText('after', `
A missing grant is refused before the command runs (exit 5), naming the flag that grants it.

Examples:
  $ omega run tool.wasm -- --help
  $ echo hello | omega run tool.wasm --env LANG --env MODE=fast --dir ./data::/data -- /data/input.txt
  $ omega run fetch.wasm --net-http api.example.com --clock --random --deadline 10s`)
    .action(async (file: string, args: string[], opts: RunOptions, command: Command) => {
      const { parseDuration, parseSize } = await import('../../manifest/index.ts')
      const grants = await grantsFrom(opts, ctx)
      const memMaxBytes = parseSize(opts.memMax)
      if (memMaxBytes === undefined || memMaxBytes <= 0) {
        throw new UsageError(`Invalid --mem-max "${opts.memMax}": expected a size such as "64 MiB"`)
      }
      const deadlineMs = opts.deadline === undefined ? undefined : parseDuration(opts.deadline)
      if (deadlineMs !== undefined && !(deadlineMs > 0)) {
        throw new UsageError(`Invalid --deadline "${opts.deadline ?? ''}": expected a duration such as "30s"`)
      }
      if (opts.deadline !== undefined && deadlineMs === undefined) {
        throw new UsageError(`Invalid --deadline "${opts.deadline}": expected a duration such as "30s"`)
      }
      const bytes = await readFile(resolve(ctx.cwd, file)).catch((err: NodeJS.ErrnoException) => {
        throw new UsageError(`Cannot read ${file}: ${err.code === 'ENOENT' ? 'no such file' : err.message}`)
      })
      const { checkCommand, loadComponent, runCommand: run } = await import('../../runtime/wasm/index.ts')
      const signal = ctx.signal === undefined ? {} : { signal: ctx.signal }
      const loaded = await loadComponent(bytes, { cacheDir: join(ctx.home(homeOption(command)), 'cache', 'components'), ...signal })
      // refused before anything runs, stdio or not
      checkCommand(loaded, { name: file, grants, grantedBy })
      if (ctx.stdio === undefined) {
        throw new UsageError('omega run needs the process\'s standard input and output')
      }
      const code = await run(loaded, {
        name: file,
        args: [file, ...args],
        grants,
        stdio: ctx.stdio,
        memMaxBytes,
        ...(deadlineMs === undefined ? {} : { deadlineMs }),
        grantedBy,
        ...signal
      })
      ctx.setExitCode(code)
    })
}

/** The grants the flags give, in the manifest's model (nothing else is reachable) */
async function grantsFrom (opts: RunOptions, ctx: CliContext): Promise<Grants> {
  const env: Record<string, string> = {}
  for (const entry of opts.env) {
    const eq = entry.indexOf('=')
    const name = eq === -1 ? entry : entry.slice(0, eq)
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) {
      throw new UsageError(`Invalid --env "${entry}": expected NAME or NAME=VALUE`)
    }
    const value = eq === -1 ? ctx.env[name] : entry.slice(eq + 1)
    if (value === undefined) {
      throw new UsageError(`Invalid --env "${entry}": ${name} is not set here (give a value: --env ${name}=VALUE)`)
    }
    env[name] = value
  }
  const dirs: Array<{ host: string, guest: string }> = []
  for (const entry of opts.dir) {
    const sep = entry.indexOf('::')
    const host = sep === -1 ? entry : entry.slice(0, sep)
    const guest = sep === -1 ? entry : entry.slice(sep + 2)
    if (host === '' || guest === '') {
      throw new UsageError(`Invalid --dir "${entry}": expected HOST or HOST::GUEST`)
    }
    const path = resolve(ctx.cwd, host)
    const info = await stat(path).catch(() => undefined)
    if (info?.isDirectory() !== true) {
      throw new UsageError(`Invalid --dir "${entry}": ${path} is not a directory`)
    }
    dirs.push({ host: path, guest })
  }
  const clock: Grants['clock'] = opts.clock === true ? { resolution: 'ms' } : undefined
  return {
    env,
    ...(dirs.length === 0 ? {} : { 'fs.dirs': dirs }),
    ...(opts.netHttp.length === 0 ? {} : { 'net.http': { allowlist: opts.netHttp } }),
    ...(clock === undefined ? {} : { clock }),
    ...(opts.random === true ? { random: true as const } : {})
  }
}
