/**
 * The mesh (issue "Biome", Must show 4), each figure beside a baseline from the same run:
 *
 * - join-N: a new node joins a steady mesh of N nodes (all in this process, default
 *   membership settings): time from its start() until every node lists it alive, P50/P99;
 *   beside the floor of any join: start a node, dial one peer (TCP + Noise + yamux), open
 *   a stream and get one frame echoed. The seed's target is < 80 ms P50 at 64. Each
 *   joiner (and each dialer, which joins too) leaves again and the mesh is left to settle
 *   for a second before the next one, so that each join is into a steady mesh.
 * - frames-100B: 100-byte frames per second through a FrameChannel to a mesh node in a
 *   second process, beside a raw TCP socket to that process with the same 4-byte length
 *   prefix and the same coalescing writer (the seed's target is 100 K msgs/s per peer).
 * - rss-per-node-64 (figure = KiB, shown in the ops/s column): RSS added per node in a
 *   process running 64, beside the RSS of a whole process running one node.
 * - cpu-per-node-64 (figure = µs of CPU per second per node, shown in the ops/s column):
 *   a steady 64-node mesh beside a steady 16-node mesh — a ratio near 1 means membership
 *   traffic per node does not grow with the mesh (all-to-all heartbeats would grow 4×).
 *
 * When run with OMEGA_MESH_BENCH_PEER=1 this file is the second process.
 */
import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { createConnection, createServer } from 'node:net'
import type { Socket } from 'node:net'
import { fileURLToPath } from 'node:url'
import { multiaddr } from '@multiformats/multiaddr'
import { createInterface } from 'node:readline'
import { MeshNode } from '../src/mesh/index.ts'
import type { FrameChannel } from '../src/mesh/index.ts'
import { generateNodeKey } from '../src/identity/index.ts'
import { silentLogging } from '../src/observe/index.ts'
import { startMesh, stopAll, waitFor } from '../src/mesh/testing.ts'
import type { BenchCase, RoundBudget, RoundSample } from './harness.ts'

const ECHO = '/omega/bench/echo/1'
const SINK = '/omega/bench/sink/1'
const PAYLOAD = new Uint8Array(100).fill(0x61)
const FLUSH_BYTES = 64 * 1024
/** a join is measured into a steady mesh: this long after the previous node left (connections to new ring links made, leave news spread) */
const SETTLE_AFTER_LEAVE_MS = 1000

function logger (): ReturnType<ReturnType<typeof silentLogging>['forComponent']> {
  return silentLogging().forComponent('omega:mesh')
}

async function newNode (name: string, bootstrap: string[] = []): Promise<MeshNode> {
  return MeshNode.create({ key: generateNodeKey(), name, substrate: 'biome', bootstrap, logger: logger() })
}

async function sleep (ms: number): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, ms))
}

// ------------------------------------------------------------------ join

interface SteadyMesh { nodes: MeshNode[] }

async function steadyMesh (size: number, settleMs = 2000): Promise<SteadyMesh> {
  // default membership settings (the fast test settings would flatter the figures)
  const nodes = await startMesh(size, { membership: {} }, 8)
  await waitFor(() => nodes.every((n) => n.members().filter((m) => m.state === 'alive').length === size), 60_000, `a ${size}-node mesh to converge`)
  for (const n of nodes) {
    n.handle(ECHO, (channel) => { echo(channel).catch(() => {}) })
  }
  await sleep(settleMs)
  return { nodes }
}

async function echo (channel: FrameChannel): Promise<void> {
  try {
    for await (const frame of channel.frames()) {
      await channel.send(frame)
    }
    await channel.close()
  } catch {
    // the bench closes channels abruptly
  }
}

/** Pause after a node left, until no node lists it alive and the ring links it changed are mended (not timed) */
async function settleAfter (mesh: SteadyMesh, did: string): Promise<void> {
  await waitFor(() => mesh.nodes.every((node) => node.member(did)?.state !== 'alive'), 20_000, 'the node that left to be gone')
  await sleep(SETTLE_AFTER_LEAVE_MS)
}

