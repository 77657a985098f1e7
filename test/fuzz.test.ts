/**
 * Property-based fuzzing (fast-check), bounded in runs and time: the manifest parser
 * (every input is a plan or a ManifestError, never a crash) and the admin API (every
 * request is answered with a status from its table, and a token for one brane never
 * reads another brane's logs).
 */
import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { request } from 'node:http'
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import fc from 'fast-check'
import { ADMIN_SOCKET, adminResource, LocalNode, parseAdminCall } from '../src/daemon/index.ts'
import { checkManifest } from '../src/manifest/index.ts'
import { issueCapability, loadOrCreateNodeKey, parseCapability } from '../src/identity/index.ts'
import { silentLogging } from '../src/observe/index.ts'
import { ROOT } from './helpers.ts'

/** Each property stops after this long, whatever its run count */
const TIME_LIMIT_MS = 8_000
/** The same runs every time in CI; FUZZ_SEED=N explores others */
const SEED = Number(process.env.FUZZ_SEED ?? 4242)

/** Bytes that matter to the three syntaxes */
const SYNTAX = ['[', ']', '{', '}', '"', "'", '"""', '.', '=', ',', '\n', '#', ':', '- ', '&a', '*a', '\\', '${', '0x', '1e9', '\u0000', 'brane', 'graph', 'edges']

/** A manifest text: a seed manifest with random edits, or random text made of syntax */
function manifestText (seeds: readonly string[]): fc.Arbitrary<string> {
  const edited = fc.tuple(fc.constantFrom(...seeds), fc.array(fc.tuple(fc.nat(), fc.nat({ max: 20 }), fc.oneof(fc.constantFrom(...SYNTAX), fc.string({ maxLength: 8 }))), { maxLength: 12 }))
    .map(([seed, edits]) => edits.reduce((text, [at, cut, insert]) => {
      const i = at % (text.length + 1)
      return text.slice(0, i) + insert + text.slice(i + cut)
    }, seed))
  const noise = fc.array(fc.oneof(fc.constantFrom(...SYNTAX), fc.string({ maxLength: 6 })), { maxLength: 200 }).map((parts) => parts.join(''))
  return fc.oneof(edited, noise)
}

describe('fuzz: the manifest parser', () => {
  it('turns any text, in any of the three syntaxes, into a plan or a ManifestError', async () => {
    const seeds = await Promise.all(['biome-pipeline.toml', 'gaia-fetch.toml', 'habitat-home.toml'].map(async (f) => readFile(join(ROOT, 'examples/seeds', f), 'utf8')))
    const asJson = JSON.stringify({ brane: { a: { image: 'a.wasm', trigger: { http: '/a/*' } } }, graph: { edges: [] } }, null, 1)
    const asYaml = 'brane:\n  a:\n    image: a.wasm\n    lifecycle: pooled\ngraph:\n  edges: []\n'
    fc.assert(fc.property(manifestText([...seeds, asJson, asYaml]), fc.constantFrom('m.toml', 'm.json', 'm.yaml'), (text, file) => {
      try {
        checkManifest(text, file)
      } catch (err) {
        assert.equal((err as Error).name, 'ManifestError', `${file}: ${(err as Error).stack ?? String(err)}\n--- input:\n${text.slice(0, 2000)}`)
      }
    }), { numRuns: 20_000, interruptAfterTimeLimit: TIME_LIMIT_MS, seed: SEED, endOnFailure: true })
  })
})

