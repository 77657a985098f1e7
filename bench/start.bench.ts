/**
 * Start and footprint: `omega --version` beside `node -e 0`; `omega up` of the hello
 * example (warm component cache) until its first 200, and its idle RSS, beside a bare
 * `node:http` server doing the same.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { request } from 'node:http'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { performance } from 'node:perf_hooks'
import { fileURLToPath } from 'node:url'
import type { BenchCase, RoundBudget, RoundSample } from './harness.ts'

const ROOT = resolve(fileURLToPath(new URL('../../', import.meta.url)))
const OMEGA = join(ROOT, 'bin/omega.js')
const HELLO = join(ROOT, 'examples/hello/omega.toml')
const BARE_SERVER = "require('node:http').createServer((q, s) => s.end('hello')).listen(0, '127.0.0.1', function () { console.log('omega: gateway http://127.0.0.1:' + this.address().port) })"

let home = ''

interface Started { child: ChildProcess, url: string, firstOkMs: number }

/** Spawn a server process; resolves once it answered its first 200, with the time since the spawn */
async function startServer (args: string[]): Promise<Started> {
  const t0 = performance.now()
  const child = spawn(process.execPath, args, { cwd: ROOT, env: { ...process.env, OMEGA_HOME: home }, stdio: ['ignore', 'pipe', 'ignore'] })
  let out = ''
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => { reject(new Error(`no gateway line within 30 s: ${out}`)) }, 30_000)
    child.stdout?.on('data', (chunk: Buffer) => {
      out += chunk.toString()
      const match = /^omega: gateway (http:\/\/\S+)$/m.exec(out)
      if (match?.[1] !== undefined) {
        clearTimeout(timer)
        resolve(match[1])
      }
    })
    child.once('exit', (code) => { clearTimeout(timer); reject(new Error(`exited with ${String(code)}: ${out}`)) })
  })
  child.stdout?.resume()
  for (let i = 0; i < 1000; i++) {
    if (await status(url) === 200) {
      return { child, url, firstOkMs: performance.now() - t0 }
    }
    await new Promise((resolve) => setTimeout(resolve, 2))
  }
  child.kill('SIGKILL')
  throw new Error(`${url} never answered 200`)
}

async function status (url: string): Promise<number> {
  return new Promise((resolve) => {
    const req = request(url, { agent: false }, (res) => { res.resume(); res.on('end', () => { resolve(res.statusCode ?? 0) }) })
    req.on('error', () => { resolve(0) })
    req.end()
  })
}

async function stopServer (started: Started): Promise<void> {
  const exited = new Promise((resolve) => started.child.once('exit', resolve))
  started.child.kill('SIGKILL')
  await exited
}

/** One round: start, first 200, stop; as many times as the round allows (at least once) */
function firstOkRound (args: string[]): (budget: RoundBudget) => Promise<RoundSample> {
  return async (budget) => {
    const latencies: number[] = []
    const t0 = performance.now()
    do {
      const started = await startServer(args)
      latencies.push(started.firstOkMs * 1000)
      await stopServer(started)
    } while (performance.now() - t0 < budget.durationMs && latencies.length < budget.maxOps)
    return { ops: latencies.length, elapsedMs: performance.now() - t0, latenciesUs: latencies }
  }
}

/** The RSS (KiB) of a server idle for 2 s after its first 200, reported as the round's "ops" over one second */
function idleRssRound (args: string[]): () => Promise<RoundSample> {
  return async () => {
    const started = await startServer(args)
    await new Promise((resolve) => setTimeout(resolve, 2000))
    const statusFile = await readFile(`/proc/${started.child.pid ?? 0}/status`, 'utf8')
    await stopServer(started)
    return { ops: Number(/^VmRSS:\s+(\d+)/m.exec(statusFile)?.[1] ?? 0), elapsedMs: 1000 }
  }
}

function runOnce (args: string[]): void {
  const run = spawnSync(process.execPath, args, { cwd: ROOT, stdio: 'ignore' })
  if (run.status !== 0) {
    throw new Error(`${args.join(' ')} exited ${String(run.status)}`)
  }
}

const setup = async (): Promise<void> => {
  home = await mkdtemp(join(tmpdir(), 'omega-bench-start-'))
  // a warm cache: the hello component transpiled once
  await stopServer(await startServer([OMEGA, 'up', HELLO, '--port', '0']))
}
const teardown = async (): Promise<void> => { await rm(home, { recursive: true, force: true }) }

export const cases: BenchCase[] = [
  {
    name: 'version',
    description: 'omega --version, process start to exit, beside node -e 0 (target: within 2×)',
    metrics: ['p50', 'p99'],
    budget: { rounds: 3, roundMs: 1500, warmupMs: 300 },
    subject: { label: 'omega --version', op: () => { runOnce([OMEGA, '--version']) } },
    baseline: { label: 'node -e 0', op: () => { runOnce(['-e', '0']) } }
  },
  {
    name: 'up-hello-first-200',
    description: 'omega up examples/hello (warm cache): process start to the first 200, beside a bare node:http server (target: 200 ms)',
    metrics: ['p50', 'p99'],
    budget: { rounds: 3, roundMs: 2000, warmupMs: 0 },
    setup,
    teardown,
    subject: { label: 'omega up hello', round: firstOkRound([OMEGA, 'up', HELLO, '--port', '0']) },
    baseline: { label: 'node:http server', round: firstOkRound(['-e', BARE_SERVER]) }
  },
  {
    name: 'up-hello-idle-rss',
    figure: 'KiB RSS (lower is better)',
    description: 'RSS of omega up examples/hello idle 2 s after its first 200, beside a bare node:http server (target: 80 MiB; KiB in the ops/s column)',
    metrics: ['ops/s'],
    budget: { rounds: 1, roundMs: 1, warmupMs: 0 },
    setup,
    teardown,
    subject: { label: 'KiB RSS, omega up hello', round: idleRssRound([OMEGA, 'up', HELLO, '--port', '0']) },
    baseline: { label: 'KiB RSS, node:http server', round: idleRssRound(['-e', BARE_SERVER]) }
  }
]