/** joins until the round's time is spent; latency = start() → alive at every node */
async function joinRound (mesh: SteadyMesh, budget: RoundBudget): Promise<RoundSample> {
  const latencies: number[] = []
  const start = performance.now()
  let n = 0
  while (performance.now() - start < budget.durationMs && n < budget.maxOps) {
    const bootstrap = mesh.nodes[n % mesh.nodes.length] as MeshNode
    const joiner = await newNode(`lab.lan/joiner-${n}`, bootstrap.addrs)
    let missing = mesh.nodes.length
    const seen = new Set<string>()
    let resolveAll!: () => void
    const all = new Promise<void>((resolve) => { resolveAll = resolve })
    const offs = mesh.nodes.map((node) => node.onMembers((m) => {
      if (m.did === joiner.did && m.state === 'alive' && !seen.has(node.did)) {
        seen.add(node.did)
        if (--missing === 0) {
          resolveAll()
        }
      }
    }))
    const t0 = performance.now()
    await joiner.start()
    await Promise.race([all, sleep(20_000)])
    const t1 = performance.now()
    for (const off of offs) {
      off()
    }
    if (missing > 0) {
      throw new Error(`join: ${missing} of ${mesh.nodes.length} nodes did not learn of the joiner within 20 s`)
    }
    latencies.push((t1 - t0) * 1000)
    await joiner.stop()
    await settleAfter(mesh, joiner.did)
    n++
  }
  return { ops: n, elapsedMs: performance.now() - start, latenciesUs: latencies }
}

/** a node that knows only a did needs the peer's addresses: dial them as a bootstrap entry would, then open */
async function openTo (node: MeshNode, target: MeshNode, protocol: string): Promise<FrameChannel> {
  await node.libp2p.dial(target.addrs.map((a) => multiaddr(a)))
  return node.open(target.did, protocol)
}

/** the floor of a join: start a node, dial one peer, open a stream, one frame echoed */
async function dialRound (mesh: SteadyMesh, budget: RoundBudget): Promise<RoundSample> {
  const latencies: number[] = []
  const start = performance.now()
  let n = 0
  while (performance.now() - start < budget.durationMs && n < budget.maxOps) {
    const target = mesh.nodes[n % mesh.nodes.length] as MeshNode
    const node = await newNode(`lab.lan/dialer-${n}`)
    const t0 = performance.now()
    await node.start()
    const channel = await openTo(node, target, ECHO)
    await channel.send(PAYLOAD)
    for await (const frame of channel.frames()) {
      if (frame.byteLength > 0) {
        break
      }
    }
    latencies.push((performance.now() - t0) * 1000)
    channel.abort(new Error('done'))
    await node.stop()
    // the dialer joined the mesh as any node does: the next join is into a steady mesh again
    await settleAfter(mesh, node.did)
    n++
  }
  return { ops: n, elapsedMs: performance.now() - start, latenciesUs: latencies }
}

function joinCase (size: number): BenchCase {
  let mesh: SteadyMesh | undefined
  return {
    name: `join-${size}`,
    description: `a new node joins a steady ${size}-node mesh (one process): start() until every node lists it alive`,
    metrics: ['p50', 'p99'],
    // a join, its leave and the settling after it take over a second: rounds long enough for several
    budget: { rounds: 3, roundMs: 5000, warmupMs: 300 },
    // settled (see measureSteady): indirect probes and connection closing after formation are over
    setup: async () => { mesh = await steadyMesh(size, 25_000) },
    teardown: async () => { await stopAll(mesh?.nodes ?? []) },
    subject: { label: `mesh join, ${size} nodes`, round: async (budget) => joinRound(mesh as SteadyMesh, budget) },
    baseline: { label: 'start + dial + stream + 1 echo (floor)', round: async (budget) => dialRound(mesh as SteadyMesh, budget) }
  }
}

// ------------------------------------------------------------------ throughput (2 processes)

interface Peer { child: ChildProcess, addrs: string[], did: string, tcpPort: number, rssKiB: number }

