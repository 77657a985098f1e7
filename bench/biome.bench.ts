/**
 * Biome: events/s through a 2-edge chain whose middle brane runs on another node of a
 * mesh (web and end on node A, mid on node B: every event crosses the mesh twice), beside
 * the same chain on one node; and durable events/s from one node process to another
 * with plain JavaScript consumers, beside raw TCP carrying the same batches.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { createConnection, createServer, type Socket } from 'node:net'
import { createInterface } from 'node:readline'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { HybridClock, MAX_BATCH_EVENTS, prepareDeployment, Rpc, sendEventBatch, serveEventBatches } from '../src/biome/index.ts'
import { LocalNode, startNode, type OmegaMeshNode } from '../src/daemon/index.ts'
import { Dispatcher, EventQueue, type BraneEvent } from '../src/dispatch/index.ts'
import { generateNodeKey, loadOrCreateNodeKey } from '../src/identity/index.ts'
import { MeshNode } from '../src/mesh/index.ts'
import { silentLogging } from '../src/observe/index.ts'
import { chainRound } from './events.bench.ts'
import type { BenchCase, RoundBudget, RoundSample } from './harness.ts'
import { socketFrames, spawnBenchPeer } from './mesh.bench.ts'

const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const BATCH = 200

const CHAIN = (mid: string, ends: string): string => `
[brane.web]
substrate = "biome"
image = "http-emit.wasm"
lifecycle = "pooled"
${ends}

[brane.mid]
substrate = "biome"
image = "forward.wasm"
lifecycle = "pooled"
${mid}

[brane.end]
substrate = "biome"
image = "sink.wasm"
lifecycle = "pooled"
${ends}

[graph]
edges = [{ from = "web", to = "mid", on = "hits" }, { from = "mid", to = "end", on = "out" }]
`

let dir = ''
let a: OmegaMeshNode | undefined
let b: ChainNode | undefined
let single: LocalNode | undefined

// ------------------------------------------- node b of the chain, in a process of its own

const CHAIN_NODE_ENV = 'OMEGA_BIOME_BENCH_CHAIN_NODE'
const CHAIN_NODE_INIT = 'OMEGA_BIOME_BENCH_CHAIN_INIT'

/** Node b as the bench sees it: its did, its deliveries acknowledged so far, and whether it runs mid */
interface ChainNode { child: ChildProcess, did: string, acked: () => number, serving: () => boolean }

/** The child: a mesh node that joins node a, then reports `acked serving` every 10 ms on stdout */
async function runChainNode (): Promise<void> {
  const init = JSON.parse(process.env[CHAIN_NODE_INIT] ?? '{}') as { home: string, bootstrap: string[], trust: string[] }
  const node = await startNode({ ...init, name: 'bench/b', substrate: 'biome', port: 0, logging: silentLogging(), admin: false, frontier: false })
  process.stdout.write(`${JSON.stringify({ did: node.did })}\n`)
  setInterval(() => {
    process.stdout.write(`${node.local.acked} ${node.placement.get('mid')?.nodes[0] === node.did ? 1 : 0}\n`)
  }, 10)
  process.once('SIGTERM', () => { node.stop().finally(() => process.exit(0)).catch(() => {}) })
}

async function spawnChainNode (): Promise<ChainNode> {
  const child = spawn(process.execPath, [fileURLToPath(import.meta.url)], { env: { ...process.env, [CHAIN_NODE_ENV]: '1' }, stdio: ['ignore', 'pipe', 'inherit'] })
  let acked = 0
  let serving = false
  const did = await new Promise<string>((resolve, reject) => {
    child.once('exit', (code) => { reject(new Error(`the bench's node b exited (${String(code)}) before reporting its did`)) })
    createInterface({ input: child.stdout as NonNullable<ChildProcess['stdout']> }).on('line', (line) => {
      if (line.startsWith('{')) {
        resolve((JSON.parse(line) as { did: string }).did)
        return
      }
      const [count, runs] = line.split(' ')
      acked = Number(count)
      serving = runs === '1'
    })
  })
  return { child, did, acked: () => acked, serving: () => serving }
}

// ------------------------------------------------------- durable events between two processes

const PEER_ENV = 'OMEGA_BIOME_BENCH_PEER'
const EVENT_PAYLOAD = new Uint8Array(100).fill(0x61)
/** emits in flight at once on the sending node */
const EMIT_WINDOW = 1000

interface EventsPeer { child: ChildProcess, addrs: string[], did: string, tcpPort: number }

const logger = (): ReturnType<ReturnType<typeof silentLogging>['forComponent']> => silentLogging().forComponent('bench')

/** A raw TCP frame: 4-byte length, 4-byte header length, the JSON header, the payloads back to back */
function batchFrame (header: unknown, payloads: readonly Uint8Array[]): Buffer {
  const json = Buffer.from(JSON.stringify(header))
  const size = 4 + json.byteLength + payloads.reduce((n, p) => n + p.byteLength, 0)
  const frame = Buffer.allocUnsafe(4 + size)
  frame.writeUInt32BE(size, 0)
  frame.writeUInt32BE(json.byteLength, 4)
  json.copy(frame, 8)
  let at = 8 + json.byteLength
  for (const p of payloads) {
    frame.set(p, at)
    at += p.byteLength
  }
  return frame
}

