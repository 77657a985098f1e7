/**
 * The mesh simulated at scale (issue 15, "Simulation at scale"): the real membership
 * protocol ({@link Swim}: probes, phi accrual, suspicion, ring-arc gossip, signed records,
 * push-pull) and the real placement (`place`, rendezvous hashing) of 1 000 and 10 000
 * nodes, each size in a process of its own, over a virtual WAN on a virtual clock
 * (src/mesh/sim), seeded. All times are virtual. The network: nodes scattered on a unit
 * square, RTT 2 ms + 150 ms × distance (mean ≈ 80 ms, at most ≈ 210 ms), 5 ms mean jitter,
 * 1 % of messages lost as TCP sees it (delivered after a retransmission timeout, later
 * ones held behind). Default membership settings.
 *
 * Each size: a formed mesh settles, then a steady window at 1 % loss (traffic per node,
 * false suspicions) and, at 1 000 nodes, one at 0 % loss (false suspicions), then joins and crashes one at
 * a time: time until 99 % and 100 % of the running nodes know (P50 and P99 over the
 * events), and the branes of a 1 000-brane (300 at 10 000) plan that move, as placed from
 * one node's view before the crash and after everyone knows.
 *
 * Baselines: at 1 000 nodes the ideal (log2(n) hops of a mean one-way delay; the documented
 * detection bound plus those hops; the probe messages alone; 1/n of the branes; 0 % loss);
 * at 10 000 nodes the 1 000-node figure, so the ratio is the growth from 1 000 to 10 000.
 *
 * When run with OMEGA_SIM_BENCH_NODES=<n> this file is the process that simulates n nodes.
 */
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { place } from '../src/biome/index.ts'
import { checkManifest } from '../src/manifest/index.ts'
import { DEFAULT_MEMBERSHIP } from '../src/mesh/index.ts'
import { DEFAULT_NETWORK, Simulation, reached } from '../src/mesh/sim/index.ts'
import type { SimNode, Spread } from '../src/mesh/sim/index.ts'
import type { BenchCase, Metric, RoundBudget, RoundSample } from './harness.ts'

const NODES_ENV = 'OMEGA_SIM_BENCH_NODES'
const SEED = 15
const LOSS = 0.01
/** the heap a 10 000-node simulation needs (~7 GiB measured), with room */
const HEAP_MIB = 14_336

interface Scenario {
  settleMs: number
  steadyMs: number
  quietMs: number
  events: number
  branes: number
}

const SCENARIOS: Record<number, Scenario> = {
  1000: { settleMs: 20_000, steadyMs: 120_000, quietMs: 60_000, events: 8, branes: 1000 },
  10_000: { settleMs: 10_000, steadyMs: 30_000, quietMs: 0, events: 4, branes: 300 }
}

/** What one simulated size reports */
export interface SimFigures {
  nodes: number
  /** per event, ms until 99 % / 100 % of the running nodes knew */
  join99: number[]
  join100: number[]
  death99: number[]
  death100: number[]
  /** events whose news did not reach every node within the wait */
  unfinished: number
  msgsPerNodeSec: number
  bytesPerNodeSec: number
  probeMsgsPerNodeSec: number
  probeBytesPerNodeSec: number
  byType: Record<string, { msgsPerNodeSec: number, bytesPerNodeSec: number }>
  dialsPerNodeSec: number
  failedDialsPerNodeSec: number
  falseSuspicionsPerNodeHour: number
  falseSuspicions: number
  nodeHours: number
  falseSuspicionsPerNodeHourNoLoss: number
  branesMovedPercent: number
  branesMoved: number
  branesHeldByDead: number
  branesPlaced: number
  meanOneWayMs: number
  wallMs: { form: number, steady: number, events: number, total: number }
  heapMiB: number
}

function progress (text: string): void {
  process.stderr.write(`  sim: ${text}\n`)
}

async function spreadOf (sim: Simulation, did: string, kind: Spread['kind'], maxMs: number): Promise<Spread> {
  sim.watch(did, kind)
  await sim.runUntil(() => { const s = sim.spread(did); return s !== undefined && reached(s, 1) !== undefined }, maxMs)
  const spread = sim.spread(did) as Spread
  sim.unwatch(did)
  return spread
}

