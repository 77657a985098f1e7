/**
 * Frontier microVMs: time to the first reply of the guest agent, resuming a clone from
 * the golden snapshot (into a VMM started in advance, as the pool does) against booting
 * the same guest from scratch. The seeds promise 125 ms from snapshot: the ratio of
 * the resume P50/P99 to that target is printed after the case.
 *
 * Skipped (with the reason) on a host without a usable VMM.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import type { BenchCase, RoundBudget, RoundSample } from './harness.ts'
import { generateNodeKey } from '../src/identity/index.ts'
import {
  buildGuest, createDriver, ensureGolden, FrontierBrane, probeFrontier, runDirFor, snapshotRootFor,
  type GoldenSnapshot, type GuestImage, type VmHandle, type VmmDriver
} from '../src/runtime/microvm/index.ts'

/** The seeds' promise: a frontier brane resumes from its snapshot in 125 ms */
export const SEED_TARGET_MS = 125
const MEM = 128 * 2 ** 20

function repoRoot (): string {
  let dir = dirname(fileURLToPath(import.meta.url))
  while (!existsSync(join(dir, 'package.json'))) {
    dir = dirname(dir)
  }
  return dir
}

let home = ''
let image: GuestImage | undefined
let driver: VmmDriver | undefined
let golden: GoldenSnapshot | undefined
let spare: VmHandle | undefined
let n = 0
const resumeUs: number[] = []

function config (ramFile: string, ramShared: boolean): Parameters<VmmDriver['boot']>[0] {
  if (image === undefined) {
    throw new Error('setup did not run')
  }
  return { kernel: image.kernel, initrd: image.initrd, memBytes: MEM, vcpus: 1, ramFile, ramShared, dir: join(runDirFor(home), `b${n++}`) }
}

/** First pong from a fresh VM's agent, bounded */
async function firstReply (vm: VmHandle): Promise<void> {
  const signal = AbortSignal.timeout(60_000)
  for (;;) {
    try {
      const agent = await vm.connectAgent({ signal })
      try {
        await agent.ready({ signal, intervalMs: 50 })
        return
      } finally {
        agent.close()
      }
    } catch (err) {
      if (vm.dead || signal.aborted) {
        throw err
      }
      await new Promise((resolve) => setTimeout(resolve, 5))
    }
  }
}

async function resumeRound (budget: RoundBudget): Promise<RoundSample> {
  const latencies: number[] = []
  let elapsed = 0
  while ((elapsed < budget.durationMs || (budget.durationMs > 0 && latencies.length === 0)) && latencies.length < budget.maxOps && !budget.signal.aborted) {
    if (driver === undefined || golden === undefined) {
      throw new Error('setup did not run')
    }
    // a VMM started in advance (not timed), as the pool keeps them
    const vm = spare ?? await driver.prepare(config(golden.ramFile, false))
    spare = undefined
    const t0 = performance.now()
    await vm.restore(golden.stateFile)
    await firstReply(vm)
    const us = (performance.now() - t0) * 1000
    latencies.push(us)
    resumeUs.push(us)
    elapsed += us / 1000
    await vm.stop()
    spare = await driver.prepare(config(golden.ramFile, false))
  }
  return { ops: latencies.length, elapsedMs: elapsed, latenciesUs: latencies }
}

async function bootRound (budget: RoundBudget): Promise<RoundSample> {
  const latencies: number[] = []
  let elapsed = 0
  while ((elapsed < budget.durationMs || (budget.durationMs > 0 && latencies.length === 0)) && latencies.length < budget.maxOps && !budget.signal.aborted) {
    if (driver === undefined) {
      throw new Error('setup did not run')
    }
    const ram = join(snapshotRootFor(home), `boot-${n}`)
    const t0 = performance.now()
    const vm = await driver.boot(config(ram, true))
    try {
      await firstReply(vm)
      const us = (performance.now() - t0) * 1000
      latencies.push(us)
      elapsed += us / 1000
    } finally {
      await vm.stop()
      await rm(ram, { force: true })
    }
  }
  return { ops: latencies.length, elapsedMs: elapsed, latenciesUs: latencies }
}