/** The second process: a mesh node answering event batches to a JS consumer, and a TCP server answering the same batches */
async function runEventsPeer (): Promise<void> {
  const key = generateNodeKey()
  const mesh = await MeshNode.create({ key, name: 'bench/events-peer', substrate: 'biome', logger: logger() })
  const rpc = new Rpc(mesh, { logger: logger() })
  // the consumer: plain JavaScript that takes each event
  serveEventBatches(rpc, async () => ({ deliver: async () => {} }))
  await mesh.start()
  const server = createServer((socket) => {
    socket.setNoDelay(true)
    ;(async () => {
      for await (const frame of socketFrames(socket)) {
        const header = JSON.parse(frame.subarray(4, 4 + frame.readUInt32BE(0)).toString()) as { events: unknown[] }
        socket.write(batchFrame({ outcomes: header.events.map(() => ({})) }, []))
      }
    })().catch(() => {})
  })
  await new Promise<void>((resolve) => { server.listen(0, '127.0.0.1', resolve) })
  const port = (server.address() as { port: number }).port
  process.stdout.write(`${JSON.stringify({ addrs: mesh.addrs, did: key.did, tcpPort: port })}\n`)
}

function eventsBetweenNodesCase (): BenchCase {
  let peer: EventsPeer | undefined
  let mesh: MeshNode | undefined
  let rpc: Rpc | undefined
  let queue: EventQueue | undefined
  let dispatcher: Dispatcher | undefined
  let socket: Socket | undefined
  let replies: AsyncIterator<Buffer> | undefined
  let home = ''
  const send = async (events: readonly BraneEvent[]): Promise<Array<PromiseSettledResult<void>>> =>
    sendEventBatch(rpc as Rpc, (peer as EventsPeer).did, 'b', events, { timeoutMs: 30_000 })
  return {
    name: 'events-between-nodes',
    description: `Durable events/s from one node process to another (edge a → b, b a plain JS consumer on the other node; every event in SQLite before its emit resolves, acknowledged after b took it; ${EVENT_PAYLOAD.byteLength}-byte payloads, ${EMIT_WINDOW} emits in flight, batches of up to ${MAX_BATCH_EVENTS} per frame) vs raw TCP carrying the same batches, one in flight, nothing stored`,
    metrics: ['ops/s'],
    budget: { rounds: 3, roundMs: 2000, warmupMs: 500 },
    setup: async () => {
      peer = await spawnBenchPeer<Omit<EventsPeer, 'child'>>(fileURLToPath(import.meta.url), PEER_ENV)
      home = await mkdtemp(join(tmpdir(), 'omega-bench-events-nodes-'))
      mesh = await MeshNode.create({ key: generateNodeKey(), name: 'bench/events-sender', substrate: 'biome', bootstrap: peer.addrs, logger: logger() })
      await mesh.start()
      const deadline = Date.now() + 20_000
      while (mesh.member(peer.did)?.state !== 'alive') {
        if (Date.now() > deadline) {
          throw new Error('the bench peer did not join within 20 s')
        }
        await new Promise((resolve) => setTimeout(resolve, 20))
      }
      rpc = new Rpc(mesh, { logger: logger() })
      queue = new EventQueue({ path: join(home, 'queue.db') })
      dispatcher = new Dispatcher({
        queue,
        logger: logger(),
        target: () => ({
          maxBatch: MAX_BATCH_EVENTS,
          deliver: async (event) => {
            const [outcome] = await send([event])
            if (outcome?.status === 'rejected') {
              throw outcome.reason
            }
          },
          deliverBatch: send
        })
      }, { edges: [{ from: 'a', to: 'b', on: 'e', priority: 5 }] })
      dispatcher.start()
      socket = createConnection({ host: '127.0.0.1', port: peer.tcpPort })
      await new Promise<void>((resolve, reject) => { socket?.once('connect', resolve).once('error', reject) })
      socket.setNoDelay(true)
      replies = socketFrames(socket)[Symbol.asyncIterator]()
    },
    teardown: async () => {
      dispatcher?.stop()
      queue?.close()
      rpc?.close()
      socket?.destroy()
      await mesh?.stop()
      peer?.child.kill('SIGTERM')
      await rm(home, { recursive: true, force: true })
    },
    subject: {
      label: 'omega: durable queue + batches over the mesh',
      round: async (budget: RoundBudget): Promise<RoundSample> => {
        const q = queue as EventQueue
        const d = dispatcher as Dispatcher
        const start = performance.now()
        const acked = q.acked
        let emitted = 0
        while (performance.now() - start < budget.durationMs && emitted < budget.maxOps) {
          await Promise.all(Array.from({ length: EMIT_WINDOW }, async () => d.emit('a', 'e', EVENT_PAYLOAD)))
          emitted += EMIT_WINDOW
        }
        const deadline = Date.now() + 60_000
        while (q.acked - acked < emitted) {
          if (Date.now() > deadline) {
            throw new Error('the events were not all delivered within 60 s')
          }
          await new Promise((resolve) => setImmediate(resolve))
        }
        return { ops: emitted, elapsedMs: performance.now() - start }
      }
    },
    baseline: {
      label: 'raw TCP, the same batches, nothing stored',
      round: async (budget: RoundBudget): Promise<RoundSample> => {
        const start = performance.now()
        let sent = 0
        const payloads = Array.from({ length: MAX_BATCH_EVENTS }, () => EVENT_PAYLOAD)
        while (performance.now() - start < budget.durationMs && sent < budget.maxOps) {
          const metas = payloads.map((p, i) => ({ id: `e:b3:${sent + i}`, topic: 'e', source: 'a', traceId: `e:b3:${sent + i}`, attempt: 1, bytes: p.byteLength }))
          socket?.write(batchFrame({ brane: 'b', events: metas }, payloads))
          const reply = await replies?.next()
          if (reply === undefined || reply.done === true) {
            throw new Error('the peer closed the connection')
          }
          sent += payloads.length
        }
        return { ops: sent, elapsedMs: performance.now() - start }
      }
    }
  }
}

