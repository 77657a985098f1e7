import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { cp, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { LocalNode } from '../src/daemon/index.ts'
import { silentLogging } from '../src/observe/index.ts'
import type { BenchCase } from './harness.ts'
import { loadRound } from './load.ts'
import { startWorkerd, type Workerd } from './workerd.ts'

const ROOT = fileURLToPath(new URL('../../', import.meta.url))
let node: LocalNode | undefined
let bare: Server | undefined
let home = ''

/** hello.wasm (or the JavaScript hello of examples/js-hello) behind the gateway, with the given lifecycle */
async function setup (lifecycle: 'ephemeral' | 'pooled', js = false): Promise<void> {
  home = await mkdtemp(join(tmpdir(), 'omega-bench-'))
  if (js) {
    await cp(join(ROOT, 'examples/js-hello'), home, { recursive: true })
  } else {
    await cp(join(ROOT, 'examples/hello/hello.wasm'), join(home, 'hello.wasm'))
    await writeFile(join(home, 'omega.toml'), `[brane.hello]\nimage = "hello.wasm"\nlifecycle = "${lifecycle}"\ntrigger = { http = "/..." }\n`)
  }
  node = await LocalNode.start(join(home, 'omega.toml'), { home, port: 0, logging: silentLogging(), admin: false })
  const body = Buffer.from('hello from omega: /hello\n')
  bare = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': body.length })
    res.end(body)
  })
  await new Promise<void>((resolve) => { bare?.listen(0, '127.0.0.1', resolve) })
}

async function teardown (): Promise<void> {
  await node?.stop()
  await new Promise<void>((resolve) => { bare === undefined ? resolve() : bare.close(() => { resolve() }) })
  await rm(home, { recursive: true, force: true })
}

function bareUrl (): string {
  const address = bare?.address() as AddressInfo
  return `http://127.0.0.1:${address.port}/hello`
}

function helloCase (lifecycle: 'ephemeral' | 'pooled'): BenchCase {
  return {
    name: `hello-${lifecycle}-req-per-s`,
    description: `GET /hello with 32 connections from a separate autocannon process: omega gateway + hello.wasm (${lifecycle === 'ephemeral' ? 'a fresh pre-warmed instance per request' : 'instances reused'}, worker threads) vs a bare node:http server answering the same bytes`,
    metrics: ['ops/s', 'p99'],
    setup: async () => { await setup(lifecycle) },
    teardown,
    budget: { rounds: 3, roundMs: 3000, warmupMs: 1000 },
    subject: { label: `omega gateway → hello.wasm (${lifecycle})`, round: async (budget) => loadRound(`${node?.url ?? ''}/hello`, budget) },
    baseline: { label: 'bare node:http', round: async (budget) => loadRound(bareUrl(), budget) }
  }
}

let workerd: Workerd | undefined
let watched: { on: LocalNode, off: LocalNode, dir: string } | undefined

/** Two nodes serving pooled hello.wasm with their admin API, one with the dashboard on (nobody watching) */
async function setupDashboardPair (): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'omega-bench-'))
  await cp(join(ROOT, 'examples/hello/hello.wasm'), join(dir, 'hello.wasm'))
  await writeFile(join(dir, 'omega.toml'), '[brane.hello]\nimage = "hello.wasm"\nlifecycle = "pooled"\ntrigger = { http = "/..." }\n')
  const start = async (name: string, dashboard: boolean): Promise<LocalNode> => LocalNode.start(join(dir, 'omega.toml'), {
    home: join(dir, name), port: 0, logging: silentLogging(), ...(dashboard ? { dashboard: { port: 0 } } : {})
  })
  const on = await start('on', true)
  watched = { on, off: await start('off', false), dir }
}

/** Requests/s through the gateway to the hello component, beside a bare node:http hello server (and workerd) */
export const cases: BenchCase[] = [helloCase('ephemeral'), helloCase('pooled'), {
  name: 'hello-pooled-vs-workerd-req-per-s',
  description: 'GET /hello with 32 connections from a separate autocannon process: omega gateway + hello.wasm (pooled) vs Cloudflare\'s workerd (npm workerd) answering the same bytes from a wasm module it instantiated once and reuses',
  metrics: ['ops/s', 'p99'],
  setup: async () => {
    await setup('pooled')
    workerd = await startWorkerd()
  },
  teardown: async () => {
    await workerd?.stop()
    workerd = undefined
    await teardown()
  },
  budget: { rounds: 3, roundMs: 3000, warmupMs: 1000 },
  subject: { label: 'omega gateway → hello.wasm (pooled)', round: async (budget) => loadRound(`${node?.url ?? ''}/hello`, budget) },
  baseline: { label: 'workerd, one reused wasm instance', round: async (budget) => loadRound(workerd?.url ?? '', budget) }
}, {
  name: 'hello-pooled-dashboard-unwatched-req-per-s',
  description: 'GET /hello with 32 connections from a separate autocannon process: omega gateway + hello.wasm (pooled) with the dashboard served and nobody watching vs the same node without a dashboard (both with their admin API): what an unwatched dashboard costs the data path',
  metrics: ['ops/s', 'p99'],
  setup: setupDashboardPair,
  teardown: async () => {
    await watched?.on.stop()
    await watched?.off.stop()
    await rm(watched?.dir ?? '', { recursive: true, force: true })
    watched = undefined
  },
  budget: { rounds: 6, roundMs: 3000, warmupMs: 1000 },
  subject: { label: 'omega gateway → hello.wasm, dashboard on', round: async (budget) => loadRound(`${watched?.on.url ?? ''}/hello`, budget) },
  baseline: { label: 'the same, no dashboard', round: async (budget) => loadRound(`${watched?.off.url ?? ''}/hello`, budget) }
}, {
  name: 'js-hello-pooled-req-per-s',
  description: 'GET /hello with 32 connections from a separate autocannon process: omega gateway + examples/js-hello (JavaScript, componentize-js, exporting wasi:http/incoming-handler: instances reused) vs a bare node:http server',
  metrics: ['ops/s', 'p99'],
  setup: async () => { await setup('pooled', true) },
  teardown,
  budget: { rounds: 3, roundMs: 3000, warmupMs: 1000 },
  subject: { label: 'omega gateway → js-hello (pooled)', round: async (budget) => loadRound(`${node?.url ?? ''}/hello`, budget) },
  baseline: { label: 'bare node:http', round: async (budget) => loadRound(bareUrl(), budget) }
}]
