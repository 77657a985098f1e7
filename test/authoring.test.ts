/**
 * A brane in TypeScript in two commands: `omega new` writes a project, `omega build`
 * makes its component (componentize-js), and `omega up` serves it: the HTTP template is
 * pooled, so one instance answers hundreds of requests. The event template builds from
 * any working directory, links, and handles events an HTTP brane emits. The template's
 * grants are exactly what `omega grants` says its component needs. A syntax or type
 * error names file:line:column (exit 20); a directory in use is refused.
 */
import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { execFile, spawn } from 'node:child_process'
import { copyFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parse as parseToml } from 'smol-toml'
import { cli, get, ROOT, startDaemon, stopDaemon } from './helpers.ts'

/** `omega ARGS` as its own process in `cwd`, killed after `timeout` ms */
async function omegaIn (cwd: string, args: string[], timeout = 120_000): Promise<{ code: number, out: string, err: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [join(ROOT, 'bin/omega.js'), ...args], { cwd, timeout }, (error, out, err) => {
      resolve({ code: error === null ? 0 : typeof error.code === 'number' ? error.code : -1, out, err })
    })
  })
}

/** The capability table of brane `name` in TOML `text` (`{}` when it has none) */
function capabilityOf (text: string, name: string): unknown {
  const data = parseToml(text) as { brane?: Record<string, { capability?: unknown }> }
  // smol-toml's tables have no prototype: compare plain objects
  return JSON.parse(JSON.stringify(data.brane?.[name]?.capability ?? {}))
}

/** The template's grants are what its component needs: `omega grants` agrees with omega.toml */
async function assertGrantsMatch (project: string, name: string, home: string): Promise<void> {
  const grants = await cli(['grants', join(project, `${name}.wasm`), '--brane', name], home)
  assert.equal(grants.code, 0, grants.err)
  assert.deepEqual(capabilityOf(grants.out, name), capabilityOf(await readFile(join(project, 'omega.toml'), 'utf8'), name), grants.out)
}

