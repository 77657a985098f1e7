import type { Command } from 'commander'
import { readFile, writeFile } from 'node:fs/promises'
import { hostname } from 'node:os'
import { resolve } from 'node:path'
import { adminJson } from '../../daemon/lite.ts'
import type { AppRow, DeployReport, PeerRow } from '../../daemon/index.ts'
import type { HlcTime } from '../../biome/index.ts'
import type { NodeKey } from '../../identity/index.ts'
import type { TraceEndRecord } from '../../dispatch/index.ts'
import { UsageError } from '../../errors.ts'
import { homeOption, type CliContext } from '../context.ts'
import { table } from '../table.ts'
import { dashboardLine, dashboardOption, dashboardOptions, otelOption, portOption, waitForAbort } from './up.ts'
import { renderTrace } from './events.ts'

const SUBSTRATES = ['gaia', 'biome', 'habitat'] as const

interface NodeOptions {
  name: string
  substrate: string
  listen: string[]
  announce: string[]
  bootstrap: string[]
  trust: string[]
  mdns?: boolean
  manifest?: string
  swarmKey?: string
  admit: string[]
  tailscale?: string
  netbird?: string
  port: string
  host: string
  metricsPort?: string
  dashboard: string | false
  logFormat: 'json' | 'pretty'
  logLevel: 'debug' | 'info' | 'warn' | 'error'
}

const collect = (value: string, previous: string[]): string[] => [...previous, value]

