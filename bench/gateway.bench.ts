import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { LocalNode } from '../src/daemon/index.ts'
import { silentLogging } from '../src/observe/index.ts'
import type { BenchCase } from './harness.ts'
import { loadRound } from './load.ts'

const ROOT = fileURLToPath(new URL('../../', import.meta.url))
let node: LocalNode | undefined
let bare: Server | undefined
let home = ''

async function setup (): Promise<void> {
  home = await mkdtemp(join(tmpdir(), 'omega-bench-'))
  node = await LocalNode.start(join(ROOT, 'examples/hello/omega.toml'), { home, port: 0, logging: silentLogging(), admin: false })
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

/** Requests/s through the gateway to the hello component, beside a bare node:http hello server */
export const cases: BenchCase[] = [{
  name: 'hello-req-per-s',
  description: 'GET /hello with 32 connections from a separate autocannon process: omega gateway + hello.wasm (fresh instance per request, worker thread) vs a bare node:http server answering the same bytes',
  metrics: ['ops/s'],
  setup,
  teardown,
  budget: { rounds: 3, roundMs: 3000, warmupMs: 1000 },
  subject: { label: 'omega gateway → hello.wasm', round: async (budget) => loadRound(`${node?.url ?? ''}/hello`, budget) },
  baseline: { label: 'bare node:http', round: async (budget) => loadRound(bareUrl(), budget) }
}]