/**
 * Run the bench file `file` as a second process with `env` set to "1" (its peer mode);
 * resolves with the process and what it reports on its first line (JSON)
 */
export async function spawnBenchPeer<T> (file: string, env: string): Promise<T & { child: ChildProcess }> {
  const child = spawn(process.execPath, [file], { env: { ...process.env, [env]: '1' }, stdio: ['ignore', 'pipe', 'inherit'] })
  const first = await createInterface({ input: child.stdout as NonNullable<typeof child.stdout> })[Symbol.asyncIterator]().next()
  if (first.done === true) {
    throw new Error('the bench peer process exited before reporting its addresses')
  }
  return { child, ...JSON.parse(first.value) as T }
}

async function spawnPeer (): Promise<Peer> {
  return spawnBenchPeer<Omit<Peer, 'child'>>(fileURLToPath(import.meta.url), 'OMEGA_MESH_BENCH_PEER')
}

/** sender side of both: write PAYLOAD frames for the round, then a 0-length marker; the peer answers with its count */
async function meshThroughput (channel: FrameChannel, replies: AsyncIterator<Uint8Array>, budget: RoundBudget): Promise<RoundSample> {
  const start = performance.now()
  let ops = 0
  while (performance.now() - start < budget.durationMs && ops < budget.maxOps) {
    for (let i = 0; i < 1000; i++) {
      await channel.send(PAYLOAD)
    }
    ops += 1000
  }
  await channel.send(new Uint8Array(0))
  const reply = await replies.next()
  const got = reply.done === true ? -1 : new DataView(reply.value.buffer, reply.value.byteOffset).getUint32(0)
  if (got !== ops) {
    throw new Error(`frames: the peer counted ${got}, sent ${ops}`)
  }
  return { ops, elapsedMs: performance.now() - start }
}

/** the same framing and coalescing over a plain socket, honouring 'drain' */
class TcpFramer {
  readonly #socket: Socket
  #chunks: Uint8Array[] = []
  #bytes = 0
  #scheduled = false
  #blocked: Promise<void> | undefined

  constructor (socket: Socket) {
    this.#socket = socket
  }

  async send (frame: Uint8Array): Promise<void> {
    while (this.#blocked !== undefined) {
      await this.#blocked
    }
    const header = Buffer.allocUnsafe(4)
    header.writeUInt32BE(frame.byteLength, 0)
    this.#chunks.push(header, frame)
    this.#bytes += 4 + frame.byteLength
    if (this.#bytes >= FLUSH_BYTES) {
      this.#flush()
    } else if (!this.#scheduled) {
      this.#scheduled = true
      setImmediate(() => { this.#scheduled = false; this.#flush() })
    }
  }

  #flush (): void {
    if (this.#bytes === 0) {
      return
    }
    const chunk = Buffer.concat(this.#chunks, this.#bytes)
    this.#chunks = []
    this.#bytes = 0
    if (!this.#socket.write(chunk)) {
      this.#blocked = new Promise((resolve) => {
        this.#socket.once('drain', () => { this.#blocked = undefined; resolve() })
      })
    }
  }
}

async function tcpThroughput (framer: TcpFramer, replies: AsyncIterator<Buffer>, budget: RoundBudget): Promise<RoundSample> {
  const start = performance.now()
  let ops = 0
  while (performance.now() - start < budget.durationMs && ops < budget.maxOps) {
    for (let i = 0; i < 1000; i++) {
      await framer.send(PAYLOAD)
    }
    ops += 1000
  }
  await framer.send(new Uint8Array(0))
  const reply = await replies.next()
  const got = reply.done === true ? -1 : reply.value.readUInt32BE(0)
  if (got !== ops) {
    throw new Error(`tcp: the peer counted ${got}, sent ${ops}`)
  }
  return { ops, elapsedMs: performance.now() - start }
}