/** `omega node`, `omega deploy`, `omega biome …` and `omega state`: the mesh */
export function biomeCommands (program: Command, ctx: CliContext): void {
  const signal = ctx.signal === undefined ? {} : { signal: ctx.signal }

  dashboardOptions(program.command('node'))
    .description('Run a mesh node: join the other nodes, take the deployments they gossip, run this node\'s share of each manifest')
    .option('--name <name>', 'this node\'s name, matched by manifests\' `peers` globs', hostname())
    .option('--substrate <substrate>', 'the pool this node serves: gaia, biome or habitat', 'biome')
    .option('--listen <multiaddr>', 'mesh listen address (repeatable); /udp/N/quic-v1 adds QUIC', collect, [])
    .option('--announce <multiaddr>', 'advertise this address instead of the listen addresses (repeatable): where peers reach this node through a port forward, a NAT or a relay', collect, [])
    .option('--bootstrap <multiaddr>', 'a node to join through, with /p2p/ID (repeatable)', collect, [])
    .option('--trust <did>', 'accept deployments signed by this did:key (repeatable; this node\'s own key is always trusted)', collect, [])
    .option('--manifest <file>', 'apply this manifest\'s [brane.X.network] and [brane.X.discovery] settings to this node (default: those of the deployment it ran before)')
    .option('--swarm-key <file>', 'a private mesh: only nodes with this key (from "omega biome swarm-key") can connect')
    .option('--admit <did>', 'admit only these nodes (did:key; repeatable or comma-separated; this node is always admitted): connections from or to any other node are refused, and so are their member records when another node passes them on', collect, [])
    .option('--mdns', 'find peers by mDNS on the local network')
    .option('--tailscale <glob>', 'find peers in `tailscale status --json` whose names match GLOB')
    .option('--netbird <glob>', 'find peers in `netbird status --json` whose names match GLOB')
    .option('-p, --port <port>', 'gateway port (0 picks a free one)', '8080')
    .option('--host <address>', 'gateway address', '127.0.0.1')
    .option('--metrics-port <port>', 'also serve Prometheus metrics at http://HOST:PORT/metrics')
    .option('--log-format <format>', 'json or pretty', 'pretty')
    .option('--log-level <level>', 'debug, info, warn or error', 'info')
    .action(async (opts: NodeOptions, command: Command) => {
      const { createLogging, telemetryFromEnv } = await import('../../observe/index.ts')
      const { startNode } = await import('../../daemon/index.ts')
      const telemetry = otelOption(telemetryFromEnv, ctx.env)
      if (!(SUBSTRATES as readonly string[]).includes(opts.substrate)) {
        throw new UsageError(`Invalid --substrate "${opts.substrate}": expected one of ${SUBSTRATES.join(', ')}`)
      }
      const admit = opts.admit.length === 0 ? undefined : await admitOption(opts.admit)
      const port = portOption('--port', opts.port)
      const metricsPort = opts.metricsPort === undefined ? undefined : portOption('--metrics-port', opts.metricsPort)
      const dashboard = dashboardOption(opts.dashboard)
      const logging = createLogging(ctx.stderr, { format: opts.logFormat, level: opts.logLevel })
      const discovery = {
        ...(opts.mdns === true ? { mdns: true } : {}),
        ...(opts.tailscale === undefined ? {} : { tailscale: { peers: opts.tailscale } }),
        ...(opts.netbird === undefined ? {} : { netbird: { peers: opts.netbird } })
      }
      const node = await startNode({
        home: ctx.home(homeOption(command)),
        name: opts.name,
        substrate: opts.substrate as typeof SUBSTRATES[number],
        listen: opts.listen.length === 0 ? ['/ip4/127.0.0.1/tcp/0'] : opts.listen,
        ...(opts.announce.length === 0 ? {} : { announce: opts.announce }),
        bootstrap: opts.bootstrap,
        trust: opts.trust,
        ...(opts.manifest === undefined ? {} : { manifest: resolve(ctx.cwd, opts.manifest) }),
        ...(opts.swarmKey === undefined ? {} : { swarmKey: await readSwarmKey(resolve(ctx.cwd, opts.swarmKey)) }),
        ...(admit === undefined ? {} : { admit }),
        ...(Object.keys(discovery).length === 0 ? {} : { discovery }),
        host: opts.host,
        port,
        logging,
        ...(metricsPort === undefined ? {} : { metricsPort }),
        ...(dashboard === undefined ? {} : { dashboard }),
        ...(telemetry === undefined ? {} : { telemetry })
      }, signal)
      ctx.stdout.write(`omega: node ${node.did}\nomega: name ${opts.name}\n${node.mesh.addrs.map((a) => `omega: mesh ${a}\n`).join('')}omega: gateway ${node.url}\n${dashboardLine(node.dashboardUrl)}`)
      ctx.stdout.write(`\n${node.apps.size === 0 ? 'No apps yet: run "omega deploy FILE" against any node. ' : ''}Press Ctrl-C to stop.\n`)
      await waitForAbort(ctx.signal)
      ctx.stdout.write('omega: leaving the mesh\n')
      await node.stop()
    })

  /** Sign with `opts.key` (or the home's key) at a time later than anything the node has seen */
  async function signer (opts: { key?: string, token?: string }, command: Command): Promise<{ home: string, key: NodeKey, token: string | undefined, time: HlcTime }> {
    const { loadOrCreateNodeKey, readNodeKeyFile } = await import('../../identity/index.ts')
    const { HybridClock } = await import('../../biome/index.ts')
    const home = ctx.home(homeOption(command))
    const key = opts.key === undefined ? await loadOrCreateNodeKey(home, signal) : await readNodeKeyFile(resolve(ctx.cwd, opts.key))
    const token = opts.token === undefined ? undefined : await readTokenArgument(opts.token, ctx.cwd)
    // later than what the node has seen, even when this machine's clock is behind
    const clock = new HybridClock(key.did)
    clock.observe(await adminJson<HlcTime>(home, '/v1/biome/clock', signal))
    return { home, key, token, time: clock.now() }
  }

  const signingOptions = (command: Command, what: string): Command => command
    .option('--key <file>', 'sign with this Ed25519 key (PEM) instead of the home\'s node key')
    .option('--token <token>', `a capability token (or a file holding one) granting deploy on app/NAME (or on each brane${what}) to the signing key, from a key the nodes trust`)
    .option('--json', 'print the report as JSON')

  signingOptions(program.command('deploy'), ' of the manifest')
    .description('Sign a manifest with this home\'s key and hand it to the running node, which gossips it to every node of the mesh. Each manifest is an app: a newer deployment of an app replaces it, other apps keep running')
    .argument('<file>', 'manifest file (TOML, JSON or YAML); its image files travel with it')
    .option('--app <name>', 'the app\'s name (default: the manifest\'s [app] name, or its file name without the extension)')
    .action(async (file: string, opts: { json?: boolean, key?: string, token?: string, app?: string }, command: Command) => {
      const { prepareDeployment } = await import('../../biome/index.ts')
      const { home, key, token, time } = await signer(opts, command)
      const { document, blobs } = await prepareDeployment(resolve(ctx.cwd, file), key, { home, time, ...(opts.app === undefined ? {} : { name: opts.app }), ...(token === undefined ? {} : { token }), ...signal })
      const encoded: Record<string, string> = {}
      for (const [hash, path] of blobs) {
        encoded[hash] = (await readFile(path)).toString('base64')
      }
      const report = await adminJson<DeployReport>(home, '/v1/deploy', { body: { document, blobs: encoded }, ...signal })
      if (opts.json === true) {
        ctx.stdout.write(JSON.stringify(report, null, 2) + '\n')
        return
      }
      ctx.stdout.write(report.accepted
        ? `✓ deployed ${file} as app ${report.name}, version ${report.id} (signed by ${report.deployer} at ${report.time}); every node places its share\n`
        : `= ${file}: the mesh already runs this or a newer deployment of app ${report.name} (${report.id})\n`)
    })

  signingOptions(program.command('undeploy'), ' the app has')
    .description('Remove an app from the mesh: every node stops its branes (its queued events and state stay on disk); the other apps keep running')
    .argument('<app>', 'the app\'s name (see "omega apps")')
    .action(async (app: string, opts: { json?: boolean, key?: string, token?: string }, command: Command) => {
      const { prepareRemoval } = await import('../../biome/index.ts')
      const { home, key, token, time } = await signer(opts, command)
      const document = prepareRemoval(app, key, { time, ...(token === undefined ? {} : { token }) })
      const report = await adminJson<DeployReport>(home, '/v1/deploy', { body: { document }, ...signal })
      ctx.stdout.write(opts.json === true ? JSON.stringify(report, null, 2) + '\n' : `✓ undeployed app ${report.name} (${report.id}); every node stops its branes\n`)
    })

  program.command('apps')
    .description('The apps the mesh runs: version, status and where each brane runs')
    .option('--json', 'print as JSON')
    .action(async (opts: { json?: boolean }, command: Command) => {
      const rows = await adminJson<AppRow[]>(ctx.home(homeOption(command)), '/v1/apps', signal)
      if (opts.json === true) {
        ctx.stdout.write(JSON.stringify(rows, null, 2) + '\n')
        return
      }
      if (rows.length === 0) {
        ctx.stdout.write('No apps: deploy one with "omega deploy FILE"\n')
        return
      }
      ctx.stdout.write(table(['app', 'version', 'status', 'deployed', 'branes'], rows.map((r) => [
        r.name, r.id, r.reason === undefined ? r.status : `${r.status}: ${r.reason}`, r.time,
        Object.entries(r.placement).map(([brane, nodes]) => `${brane}@${nodes.join('+') || '—'}`).join(' ') || '—'
      ])))
    })

  const biome = program.command('biome').description('The mesh this node belongs to')

  biome.command('peers')
    .description('The nodes of the mesh: status (HEAD in step · HEAL catching up · TAIL suspected · DEAD · LEFT), round trip, load, branes and edges')
    .option('-b, --brane <name>', 'only the nodes that run this brane')
    .option('--json', 'print as JSON')
    .action(async (opts: { brane?: string, json?: boolean }, command: Command) => {
      const rows = await adminJson<PeerRow[]>(ctx.home(homeOption(command)), `/v1/biome/peers${opts.brane === undefined ? '' : `?brane=${encodeURIComponent(opts.brane)}`}`, signal)
      if (opts.json === true) {
        ctx.stdout.write(JSON.stringify(rows, null, 2) + '\n')
        return
      }
      // on a terminal, as the seeds show it: ● serving (HEAD, TAIL), ◯ not (HEAL, DEAD, LEFT)
      const mark = (status: string): string => ctx.isTTY ? `${status === 'HEAD' || status === 'TAIL' ? '●' : '◯'} ` : ''
      ctx.stdout.write(table(['peer', 'status', 'rtt', 'load', 'edges in/out', 'branes'], rows.map((r) => [
        `${r.name}${r.self ? ' (self)' : ''}`, `${mark(r.status)}${r.status}`, r.rttMs === undefined ? '—' : `${r.rttMs.toFixed(1)} ms`, r.load === undefined ? '—' : String(r.load),
        `${r.edgesIn}/${r.edgesOut}`, r.branes.join(' ') || '—'
      ])))
    })

  biome.command('placement')
    .description('Where each brane of the running deployment is placed, and why not when it is not')
    .option('--json', 'print as JSON')
    .action(async (opts: { json?: boolean }, command: Command) => {
      const result = await adminJson<{ deployment: string | null, placement: Array<{ brane: string, names: string[], wanted: number, eligible: number, reason?: string }> }>(ctx.home(homeOption(command)), '/v1/biome/placement', signal)
      if (opts.json === true) {
        ctx.stdout.write(JSON.stringify(result, null, 2) + '\n')
        return
      }
      ctx.stdout.write(`deployment ${result.deployment ?? 'none'}\n\n`)
      ctx.stdout.write(table(['brane', 'replicas', 'eligible', 'nodes', 'note'], result.placement.map((p) => [
        p.brane, `${p.names.length}/${p.wanted}`, String(p.eligible), p.names.join(' ') || '—', p.reason ?? ''
      ])))
    })

  biome.command('trace')
    .description('The hops of an event\'s trace across every node, with an end record signed by this node')
    .argument('<id>', 'an event id, a trace id, or an unambiguous prefix')
    .option('--json', 'print the signed end record as JSON')
    .option('-o, --output <file>', 'write the signed end record to a file (check it with "omega trace verify FILE")')
    .action(async (id: string, opts: { json?: boolean, output?: string }, command: Command) => {
      const record = await adminJson<TraceEndRecord>(ctx.home(homeOption(command)), `/v1/biome/trace?id=${encodeURIComponent(id)}`, signal)
      if (opts.output !== undefined) {
        await writeFile(resolve(ctx.cwd, opts.output), JSON.stringify(record, null, 2) + '\n')
      }
      ctx.stdout.write(opts.json === true ? JSON.stringify(record, null, 2) + '\n' : await renderTrace(record))
    })

  biome.command('swarm-key')
    .description('Make a swarm key for a private mesh (give the same file to every node with --swarm-key)')
    .requiredOption('-o, --output <file>', 'where to write it (mode 0600)')
    .action(async (opts: { output: string }) => {
      const { generateKey } = await import('@libp2p/pnet')
      const key = new Uint8Array(95)
      generateKey(key)
      await writeFile(resolve(ctx.cwd, opts.output), key, { mode: 0o600, flag: 'wx' }).catch((err: NodeJS.ErrnoException) => {
        throw err.code === 'EEXIST' ? new UsageError(`${opts.output} exists: a swarm key is never overwritten (move it away first)`) : err
      })
      ctx.stdout.write(`wrote a swarm key to ${opts.output}: start every node of the mesh with --swarm-key ${opts.output}\n`)
    })

  biome.command('isolate')
    .description('Cut this node off from some peers (for partition drills); no peers heals')
    .argument('[peers...]', 'peer names or did:keys')
    .action(async (peers: string[], _opts: unknown, command: Command) => {
      const result = await adminJson<{ isolated: string[] }>(ctx.home(homeOption(command)), '/v1/biome/isolate', { body: { peers }, ...signal })
      ctx.stdout.write(result.isolated.length === 0 ? 'healed: talking to every peer\n' : `isolated from ${result.isolated.length} peer(s)\n`)
    })

  program.command('state')
    .description('The replicated state of a brane on the running node: its map and the length of its lists')
    .argument('<brane>', 'a brane granted `state`')
    .option('-l, --list <name>', 'print the items of this list instead, one per line')
    .action(async (brane: string, opts: { list?: string }, command: Command) => {
      const query = `brane=${encodeURIComponent(brane)}${opts.list === undefined ? '' : `&list=${encodeURIComponent(opts.list)}`}`
      const state = await adminJson<unknown>(ctx.home(homeOption(command)), `/v1/state?${query}`, signal)
      ctx.stdout.write(Array.isArray(state) ? state.map((item) => `${String(item)}\n`).join('') : JSON.stringify(state, null, 2) + '\n')
    })
}

