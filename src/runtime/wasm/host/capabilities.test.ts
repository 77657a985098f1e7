// Each capability granted and not granted, through a real guest: the probe component
// (examples/guests/probe/probe.js, built into build/fixtures/probe.wasm), instantiated
// on this thread with buildImports and a fresh createInstanceHost per instance.
import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { existsSync, mkdirSync, readdirSync, symlinkSync } from 'node:fs'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { Worker } from 'node:worker_threads'
import type { Grants } from '../../../manifest/index.ts'
import { loadComponent, type LoadedComponent } from '../load.ts'
import { wasm, type CoreImports, type CoreInstance, type CoreModule } from '../wasm-api.ts'
import { httpTypesFor } from './http.ts'
import { buildImports, createInstanceHost, disposeInstanceHost, sweepTmpDirs, type DeniedEvent, type InstanceHost } from './imports.ts'
import { SinkOutputStream } from './streams.ts'
import { ROOT } from '../testing.ts'

type Instantiate = (
  getCoreModule: (name: string) => CoreModule,
  imports: Record<string, unknown>,
  instantiateCore: (module: CoreModule, imports?: CoreImports) => CoreInstance
) => Promise<Record<string, { handle: (request: object, outparam: object) => void } | undefined>>

const HANDLER = 'wasi:http/incoming-handler@0.2.10'
const http = httpTypesFor({ maxBodyBytes: 1 << 20 })

interface ProbeOptions {
  readonly deterministic?: { readonly seed: number }
  /** reuse a host (and its tmp directory) instead of making one per call */
  readonly host?: InstanceHost
  /** keep the host (do not dispose it) after the request */
  readonly keep?: boolean
  readonly beforeInstantiate?: (host: InstanceHost) => void
}

interface ProbeResult {
  readonly status: number
  readonly json: Record<string, unknown>
  readonly denied: DeniedEvent[]
  readonly host: InstanceHost
}