/** simulate `n` nodes (see the file's comment) */
export async function simulate (n: number): Promise<SimFigures> {
  const scenario = SCENARIOS[n] ?? { settleMs: 20_000, steadyMs: 60_000, quietMs: 30_000, events: 6, branes: 500 }
  const t0 = performance.now()
  const sim = new Simulation({ seed: SEED, network: { loss: LOSS } })
  sim.form(n)
  await sim.run(scenario.settleMs)
  const formed = performance.now()
  progress(`${n} nodes formed and settled in ${((formed - t0) / 1000).toFixed(0)} s`)

  sim.resetTraffic()
  sim.resetSuspicions()
  await sim.run(scenario.steadyMs)
  const live = sim.running().length
  const seconds = scenario.steadyMs / 1000
  const traffic = sim.traffic()
  const perNodeSec = (x: number): number => x / live / seconds
  const byType: SimFigures['byType'] = {}
  for (const [type, t] of Object.entries(traffic.byType)) {
    byType[type] = { msgsPerNodeSec: perNodeSec(t.messages), bytesPerNodeSec: perNodeSec(t.bytes) }
  }
  const probes = (key: 'messages' | 'bytes'): number => (traffic.byType.ping?.[key] ?? 0) + (traffic.byType.ack?.[key] ?? 0)
  // the counters go on counting: take the steady window's figures now
  const counted = {
    msgsPerNodeSec: perNodeSec(traffic.messages),
    bytesPerNodeSec: perNodeSec(traffic.bytes),
    probeMsgsPerNodeSec: perNodeSec(probes('messages')),
    probeBytesPerNodeSec: perNodeSec(probes('bytes')),
    dialsPerNodeSec: perNodeSec(traffic.dials),
    failedDialsPerNodeSec: perNodeSec(traffic.failedDials)
  }
  const nodeHours = live * scenario.steadyMs / 3_600_000
  const falseSuspicions = sim.falseSuspicions

  // at 0 % loss too (the baseline at 1 000 nodes; 10 000 is compared with 1 000)
  let falseSuspicionsNoLoss = Number.NaN
  if (scenario.quietMs > 0) {
    sim.network.loss = 0
    sim.resetSuspicions()
    await sim.run(scenario.quietMs)
    falseSuspicionsNoLoss = sim.falseSuspicions / (sim.running().length * scenario.quietMs / 3_600_000)
    sim.network.loss = LOSS
  }
  const steady = performance.now()
  progress(`steady state measured in ${((steady - formed) / 1000).toFixed(0)} s`)

  const text = Array.from({ length: scenario.branes }, (_, i) => `[brane.b${i}]\nsubstrate = "biome"\n`).join('\n')
  const { plan } = checkManifest(text, 'omega.toml')
  const figures = { join99: [] as number[], join100: [] as number[], death99: [] as number[], death100: [] as number[] }
  let unfinished = 0
  let moved = 0
  let held = 0
  let placed = 0
  const record = (spread: Spread, to99: number[], to100: number[]): void => {
    const r99 = reached(spread, 0.99)
    const r100 = reached(spread, 1)
    if (r100 === undefined) {
      unfinished++
    }
    // an event that did not finish counts as the wait it was given (a floor)
    to99.push(r99 ?? sim.now - spread.at)
    to100.push(r100 ?? sim.now - spread.at)
  }
  for (let i = 0; i < scenario.events; i++) {
    const joiner = sim.join()
    record(await spreadOf(sim, joiner.did, 'join', 30_000), figures.join99, figures.join100)
    await sim.run(3_000)
    const observer = sim.running()[0] as SimNode
    // any node but the observer, spread over the ring from one event to the next
    const running = sim.running()
    const victim = running[1 + ((i * 7919 + 13) % (running.length - 1))] as SimNode
    const before = place(plan, observer.swim.members())
    sim.crash(victim.did)
    record(await spreadOf(sim, victim.did, 'death', 60_000), figures.death99, figures.death100)
    const after = place(plan, observer.swim.members())
    for (const [brane, was] of before) {
      if (after.get(brane)?.nodes[0] !== was.nodes[0]) {
        moved++
      }
      if (was.nodes[0] === victim.did) {
        held++
      }
    }
    placed += plan.branes.length
    progress(`event ${i + 1}/${scenario.events}: join → 100 % in ${figures.join100.at(-1)?.toFixed(0)} ms, death → 100 % in ${figures.death100.at(-1)?.toFixed(0)} ms`)
    await sim.run(3_000)
  }
  const end = performance.now()
  const net = sim.network
  const gc = (globalThis as { gc?: () => void }).gc
  gc?.()
  return {
    nodes: n,
    ...figures,
    unfinished,
    ...counted,
    byType,
    falseSuspicionsPerNodeHour: falseSuspicions / nodeHours,
    falseSuspicions,
    nodeHours,
    falseSuspicionsPerNodeHourNoLoss: falseSuspicionsNoLoss,
    branesMovedPercent: placed === 0 ? 0 : 100 * moved / placed,
    branesMoved: moved,
    branesHeldByDead: held,
    branesPlaced: placed,
    // mean distance of two uniform points on a unit square ≈ 0.5214
    meanOneWayMs: (net.rttMinMs + net.rttSpreadMs * 0.5214) / 2 + net.jitterMs,
    wallMs: { form: formed - t0, steady: steady - formed, events: end - steady, total: end - t0 },
    heapMiB: Math.round(process.memoryUsage().heapUsed / 2 ** 20)
  }
}