/** parse 4-byte length-prefixed frames from a socket */
export async function * socketFrames (socket: Socket): AsyncGenerator<Buffer> {
  let buffered: Buffer = Buffer.alloc(0)
  for await (const data of socket) {
    buffered = buffered.length === 0 ? data as Buffer : Buffer.concat([buffered, data as Buffer])
    let offset = 0
    while (buffered.length - offset >= 4) {
      const length = buffered.readUInt32BE(offset)
      if (buffered.length - offset - 4 < length) {
        break
      }
      yield buffered.subarray(offset + 4, offset + 4 + length)
      offset += 4 + length
    }
    buffered = buffered.subarray(offset)
  }
}

function throughputCase (): BenchCase {
  let peer: Peer | undefined
  let node: MeshNode | undefined
  let channel: FrameChannel | undefined
  let meshReplies: AsyncIterator<Uint8Array> | undefined
  let socket: Socket | undefined
  let framer: TcpFramer | undefined
  let tcpReplies: AsyncIterator<Buffer> | undefined
  return {
    name: 'frames-100B',
    description: '100-byte frames/s to a second process: FrameChannel (TCP + Noise + yamux, coalesced) vs raw TCP with the same framing and coalescing',
    metrics: ['ops/s'],
    budget: { rounds: 5, roundMs: 1000, warmupMs: 500 },
    setup: async () => {
      peer = await spawnPeer()
      node = await MeshNode.create({ key: generateNodeKey(), name: 'lab.lan/bench-sender', substrate: 'biome', bootstrap: peer.addrs, logger: logger() })
      await node.start()
      channel = await node.open(peer.did, SINK)
      meshReplies = channel.frames()[Symbol.asyncIterator]()
      socket = createConnection({ host: '127.0.0.1', port: peer.tcpPort })
      await new Promise<void>((resolve, reject) => { socket?.once('connect', resolve).once('error', reject) })
      socket.setNoDelay(true)
      framer = new TcpFramer(socket)
      tcpReplies = socketFrames(socket)[Symbol.asyncIterator]()
    },
    teardown: async () => {
      channel?.abort(new Error('bench done'))
      socket?.destroy()
      await node?.stop()
      peer?.child.kill('SIGTERM')
    },
    subject: { label: 'FrameChannel, 2 processes', round: async (budget) => meshThroughput(channel as FrameChannel, meshReplies as AsyncIterator<Uint8Array>, budget) },
    baseline: { label: 'raw TCP, same framing + coalescing', round: async (budget) => tcpThroughput(framer as TcpFramer, tcpReplies as AsyncIterator<Buffer>, budget) }
  }
}

/** the second process: a mesh node and a TCP server that count frames and answer markers */
async function runPeer (): Promise<void> {
  const node = await MeshNode.create({ key: generateNodeKey(), name: 'lab.lan/bench-peer', substrate: 'biome', logger: logger() })
  node.handle(SINK, (channel) => {
    (async () => {
      let count = 0
      for await (const frame of channel.frames()) {
        if (frame.byteLength === 0) {
          const reply = new Uint8Array(4)
          new DataView(reply.buffer).setUint32(0, count)
          await channel.send(reply)
          count = 0
        } else {
          count++
        }
      }
    })().catch(() => {})
  })
  await node.start()
  const server = createServer((socket) => {
    socket.setNoDelay(true)
    ;(async () => {
      let count = 0
      for await (const frame of socketFrames(socket)) {
        if (frame.byteLength === 0) {
          const reply = Buffer.alloc(8)
          reply.writeUInt32BE(4, 0)
          reply.writeUInt32BE(count, 4)
          socket.write(reply)
          count = 0
        } else {
          count++
        }
      }
    })().catch(() => {})
  })
  await new Promise<void>((resolve) => { server.listen(0, '127.0.0.1', resolve) })
  const address = server.address()
  const tcpPort = typeof address === 'object' && address !== null ? address.port : 0
  process.stdout.write(JSON.stringify({ addrs: node.addrs, did: node.did, tcpPort, rssKiB: Math.round(process.memoryUsage().rss / 1024) }) + '\n')
  process.once('SIGTERM', () => {
    server.close()
    node.stop().finally(() => process.exit(0)).catch(() => {})
  })
}

// ------------------------------------------------------------------ memory and CPU

