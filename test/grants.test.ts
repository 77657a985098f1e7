/**
 * `omega grants FILE.wasm` writes the capability block a component needs: pasted into a
 * manifest, the component links (`omega validate --link`), and without it, it does not.
 */
import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
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

  it('lists what no capability grants as comments, and refuses a missing file', async () => {
    const run = await cli(['grants', join(ROOT, 'build/fixtures/sockets.wasm')], join(dir, 'home'))
    assert.equal(run.code, 0, run.err)
    assert.match(run.out, /^# wasi:sockets\/network@[\d.]+: never linked, whatever the manifest says \(raw sockets are not available to branes/m)
    const missing = await cli(['grants', join(dir, 'nope.wasm')])
    assert.equal(missing.code, 2)
    assert.match(missing.err, /Cannot read .*nope\.wasm: no such file/)
  })
})
