/**
 * Helpers shared by the end-to-end tests (not a test file itself).
 */
import { cp } from 'node:fs/promises'
import { request } from 'node:http'
import { spawn, type ChildProcess } from 'node:child_process'
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { main } from '../src/cli/main.ts'

export const ROOT = fileURLToPath(new URL('../../', import.meta.url))

export const CHAIN = `
[brane.web]
image = "http-emit.wasm"
lifecycle = "pooled"
trigger = { http = "/e/*" }

[brane.mid]
image = "forward.wasm"
lifecycle = "pooled"

[brane.end]
image = "sink.wasm"
lifecycle = "pooled"

[graph]
edges = [
  { from = "web", to = "mid", on = "hits" },
  { from = "mid", to = "end", on = "out" },
]
`

/** Resolves when `check` holds; fails after `ms` */
export async function until (check: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms
  while (!check()) {
    if (Date.now() > deadline) {
      throw new Error(`Timed out waiting for ${what}`)
    }
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

export async function copyFixtures (dir: string, names: readonly string[]): Promise<void> {
  for (const name of names) {
    await cp(join(ROOT, `build/fixtures/${name}.wasm`), join(dir, `${name}.wasm`))
  }
}

export interface Reply { status: number, body: string }

/** GET `path` from `base` with an explicit Host header (fetch() cannot set one) */
export async function get (base: string, path: string, host?: string): Promise<Reply> {
  const url = new URL(path, base)
  return new Promise<Reply>((resolve, reject) => {
    const req = request(url, { headers: host === undefined ? {} : { host }, timeout: 60_000 }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (chunk: string) => { body += chunk })
      res.on('end', () => { resolve({ status: res.statusCode ?? 0, body }) })
    })
    req.on('error', reject)
    req.end()
  })
}

export interface CliRun { code: number, out: string, err: string }

/** Run the CLI in-process (with `--home` when given): its exit code and what it printed */
export async function cli (args: string[], home?: string): Promise<CliRun> {
  let out = ''
  let err = ''
  const argv = home === undefined ? args : [...args, '--home', home]
  const code = await main(argv, { stdout: { write: (t: string) => { out += t } }, stderr: { write: (t: string) => { err += t } } })
  return { code, out, err }
}

export interface Daemon { child: ChildProcess, url: string, output: () => string }

/**
 * Start `omega up ARGS --port 0` as its own process (cwd: the repository); resolves with
 * the gateway URL it prints. Output (stdout and stderr) is kept for assertions.
 */
export async function startDaemon (args: string[], env: Record<string, string> = {}): Promise<Daemon> {
  const child = spawn(process.execPath, [join(ROOT, 'bin/omega.js'), 'up', ...args, '--port', '0'], { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  child.stdout.on('data', (chunk: Buffer) => { out += chunk.toString() })
  child.stderr.on('data', (chunk: Buffer) => { out += chunk.toString() })
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => { reject(new Error(`omega up did not start within 30 s:\n${out}`)) }, 30_000)
    child.stdout.on('data', () => {
      const match = /^omega: gateway (http:\/\/\S+)$/m.exec(out)
      if (match?.[1] !== undefined) {
        clearTimeout(timer)
        resolve(match[1])
      }
    })
    child.once('exit', (code) => {
      clearTimeout(timer)
      reject(new Error(`omega up exited with ${String(code)}:\n${out}`))
    })
  })
  return { child, url, output: () => out }
}

/** Stop a daemon (or mesh node) with `signal` (SIGINT by default); resolves with its exit code */
export async function stopDaemon (daemon: Pick<Daemon, 'child'>, signal: NodeJS.Signals = 'SIGINT'): Promise<number | null> {
  if (daemon.child.exitCode !== null || daemon.child.signalCode !== null) {
    return daemon.child.exitCode
  }
  // its last output may still be in the pipes at 'exit': wait for 'close' (2 s at most, in
  // case a process it started holds them)
  const exited = new Promise<number | null>((resolve) => {
    daemon.child.once('exit', (code) => {
      const timer = setTimeout(() => { resolve(code) }, 2000)
      daemon.child.once('close', () => { clearTimeout(timer); resolve(code) })
    })
  })
  daemon.child.kill(signal)
  return exited
}

export interface MeshProcess {
  readonly name: string
  readonly home: string
  child: ChildProcess
  gateway: string
  addr: string
  output: () => string
}

/**
 * Start `omega node` as its own process; resolves once it prints its gateway. `onSpawn`
 * sees the process before it starts (e.g. to know its pid before it dials anyone).
 */
export async function startNode (home: string, name: string, args: string[], env?: Record<string, string | undefined>, onSpawn?: (child: ChildProcess) => void): Promise<MeshProcess> {
  const child = spawn(process.execPath, [join(ROOT, 'bin/omega.js'), 'node', '--home', home, '--name', name, '--port', '0', ...args], {
    cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], ...(env === undefined ? {} : { env })
  })
  onSpawn?.(child)
  let out = ''
  child.stdout.on('data', (chunk: Buffer) => { out += chunk.toString() })
  child.stderr.on('data', (chunk: Buffer) => { out += chunk.toString() })
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => { reject(new Error(`omega node ${name} did not start within 30 s:\n${out}`)) }, 30_000)
    const check = (): void => {
      if (/^omega: gateway \S+$/m.test(out)) {
        clearTimeout(timer)
        resolve()
      }
    }
    child.stdout.on('data', check)
    child.once('exit', (code) => {
      clearTimeout(timer)
      reject(new Error(`omega node ${name} exited with ${String(code)}:\n${out}`))
    })
  })
  return {
    name,
    home,
    child,
    gateway: /^omega: gateway (\S+)$/m.exec(out)?.[1] ?? '',
    addr: /^omega: mesh (\S+)$/m.exec(out)?.[1] ?? '',
    output: () => out
  }
}

/** Run the CLI and insist on success, showing what it printed otherwise */
export async function ok (args: string[], home?: string): Promise<void> {
  const run = await cli(args, home)
  assert.equal(run.code, 0, `omega ${args.join(' ')} exited ${run.code}: ${run.err}${run.out}`)
}

export async function json<T> (args: string[], home: string): Promise<T> {
  const run = await cli([...args, '--json'], home)
  assert.equal(run.code, 0, `omega ${args.join(' ')}: ${run.err}`)
  return JSON.parse(run.out) as T
}

export interface PeerRow { name: string, status: string, branes: string[] }
export interface Placement { deployment: string | null, placement: Array<{ brane: string, names: string[] }> }

export async function peers (home: string): Promise<PeerRow[]> {
  return json<PeerRow[]>(['biome', 'peers'], home)
}

export async function listItems (home: string, brane: string, list: string): Promise<string[]> {
  const run = await cli(['state', brane, '--list', list], home)
  assert.equal(run.code, 0, run.err)
  return run.out.split('\n').filter((l) => l !== '')
}

/** Wait for an async condition, polling; fails after `ms` */
export async function eventually (check: () => Promise<boolean>, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms
  for (;;) {
    if (await check().catch(() => false)) {
      return
    }
    if (Date.now() > deadline) {
      throw new Error(`Timed out after ${ms} ms waiting for ${what}`)
    }
    await new Promise((resolve) => setTimeout(resolve, 200))
  }
}

export async function post (base: string, path: string): Promise<number> {
  const res = await fetch(new URL(path, base), { method: 'POST', body: 'x', signal: AbortSignal.timeout(30_000) })
  await res.arrayBuffer()
  return res.status
}