// ------------------------------------------------------------------ the bench process

const runs = new Map<number, Promise<SimFigures>>()

/** the figures of `n` nodes, simulated once in a process of its own */
async function figuresOf (n: number): Promise<SimFigures> {
  let run = runs.get(n)
  if (run === undefined) {
    run = new Promise<SimFigures>((resolve, reject) => {
      const child = spawn(process.execPath, ['--expose-gc', `--max-old-space-size=${HEAP_MIB}`, '--enable-source-maps', fileURLToPath(import.meta.url)], {
        env: { ...process.env, [NODES_ENV]: String(n) },
        stdio: ['ignore', 'pipe', 'inherit']
      })
      let out = ''
      child.stdout.setEncoding('utf8').on('data', (chunk: string) => { out += chunk })
      child.once('error', reject)
      child.once('exit', (code) => {
        try {
          if (code !== 0) {
            throw new Error(`the ${n}-node simulation exited with code ${String(code)}`)
          }
          resolve(JSON.parse(out) as SimFigures)
        } catch (err) {
          reject(err)
        }
      })
    })
    runs.set(n, run)
  }
  return run
}

/** a round reporting one number as "ops" over one second (the figure is in the ops/s column) */
function figureRound (figure: () => Promise<number>): (budget: RoundBudget) => Promise<RoundSample> {
  return async () => ({ ops: await figure(), elapsedMs: 1000 })
}

/** a round reporting per-event times (ms) as latencies */
function eventsRound (times: () => Promise<readonly number[]>): (budget: RoundBudget) => Promise<RoundSample> {
  return async () => {
    const ms = await times()
    return { ops: ms.length, elapsedMs: 1000, latenciesUs: ms.map((t) => t * 1000) }
  }
}

const ONE_ROUND = { rounds: 1, roundMs: 1, warmupMs: 0 }
const hops = (n: number): number => Math.log2(n)
/** the documented bound (MembershipSettings): suspected after about 2.5–3.5 s, dead 3 s later */
const DETECTION_MS = 3_500 + DEFAULT_MEMBERSHIP.suspectTimeoutMs
const ONE_WAY_MS = (DEFAULT_NETWORK.rttMinMs + DEFAULT_NETWORK.rttSpreadMs * 0.5214) / 2 + DEFAULT_NETWORK.jitterMs

type Times = 'join99' | 'join100' | 'death99' | 'death100'

function spreadCase (n: number, key: Times): BenchCase {
  const what = key.startsWith('join') ? 'a join' : 'a crash'
  const share = key.endsWith('99') ? '99 %' : '100 %'
  const subject = { label: `${what} known to ${share} of ${n} nodes (virtual ms)`, round: eventsRound(async () => (await figuresOf(n))[key]) }
  const ideal = key.startsWith('join') ? hops(n) * ONE_WAY_MS : DETECTION_MS + hops(n) * ONE_WAY_MS
  const baseline = n === 1000
    ? { label: key.startsWith('join') ? `log2(${n}) hops × ${ONE_WAY_MS.toFixed(0)} ms mean one-way delay` : `documented detection bound ${DETECTION_MS} ms + log2(${n}) hops`, round: eventsRound(async () => [ideal]) }
    : { label: 'the same at 1 000 nodes', round: eventsRound(async () => (await figuresOf(1000))[key]) }
  const metrics: Metric[] = ['p50', 'p99']
  return {
    name: `${key.replace(/\d+$/, '')}-${share === '99 %' ? '99pct' : 'all'}-${n}`,
    description: `${what} (virtual time) until ${share} of the running nodes of a ${n}-node simulated WAN mesh know it, P50/P99 over the events`,
    metrics,
    budget: ONE_ROUND,
    subject,
    baseline
  }
}

