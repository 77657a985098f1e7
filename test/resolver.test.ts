/**
 * Resolvers against stand-in executables for tailscale, cloudflared, ngrok and netbird
 * (placed first on PATH): each checks its exact command line and prints what the real
 * CLI prints. A killed provider is restarted; stop removes every publication. `local`
 * works for real: the gateway serves the brane on the resolver's host name.
 */
import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { chmod, cp, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { LocalNode } from '../src/daemon/index.ts'
import { silentLogging } from '../src/observe/index.ts'
import { Resolvers, type ResolverStatus } from '../src/resolver/index.ts'
import type { ResolverPlan } from '../src/manifest/index.ts'
import { freePort } from '../src/util/index.ts'
import { ROOT, cli, eventually, get, json, ok, peers, startNode, stopDaemon, until, type MeshProcess, type Placement } from './helpers.ts'

/** One script for the four providers; it acts by the name it was called with */
const STANDIN = `
import { appendFileSync } from 'node:fs'
import { basename } from 'node:path'
const name = basename(process.argv[1])
const args = process.argv.slice(2)
const port = process.env.STANDIN_PORT
const log = (event) => appendFileSync(process.env.STANDIN_LOG, JSON.stringify({ name, args, pid: process.pid, event }) + '\\n')
const expected = {
  tailscale: ['funnel', port],
  cloudflared: ['tunnel', '--no-autoupdate', '--url', 'http://127.0.0.1:' + port],
  ngrok: ['http', port, '--log', 'stdout', '--log-format', 'json'],
  netbird: ['expose', port]
}[name]
if (name === 'tailscale' && args.join(' ') === 'funnel --https=443 off') {
  log('off')
  process.exit(0)
}
if (JSON.stringify(args) !== JSON.stringify(expected)) {
  log('bad-arguments')
  process.stderr.write(name + ': unexpected arguments: ' + args.join(' ') + '\\n')
  process.exit(2)
}
log('start')
const t = new Date().toISOString().replace(/\\.\\d+Z$/, 'Z')
const gen = process.env.STANDIN_GEN ?? 'a'
switch (process.env.STANDIN_SILENT === '1' ? 'silent' : name) {
  case 'tailscale':
    process.stdout.write('Available on the internet:\\n\\nhttps://omega-' + gen + '.tail1234.ts.net/\\n|-- proxy http://127.0.0.1:' + port + '\\n\\nPress Ctrl+C to exit.\\n')
    break
  case 'cloudflared':
    process.stderr.write(t + ' INF Thank you for trying Cloudflare Tunnel. Doing so, without a Cloudflare account, is a quick way to experiment and try it out. However, be aware that these account-less Tunnels have no uptime guarantee.\\n')
    process.stderr.write(t + ' INF Requesting new quick Tunnel on trycloudflare.com...\\n')
    process.stderr.write(t + ' INF +--------------------------------------------------------------------------------------------+\\n')
    process.stderr.write(t + ' INF |  Your quick Tunnel has been created! Visit it at (it may take some time to be reachable):  |\\n')
    process.stderr.write(t + ' INF |  https://seasonal-deck-organisms-sf.trycloudflare.com                                      |\\n')
    process.stderr.write(t + ' INF +--------------------------------------------------------------------------------------------+\\n')
    break
  case 'ngrok':
    process.stdout.write(JSON.stringify({ lvl: 'info', msg: 'no configuration paths supplied', t }) + '\\n')
    process.stdout.write(JSON.stringify({ lvl: 'info', msg: 'starting web service', obj: 'web', addr: '127.0.0.1:4040', t }) + '\\n')
    process.stdout.write(JSON.stringify({ addr: 'http://localhost:' + port, lvl: 'info', msg: 'started tunnel', name: 'command_line', obj: 'tunnels', t, url: 'https://1a2b-203-0-113-7.ngrok-free.app' }) + '\\n')
    break
  case 'netbird':
    process.stderr.write('Service exposed successfully!\\n  Name:     omega-x1y2\\n  URL:      https://omega-x1y2.proxy.netbird.io\\n  Domain:   omega-x1y2.proxy.netbird.io\\n  Protocol: http\\n  Port:     ' + port + '\\n\\nPress Ctrl+C to stop exposing.\\n')
    break
}
const keepAlive = setInterval(() => {}, 1000)
process.on('SIGTERM', () => {
  log('stop')
  if (name === 'netbird') process.stderr.write('\\nService stopped.\\n')
  clearInterval(keepAlive)
  process.exit(0)
})
`

interface LogLine { name: string, args: string[], pid: number, event: string }

async function standins (dir: string): Promise<{ env: Record<string, string | undefined>, log: () => Promise<LogLine[]> }> {
  const bin = join(dir, 'bin')
  await mkdir(bin, { recursive: true })
  for (const name of ['tailscale', 'cloudflared', 'ngrok', 'netbird']) {
    await writeFile(join(bin, name), `#!${process.execPath}\n${STANDIN}`)
    await chmod(join(bin, name), 0o755)
  }
  const logFile = join(dir, 'standin.log')
  await writeFile(logFile, '')
  return {
    env: { ...process.env, PATH: `${bin}:${process.env.PATH ?? ''}`, STANDIN_LOG: logFile },
    log: async () => (await readFile(logFile, 'utf8')).trim().split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as LogLine)
  }
}

