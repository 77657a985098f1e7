/**
 * Cloudflare's workerd (npm `workerd`, pinned) serving the hello answer from a wasm
 * module it instantiates once and reuses: the baseline Omega's pooled gateway is held
 * to. The worker and its module are in bench/workerd/; the module is built from WAT here.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { copyFile, mkdtemp, open, readFile, rm, writeFile } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { freePort } from '../src/util/index.ts'

const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const SOURCES = join(ROOT, 'bench/workerd')

export interface Workerd {
  readonly url: string
  stop: () => Promise<void>
}

/** Starts workerd; resolves once it answers 200 at `url` */
export async function startWorkerd (): Promise<Workerd> {
  const dir = await mkdtemp(join(tmpdir(), 'omega-bench-workerd-'))
  const { parse } = await import('@bytecodealliance/jco-transpile/wasm-tools')
  await writeFile(join(dir, 'hello-core.wasm'), await parse(await readFile(join(SOURCES, 'hello.wat'), 'utf8')))
  await copyFile(join(SOURCES, 'worker.js'), join(dir, 'worker.js'))
  const port = await freePort()
  await writeFile(join(dir, 'config.capnp'), `using Workerd = import "/workerd/workerd.capnp";
const config :Workerd.Config = (
  services = [ (name = "main", worker = .hello) ],
  sockets = [ (name = "http", address = "127.0.0.1:${port}", http = (), service = "main") ],
);
const hello :Workerd.Worker = (
  modules = [
    (name = "worker", esModule = embed "worker.js"),
    (name = "hello-core.wasm", wasm = embed "hello-core.wasm"),
  ],
  compatibilityDate = "2024-09-23",
);
`)
  // the package's bin is the native binary once its install script ran, a JS launcher before
  const bin = join(createRequire(import.meta.url).resolve('workerd/package.json'), '../bin/workerd')
  const file = await open(bin)
  const head = Buffer.alloc(4)
  await file.read(head, 0, 4, 0).finally(async () => { await file.close() })
  const native = head.equals(Buffer.from([0x7f, 0x45, 0x4c, 0x46]))
  const args = ['serve', join(dir, 'config.capnp')]
  const child: ChildProcess = native
    ? spawn(bin, args, { stdio: ['ignore', 'ignore', 'pipe'] })
    : spawn(process.execPath, [bin, ...args], { stdio: ['ignore', 'ignore', 'pipe'] })
  let err = ''
  child.stderr?.on('data', (chunk: Buffer) => { err += chunk.toString() })
  const url = `http://127.0.0.1:${port}/hello`
  const stop = async (): Promise<void> => {
    if (child.exitCode === null) {
      const exited = new Promise((resolve) => child.once('exit', resolve))
      child.kill('SIGTERM')
      await exited
    }
    await rm(dir, { recursive: true, force: true })
  }
  const deadline = Date.now() + 30_000
  for (;;) {
    if (child.exitCode !== null) {
      await stop()
      throw new Error(`workerd exited with ${child.exitCode}: ${err}`)
    }
    try {
      const res = await fetch(url)
      if (res.status === 200 && await res.text() === 'hello from omega: /hello\n') {
        return { url, stop }
      }
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      await stop()
      throw new Error(`workerd did not answer within 30 s: ${err}`)
    }
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}
