/**
 * Events/s through a 2-edge chain whose middle brane runs on another node of a mesh
 * (web and end on node A, mid on node B: every event crosses the mesh twice), beside the
 * same chain on one node, in the same run: what forwarding over the mesh costs.
 */
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { HybridClock, prepareDeployment } from '../src/biome/index.ts'
import { LocalNode, startMeshNode, type OmegaMeshNode } from '../src/daemon/index.ts'
import { loadOrCreateNodeKey } from '../src/identity/index.ts'
import { silentLogging } from '../src/observe/index.ts'
import { chainRound } from './events.bench.ts'
import type { BenchCase } from './harness.ts'

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
let b: OmegaMeshNode | undefined
let single: LocalNode | undefined

export const cases: BenchCase[] = [
  {
    name: 'chain-across-2-nodes',
    description: `Events/s through web → mid → end with mid on a second mesh node (two mesh hops per event; both nodes in this process, libp2p TCP + Noise + yamux on 127.0.0.1), 100-byte payloads (as events/chain-2-edges) in batches of ${BATCH}, vs the same chain on one node`,
    metrics: ['ops/s'],
    budget: { rounds: 3, roundMs: 2000, warmupMs: 500 },
    setup: async () => {
      dir = await mkdtemp(join(tmpdir(), 'omega-bench-biome-'))
      for (const name of ['http-emit', 'forward', 'sink']) {
        await cp(join(ROOT, `build/fixtures/${name}.wasm`), join(dir, `${name}.wasm`))
      }
      const logging = silentLogging()
      a = await startMeshNode({ home: join(dir, 'a'), name: 'bench/a', substrate: 'biome', port: 0, logging, admin: false, frontier: false })
      const key = await loadOrCreateNodeKey(join(dir, 'a'))
      b = await startMeshNode({ home: join(dir, 'b'), name: 'bench/b', substrate: 'biome', port: 0, logging, admin: false, frontier: false, bootstrap: a.mesh.addrs, trust: [a.did] })
      await writeFile(join(dir, 'mesh.toml'), CHAIN('peers = "bench/b"', 'peers = "bench/a"'))
      const { document, blobs } = await prepareDeployment(join(dir, 'mesh.toml'), key, { home: join(dir, 'a'), time: new HybridClock(key.did).now() })
      const encoded: Record<string, string> = {}
      for (const [hash, path] of blobs) {
        encoded[hash] = (await readFile(path)).toString('base64')
      }
      await a.deploy({ document, blobs: encoded })
      const deadline = Date.now() + 30_000
      while (b.placement.get('mid')?.nodes[0] !== b.did || a.placement.get('mid')?.nodes[0] !== b.did) {
        if (Date.now() > deadline) {
          throw new Error('the deployment did not reach node b within 30 s')
        }
        await new Promise((resolve) => setTimeout(resolve, 50))
      }
      await writeFile(join(dir, 'one.toml'), CHAIN('', ''))
      single = await LocalNode.start(join(dir, 'one.toml'), { home: join(dir, 'one'), port: 0, logging, admin: false, metering: false })
    },
    teardown: async () => {
      await b?.stop()
      await a?.stop()
      await single?.stop()
      await rm(dir, { recursive: true, force: true })
    },
    subject: {
      label: 'omega: mid on another node (2 mesh hops)',
      round: async (budget) => chainRound(budget, async (payload) => a?.local.emit('web', 'hits', payload),
        () => (a?.local.acked ?? 0) + (b?.local.acked ?? 0), BATCH)
    },
    baseline: {
      label: 'the same chain on one node',
      round: async (budget) => chainRound(budget, async (payload) => single?.emit('web', 'hits', payload), () => single?.acked ?? 0, BATCH)
    }
  }
]