describe('capabilities (probe component)', () => {
  let loaded: LoadedComponent
  let instantiate: Instantiate
  let tmpRoot = ''
  let server: Worker
  let port = 0
  const hits: string[] = []
  let denied: DeniedEvent[] = []

  before(async () => {
    const file = join(ROOT, 'build/fixtures/probe.wasm')
    assert.ok(existsSync(file), 'build/fixtures/probe.wasm is missing: run `npm run build`')
    loaded = await loadComponent(await readFile(file), { cacheDir: join(ROOT, 'build/test-cache') })
    instantiate = (await import(pathToFileURL(loaded.entry).href) as { instantiate: Instantiate }).instantiate
    tmpRoot = await mkdtemp(join(tmpdir(), 'omega-caps-'))
    // the guest's HTTP blocks this thread (the shim waits synchronously), so the
    // server runs on another one
    server = new Worker(`
      const { createServer } = require('node:http')
      const { parentPort } = require('node:worker_threads')
      const server = createServer((req, res) => {
        parentPort.postMessage({ hit: req.url })
        if (req.url === '/redirect') {
          res.writeHead(302, { location: 'http://localhost:' + server.address().port + '/secret' })
          res.end()
          return
        }
        res.end('hello ' + req.url)
      })
      server.listen(0, '127.0.0.1', () => parentPort.postMessage({ port: server.address().port }))
    `, { eval: true })
    port = await new Promise<number>((resolve) => {
      server.on('message', (message: { port?: number, hit?: string }) => {
        if (message.port !== undefined) {
          resolve(message.port)
        }
        if (message.hit !== undefined) {
          hits.push(message.hit)
        }
      })
    })
  })

  after(async () => {
    await server.terminate()
    await rm(tmpRoot, { recursive: true, force: true })
  })

  /** lets hit messages from the server thread arrive (this thread was blocked) */
  async function settle (): Promise<void> {
    await new Promise((resolve) => setTimeout(resolve, 50))
  }

  /** waits (at most 10 s) until the server thread has reported `count` hits, then settles for any more */
  async function settleAfterHits (count: number): Promise<void> {
    const deadline = Date.now() + 10_000
    while (hits.length < count && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 5))
    }
    await settle()
  }

  function hostFor (grants: Grants, options: ProbeOptions = {}): InstanceHost {
    return createInstanceHost({
      brane: 'probe',
      grants,
      ...(options.deterministic === undefined ? {} : { deterministic: options.deterministic }),
      stdout: new SinkOutputStream(() => {}),
      stderr: new SinkOutputStream(() => {}),
      httpTypes: http.types,
      tmpRoot,
      onDenied: (event) => { denied.push(event) }
    })
  }

  async function probe (path: string, grants: Grants, options: ProbeOptions = {}): Promise<ProbeResult> {
    denied = []
    const host = options.host ?? hostFor(grants, options)
    try {
      options.beforeInstantiate?.(host)
      const imports = buildImports(loaded.imports, grants, host)
      const instance = await instantiate((name) => {
        const module = loaded.modules.get(name)
        assert.ok(module !== undefined, name)
        return module
      }, imports, (module, coreImports) => new wasm.Instance(module, coreImports))
      const exchange = http.exchange({ method: 'GET', pathWithQuery: path, scheme: 'http', authority: 'probe.test', headers: [], body: new Uint8Array() })
      instance[HANDLER]?.handle(exchange.request, exchange.outparam)
      const response = exchange.response()
      assert.ok(response?.tag === 'ok', `no response for ${path}`)
      host.endRequest()
      return { status: response.status, json: JSON.parse(new TextDecoder().decode(response.body)) as Record<string, unknown>, denied, host }
    } finally {
      if (options.keep !== true) {
        disposeInstanceHost(host)
      }
    }
  }

  const ALL: Grants = {
    'net.http': { allowlist: [] },
    'fs.tmp': { quotaBytes: 4096, lifetime: 'request' },
    clock: { resolution: 'ns' },
    random: true,
    env: {}
  }

  describe('not granted', () => {
    // the probe imports every interface it probes: without a grant it cannot link
    for (const [key, iface] of [['net.http', 'wasi:http/outgoing-handler'], ['fs.tmp', 'wasi:filesystem/'], ['clock', 'wasi:clocks/'], ['random', 'wasi:random/random'], ['env', 'wasi:cli/environment']] as const) {
      it(`refuses to instantiate without "${key}"`, async () => {
        const grants: Record<string, unknown> = { ...ALL }
        delete grants[key]
        await assert.rejects(probe('/random', grants as Grants), (err: Error) => {
          assert.equal(err.name, 'ComponentLoadError')
          assert.ok(err.message.includes(`"${iface}`), err.message)
          return true
        })
      })
    }
  })

  describe('net.http', () => {
    function grants (allowlist: string[]): Grants {
      return { ...ALL, 'net.http': { allowlist } }
    }

    it('lets a listed host:port through (a real request to 127.0.0.1)', async () => {
      const { json, denied } = await probe(`/http?authority=127.0.0.1:${port}&path=/hello`, grants([`127.0.0.1:${port}`]))
      assert.deepEqual(json, { status: 200, body: 'hello /hello' })
      assert.deepEqual(denied, [])
    })

    it('refuses everything else with HTTP-request-denied, before any I/O', async () => {
      const list = grants([`127.0.0.1:${port}`, '*.example.test'])
      await settle()
      hits.length = 0
      const tricks = [
        `localhost:${port}`, // a name for a listed address is not listed
        `127.0.0.1:${port + 1}`, // other port
        '127.0.0.1', // default port not listed
        `2130706433:${port}`, // decimal IPv4
        `0x7f000001:${port}`, // hex IPv4
        `0x7f.0.0.1:${port}`,
        `127.1:${port}`, // short form
        `0177.0.0.1:${port}`, // octal
        'example.test', // bare domain of a glob
        `a.example.test:${port}` // glob without the port
      ]
      for (const authority of tricks) {
        const { json, denied } = await probe(`/http?authority=${encodeURIComponent(authority)}`, list)
        assert.deepEqual(json, { error: { tag: 'HTTP-request-denied' } }, authority)
        assert.equal(denied.length, 1, authority)
        assert.equal(denied[0]?.capability, 'net.http')
      }
      for (const scheme of ['ftp', 'file']) {
        const { json } = await probe(`/http?scheme=${scheme}&authority=127.0.0.1:${port}`, list)
        assert.deepEqual(json, { error: { tag: 'HTTP-request-denied' } }, scheme)
      }
      await settle()
      assert.deepEqual(hits, [], 'no refused request reached the server')
    })

    it('refuses userinfo and uppercase tricks', async () => {
      // the shim's set-authority already rejects "@" (and "[", so IPv6 literals):
      // the guest's call fails there, and the allowlist would refuse it anyway
      await settle()
      hits.length = 0
      const userinfo = await probe(`/http?authority=${encodeURIComponent(`x@127.0.0.1:${port}`)}`, grants([`127.0.0.1:${port}`]))
      assert.equal(userinfo.status, 500)
      const upper = await probe(`/http?authority=LOCALHOST:${port}`, grants([`127.0.0.1:${port}`]))
      assert.deepEqual(upper.json, { error: { tag: 'HTTP-request-denied' } })
      await settle()
      assert.deepEqual(hits, [])
    })

    it('does not follow redirects: the 3xx goes to the guest', async () => {
      await settle()
      hits.length = 0
      const { json } = await probe(`/http?authority=127.0.0.1:${port}&path=/redirect`, grants([`127.0.0.1:${port}`]))
      assert.equal(json['status'], 302)
      await settleAfterHits(1)
      assert.deepEqual(hits, ['/redirect'])
    })

    it('does not follow redirects for fetch() either (a guest that follows sends a new, checked request)', async () => {
      await settle()
      hits.length = 0
      const { json, denied } = await probe(`/fetch?url=${encodeURIComponent(`http://127.0.0.1:${port}/redirect`)}`, grants([`127.0.0.1:${port}`]))
      await settleAfterHits(1)
      assert.deepEqual(hits, ['/redirect'], 'the redirect target was never reached')
      // StarlingMonkey's fetch hands the 302 back here; had it followed, the hop to
      // localhost would have been refused and reported
      assert.equal(json['status'], 302, JSON.stringify(json))
      assert.deepEqual(denied, [])
      const next = await probe(`/fetch?url=${encodeURIComponent(`http://localhost:${port}/secret`)}`, grants([`127.0.0.1:${port}`]))
      assert.deepEqual(next.denied.map((d) => d.target), [`http://localhost:${port}/secret`])
      await settle()
      assert.deepEqual(hits, ['/redirect'])
    })

    it('an empty allowlist refuses every request', async () => {
      const { json } = await probe(`/http?authority=127.0.0.1:${port}`, ALL)
      assert.deepEqual(json, { error: { tag: 'HTTP-request-denied' } })
    })
  })

  describe('fs.tmp', () => {
    it('mounts a private directory at /tmp and nothing else', async () => {
      const { json } = await probe('/fs/preopens', ALL)
      assert.deepEqual(json, { preopens: ['/tmp'] })
    })

    it('fails writes past the quota inside the guest (descriptor.write)', async () => {
      const { json } = await probe('/fs/write?bytes=10000&chunk=1000', ALL)
      assert.deepEqual(json, { written: 4096, error: 'insufficient-space' })
    })

    it('fails stream writes past the quota with insufficient-space', async () => {
      const { json } = await probe('/fs/stream?bytes=10000', ALL)
      assert.deepEqual(json, { written: 4096, error: { tag: 'last-operation-failed', code: 'insufficient-space' } })
    })

    it('allows writes within the quota', async () => {
      const { json } = await probe('/fs/write?bytes=4096&chunk=1000', ALL)
      assert.deepEqual(json, { written: 4096, size: '4096' })
    })

    it('keeps every path inside the directory', async () => {
      const { json } = await probe('/fs/escape', ALL, {
        beforeInstantiate: (host) => {
          // a symlink planted on the host side, pointing out
          symlinkSync('/etc', join(host.tmpDir ?? '', 'planted'))
        }
      })
      const denied = Object.entries(json).filter(([, result]) => result === 'ok').map(([name]) => name)
      // creating a symlink is fine; following it out is not
      assert.deepEqual(denied, ['symlink-relative-create'], JSON.stringify(json))
      assert.equal(json['planted-follow'], 'not-permitted')
      assert.equal(json['symlink-relative-follow'], 'not-permitted')
      assert.equal(existsSync(join(tmpRoot, 'probe', 'escape.txt')), false)
    })

    it('removes a request-lifetime directory after the request, and the instance directory at dispose', async () => {
      const result = await probe('/fs/write?bytes=10&name=kept.txt', ALL, { keep: true })
      const dir = result.host.tmpDir ?? ''
      assert.deepEqual(readdirSync(dir), [], 'emptied at the end of the request')
      disposeInstanceHost(result.host)
      assert.equal(existsSync(dir), false)
    })

    it('keeps an instance-lifetime directory until the instance is disposed', async () => {
      const grants: Grants = { ...ALL, 'fs.tmp': { quotaBytes: 100, lifetime: 'instance' } }
      const result = await probe('/fs/write?bytes=10&name=kept.txt', grants, { keep: true })
      const dir = result.host.tmpDir ?? ''
      assert.deepEqual(readdirSync(dir), ['kept.txt'])
      disposeInstanceHost(result.host)
      assert.equal(existsSync(dir), false)
      assert.equal(existsSync(join(tmpRoot, 'probe')), false, 'the brane directory goes with its last instance')
    })

    it('gives each instance its own directory', async () => {
      const a = hostFor(ALL)
      const b = hostFor(ALL)
      try {
        assert.notEqual(a.tmpDir, b.tmpDir)
        mkdirSync(join(a.tmpDir ?? '', 'only-in-a'))
        const { json } = await probe('/fs/list', ALL, { host: b, keep: true })
        assert.deepEqual(json, { entries: [] })
      } finally {
        disposeInstanceHost(a)
        disposeInstanceHost(b)
      }
    })
  })

  describe('tmp sweeping', () => {
    it('removes the directories of one worker by prefix, then the brane', () => {
      const make = (instance: string): InstanceHost => createInstanceHost({
        brane: 'swept', instance, grants: ALL, stdout: new SinkOutputStream(() => {}), stderr: new SinkOutputStream(() => {}), httpTypes: http.types, tmpRoot
      })
      const a = make('w1-1')
      const b = make('w2-1')
      assert.equal(sweepTmpDirs('swept', { prefix: 'w1-', tmpRoot }), 1)
      assert.equal(existsSync(a.tmpDir ?? ''), false)
      assert.equal(existsSync(b.tmpDir ?? ''), true)
      assert.equal(sweepTmpDirs('swept', { tmpRoot }), 1)
      assert.equal(existsSync(join(tmpRoot, 'swept')), false)
      assert.throws(() => make('../x'), RangeError)
      disposeInstanceHost(a)
      disposeInstanceHost(b)
    })
  })

  describe('env', () => {
    it('gives exactly the granted variables', async () => {
      const { json } = await probe('/env', { ...ALL, env: { GREETING: 'hi', EMPTY: '' } })
      assert.deepEqual(json, { env: [['GREETING', 'hi'], ['EMPTY', '']] })
    })

    it('gives nothing of the host environment', async () => {
      const { json } = await probe('/env', ALL)
      assert.deepEqual(json, { env: [] })
    })
  })

  describe('clock', () => {
    it('rounds wall and monotonic time down to the resolution', async () => {
      const ms = (await probe('/clock', { ...ALL, clock: { resolution: 'ms' } })).json as { wall: Array<{ nanoseconds: number }>, mono: string[] }
      for (const wall of ms.wall) {
        assert.equal(wall.nanoseconds % 1_000_000, 0)
      }
      for (const mono of ms.mono) {
        assert.equal(BigInt(mono) % 1_000_000n, 0n)
      }
      const s = (await probe('/clock', { ...ALL, clock: { resolution: 's' } })).json as { wall: Array<{ nanoseconds: number, seconds: string }>, mono: string[] }
      assert.deepEqual(s.wall.map((w) => w.nanoseconds), [0, 0])
      assert.ok(Math.abs(Number(s.wall[0]?.seconds) - Date.now() / 1000) < 60)
      for (const mono of s.mono) {
        assert.equal(BigInt(mono) % 1_000_000_000n, 0n)
      }
    })
  })

  describe('random and deterministic execution', () => {
    it('differs between runs without deterministic', async () => {
      const a = await probe('/random', ALL)
      const b = await probe('/random', ALL)
      assert.notEqual(a.json['bytes'], b.json['bytes'])
    })

    it('gives byte-identical output for the same seed, different output for another seed', async () => {
      const grants: Grants = { ...ALL, clock: { resolution: 'ns' }, env: { A: '1' } }
      const first = await probe('/all', grants, { deterministic: { seed: 42 } })
      const second = await probe('/all', grants, { deterministic: { seed: 42 } })
      assert.deepEqual(first.json, second.json)
      // the virtual clock starts at 2000-01-01T00:00:00Z
      assert.equal((first.json['wall'] as { seconds: string }).seconds, '946684800')
      const other = await probe('/all', grants, { deterministic: { seed: 43 } })
      assert.notEqual(other.json['random'], first.json['random'])
      assert.notEqual(other.json['math'], first.json['math'])
    })
  })
})
