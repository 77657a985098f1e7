/**
 * End to end: `omega up` as a real process, requests over a real socket.
 */
import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { cp, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { LocalNode, adminJson } from '../src/daemon/index.ts'
import { generateNodeKey, issueAdminToken } from '../src/identity/index.ts'
import { silentLogging } from '../src/observe/index.ts'
import { ROOT, cli, startDaemon, stopDaemon, until } from './helpers.ts'

describe('omega up', () => {
  let home = ''
  before(async () => { home = await mkdtemp(join(tmpdir(), 'omega-up-')) })
  after(async () => { await rm(home, { recursive: true, force: true }) })

  it('serves the hello component over HTTP and stops cleanly on SIGINT', async () => {
    const daemon = await startDaemon(['examples/hello/omega.toml'], { OMEGA_HOME: home })
    try {
      const res = await fetch(`${daemon.url}/hello?name=omega`)
      assert.equal(res.status, 200)
      assert.equal(res.headers.get('content-type'), 'text/plain')
      assert.equal(await res.text(), 'hello from omega: /hello?name=omega\n')
      // many requests, some concurrent: every one answered
      const bodies = await Promise.all(Array.from({ length: 20 }, async (_, i) => (await fetch(`${daemon.url}/n/${i}`)).text()))
      bodies.forEach((body, i) => { assert.equal(body, `hello from omega: /n/${i}\n`) })
      assert.match(daemon.output(), /hello\s+running/)

      // the operations CLI reads the running daemon through its admin API
      const logs = await cli(['logs', '--brane', 'hello', '--since', '30s'], home)
      assert.equal(logs.code, 0, logs.err)
      assert.match(logs.out, /^\d\d:\d\d:\d\d\.\d{3} hello\.\d{3} REQ GET \/hello\?name=omega RES 200 36B cpu=\d+\.\d+ms END cold=\S+ exec=\d+\.\d+ms total=\d+\.\d+ms/m)
      assert.equal(logs.out.split('\n').filter((l) => l.includes(' REQ GET /n/')).length, 20)
      const ps = await cli(['ps'], home)
      assert.match(ps.out, /^hello\s+running\s+gaia\s+standard\s+ephemeral\s+\/\*\s+hello\.wasm$/m)
      // the dashboard is on by default, on loopback, and asks a stranger to sign in
      const dashboard = /^omega: dashboard (http:\/\/127\.0\.0\.1:\d+) \(sign in: omega dashboard\)$/m.exec(daemon.output())?.[1]
      assert.ok(dashboard !== undefined, daemon.output())
      assert.match(ps.out, new RegExp(`^dashboard ${dashboard} `, 'm'))
      const page = await fetch(dashboard)
      assert.equal(page.status, 401)
      assert.match(await page.text(), /omega dashboard/)
    } finally {
      assert.equal(await stopDaemon(daemon), 0, daemon.output())
    }
  })

  it('refuses admin requests without a token or with a forged one', async () => {
    const dir = await mkdtemp(join(home, 'admin-'))
    const node = await LocalNode.start(join(ROOT, 'examples/hello/omega.toml'), { home: dir, port: 0, logging: silentLogging() })
    try {
      const status = await adminJson<{ did: string }>(dir, '/v1/status')
      assert.equal(status.did, node.did)
      await assert.rejects(adminJson(dir, '/v1/status', { token: '' }), { name: 'AdminRequestError', status: 401 })
      const stranger = generateNodeKey()
      await assert.rejects(adminJson(dir, '/v1/logs', { key: stranger }), { name: 'AdminRequestError', status: 403, message: /is not authorised on this node/ })
      const [body] = issueAdminToken(stranger, node.did).split('.')
      const forged = `${body ?? ''}.${Buffer.alloc(64).toString('base64url')}`
      await assert.rejects(adminJson(dir, '/v1/status', { token: forged }), { name: 'AdminRequestError', status: 403, message: /Invalid token signature/ })
      // a second daemon with the same home is refused
      await assert.rejects(LocalNode.start(join(ROOT, 'examples/hello/omega.toml'), { home: dir, port: 0, logging: silentLogging() }), /Another omega daemon is running/)
    } finally {
      await node.stop()
    }
    const gone = await cli(['ps'], dir)
    assert.equal(gone.code, 10)
    assert.match(gone.err, /No omega daemon is running with home/)
  })

  it('hot-reloads with --watch when the manifest changes, and keeps running through a bad edit', async () => {
    const dir = await mkdtemp(join(home, 'watch-'))
    await cp(join(ROOT, 'examples/hello/hello.wasm'), join(dir, 'hello.wasm'))
    const manifest = join(dir, 'omega.toml')
    await writeFile(manifest, '[brane.a]\nimage = "hello.wasm"\ntrigger = { http = "/a/*" }\n')
    const daemon = await startDaemon([manifest, '--watch'], { OMEGA_HOME: join(dir, 'home') })
    try {
      assert.equal((await fetch(`${daemon.url}/b/x`)).status, 404)
      await writeFile(manifest, '[brane.a]\nimage = "hello.wasm"\ntrigger = { http = "/a/*" }\n\n[brane.b]\nimage = "hello.wasm"\ntrigger = { http = "/b/*" }\n')
      await until(() => /omega: reloaded: added b/.test(daemon.output()), 30_000, 'the reload')
      assert.equal(await (await fetch(`${daemon.url}/b/x`)).text(), 'hello from omega: /b/x\n')
      await writeFile(manifest, '[brane.a]\nimage = "hello.wasm"\nreplicas = 0\n')
      await until(() => /reload refused, still running the previous version/.test(daemon.output()), 30_000, 'the refusal')
      assert.match(daemon.output(), /brane\.a\.replicas: expected an integer ≥ 1/)
      assert.equal((await fetch(`${daemon.url}/b/y`)).status, 200)
    } finally {
      assert.equal(await stopDaemon(daemon), 0, daemon.output())
    }
  })

  it('runs several manifests side by side as apps, reloads one without touching the other, and refuses two that share a route', async () => {
    const dir = await mkdtemp(join(home, 'apps-'))
    await cp(join(ROOT, 'examples/hello/hello.wasm'), join(dir, 'hello.wasm'))
    const shop = join(dir, 'shop.toml')
    const blog = join(dir, 'blog.toml')
    await writeFile(shop, '[brane.cart]\nimage = "hello.wasm"\ntrigger = { http = "/cart/*" }\n')
    await writeFile(blog, '[brane.posts]\nimage = "hello.wasm"\ntrigger = { http = "/posts/*" }\n')
    const daemon = await startDaemon([shop, blog, '--watch'], { OMEGA_HOME: join(dir, 'home') })
    try {
      assert.equal(await (await fetch(`${daemon.url}/cart/1`)).text(), 'hello from omega: /cart/1\n')
      assert.equal(await (await fetch(`${daemon.url}/posts/1`)).text(), 'hello from omega: /posts/1\n')
      const apps = JSON.parse((await cli(['apps', '--json'], join(dir, 'home'))).out) as Array<{ name: string, manifest: string, placement: Record<string, string[]> }>
      assert.deepEqual(apps.map((a) => [a.name, a.manifest, Object.keys(a.placement)]), [['blog', blog, ['posts']], ['shop', shop, ['cart']]])
      // shop changes: blog's brane is left as it runs
      await writeFile(shop, '[brane.cart]\nimage = "hello.wasm"\ntrigger = { http = "/cart/*" }\n\n[brane.basket]\nimage = "hello.wasm"\ntrigger = { http = "/basket/*" }\n')
      await until(() => /omega: reloaded: added basket · changed — · removed —/.test(daemon.output()), 30_000, 'the reload of shop')
      assert.equal((await fetch(`${daemon.url}/basket/1`)).status, 200)
      assert.equal((await fetch(`${daemon.url}/posts/2`)).status, 200)
      // a reload that would take blog's route is refused, naming both apps
      await writeFile(shop, '[brane.cart]\nimage = "hello.wasm"\ntrigger = { http = "/posts/*" }\n')
      await until(() => /reload refused, still running the previous version: .*app "shop" cannot run beside app "blog": both serve the route "\/posts\/\*"/.test(daemon.output()), 30_000, 'the refusal')
      assert.equal((await fetch(`${daemon.url}/cart/2`)).status, 200)
    } finally {
      assert.equal(await stopDaemon(daemon), 0, daemon.output())
    }
    const clash = await cli(['up', shop, blog, '--port', '0'], join(dir, 'home'))
    assert.equal(clash.code, 16, clash.err)
    assert.match(clash.err, /cannot run beside app/)
  })

  it('is a node alone: it serves without loading the mesh stack, which omega node cannot do without', async () => {
    const dir = await mkdtemp(join(home, 'lone-'))
    // a module loader that refuses libp2p and Omega's mesh module (its bundle's chunk: mesh-HASH.js),
    // passed to the CLI by NODE_OPTIONS
    await writeFile(join(dir, 'hooks.mjs'), `
export async function resolve (specifier, context, next) {
  if (/libp2p|@chainsafe|mesh\\/index\\.js$|\\/mesh-[A-Z0-9]+\\.js$/.test(specifier)) {
    throw new Error('loaded ' + specifier)
  }
  return next(specifier, context)
}
`)
    await writeFile(join(dir, 'register.mjs'), `import { register } from 'node:module'\nregister(${JSON.stringify(pathToFileURL(join(dir, 'hooks.mjs')).href)})\n`)
    const env = { OMEGA_HOME: join(dir, 'home'), NODE_OPTIONS: `--import ${pathToFileURL(join(dir, 'register.mjs')).href}` }
    const daemon = await startDaemon(['examples/hello/omega.toml', '--no-dashboard'], env)
    try {
      assert.equal(await (await fetch(`${daemon.url}/lone`)).text(), 'hello from omega: /lone\n')
    } finally {
      assert.equal(await stopDaemon(daemon), 0, daemon.output())
    }
    const meshNode = spawn(process.execPath, [join(ROOT, 'bin/omega.js'), 'node', '--name', 'lab/x', '--port', '0', '--no-dashboard'], { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'], timeout: 30_000 })
    let out = ''
    meshNode.stderr.on('data', (chunk: Buffer) => { out += chunk.toString() })
    assert.notEqual(await new Promise((resolve) => { meshNode.on('close', resolve) }), 0)
    assert.match(out, /loaded .*(libp2p|mesh\/index|mesh-)/)
  })

  it('refuses to start with a missing image and names the command that adds it', async () => {
    const dir = await mkdtemp(join(home, 'missing-'))
    const manifest = join(dir, 'omega.toml')
    await writeFile(manifest, '[brane.api]\nimage = "api:1"\n')
    const child = spawn(process.execPath, [join(ROOT, 'bin/omega.js'), 'up', manifest, '--port', '0'], { env: { ...process.env, OMEGA_HOME: home }, stdio: ['ignore', 'pipe', 'pipe'] })
    let err = ''
    child.stderr.on('data', (chunk: Buffer) => { err += chunk.toString() })
    const code = await new Promise<number | null>((resolve) => { child.once('close', resolve) })
    assert.equal(code, 4)
    assert.match(err, /Image "api:1" is not in the store .*: add it with "omega image add FILE api:1"/)
  })
})

describe('LocalNode', () => {
  let home = ''
  before(async () => { home = await mkdtemp(join(tmpdir(), 'omega-node-')) })
  after(async () => { await rm(home, { recursive: true, force: true }) })

  it('serves a store image by name:tag, and routes by path', async () => {
    const dir = await mkdtemp(join(home, 'store-'))
    await cp(join(ROOT, 'examples/hello/hello.wasm'), join(dir, 'copy.wasm'))
    const { main } = await import('../src/cli/main.ts')
    assert.equal(await main(['image', 'add', join(dir, 'copy.wasm'), 'hello:1', '--home', home]), 0)
    const manifest = join(dir, 'omega.toml')
    await writeFile(manifest, '[brane.a]\nimage = "hello:1"\ntrigger = { http = "/a/*" }\n\n[brane.b]\nimage = "copy.wasm"\n')
    const node = await LocalNode.start(manifest, { home, port: 0, logging: silentLogging(), metricsPort: 0 })
    try {
      assert.equal(await (await fetch(`${node.url}/a/x`)).text(), 'hello from omega: /a/x\n')
      const metrics = await (await fetch(node.metricsUrl ?? '')).text()
      assert.match(metrics, /^omega_requests_total\{brane="a",status="200"\} 1$/m)
      assert.match(metrics, /^omega_request_duration_ms_count\{brane="a"\} 1$/m)
      const profile = await adminJson<{ requests: number, exec?: { p50: number } }>(home, '/v1/profile?brane=a')
      assert.equal(profile.requests, 1)
      assert.ok((profile.exec?.p50 ?? -1) >= 0)
      const shown = await cli(['profile', '--brane', 'a'], home)
      assert.match(shown.out, /^brane a: 1 requests, 0 errors, \d+\.\d req\/s \(last 10s\)$/m)
      assert.match(shown.out, /^exec\s+\d+\.\d+ms\s+\d+\.\d+ms\s+\d+\.\d+ms\s+1$/m)
      // the peak linear memory of the brane's instances: hello's one page at least
      assert.match(shown.out, /^mem\s+\d+ [KM]iB\s+\d+ [KM]iB\s+\d+ [KM]iB\s+1$/m)
      assert.equal(await (await fetch(`${node.url}/b/y`)).text(), 'hello from omega: /b/y\n')
      const missing = await fetch(`${node.url}/c`)
      assert.equal(missing.status, 404)
      assert.deepEqual(await missing.json(), { error: 'RouteNotFoundError', message: 'No brane serves GET /c' })
    } finally {
      await node.stop()
    }
  })

  it('refuses a component whose imports are not granted, naming the manifest key', async () => {
    const dir = await mkdtemp(join(home, 'deny-'))
    await cp(join(ROOT, 'build/fixtures/random.wasm'), join(dir, 'random.wasm'))
    const manifest = join(dir, 'omega.toml')
    await writeFile(manifest, '[brane.api]\nimage = "random.wasm"\n')
    await assert.rejects(LocalNode.start(manifest, { home, port: 0, logging: silentLogging() }), (err: Error) => {
      assert.equal(err.name, 'CapabilityDeniedError')
      assert.match(err.message, /^Cannot link brane "api": component imports "wasi:random\/random@0\.2\.12", which needs \[brane\.api\.capability\] "random"$/)
      return true
    })
  })

  it('starts what it can: a brane that cannot start is shown failed, retried, and serves once it can', async () => {
    const dir = await mkdtemp(join(home, 'partial-'))
    await cp(join(ROOT, 'examples/hello/hello.wasm'), join(dir, 'hello.wasm'))
    const manifest = join(dir, 'omega.toml')
    await writeFile(manifest, '[brane.hello]\nimage = "hello.wasm"\n[brane.late]\nimage = "late.wasm"\n')
    const node = await LocalNode.start(manifest, { home: join(dir, 'home'), port: 0, logging: silentLogging(), admin: false })
    try {
      assert.equal((await fetch(`${node.url}/hello/x`)).status, 200)
      const late = node.branes.find((b) => b.name === 'late')
      assert.equal(late?.state, 'failed')
      assert.match(late.reason ?? '', /image "late\.wasm" not found/)
      assert.equal(late.attempts, 1)
      assert.equal((await fetch(`${node.url}/late/x`)).status, 404)
      // the image appears: the next attempt (1 s back-off) starts it beside the running brane
      await cp(join(ROOT, 'examples/hello/hello.wasm'), join(dir, 'late.wasm'))
      await until(() => node.branes.find((b) => b.name === 'late')?.state === 'running', 20_000, 'the failed brane to start on a retry')
      const res = await fetch(`${node.url}/late/x`)
      assert.equal(res.status, 200)
      assert.equal(await res.text(), 'hello from omega: /late/x\n')
      assert.equal((await fetch(`${node.url}/hello/x`)).status, 200)
    } finally {
      await node.stop()
    }
  })

  it('serves with $OMEGA_HOME under a package.json that says "type": "commonjs"', async () => {
    const dir = await mkdtemp(join(home, 'cjs-'))
    await writeFile(join(dir, 'package.json'), '{ "type": "commonjs" }\n')
    await cp(join(ROOT, 'examples/hello/hello.wasm'), join(dir, 'hello.wasm'))
    await writeFile(join(dir, 'omega.toml'), '[brane.hello]\nimage = "hello.wasm"\n')
    const node = await LocalNode.start(join(dir, 'omega.toml'), { home: join(dir, 'home'), port: 0, logging: silentLogging(), admin: false })
    try {
      const res = await fetch(`${node.url}/hello/cjs`)
      assert.equal(res.status, 200)
      assert.equal(await res.text(), 'hello from omega: /hello/cjs\n')
    } finally {
      await node.stop()
    }
  })

  it('lists every brane that cannot start', async () => {
    const dir = await mkdtemp(join(home, 'many-'))
    const manifest = join(dir, 'omega.toml')
    await writeFile(manifest, '[brane.a]\nimage = "a.wasm"\n[brane.b]\nimage = "b:1"\n')
    await assert.rejects(LocalNode.start(manifest, { home, port: 0, logging: silentLogging() }), (err: Error) => {
      assert.equal(err.name, 'ImageNotFoundError')
      assert.match(err.message, /^Cannot start 2 branes:\n {2}Brane "a": image "a\.wasm" not found at .*\n {2}Image "b:1" is not in the store/)
      return true
    })
  })
})

describe('omega as a process', () => {
  it('ends quietly with 0 when its reader stops early (omega --help | head -1)', async () => {
    const child = spawn(process.execPath, [join(ROOT, 'bin/omega.js'), '--help'], { stdio: ['ignore', 'pipe', 'pipe'] })
    let err = ''
    child.stderr.on('data', (chunk: Buffer) => { err += chunk.toString() })
    // the reader is gone before omega writes (as when head has had its lines)
    child.stdout.destroy()
    const code = await new Promise<number | null>((resolve) => { child.once('close', resolve) })
    assert.equal(code, 0, err)
    assert.doesNotMatch(err, /EPIPE/)
  })
})