describe('omega new / omega build', { timeout: 300_000 }, () => {
  let dir = ''
  before(async () => { dir = await mkdtemp(join(tmpdir(), 'omega-authoring-')) })
  after(async () => { await rm(dir, { recursive: true, force: true }) })

  it('http-ts: new, build, up: one pooled instance answers 300 requests over HTTP', async () => {
    const project = join(dir, 'greeter')
    const made = await cli(['new', 'http-ts', project])
    assert.equal(made.code, 0, made.err)
    const built = await cli(['build', project])
    assert.equal(built.code, 0, built.err)
    assert.match(built.out, /built .*greeter\.wasm/)
    assert.match(built.err, /omega build: componentize-js: local:greeter\/http -> greeter\.wasm/)
    const daemon = await startDaemon([join(project, 'omega.toml')], { OMEGA_HOME: join(dir, 'home') })
    try {
      const counts: number[] = []
      for (let i = 0; i < 300; i++) {
        const reply = await get(daemon.url, `/r${i}`)
        assert.equal(reply.status, 200, reply.body)
        const match = /^hello from greeter: \/r(\d+) \(request (\d+) of this instance\)\n$/.exec(reply.body)
        assert.ok(match !== null && Number(match[1]) === i, reply.body)
        counts.push(Number(match[2]))
      }
      // reused instances: some instance served many of them
      assert.ok(Math.max(...counts) >= 100, `most requests one instance served: ${Math.max(...counts)}`)
    } finally {
      await stopDaemon(daemon)
    }
    await assertGrantsMatch(project, 'greeter', join(dir, 'home'))
  })

  it('event-ts: new, build from another directory, links, and handles the events an HTTP brane emits', async () => {
    const project = join(dir, 'worker')
    assert.equal((await cli(['new', 'event-ts', project])).code, 0)
    // from / (componentize-js maps its cwd into the engine): a path from anywhere works
    const built = await omegaIn('/', ['build', project])
    assert.equal(built.code, 0, built.err)
    assert.match(built.err, /omega build: wrote worker\.wasm \([\d.]+ MiB\) in [\d.]+ s/)
    const linked = await cli(['validate', '--link', join(project, 'omega.toml')], join(dir, 'home'))
    assert.equal(linked.code, 0, linked.err + linked.out)
    await assertGrantsMatch(project, 'worker', join(dir, 'home'))
    // examples/pipeline's ingest (built by npm run build) emits each POST body on raw.batch
    await copyFile(join(ROOT, 'examples/pipeline/ingest.wasm'), join(project, 'ingest.wasm'))
    await writeFile(join(project, 'chain.toml'), (await readFile(join(project, 'omega.toml'), 'utf8')) +
      '\n[brane.ingest]\nimage = "ingest.wasm"\ntrigger = { http = "/ingest" }\n\n[brane.ingest.capability]\n"net.http" = { allowlist = [] }\nclock = { resolution = "ms" }\n\n' +
      '[graph]\nedges = [{ from = "ingest", to = "worker", on = "raw.batch" }]\n')
    const daemon = await startDaemon([join(project, 'chain.toml')], { OMEGA_HOME: join(dir, 'home') })
    try {
      for (const body of ['first words', 'second words', ' ']) {
        const res = await fetch(new URL('/ingest', daemon.url), { method: 'POST', body, signal: AbortSignal.timeout(30_000) })
        assert.equal(res.status, 202, await res.text())
      }
      const deadline = Date.now() + 30_000
      while (!/worker got raw\.batch \S+ \(attempt 1\): second words/.test(daemon.output()) || !/rejected event .*is empty/.test(daemon.output())) {
        assert.ok(Date.now() < deadline, `the worker did not log both events and reject the empty one:\n${daemon.output()}`)
        await new Promise((resolve) => setTimeout(resolve, 100))
      }
      assert.match(daemon.output(), /worker got raw\.batch \S+ \(attempt 1\): first words/)
    } finally {
      await stopDaemon(daemon)
    }
  })

  it('dev: serves the project, and a change to its source is rebuilt and reloaded', async () => {
    const project = join(dir, 'live')
    assert.equal((await cli(['new', 'http-ts', project])).code, 0)
    const child = spawn(process.execPath, [join(ROOT, 'bin/omega.js'), 'dev', project, '--port', '0'], {
      env: { ...process.env, OMEGA_HOME: join(dir, 'home') }, stdio: ['ignore', 'pipe', 'pipe']
    })
    let out = ''
    child.stdout.on('data', (chunk: Buffer) => { out += chunk.toString() })
    child.stderr.on('data', (chunk: Buffer) => { out += chunk.toString() })
    try {
      const deadline = Date.now() + 120_000
      while (!/^omega: gateway /m.test(out)) {
        assert.ok(Date.now() < deadline && child.exitCode === null, `omega dev did not start:\n${out}`)
        await new Promise((resolve) => setTimeout(resolve, 100))
      }
      const url = /^omega: gateway (\S+)$/m.exec(out)?.[1] ?? ''
      assert.match((await get(url, '/a')).body, /^hello from live: \/a/)
      const source = join(project, 'src/index.ts')
      await writeFile(source, (await readFile(source, 'utf8')).replace('hello from', 'changed:'))
      let body = ''
      while (!body.startsWith('changed: live: /b')) {
        assert.ok(Date.now() < deadline, `the change was not served:\n${out}`)
        await new Promise((resolve) => setTimeout(resolve, 250))
        body = (await get(url, '/b')).body
      }
      assert.match(out, /omega dev: reloaded: changed live/)
    } finally {
      const exited = new Promise((resolve) => child.once('exit', resolve))
      child.kill('SIGINT')
      await exited
    }
  })

  it('says where the source does not compile (syntax and types), and refuses a directory in use or an unknown template', async () => {
    const project = join(dir, 'broken')
    assert.equal((await cli(['new', 'event-ts', project])).code, 0)
    const source = join(project, 'src/index.ts')
    const good = await readFile(source, 'utf8')
    await writeFile(source, 'export const handler = {\n  handle (event: Event): void {\n    log(\n  }\n}\n')
    const broken = await cli(['build', project])
    assert.equal(broken.code, 20, broken.err)
    assert.match(broken.err, /Cannot build .*broken: the source does not compile \(\d+ errors?\)\nsrc\/index\.ts:4:3: error TS\d+: /)
    // a type error against the world's declarations (log takes a level and a string)
    await writeFile(source, good.replace("log('info', ", 'log(42, '))
    const mistyped = await cli(['build', project])
    assert.equal(mistyped.code, 20, mistyped.err)
    assert.match(mistyped.err, /src\/index\.ts:\d+:\d+: error TS2345: Argument of type '42' is not assignable to parameter of type 'Level'/)
    assert.doesNotMatch(mistyped.err, /componentize-js:/, 'stopped before componentize-js')
    const again = await cli(['new', 'http-ts', project])
    assert.equal(again.code, 2)
    assert.match(again.err, /exists and is not empty/)
    await writeFile(join(dir, 'plain-file'), 'x')
    const file = await cli(['new', 'http-ts', join(dir, 'plain-file')])
    assert.equal(file.code, 2)
    assert.match(file.err, /plain-file is a file: "omega new" writes only into a new or empty directory/)
    const unknown = await cli(['new', 'rust', join(dir, 'other')])
    assert.equal(unknown.code, 2)
    assert.match(unknown.err, /Unknown template "rust": expected one of http-ts, event-ts/)
  })
})
