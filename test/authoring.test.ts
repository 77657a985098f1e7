/**
 * A brane in TypeScript in two commands: `omega new` writes a project, `omega build`
 * makes its component (componentize-js), and `omega up` serves it: the HTTP template is
 * pooled, so one instance answers hundreds of requests. The event template builds and
 * links; a compile error names file:line; a directory in use is refused.
 */
import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { cli, get, ROOT, startDaemon, stopDaemon } from './helpers.ts'

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
  })

  it('event-ts: new, build, and the component links against the manifest the template wrote', async () => {
    const project = join(dir, 'worker')
    assert.equal((await cli(['new', 'event-ts', project])).code, 0)
    const built = await cli(['build', project])
    assert.equal(built.code, 0, built.err)
    const linked = await cli(['validate', '--link', join(project, 'omega.toml')], join(dir, 'home'))
    assert.equal(linked.code, 0, linked.err + linked.out)
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

  it('says where the source does not compile, and refuses a directory in use or an unknown template', async () => {
    const project = join(dir, 'worker')
    await writeFile(join(project, 'src/index.ts'), 'export const handler = {\n  handle (event: Event): void {\n    log(\n  }\n}\n')
    const broken = await cli(['build', project])
    assert.equal(broken.code, 2, broken.err)
    assert.match(broken.err, /src\/index\.ts:4:3: /)
    const again = await cli(['new', 'http-ts', project])
    assert.equal(again.code, 2)
    assert.match(again.err, /exists and is not empty/)
    const unknown = await cli(['new', 'rust', join(dir, 'other')])
    assert.equal(unknown.code, 2)
    assert.match(unknown.err, /Unknown template "rust": expected one of http-ts, event-ts/)
  })
})