describe('fuzz: the admin API', () => {
  let home = ''
  let node: LocalNode
  let token = ''
  before(async () => {
    home = await mkdtemp(join(tmpdir(), 'omega-fuzz-'))
    const dir = join(home, 'app')
    await cp(join(ROOT, 'examples/hello'), dir, { recursive: true })
    await writeFile(join(dir, 'omega.toml'), '[brane.hello]\nimage = "hello.wasm"\n[brane.secret]\nimage = "hello.wasm"\n')
    node = await LocalNode.start(join(dir, 'omega.toml'), { home, port: 0, logging: silentLogging() })
    const key = await loadOrCreateNodeKey(home)
    token = issueCapability(key, { subject: key.did, capabilities: ['logs', 'profile', 'snapshot', 'restore', 'deploy'].map((a) => parseCapability(`${a}:brane/hello`)) })
    // both branes have logs to leak
    await fetch(`${node.url}/hello/x`)
    await fetch(`${node.url}/secret/x`)
  })
  after(async () => {
    await node.stop()
    await rm(home, { recursive: true, force: true })
  })

  const paths = ['/v1/status', '/v1/logs', '/v1/profile', '/v1/profile/cpu', '/v1/reload', '/v1/snapshot', '/v1/restore', '/v1/trace', '/v1/dlq', '/v1/dlq/replay', '/v1/revoke', '/v1/state', '/v1/metrics', '/v1/nope', '/', '//v1/logs']
  const param = fc.tuple(fc.constantFrom('brane', 'name', 'id', 'since', 'limit', 'follow', 'seconds', 'list', 'brane[]', 'BRANE', ''), fc.oneof(fc.constantFrom('hello', 'secret', '*', '', 'hello/../secret', '%00', '0', '-1', '1e99'), fc.string({ maxLength: 12 })))

  it('parses any URL into one call whose resource is what the handler acts on', () => {
    fc.assert(fc.property(fc.constantFrom(...paths), fc.array(param, { maxLength: 4 }), (path, params) => {
      const url = new URL(`http://omega${path}?${new URLSearchParams(params).toString()}`)
      const call = parseAdminCall(url)
      if (call !== undefined) {
        const resource = adminResource(call)
        assert.ok(resource === 'node' || resource === `brane/${call.brane ?? '*'}`)
        // a call confined to a brane names exactly the first ?brane= the handler reads
        if (call.brane !== undefined) {
          assert.equal(call.brane, url.searchParams.get('brane'))
        }
      }
    }), { numRuns: 2000, interruptAfterTimeLimit: TIME_LIMIT_MS, seed: SEED + 1 })
  })

  it('answers every request with a status from its table, and a token for hello never reads secret\'s logs', async () => {
    const socketPath = join(home, ADMIN_SOCKET)
    const send = async (method: string, path: string, body: string): Promise<{ status: number, text: string }> => new Promise((resolve, reject) => {
      const req = request({ socketPath, path, method, agent: false, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, timeout: 10_000 }, (res) => {
        let text = ''
        res.setEncoding('utf8')
        res.on('data', (chunk: string) => { text += chunk })
        res.on('end', () => { resolve({ status: res.statusCode ?? 0, text }) })
      })
      req.once('timeout', () => { req.destroy(new Error(`no answer to ${method} ${path}`)) })
      req.once('error', reject)
      req.end(body)
    })
    const bodies = fc.oneof(fc.constant(''), fc.json({ maxDepth: 3 }), fc.string({ maxLength: 64 }), fc.constant('{"file":"/etc/passwd"}'))
    await fc.assert(fc.asyncProperty(fc.constantFrom('GET', 'POST', 'PUT', 'DELETE'), fc.constantFrom(...paths), fc.array(param, { maxLength: 3 }), bodies, async (method, path, params, body) => {
      const query = new URLSearchParams(params.filter(([k]) => k !== 'follow' && k !== 'seconds')).toString()
      const { status, text } = await send(method, `${path}?${query}`, body)
      assert.ok([200, 400, 403, 404, 405, 413, 422].includes(status), `${method} ${path}?${query} → ${status} ${text}`)
      if (status === 200 && path === '/v1/logs') {
        for (const line of text.split('\n').filter((l) => l !== '')) {
          assert.equal((JSON.parse(line) as { brane?: string }).brane, 'hello', `a token for hello read: ${line}`)
        }
      }
    }), { numRuns: 2000, interruptAfterTimeLimit: TIME_LIMIT_MS, seed: SEED + 2 })
    // still serving
    assert.equal((await fetch(`${node.url}/secret/x`)).status, 200)
  })
})