function alive (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

const PLANS: ResolverPlan[] = [
  { name: 'funnel', host: 'omega-a.tail1234.ts.net', mode: 'tailscale-funnel', brane: 'hello' },
  { name: 'cf', host: 'hello.example.com', mode: 'cloudflared', brane: 'hello' },
  { name: 'grok', host: 'hello.example.org', mode: 'ngrok' },
  { name: 'bird', host: 'hello.example.net', mode: 'netbird' },
  { name: 'lan', host: 'hello.lan', mode: 'local', brane: 'hello' }
]

describe('resolvers', () => {
  let dir = ''
  before(async () => { dir = await mkdtemp(join(tmpdir(), 'omega-resolver-')) })
  after(async () => { await rm(dir, { recursive: true, force: true }) })

  it('publishes through all four providers, restarts a killed one, removes them all on stop', async () => {
    const { env, log } = await standins(join(dir, 'a'))
    let changes = 0
    const resolvers = new Resolvers({ logger: silentLogging().forComponent('resolver'), onChange: () => { changes++ } }, PLANS, {
      port: 18080, env: { ...env, STANDIN_PORT: '18080' }, backoffMs: 50
    })
    resolvers.start()
    try {
      const byName = (): Map<string, ResolverStatus> => new Map(resolvers.status().map((s) => [s.name, s]))
      await until(() => resolvers.status().every((s) => s.state === 'up'), 15_000, 'every resolver up')
      const up = byName()
      assert.equal(up.get('funnel')?.url, 'https://omega-a.tail1234.ts.net')
      assert.equal(up.get('cf')?.url, 'https://seasonal-deck-organisms-sf.trycloudflare.com')
      assert.equal(up.get('grok')?.url, 'https://1a2b-203-0-113-7.ngrok-free.app')
      assert.equal(up.get('bird')?.url, 'https://omega-x1y2.proxy.netbird.io')
      assert.equal(up.get('lan')?.url, 'http://hello.lan:18080')
      assert.ok(changes >= 4)
      const started = (await log()).filter((l) => l.event === 'start')
      assert.deepEqual(started.map((l) => l.name).sort(), ['cloudflared', 'netbird', 'ngrok', 'tailscale'])
      assert.equal((await log()).filter((l) => l.event === 'bad-arguments').length, 0)
      // a brane-bound resolver routes its declared host and its public host to the brane
      assert.deepEqual(resolvers.hostRoutes().map((r) => r.host).sort(), ['hello.example.com', 'hello.lan', 'omega-a.tail1234.ts.net', 'seasonal-deck-organisms-sf.trycloudflare.com'])

      // kill cloudflared: it is restarted (new pid) and published again
      const pid = up.get('cf')?.pid
      assert.ok(pid !== undefined && alive(pid))
      process.kill(pid, 'SIGKILL')
      await until(() => byName().get('cf')?.restarts === 1 && byName().get('cf')?.state === 'up' && byName().get('cf')?.pid !== pid, 15_000, 'cloudflared restarted')
      assert.match(byName().get('cf')?.lastError ?? '', /cloudflared exited \(SIGKILL\)/)
      assert.equal((await log()).filter((l) => l.name === 'cloudflared' && l.event === 'start').length, 2)
    } finally {
      await resolvers.stop()
    }
    // removal on shutdown: every provider got SIGTERM and exited; tailscale's funnel is turned off
    const lines = await log()
    const pids = lines.filter((l) => l.event === 'start').map((l) => l.pid)
    assert.ok(pids.every((p) => !alive(p)), 'no provider process left')
    const stopped = lines.filter((l) => l.event === 'stop').map((l) => l.name).sort()
    assert.deepEqual(stopped, ['cloudflared', 'netbird', 'ngrok', 'tailscale'])
    assert.deepEqual(lines.filter((l) => l.event === 'off').map((l) => l.args), [['funnel', '--https=443', 'off']])
    assert.ok(resolvers.status().every((s) => s.state === 'stopped'))
  })

  it('takes a new plan (a reload, a placement): starts the new, stops the gone and the changed, keeps the rest running', async () => {
    const { env, log } = await standins(join(dir, 'update'))
    const resolvers = new Resolvers({ logger: silentLogging().forComponent('resolver') }, [PLANS[1]!, PLANS[2]!], {
      port: 18081, env: { ...env, STANDIN_PORT: '18081' }, backoffMs: 50
    })
    resolvers.start()
    try {
      await until(() => resolvers.status().every((s) => s.state === 'up'), 15_000, 'cf and grok up')
      const pidOf = (name: string): number | undefined => resolvers.status().find((s) => s.name === name)?.pid
      const grok = pidOf('grok')
      const cf = pidOf('cf')
      // cf goes, bird comes, grok stays as it is
      await resolvers.update([PLANS[2]!, PLANS[3]!])
      await until(() => resolvers.status().every((s) => s.state === 'up'), 15_000, 'grok and bird up')
      assert.deepEqual(resolvers.status().map((s) => s.name), ['grok', 'bird'])
      assert.equal(pidOf('grok'), grok, 'an unchanged resolver keeps its process')
      assert.ok(cf !== undefined && !alive(cf), 'the resolver gone from the plan was stopped')
      // placed elsewhere (another node leads its brane): stopped here, listed as elsewhere
      const bird = pidOf('bird')
      await resolvers.update([PLANS[2]!, PLANS[3]!], (plan) => plan.name !== 'bird')
      assert.deepEqual(resolvers.status().map((s) => [s.name, s.state]), [['grok', 'up'], ['bird', 'elsewhere']])
      assert.ok(bird !== undefined && !alive(bird), 'the resolver placed elsewhere was stopped')
      // one start each: nothing was started twice
      assert.deepEqual((await log()).filter((l) => l.event === 'start').map((l) => l.name).sort(), ['cloudflared', 'netbird', 'ngrok'])
    } finally {
      await resolvers.stop()
    }
  })

  it('health: a provider that announces no URL in time is stopped and restarted', async () => {
    const { env, log } = await standins(join(dir, 'silent'))
    const resolvers = new Resolvers({ logger: silentLogging().forComponent('resolver') }, [PLANS[3]!], {
      // long enough for each stand-in process to start (and log so) on a loaded machine
      port: 18082, env: { ...env, STANDIN_PORT: '18082', STANDIN_SILENT: '1' }, backoffMs: 20, readyTimeoutMs: 1500
    })
    resolvers.start()
    try {
      await until(() => (resolvers.status()[0]?.restarts ?? 0) >= 2, 30_000, 'two restarts')
      assert.match(resolvers.status()[0]?.lastError ?? '', /netbird printed no public URL within 1500 ms/)
      assert.equal(resolvers.status()[0]?.url, undefined)
    } finally {
      await resolvers.stop()
    }
    const lines = await log()
    assert.ok(lines.filter((l) => l.event === 'start').length >= 2, JSON.stringify(lines))
    assert.ok(lines.filter((l) => l.event === 'start').every((l) => !alive(l.pid)))
  })

  it('says when a provider CLI is not installed, and keeps retrying with back-off', async () => {
    const resolvers = new Resolvers({ logger: silentLogging().forComponent('resolver') }, [PLANS[2]!], {
      port: 18081, env: { PATH: join(dir, 'empty') }, backoffMs: 20, maxBackoffMs: 40
    })
    resolvers.start()
    try {
      await until(() => (resolvers.status()[0]?.restarts ?? 0) >= 3, 10_000, 'three restarts')
      assert.match(resolvers.status()[0]?.lastError ?? '', /"ngrok" is not installed \(not found on PATH\)/)
      assert.equal(resolvers.status()[0]?.state, 'restarting')
    } finally {
      await resolvers.stop()
    }
  })

  it('in a node: local serves the brane on its host name, a provider publishes the gateway port, stop removes it', async () => {
    const app = join(dir, 'node')
    await cp(join(ROOT, 'examples/hello'), app, { recursive: true })
    await writeFile(join(app, 'omega.toml'), `
[brane.hello]
image = "hello.wasm"
trigger = { http = "/hello/*" }

[resolver.lan]
host = "hello.lan"
mode = "local"
brane = "hello"

[resolver.public]
host = "hello.example.org"
mode = "ngrok"
brane = "hello"
`)
    const { env, log } = await standins(join(dir, 'n'))
    const port = await freePort()
    const node = await LocalNode.start(join(app, 'omega.toml'), {
      home: join(dir, 'home'), port, logging: silentLogging(), resolverEnv: { ...env, STANDIN_PORT: String(port) }, resolverBackoffMs: 50
    })
    let ngrokPid: number | undefined
    try {
      // local: the gateway serves the brane on the resolver's host, on every path
      assert.equal((await get(node.url, '/elsewhere')).status, 404)
      const lan = await get(node.url, '/elsewhere', 'hello.lan')
      assert.equal(lan.status, 200)
      assert.equal(lan.body, 'hello from omega: /elsewhere\n')
      assert.equal((await get(node.url, '/x', `hello.lan:${port}`)).status, 200)
      // ngrok: published with the gateway's port; its public host routes to the brane too
      await until(() => node.resolvers.find((r) => r.name === 'public')?.state === 'up', 15_000, 'ngrok up')
      const status = node.status().resolvers as ResolverStatus[]
      assert.deepEqual(status.map((r) => [r.name, r.mode, r.state]), [['lan', 'local', 'up'], ['public', 'ngrok', 'up']])
      assert.equal(status[1]?.url, 'https://1a2b-203-0-113-7.ngrok-free.app')
      ngrokPid = status[1]?.pid
      assert.equal((await get(node.url, '/via-tunnel', '1a2b-203-0-113-7.ngrok-free.app')).body, 'hello from omega: /via-tunnel\n')
      assert.deepEqual((await log()).filter((l) => l.event === 'start').map((l) => l.args), [['http', String(port), '--log', 'stdout', '--log-format', 'json']])
    } finally {
      await node.stop()
    }
    assert.ok(ngrokPid !== undefined && !alive(ngrokPid), 'ngrok stopped with the node')
    assert.deepEqual((await log()).map((l) => l.event), ['start', 'stop'])
  })
})

describe('resolvers in a mesh', { timeout: 180_000 }, () => {
  it('runs a provider on the node leading its brane only, and moves it with the brane when that node dies', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'omega-resolver-mesh-'))
    const nodes: MeshProcess[] = []
    const { env, log } = await standins(join(dir, 's'))
    try {
      await cp(join(ROOT, 'examples/hello/hello.wasm'), join(dir, 'hello.wasm'))
      await writeFile(join(dir, 'omega.toml'), `
[brane.hello]
substrate = "biome"
image = "hello.wasm"
trigger = { http = "/hello/*" }
peers = "lab/*"

[resolver.public]
host = "hello.example.org"
mode = "ngrok"
brane = "hello"
`)
      const ports = [await freePort(), await freePort()]
      const start = async (name: string, port: number, args: string[]): Promise<MeshProcess> =>
        startNode(join(dir, name), `lab/${name}`, ['--port', String(port), '--no-dashboard', ...args], { ...env, STANDIN_PORT: String(port) })
      nodes.push(await start('a', ports[0] as number, []))
      const deployer = (await cli(['id'], nodes[0]?.home)).out.trim()
      nodes.push(await start('b', ports[1] as number, ['--bootstrap', nodes[0]?.addr ?? '', '--trust', deployer]))
      // both in step first: a node still catching up (HEAL) gets a brane only while no other can
      for (const node of nodes) {
        await eventually(async () => (await peers(node.home)).filter((p) => p.status === 'HEAD').length === 2, 30_000, `${node.name} to see both nodes in step`)
      }
      await ok(['deploy', join(dir, 'omega.toml')], nodes[0]?.home)
      let leader: MeshProcess | undefined
      await eventually(async () => {
        const view = await json<Placement>(['biome', 'placement'], nodes[0]?.home ?? '')
        leader = nodes.find((n) => n.name === view.placement.find((p) => p.brane === 'hello')?.names[0])
        return leader !== undefined
      }, 30_000, 'hello to be placed')
      const other = nodes.find((n) => n !== leader) as MeshProcess
      const resolverOf = async (node: MeshProcess): Promise<ResolverStatus | undefined> =>
        (await json<{ resolvers?: ResolverStatus[] }>(['ps'], node.home)).resolvers?.find((r) => r.name === 'public')
      await eventually(async () => (await resolverOf(leader as MeshProcess))?.state === 'up', 30_000, 'the leader to publish hello')
      await eventually(async () => (await resolverOf(other))?.state === 'elsewhere', 30_000, 'the other node to leave it to the leader')
      const tunnel = '1a2b-203-0-113-7.ngrok-free.app'
      assert.equal((await get(leader?.gateway ?? '', '/via-tunnel', tunnel)).body, 'hello from omega: /via-tunnel\n')
      const starts = async (): Promise<LogLine[]> => (await log()).filter((l) => l.event === 'start')
      assert.deepEqual((await starts()).map((l) => l.args[1]), [String(leader === nodes[0] ? ports[0] : ports[1])], 'one provider, on the leader')
      // the leader dies: the brane and its publication move to the survivor
      leader?.child.kill('SIGKILL')
      await eventually(async () => (await resolverOf(other))?.state === 'up', 60_000, 'the survivor to publish hello')
      assert.deepEqual((await starts()).map((l) => l.args[1]), [String(ports[nodes.indexOf(leader as MeshProcess)]), String(ports[nodes.indexOf(other)])])
      assert.equal((await get(other.gateway, '/after', tunnel)).body, 'hello from omega: /after\n')
    } finally {
      await Promise.all(nodes.map(async (n) => { await stopDaemon(n, 'SIGKILL') }))
      // the killed node's provider outlived it (as a real one would): end the stand-ins
      for (const line of await log().catch(() => [])) {
        if (alive(line.pid)) {
          process.kill(line.pid, 'SIGKILL')
        }
      }
      await rm(dir, { recursive: true, force: true })
    }
  })
})
