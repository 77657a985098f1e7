import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile, readdir } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Ajv } from 'ajv'
import { parse as parseToml } from 'smol-toml'
import { EXIT_CODES, exitCodeFor, main } from './main.ts'
import { byErrorName } from '../errors.ts'

const ROOT = fileURLToPath(new URL('../../../', import.meta.url))
const SEEDS = join(ROOT, 'examples/seeds')

interface Run { code: number, out: string, err: string }

async function run (args: string[], env: Record<string, string> = {}): Promise<Run> {
  let out = ''
  let err = ''
  const code = await main(args, {
    stdout: { write: (t: string) => { out += t } },
    stderr: { write: (t: string) => { err += t } },
    env,
    cwd: ROOT
  })
  return { code, out, err }
}

describe('omega CLI', () => {
  let home: string
  before(async () => { home = await mkdtemp(join(tmpdir(), 'omega-cli-')) })
  after(async () => { await rm(home, { recursive: true, force: true }) })

  it('validates the seed manifests', async () => {
    const seeds = (await readdir(SEEDS)).filter((f) => f.endsWith('.toml')).map((f) => join('examples/seeds', f))
    const { code, out, err } = await run(['validate', ...seeds])
    assert.doesNotMatch(err, /: error: /)
    assert.equal(code, 0)
    assert.equal(out.split('\n').filter((l) => l.startsWith('✓')).length, seeds.length)
  })

  it('prints every error of an invalid manifest and exits 3', async () => {
    const { code, out, err } = await run(['validate', 'test/fixtures/invalid/30-many-errors.toml', 'examples/seeds/gaia-fetch.toml'])
    assert.equal(code, 3)
    assert.equal(err.trim().split('\n').length, 8)
    assert.match(err, /^test\/fixtures\/invalid\/30-many-errors\.toml:2:1: error: brane\.api\.substrate: expected one of "gaia", "biome", "habitat", got "moon"$/m)
    assert.match(out, /✗ test\/fixtures\/invalid\/30-many-errors\.toml: invalid \(8 errors\)/)
    assert.match(out, /✓ examples\/seeds\/gaia-fetch\.toml: valid \(2 branes, 1 edge\)/)
  })

  it('refuses a malformed --dashboard address with exit 2, and says the form it takes', async () => {
    const { code, err } = await run(['up', 'examples/hello/omega.toml', '--dashboard', 'localhost:http', '--home', home])
    assert.equal(code, 2)
    assert.match(err, /Invalid --dashboard "localhost:http": expected \[HOST:\]PORT/)
  })

  it('gives validation results as JSON', async () => {
    const { code, out } = await run(['validate', '--json', 'test/fixtures/invalid/03-edge-unknown-brane.toml'])
    assert.equal(code, 3)
    const [result] = JSON.parse(out) as Array<{ ok: boolean, issues: Array<{ path: string, line: number, column: number }> }>
    assert.equal(result?.ok, false)
    assert.deepEqual(result?.issues.map((i) => [i.path, i.line, i.column]), [['graph.edges[0].to', 6, 22]])
  })

  it('prints a plan per brane, and as JSON', async () => {
    const { code, out } = await run(['plan', 'examples/seeds/biome-pipeline.toml'])
    assert.equal(code, 0)
    assert.match(out, /^examples\/seeds\/biome-pipeline\.toml: 4 branes, 3 edges$/m)
    assert.match(out, /^train\s+biome\s+frontier\s+1\s+ephemeral\s+torch-jit$/m)
    assert.match(out, /^brane transform$/m)
    assert.match(out, /^ {2}grants\s+clock\(us\) · state · emit\(tensor\.shard\)$/m)
    assert.match(out, /^ {2}limits\s+mem 256 MiB · deadline 30s · cpu 0\.5 core$/m)
    assert.match(out, /^ {2}edges in\s+← ingest on raw\.batch$/m)
    const json = await run(['plan', '--json', 'examples/seeds/biome-pipeline.toml'])
    const plan = JSON.parse(json.out) as { branes: Array<{ name: string, replicas: unknown }> }
    assert.deepEqual(plan.branes.map((b) => b.name), ['ingest', 'transform', 'train', 'publish'])
  })

  it('prints a JSON Schema that an independent validator accepts the seeds with', async () => {
    const { code, out } = await run(['schema'])
    assert.equal(code, 0)
    const schema = JSON.parse(out) as Record<string, unknown>
    const ajv = new Ajv({ allErrors: true, strict: true })
    const validate = ajv.compile(schema)
    for (const seed of (await readdir(SEEDS)).filter((f) => f.endsWith('.toml'))) {
      const data = parseToml(await readFile(join(SEEDS, seed), 'utf8'))
      assert.ok(validate(data), `${seed}: ${ajv.errorsText(validate.errors)}`)
    }
    const hello = parseToml(await readFile(join(ROOT, 'examples/hello/omega.toml'), 'utf8'))
    assert.ok(validate(hello), ajv.errorsText(validate.errors))
    // and it refuses what Omega refuses structurally
    assert.equal(validate({ brane: { api: { substrate: 'moon' } } }), false)
    assert.equal(validate({ brane: { api: { capability: { 'net.tcp': true } } } }), false)
    assert.equal(validate({ brane: { api: { replicas: 0 } } }), false)
    assert.equal(validate({ graph: {} }), false)
  })

  it('ships the same schema for editors', async () => {
    const { out } = await run(['schema'])
    const shipped = await readFile(join(ROOT, 'schema/zgraph.schema.json'), 'utf8')
    assert.equal(shipped, out, 'schema/zgraph.schema.json is stale: run "./bin/omega.js schema -o schema/zgraph.schema.json"')
  })

  it('creates and keeps a node identity', async () => {
    const first = await run(['id', '--home', home])
    assert.equal(first.code, 0)
    assert.match(first.out, /^did:key:z6Mk[1-9A-HJ-NP-Za-km-z]+\n$/)
    const second = await run(['id'], { OMEGA_HOME: home })
    assert.equal(second.out, first.out)
  })

  it('adds, lists and removes images, refusing files that are not components', async () => {
    const notWasm = join(home, 'x.txt')
    await writeFile(notWasm, 'hello')
    const bad = await run(['image', 'add', notWasm, 'x:1', '--home', home])
    assert.equal(bad.code, 6)
    assert.match(bad.err, /not a WebAssembly file/)
    const core = join(home, 'core.wasm')
    await writeFile(core, Uint8Array.of(0, 0x61, 0x73, 0x6d, 1, 0, 0, 0))
    const coreRun = await run(['image', 'add', core, 'x:1', '--home', home])
    assert.match(coreRun.err, /core WebAssembly module, not a WASI 0\.2 component/)
    const component = join(home, 'c.wasm')
    await writeFile(component, Uint8Array.of(0, 0x61, 0x73, 0x6d, 0x0d, 0, 1, 0))
    const added = await run(['image', 'add', component, 'tiny:1', '--home', home])
    assert.equal(added.code, 0, added.err)
    assert.match(added.out, /^tiny:1 b3:[0-9a-f]{64} \(8 B\)\n$/)
    const listed = await run(['image', 'ls', '--json', '--home', home])
    assert.deepEqual((JSON.parse(listed.out) as Array<{ ref: string }>).map((e) => e.ref), ['tiny:1'])
    const removed = await run(['image', 'rm', 'tiny:1', '--home', home])
    assert.equal(removed.code, 0)
    const missing = await run(['image', 'rm', 'tiny:1', '--home', home])
    assert.equal(missing.code, 4)
  })

  it('has --help on every command and exits 2 on usage errors', async () => {
    for (const command of [[], ['validate'], ['plan'], ['schema'], ['up'], ['run'], ['id'], ['image'], ['image', 'add'], ['image', 'ls'], ['image', 'rm']]) {
      const { code, out } = await run([...command, '--help'])
      assert.equal(code, 0, command.join(' '))
      assert.match(out, /^Usage: omega/m, command.join(' '))
    }
    const unknown = await run(['frobnicate'])
    assert.equal(unknown.code, 2)
    assert.match(unknown.err, /unknown command 'frobnicate'/)
    const missing = await run(['plan'])
    assert.equal(missing.code, 2)
  })

  it('checks components against their grants with validate --link', async () => {
    const dir = join(home, 'link')
    await mkdir(dir, { recursive: true })
    await copyFile(join(ROOT, 'build/fixtures/random.wasm'), join(dir, 'random.wasm'))
    await writeFile(join(dir, 'omega.toml'), '[brane.api]\nimage = "random.wasm"\n')
    const refused = await run(['validate', '--link', join(dir, 'omega.toml'), '--home', home])
    assert.equal(refused.code, 3)
    assert.match(refused.err, /omega\.toml: error: brane\.api\.image: Cannot link brane "api": component imports "wasi:random\/random@0\.2\.12", which needs \[brane\.api\.capability\] "random"/)
    await writeFile(join(dir, 'omega.toml'), '[brane.api]\nimage = "random.wasm"\ncapability = { random = true }\n')
    const granted = await run(['validate', '--link', join(dir, 'omega.toml'), '--home', home])
    assert.equal(granted.code, 0, granted.err)
  })

  it('exits 3 with a clear message for a missing manifest', async () => {
    const { code, err } = await run(['plan', 'nope.toml'])
    assert.equal(code, 3)
    assert.match(err, /Cannot read manifest .*nope\.toml: no such file/)
  })
})