/** a round reporting one number as "ops" over one second (the figure is in the ops/s column) */
function figureRound (figure: () => Promise<number>): (budget: RoundBudget) => Promise<RoundSample> {
  return async () => ({ ops: await figure(), elapsedMs: 1000 })
}

interface SteadyFigures { cpu16: number, cpu64: number, rssPerNodeKiB: number, processKiB: number }
let steadyFigures: Promise<SteadyFigures> | undefined

/** µs of process CPU per second per node over `ms` */
async function cpuPerNode (size: number, ms: number): Promise<number> {
  const before = process.cpuUsage()
  await sleep(ms)
  const used = process.cpuUsage(before)
  return Math.round((used.user + used.system) / (ms / 1000) / size)
}

/** one after the other, alone in the process: a steady 16-node mesh, then a steady 64-node mesh */
async function measureSteady (): Promise<SteadyFigures> {
  const gc = (globalThis as { gc?: () => void }).gc
  // settle 25 s: a 64-node mesh formed in one process goes through ~15 s of extra
  // indirect probes (startup lag) and of closing the connections the formation opened
  // (idleCloseMs 10 s); what is measured is the steady state after that
  const small = await steadyMesh(16, 25_000)
  const cpu16 = await cpuPerNode(16, 4000)
  await stopAll(small.nodes)
  await sleep(500)
  gc?.()
  const before = process.memoryUsage().rss
  const big = await steadyMesh(64, 25_000)
  const cpu64 = await cpuPerNode(64, 4000)
  gc?.()
  const rssPerNodeKiB = Math.round((process.memoryUsage().rss - before) / 64 / 1024)
  await stopAll(big.nodes)
  const peer = await spawnPeer()
  peer.child.kill('SIGTERM')
  return { cpu16, cpu64, rssPerNodeKiB, processKiB: peer.rssKiB }
}

function rssCase (): BenchCase {
  return {
    name: 'rss-per-node-64',
    figure: 'KiB RSS (lower is better)',
    description: 'RSS added per mesh node with 64 in one process, beside a whole process running one node (figures are KiB, in the ops/s column)',
    metrics: ['ops/s'],
    budget: { rounds: 1, roundMs: 1, warmupMs: 0 },
    setup: async () => { steadyFigures ??= measureSteady(); await steadyFigures },
    subject: { label: 'KiB RSS per node, 64 in one process', round: figureRound(async () => (await (steadyFigures as Promise<SteadyFigures>)).rssPerNodeKiB) },
    baseline: { label: 'KiB RSS of a process with one node', round: figureRound(async () => (await (steadyFigures as Promise<SteadyFigures>)).processKiB) }
  }
}

function cpuCase (): BenchCase {
  return {
    name: 'cpu-per-node-64',
    figure: 'µs CPU/s per node (lower is better)',
    description: 'CPU per node in a steady mesh, 64 nodes beside 16 (figures are µs CPU per second per node, in the ops/s column; default settings: 3 monitored + 1 random probe per 500 ms; ratio ≈ 1 = no all-to-all growth)',
    metrics: ['ops/s'],
    budget: { rounds: 1, roundMs: 1, warmupMs: 0 },
    setup: async () => { steadyFigures ??= measureSteady(); await steadyFigures },
    subject: { label: 'µs CPU/s per node, steady 64-node mesh', round: figureRound(async () => (await (steadyFigures as Promise<SteadyFigures>)).cpu64) },
    baseline: { label: 'µs CPU/s per node, steady 16-node mesh', round: figureRound(async () => (await (steadyFigures as Promise<SteadyFigures>)).cpu16) }
  }
}

export const cases: BenchCase[] = process.env.OMEGA_MESH_BENCH_PEER === '1'
  ? []
  : [joinCase(16), joinCase(32), joinCase(64), throughputCase(), rssCase(), cpuCase()]

if (process.env.OMEGA_MESH_BENCH_PEER === '1') {
  runPeer().catch((err: unknown) => {
    process.stderr.write(`mesh bench peer: ${String(err)}\n`)
    process.exitCode = 1
  })
}
