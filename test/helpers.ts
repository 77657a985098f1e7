/**
 * Helpers shared by the end-to-end tests (not a test file itself).
 */
import { cp } from 'node:fs/promises'
import { request } from 'node:http'
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

/** Run the CLI in-process: its exit code and what it printed */
export async function cli (args: string[]): Promise<{ code: number, out: string, err: string }> {
  let out = ''
  let err = ''
  const code = await main(args, { stdout: { write: (t: string) => { out += t } }, stderr: { write: (t: string) => { err += t } } })
  return { code, out, err }
}
