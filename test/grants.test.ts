/**
 * `omega grants FILE.wasm` writes the capability block a component needs: pasted into a
 * manifest, the component links (`omega validate --link`), and without it, it does not.
 * The link check and `omega up` refuse a component Omega cannot serve alike.
 */
import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { cp, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { cli, ROOT } from './helpers.ts'

describe('omega grants', () => {
  let dir = ''
  before(async () => { dir = await mkdtemp(join(tmpdir(), 'omega-grants-')) })
  after(async () => { await rm(dir, { recursive: true, force: true }) })

  for (const [name, file, keys] of [
    ['random', 'build/fixtures/random.wasm', ['random']],
    ['js-hello', 'examples/js-hello/hello.wasm', ['"net.http"']]
  ] as const) {
    it(`writes the block ${name} needs: with it the component links, without it it does not`, async () => {
      await cp(join(ROOT, file), join(dir, `${name}.wasm`))
      const run = await cli(['grants', join(dir, `${name}.wasm`), '--brane', 'api'], join(dir, 'home'))
      assert.equal(run.code, 0, run.err)
      assert.match(run.out, /^\[brane\.api\.capability\]$/m)
      for (const key of keys) {
        assert.match(run.out, new RegExp(`^${key.replace('.', '\\.')} = `, 'm'))
      }
      const brane = `[brane.api]\nimage = "${name}.wasm"\nlifecycle = "pooled"\n`
      await writeFile(join(dir, 'without.toml'), brane)
      const without = await cli(['validate', '--link', join(dir, 'without.toml')], join(dir, 'home'))
      assert.equal(without.code, 3, without.out)
      await writeFile(join(dir, 'with.toml'), `${brane}\n${run.out}`)
      const linked = await cli(['validate', '--link', join(dir, 'with.toml')], join(dir, 'home'))
      assert.equal(linked.code, 0, linked.err + linked.out)
    })
  }

  it('validate --link and up refuse a wasi:cli/run command with HTTP routes alike: exit 6, saying what it is; without routes it links as an event brane', async () => {
    await cp(join(ROOT, 'build/fixtures/command.wasm'), join(dir, 'command.wasm'))
    await writeFile(join(dir, 'event.toml'), '[brane.job]\nimage = "command.wasm"\nlifecycle = "pooled"\n')
    const event = await cli(['validate', '--link', join(dir, 'event.toml')], join(dir, 'home'))
    assert.equal(event.code, 0, event.err)
    assert.match(event.err, /warning: brane\.job\.lifecycle: lifecycle "pooled" is ignored for a wasi:cli\/run command/)
    await writeFile(join(dir, 'command.toml'), '[brane.job]\nimage = "command.wasm"\ntrigger = { http = "/job" }\n')
    const linked = await cli(['validate', '--link', join(dir, 'command.toml')], join(dir, 'home'))
    assert.equal(linked.code, 3, linked.out)
    assert.match(linked.err, /brane\.job\.image: Brane "job": component .*command\.wasm is a wasi:cli\/run command .*not a server: it cannot answer the HTTP routed to it/)
    const up = await new Promise<{ code: number | null, err: string }>((resolve) => {
      const child = spawn(process.execPath, [join(ROOT, 'bin/omega.js'), 'up', join(dir, 'command.toml'), '--port', '0'], {
        env: { ...process.env, OMEGA_HOME: join(dir, 'home') }, stdio: ['ignore', 'ignore', 'pipe']
      })
      let err = ''
      child.stderr.on('data', (chunk: Buffer) => { err += chunk.toString() })
      child.once('close', (code) => { resolve({ code, err }) })
    })
    assert.equal(up.code, 6, up.err)
    assert.match(up.err, /is a wasi:cli\/run command \(a program with a main, as "wasmtime run" runs it\), not a server/)
  })

  it('lists what no capability grants as comments, and refuses a missing file', async () => {
    const run = await cli(['grants', join(ROOT, 'build/fixtures/sockets.wasm')], join(dir, 'home'))
    assert.equal(run.code, 0, run.err)
    assert.match(run.out, /^# wasi:sockets\/network@[\d.]+: never linked, whatever the manifest says \(raw sockets are not available to branes/m)
    const missing = await cli(['grants', join(dir, 'nope.wasm')])
    assert.equal(missing.code, 2)
    assert.match(missing.err, /Cannot read .*nope\.wasm: no such file/)
  })
})
