/**
 * HTTP load from a separate process (autocannon's CLI), so the load generator never
 * shares an event loop or a core's time slice accounting with the server it measures.
 */
import { spawn } from 'node:child_process'
import { createRequire } from 'node:module'
import type { RoundBudget, RoundSample } from './harness.ts'

const AUTOCANNON = createRequire(import.meta.url).resolve('autocannon/autocannon.js')

export interface LoadOptions {
  /** concurrent connections. @default 32 */
  connections?: number
  /** HTTP pipelining factor. @default 1 */
  pipelining?: number
}

/** autocannon's latency figures, in ms */
interface AutocannonLatency {
  mean: number
  p50: number
  p90: number
  p99: number
  max: number
}

interface AutocannonResult {
  requests: { total: number }
  latency: AutocannonLatency
  duration: number
  errors: number
  timeouts: number
  non2xx: number
}

/** One round of load against `url`: returns completed requests over the round's wall time */
export async function loadRound (url: string, budget: RoundBudget, options: LoadOptions = {}): Promise<RoundSample> {
  const seconds = Math.max(1, Math.round(budget.durationMs / 1000))
  const args = [AUTOCANNON, '-j', '-c', String(options.connections ?? 32), '-p', String(options.pipelining ?? 1), '-d', String(seconds), url]
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], signal: budget.signal })
  let out = ''
  let err = ''
  child.stdout.on('data', (chunk: Buffer) => { out += chunk.toString() })
  child.stderr.on('data', (chunk: Buffer) => { err += chunk.toString() })
  const code = await new Promise<number | null>((resolve, reject) => {
    child.once('error', reject)
    child.once('exit', resolve)
  })
  if (code !== 0) {
    throw new Error(`autocannon exited with ${String(code)}: ${err}`)
  }
  const result = JSON.parse(out) as AutocannonResult
  if (result.errors > 0 || result.non2xx > 0 || result.timeouts > 0) {
    throw new Error(`Load against ${url} had failures: ${result.errors} errors, ${result.non2xx} non-2xx, ${result.timeouts} timeouts`)
  }
  // autocannon's percentiles are per round and cannot be merged into samples: the side
  // reports the median of its rounds' figures
  const l = result.latency
  return {
    ops: result.requests.total,
    elapsedMs: result.duration * 1000,
    latencySummaryUs: { mean: l.mean * 1000, p50: l.p50 * 1000, p90: l.p90 * 1000, p99: l.p99 * 1000, max: l.max * 1000 }
  }
}