interface Baseline {
  label: string
  value: (f: SimFigures) => number
  /** the baseline at every size (not the 1 000-node figure at 10 000) */
  always?: boolean
}

function figureCase (n: number, name: string, figure: string, description: string, value: (f: SimFigures) => number, baseline: Baseline): BenchCase {
  return {
    name: `${name}-${n}`,
    figure,
    description,
    metrics: ['ops/s'],
    budget: ONE_ROUND,
    subject: { label: `${n} nodes`, round: figureRound(async () => value(await figuresOf(n))) },
    baseline: n === 1000 || baseline.always === true
      ? { label: baseline.label, round: figureRound(async () => baseline.value(await figuresOf(n))) }
      : { label: 'the same at 1 000 nodes', round: figureRound(async () => value(await figuresOf(1000))) }
  }
}

function sizeCases (n: number): BenchCase[] {
  return [
    spreadCase(n, 'join99'),
    spreadCase(n, 'join100'),
    spreadCase(n, 'death99'),
    spreadCase(n, 'death100'),
    figureCase(n, 'msgs', 'msgs/s per node (lower is better)', 'membership messages sent per node per second, steady state at 1 % loss',
      (f) => f.msgsPerNodeSec, { label: 'the probes alone (ping + ack)', value: (f) => f.probeMsgsPerNodeSec }),
    figureCase(n, 'bytes', 'B/s per node (lower is better)', 'membership payload bytes (JSON frames; no framing or encryption) sent per node per second, steady state at 1 % loss',
      (f) => f.bytesPerNodeSec, { label: 'the probes alone (ping + ack)', value: (f) => f.probeBytesPerNodeSec }),
    figureCase(n, 'false-suspicions', 'per node-hour (lower is better)', 'healthy nodes suspected (distinct member, incarnation) per node-hour at 1 % loss',
      (f) => f.falseSuspicionsPerNodeHour, { label: 'the same at 0 % loss', value: (f) => f.falseSuspicionsPerNodeHourNoLoss }),
    figureCase(n, 'brane-move', '% of branes moved per death (≈ 100/n)', 'branes whose node changed when one node crashed (rendezvous placement from one node\'s view, before and after)',
      (f) => f.branesMovedPercent, { label: `1/n = ${(100 / n).toPrecision(3)} %`, value: () => 100 / n, always: true })
  ]
}

export const cases: BenchCase[] = process.env[NODES_ENV] === undefined ? [...sizeCases(1000), ...sizeCases(10_000)] : []

/** after the table: what each size found, in full */
export async function details (): Promise<string> {
  const lines: string[] = []
  for (const [n, run] of runs) {
    const f = await run.catch(() => undefined)
    if (f !== undefined) {
      const types = Object.entries(f.byType).map(([t, x]) => `${t} ${x.msgsPerNodeSec.toFixed(2)}/s ${x.bytesPerNodeSec.toFixed(0)} B/s`).join(', ')
      lines.push(`sim ${n}: ${types}; dials ${f.dialsPerNodeSec.toFixed(3)}/s (failed ${f.failedDialsPerNodeSec.toFixed(3)}/s) per node; ` +
        `${f.falseSuspicions} false suspicions in ${f.nodeHours.toFixed(1)} node-hours; ${f.branesMoved} of ${f.branesPlaced} placements moved ` +
        `(${f.branesHeldByDead} were on the dead nodes); ${f.unfinished} events unfinished; heap ${f.heapMiB} MiB; ` +
        `wall ${(f.wallMs.form / 1000).toFixed(0)} + ${(f.wallMs.steady / 1000).toFixed(0)} + ${(f.wallMs.events / 1000).toFixed(0)} s`)
    }
  }
  return lines.join('\n')
}

if (process.env[NODES_ENV] !== undefined) {
  simulate(Number(process.env[NODES_ENV])).then(
    (figures) => { process.stdout.write(JSON.stringify(figures) + '\n') },
    (err: unknown) => {
      process.stderr.write(`sim bench: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`)
      process.exitCode = 1
    })
}