function percentile (values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN
}

let fresh: FrontierBrane | undefined
let reused: FrontierBrane | undefined
const REQUEST = { method: 'GET', pathWithQuery: '/bench', scheme: 'http', authority: 'bench', headers: [], body: new Uint8Array() }

/** One request on a clone that never served (restored in the background after the previous one, or for this request when none is warm yet) */
async function freshRequest (): Promise<unknown> {
  if (fresh === undefined) {
    throw new Error('setup did not run')
  }
  return fresh.handle(REQUEST)
}

const probe = await probeFrontier()

export const cases: BenchCase[] = probe.frontier
  ? [{
      name: 'first-reply-resume-vs-boot',
      description: `time to the guest agent's first reply: resume from the golden snapshot vs boot from scratch (${probe.accel}, 128 MiB, 1 vCPU)`,
      metrics: ['p50', 'p99', 'ops/s'],
      budget: { rounds: 4, roundMs: 1_500, warmupMs: 0 },
      setup: async () => {
        home = await mkdtemp(join(tmpdir(), 'omega-bench-microvm-'))
        image = await buildGuest({ home, name: 'upper', from: join(repoRoot(), 'examples/frontier/upper') })
        driver = await createDriver()
        golden = await ensureGolden({ driver, image, memBytes: MEM, vcpus: 1, root: snapshotRootFor(home), runDir: runDirFor(home), signer: generateNodeKey() })
      },
      teardown: async () => {
        await spare?.stop()
        spare = undefined
        if (resumeUs.length > 0) {
          const p50 = percentile(resumeUs, 50) / 1000
          const p99 = percentile(resumeUs, 99) / 1000
          process.stderr.write(`\nmicrovm: resume to first agent reply over ${resumeUs.length} clones: P50 ${p50.toFixed(1)} ms (${(p50 / SEED_TARGET_MS).toFixed(2)}x the seed's ${SEED_TARGET_MS} ms target), P99 ${p99.toFixed(1)} ms (${(p99 / SEED_TARGET_MS).toFixed(2)}x)\n`)
        }
        await rm(snapshotRootFor(home), { recursive: true, force: true })
        await rm(runDirFor(home), { recursive: true, force: true })
        await rm(home, { recursive: true, force: true })
      },
      subject: { label: 'resume from snapshot (VMM started in advance)', round: resumeRound },
      baseline: { label: 'boot from scratch', round: bootRound }
    }, {
      name: 'request-fresh-clone-vs-reused',
      description: 'an HTTP request through a frontier brane: each on a clone restored for it (ephemeral) vs on a reused clone (pooled)',
      metrics: ['p50', 'p99', 'ops/s'],
      budget: { rounds: 4, roundMs: 1_500, warmupMs: 200 },
      setup: async () => {
        home = await mkdtemp(join(tmpdir(), 'omega-bench-microvm-'))
        image = await buildGuest({ home, name: 'upper', from: join(repoRoot(), 'examples/frontier/upper') })
        driver = await createDriver()
        const common = { image, driver, memBytes: MEM, vcpus: 1, snapshotRoot: snapshotRootFor(home), runDir: runDirFor(home), signer: generateNodeKey() }
        fresh = await FrontierBrane.create({ ...common, name: 'fresh', lifecycle: 'ephemeral' })
        reused = await FrontierBrane.create({ ...common, name: 'reused', lifecycle: 'pooled' })
      },
      teardown: async () => {
        await fresh?.close()
        await reused?.close()
        await rm(snapshotRootFor(home), { recursive: true, force: true })
        await rm(runDirFor(home), { recursive: true, force: true })
        await rm(home, { recursive: true, force: true })
      },
      subject: { label: 'fresh clone per request (ephemeral)', op: async () => freshRequest() },
      baseline: { label: 'reused clone (pooled)', op: async () => reused?.handle(REQUEST) }
    }]
  : []

if (!probe.frontier) {
  process.stderr.write(`bench: microvm cases skipped: ${probe.reason ?? 'no usable VMM'}\n`)
}