/** A token given on the command line, or the path of a file holding one */
async function readTokenArgument (value: string, cwd: string): Promise<string> {
  if (/^[A-Za-z0-9_-]{40,}={0,2}$/.test(value)) {
    return value
  }
  try {
    return (await readFile(resolve(cwd, value), 'utf8')).trim()
  } catch (err) {
    throw new UsageError(`Invalid --token "${value.slice(0, 40)}": neither a token nor a readable file: ${(err as Error).message}`)
  }
}

/** The dids of `--admit` values (each repeatable or comma-separated), each checked to be an Ed25519 did:key */
async function admitOption (values: readonly string[]): Promise<string[]> {
  const { publicKeyFromDid } = await import('../../identity/lite.ts')
  const dids = values.flatMap((v) => v.split(',')).map((d) => d.trim())
  for (const did of dids) {
    if (did === '') {
      throw new UsageError(`Invalid --admit "${values.join(',')}": an empty value (expected did:key values, repeated or separated by commas)`)
    }
    try {
      publicKeyFromDid(did)
    } catch (err) {
      throw new UsageError(`Invalid --admit "${did}": ${(err as Error).message}`, { cause: err })
    }
  }
  return [...new Set(dids)]
}

/** A swarm key file (`/key/swarm/psk/1.0.0/`, `/base16/`, 64 hex digits) */
async function readSwarmKey (file: string): Promise<Uint8Array> {
  const bytes = await readFile(file).catch((err: unknown) => {
    throw new UsageError(`Cannot read --swarm-key ${file}: ${(err as Error).message}`)
  })
  if (!/^\/key\/swarm\/psk\/1\.0\.0\/\n\/base16\/\n[0-9a-f]{64}\s*$/.test(bytes.toString('utf8'))) {
    throw new UsageError(`--swarm-key ${file} is not a swarm key (expected /key/swarm/psk/1.0.0/, /base16/ and 64 hex digits, as "omega biome swarm-key" writes)`)
  }
  return new Uint8Array(bytes)
}