export const cases: BenchCase[] = process.env[PEER_ENV] === '1' || process.env[CHAIN_NODE_ENV] === '1'
  ? []
  : [
      eventsBetweenNodesCase(),
      {
        name: 'chain-across-2-nodes',
        description: `Events/s through web → mid → end with mid on a second mesh node in its own process (two mesh hops per event: libp2p TCP + Noise + yamux on 127.0.0.1), 100-byte payloads (as events/chain-2-edges) in batches of ${BATCH}, vs the same chain on one node`,
        metrics: ['ops/s'],
        budget: { rounds: 3, roundMs: 2000, warmupMs: 500 },
        setup: async () => {
          dir = await mkdtemp(join(tmpdir(), 'omega-bench-biome-'))
          for (const name of ['http-emit', 'forward', 'sink']) {
            await cp(join(ROOT, `build/fixtures/${name}.wasm`), join(dir, `${name}.wasm`))
          }
          const logging = silentLogging()
          a = await startNode({ home: join(dir, 'a'), name: 'bench/a', substrate: 'biome', port: 0, logging, admin: false, frontier: false })
          const key = await loadOrCreateNodeKey(join(dir, 'a'))
          process.env[CHAIN_NODE_INIT] = JSON.stringify({ home: join(dir, 'b'), bootstrap: a.mesh.addrs, trust: [a.did] })
          b = await spawnChainNode()
          await writeFile(join(dir, 'mesh.toml'), CHAIN('peers = "bench/b"', 'peers = "bench/a"'))
          const { document, blobs } = await prepareDeployment(join(dir, 'mesh.toml'), key, { home: join(dir, 'a'), time: new HybridClock(key.did).now() })
          const encoded: Record<string, string> = {}
          for (const [hash, path] of blobs) {
            encoded[hash] = (await readFile(path)).toString('base64')
          }
          await a.deploy({ document, blobs: encoded })
          const deadline = Date.now() + 30_000
          while (a.placement.get('mid')?.nodes[0] !== b.did || !b.serving()) {
            if (Date.now() > deadline) {
              throw new Error('the deployment did not reach node b within 30 s')
            }
            await new Promise((resolve) => setTimeout(resolve, 50))
          }
          await writeFile(join(dir, 'one.toml'), CHAIN('', ''))
          single = await LocalNode.start(join(dir, 'one.toml'), { home: join(dir, 'one'), port: 0, logging, admin: false, metering: false })
        },
        teardown: async () => {
          b?.child.kill('SIGTERM')
          await a?.stop()
          await single?.stop()
          await rm(dir, { recursive: true, force: true })
        },
        subject: {
          label: 'omega: mid on another node process (2 mesh hops)',
          // deliveries acknowledged: web → mid on node a, mid → end on node b
          round: async (budget) => chainRound(budget, async (payload) => a?.local.emit('web', 'hits', payload),
            () => (a?.local.acked ?? 0) + (b?.acked() ?? 0), BATCH)
        },
        baseline: {
          label: 'the same chain on one node',
          round: async (budget) => chainRound(budget, async (payload) => single?.emit('web', 'hits', payload), () => single?.acked ?? 0, BATCH)
        }
      }
    ]

if (process.env[CHAIN_NODE_ENV] === '1') {
  runChainNode().catch((err: unknown) => {
    process.stderr.write(`biome bench chain node: ${String(err)}\n`)
    process.exitCode = 1
  })
}

if (process.env[PEER_ENV] === '1') {
  runEventsPeer().catch((err: unknown) => {
    process.stderr.write(`biome bench peer: ${String(err)}\n`)
    process.exitCode = 1
  })
}