describe('exit codes', () => {
  /** Every `class NameError extends OmegaError` (or one of its kind) in the sources, not tests, and where */
  async function errorClasses (dir: string): Promise<Array<{ name: string, file: string }>> {
    const found: Array<{ name: string, file: string }> = []
    for (const entry of await readdir(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name)
      if (entry.isDirectory()) {
        found.push(...await errorClasses(path))
      } else if (entry.name.endsWith('.ts') && !entry.name.endsWith('.test.ts')) {
        for (const match of (await readFile(path, 'utf8')).matchAll(/class (\w+Error) extends (?!Error\b)\w+Error\b/g)) {
          found.push({ name: match[1] as string, file: path })
        }
      }
    }
    return found
  }

  async function errorNames (dir: string): Promise<string[]> {
    return (await errorClasses(dir)).map((c) => c.name)
  }

  it('defines every error in src/errors.ts', async () => {
    const elsewhere = (await errorClasses(join(ROOT, 'src'))).filter((c) => c.file !== join(ROOT, 'src/errors.ts'))
    assert.deepEqual(elsewhere, [])
  })

  it('maps every error Omega defines to a code, and documents every code in --help and the README', async () => {
    const names = [...new Set(await errorNames(join(ROOT, 'src')))].sort()
    assert.ok(names.length > 30, `found ${names.length} error classes`)
    assert.deepEqual(names.filter((name) => byErrorName(EXIT_CODES, name) === undefined), [], 'errors without an exit code (they would exit 70, undocumented)')
    const help = (await run(['--help'])).out
    const readme = (await readFile(join(ROOT, 'README.md'), 'utf8')).replace(/\s+/g, ' ')
    for (const code of new Set(Object.values(EXIT_CODES))) {
      assert.match(help, new RegExp(`(?:^|[\\s,])${code} [a-z]`, 'm'), `--help documents exit code ${code}`)
      assert.match(readme, new RegExp(`[ ,]${code} [a-z]`), `the README documents exit code ${code}`)
    }
    // the daemon's error decides the code of a refused admin request
    assert.equal(exitCodeFor(Object.assign(new Error('x'), { name: 'AdminRequestError', status: 422, remoteName: 'QueueError' })), 17)
  })
})
