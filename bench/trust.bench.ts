import { cp, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { randomBytes } from 'node:crypto'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { LocalNode } from '../src/daemon/index.ts'
import { delegateCapability, generateNodeKey, issueCapability, parseCapability, verify, verifyCapability } from '../src/identity/index.ts'
import { silentLogging } from '../src/observe/index.ts'
import type { BenchCase } from './harness.ts'
import { loadRound } from './load.ts'

const ROOT = fileURLToPath(new URL('../../', import.meta.url))

// a 3-link chain: root → alice (deploy, logs on brane/*) → bob (logs on brane/*) → carol (logs on brane/fetch)
const root = generateNodeKey()
const [alice, bob, carol] = [generateNodeKey(), generateNodeKey(), generateNodeKey()]
const roots = [root.did]
const t1 = issueCapability(root, { subject: alice.did, capabilities: [parseCapability('deploy:brane/*'), parseCapability('logs:brane/*')] })
const t2 = delegateCapability(t1, { roots, subject: bob.did, capabilities: [parseCapability('logs:brane/*')] })
const t3 = delegateCapability(t2, { roots, subject: carol.did, capabilities: [parseCapability('logs:brane/fetch')] })
// the baseline: one Ed25519 signature over as many bytes as the token holds
const payload = randomBytes(Buffer.from(t3, 'base64url').byteLength)
const signature = root.sign(payload)

const homes: string[] = []
const nodes: Record<'on' | 'off', LocalNode | undefined> = { on: undefined, off: undefined }

async function startNode (metering: boolean): Promise<LocalNode> {
  const home = await mkdtemp(join(tmpdir(), 'omega-bench-trust-'))
  homes.push(home)
  await cp(join(ROOT, 'examples/hello/hello.wasm'), join(home, 'hello.wasm'))
  await writeFile(join(home, 'omega.toml'), '[brane.hello]\nimage = "hello.wasm"\nlifecycle = "pooled"\ntrigger = { http = "/..." }\n')
  return LocalNode.start(join(home, 'omega.toml'), { home, port: 0, logging: silentLogging(), admin: false, metering })
}

/** Capability verification cost, and what settlement metering costs the gateway */
export const cases: BenchCase[] = [
  {
    name: 'token-verify-3-link',
    description: `verifyCapability of a 3-link Biscuit chain (${Buffer.from(t3, 'base64url').byteLength} bytes: parse, 3 block signatures, datalog authorisation, revocation ids) vs one Ed25519 verify of a payload of the same size`,
    metrics: ['ops/s', 'p50', 'p99'],
    subject: { label: 'verifyCapability (Biscuit, 3 links)', op: () => verifyCapability(t3, { ability: 'logs', resource: 'brane/fetch', roots }) },
    baseline: { label: 'one Ed25519 verify, same size', op: () => verify(root.did, payload, signature) }
  },
  {
    name: 'gateway-metering-req-per-s',
    description: 'GET /hello with 32 connections (autocannon, separate process) to hello.wasm (pooled): settlement metering on (usage recorded per request, receipts every 60 s) vs off',
    metrics: ['ops/s'],
    setup: async () => {
      nodes.on = await startNode(true)
      nodes.off = await startNode(false)
    },
    teardown: async () => {
      await nodes.on?.stop()
      await nodes.off?.stop()
      await Promise.all(homes.map(async (h) => { await rm(h, { recursive: true, force: true }) }))
      homes.length = 0
    },
    budget: { rounds: 3, roundMs: 3000, warmupMs: 1000 },
    subject: { label: 'gateway, metering on', round: async (budget) => loadRound(`${nodes.on?.url ?? ''}/hello`, budget) },
    baseline: { label: 'gateway, metering off', round: async (budget) => loadRound(`${nodes.off?.url ?? ''}/hello`, budget) }
  }
]
