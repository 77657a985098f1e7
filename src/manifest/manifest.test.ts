import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { fileURLToPath } from 'node:url'
import { join } from 'node:path'
import { stringify as toYaml } from 'yaml'
import { checkManifest, formatIssue, loadManifest, parseDuration, parseSize, parseCpuQuota } from './index.ts'
import type { ManifestIssue } from '../errors.ts'

const ROOT = fileURLToPath(new URL('../../../', import.meta.url))
const INVALID = join(ROOT, 'test/fixtures/invalid')
const SEEDS = join(ROOT, 'examples/seeds')

/** Each invalid fixture and exactly the errors it must produce, in order */
const EXPECTED: Array<[string, string[]]> = [
  ['01-unknown-substrate.toml', [
    '01-unknown-substrate.toml:2:1: error: brane.api.substrate: expected one of "gaia", "biome", "habitat", got "gaya" (did you mean "gaia"?)'
  ]],
  ['02-frontier-on-habitat.toml', [
    '02-frontier-on-habitat.toml:4:1: error: brane.desk.capability: capability "frontier" is not allowed on substrate "habitat": microVM branes run on "gaia" or "biome"'
  ]],
  ['03-edge-unknown-brane.toml', [
    '03-edge-unknown-brane.toml:6:22: error: graph.edges[0].to: no brane named "transfrom" (branes: ingest)'
  ]],
  ['04-cycle.toml', [
    '04-cycle.toml:8:3: error: graph.edges[0]: the event graph has a cycle: a → b → a (set [graph] allow_cycles = true if it is intended)'
  ]],
  ['05-bad-size.toml', [
    '05-bad-size.toml:5:1: error: brane.api.limits.mem_max: expected a size such as "64 MiB", got "64 megs"'
  ]],
  ['06-bad-duration.toml', [
    '06-bad-duration.toml:5:1: error: brane.api.limits.deadline: expected a duration such as "8s", "250ms" or "1m30s", got "8 seconds"'
  ]],
  ['07-unknown-capability.toml', [
    '07-unknown-capability.toml:5:1: error: brane.api.capability."net.tcp": unknown capability "net.tcp": expected one of "net.http", "fs.tmp", "clock", "random", "env", "state" (did you mean "net.http"?)'
  ]],
  ['08-emit-capability.toml', [
    '08-emit-capability.toml:5:1: error: brane.api.capability.emit: unknown capability "emit": emitting is granted by the brane\'s outgoing edges in [graph].edges'
  ]],
  ['09-allowlist-scheme.toml', [
    '09-allowlist-scheme.toml:5:29: error: brane.fetch.capability."net.http".allowlist[0]: expected a host name without a scheme, such as "api.example.com" or "*.example.com", got "https://api.crossref.org"'
  ]],
  ['10-bad-glob.toml', [
    '10-bad-glob.toml:4:1: error: brane.transform.peers: invalid glob "lab.lan/transform-pool-[0-9": unbalanced brackets or braces'
  ]],
  ['11-replicas-zero.toml', [
    '11-replicas-zero.toml:3:1: error: brane.api.replicas: expected an integer ≥ 1, "auto", or { min, max }, got 0'
  ]],
  ['12-replicas-string.toml', [
    '12-replicas-string.toml:3:1: error: brane.api.replicas: expected an integer ≥ 1, "auto", or { min, max }, got "many"'
  ]],
  ['13-bad-lifecycle.toml', [
    '13-bad-lifecycle.toml:3:1: error: brane.api.lifecycle: expected one of "ephemeral", "pooled", "pinned", got "pool"'
  ]],
  ['14-missing-edge-key.toml', [
    '14-missing-edge-key.toml:7:10: error: graph.edges[0]: missing key "on": expected an event topic such as "raw.batch"'
  ]],
  ['15-bad-brane-name.toml', [
    '15-bad-brane-name.toml:1:2: error: brane.Api: invalid name "Api": expected lowercase letters, digits, "-" or "_", starting with a letter (at most 63)'
  ]],
  ['16-toml-syntax.toml', [
    '16-toml-syntax.toml:4:1: error: missing value after "=": expected a value'
  ]],
  ['17-duplicate-key.toml', [
    '17-duplicate-key.toml:3:1: error: brane.api.image is defined twice: line 2 sets it (image = "api.wasm"), line 3 sets it (image = "other.wasm"); TOML allows each key or table once'
  ]],
  ['18-gpu-on-standard.toml', [
    '18-gpu-on-standard.toml:3:1: error: brane.train.gpu: gpu = "passthrough" needs capability = "frontier": a WASI component cannot reach a GPU'
  ]],
  ['19-resolver-mode.toml', [
    '19-resolver-mode.toml:6:1: error: resolver.public.mode: expected one of "local", "tailscale-funnel", "cloudflared", "netbird", "ngrok", got "funnel"'
  ]],
  ['20-fs-quota-type.toml', [
    '20-fs-quota-type.toml:5:14: error: brane.api.capability."fs.tmp".quota: expected a size such as "64 MiB", got true',
    '20-fs-quota-type.toml:5:28: error: brane.api.capability."fs.tmp".lifetime: expected one of "request", "instance", got "forever"'
  ]],
  ['21-clock-resolution.toml', [
    '21-clock-resolution.toml:5:11: error: brane.api.capability.clock.resolution: expected one of "ns", "us", "ms", "s", got "minute"'
  ]],
  ['22-no-branes.toml', [
    '22-no-branes.toml:1:1: error: missing key "brane": expected a table of workloads: [brane.NAME]'
  ]],
  ['23-route-wildcard.toml', [
    '23-route-wildcard.toml:5:1: error: brane.api.trigger.http: invalid route "/api/*/items": a wildcard may only end a route, as in "/api/*" or "/api/..."'
  ]],
  ['24-duplicate-route.toml', [
    '24-duplicate-route.toml:7:13: error: brane.b.trigger.http: route "/api/*" is already served by brane "a"'
  ]],
  ['25-cpu-quota.toml', [
    '25-cpu-quota.toml:5:1: error: brane.api.limits.cpu_quota: expected a fraction of one core, e.g. 0.5 or a percentage of one core, e.g. "50%", got "half"'
  ]],
  ['26-mem-too-big.toml', [
    '26-mem-too-big.toml:5:1: error: brane.api.limits.mem_max: expected at most "4 GiB" for a standard brane (wasm32 linear memory), got "8 GiB"'
  ]],
  ['27-edge-self-unknown.json', [
    '27-edge-self-unknown.json:7:22: error: graph.edges[0].to: no brane named "b" (branes: a)'
  ]],
  ['28-yaml-bad-substrate.yaml', [
    '28-yaml-bad-substrate.yaml:4:5: error: brane.api.substrate: expected one of "gaia", "biome", "habitat", got "cloud"'
  ]],
  ['29-json-syntax.json', [
    '29-json-syntax.json:3:31: error: expected double-quoted property name'
  ]],
  ['30-many-errors.toml', [
    '30-many-errors.toml:2:1: error: brane.api.substrate: expected one of "gaia", "biome", "habitat", got "moon"',
    '30-many-errors.toml:3:1: error: brane.api.replicas: expected an integer ≥ 1, "auto", or { min, max }, got -2',
    '30-many-errors.toml:4:1: error: brane.api.lifecycle: expected one of "ephemeral", "pooled", "pinned", got "forever"',
    '30-many-errors.toml:8:1: error: brane.api.capability."net.udp": unknown capability "net.udp": expected one of "net.http", "fs.tmp", "clock", "random", "env", "state"',
    '30-many-errors.toml:9:11: error: brane.api.capability.clock.resolution: expected one of "ns", "us", "ms", "s", got "week"',
    '30-many-errors.toml:12:1: error: brane.api.limits.mem_max: expected a size such as "64 MiB", got "lots"',
    '30-many-errors.toml:13:1: error: brane.api.limits.deadline: expected a duration such as "8s", "250ms" or "1m30s", got "soon"',
    '30-many-errors.toml:16:26: error: graph.edges[0].to: no brane named "ghost" (branes: api)'
  ]],
  // the Gaia seed's own manifest: a profile string beside a capability table
  ['31-capability-string-and-table.toml', [
    '31-capability-string-and-table.toml:7:14: error: brane.fetch.capability is defined twice: line 3 sets it (capability  = "standard"), line 7 opens it as a table ([brane.fetch.capability]); TOML allows each key or table once. The string names the brane\'s profile and the table its grants: write profile = "standard" inside [brane.fetch.capability] instead of line 3, or drop line 3 (the profile defaults to "standard")'
  ]],
  // a command brane's stdout carries emit records only where it has edges to emit on
  ['32-stdout-emit-no-edge.toml', [
    '32-stdout-emit-no-edge.toml:3:1: error: brane.job.stdout: stdout = "emit" needs an outgoing edge: what brane "job" writes to stdout is emitted on the edges from it in [graph].edges, and it has none (add e.g. { from = "job", to = "<brane>", on = "<topic>" })'
  ]],
  ['33-stdout-bad-mode.toml', [
    '33-stdout-bad-mode.toml:3:1: error: brane.job.stdout: expected one of "log", "emit", got "file"'
  ]],
  ['34-body-max.toml', [
    '34-body-max.toml:5:1: error: brane.api.limits.body_max: expected at most "1 GiB" (a body that does not stream is held whole in memory), got "2 GiB"',
    '34-body-max.toml:9:12: error: brane.web.limits.body_max: expected a size greater than 0'
  ]]
]

function errorsOf (err: unknown, file: string): string[] {
  assert.ok(err instanceof Error)
  assert.equal(err.name, 'ManifestError')
  const issues = (err as Error & { issues: ManifestIssue[] }).issues
  return issues.filter((i) => i.severity === 'error').map((i) => formatIssue({ ...i, file }))
}

describe('manifest validation', () => {
  it('has a fixture for every expectation and an expectation for every fixture', async () => {
    const files = (await readdir(INVALID)).sort()
    assert.deepEqual(files, EXPECTED.map(([f]) => f))
    assert.ok(files.length >= 20)
  })

  for (const [file, expected] of EXPECTED) {
    it(`refuses ${file} with the exact errors`, async () => {
      await assert.rejects(loadManifest(join(INVALID, file)), (err) => {
        assert.deepEqual(errorsOf(err, file), expected)
        return true
      })
    })
  }

  it('the Gaia seed\'s capability string beside its table: omega validate exits 3 naming both lines and the fix, and each rewrite it offers is valid', async () => {
    const omega = async (file: string): Promise<{ code: number, out: string, err: string }> => new Promise((resolve) => {
      execFile(process.execPath, [join(ROOT, 'bin/omega.js'), 'validate', file], { timeout: 30_000 }, (error, out, err) => {
        resolve({ code: error === null ? 0 : typeof error.code === 'number' ? error.code : -1, out, err })
      })
    })
    const dir = await mkdtemp(join(tmpdir(), 'omega-manifest-'))
    try {
      const seed = await readFile(join(INVALID, '31-capability-string-and-table.toml'), 'utf8')
      const refused = await omega(join(INVALID, '31-capability-string-and-table.toml'))
      assert.equal(refused.code, 3, refused.out + refused.err)
      const said = refused.out + refused.err
      assert.match(said, /31-capability-string-and-table\.toml:7:14: error: brane\.fetch\.capability is defined twice: line 3 sets it \(capability {2}= "standard"\), line 7 opens it as a table \(\[brane\.fetch\.capability\]\)/)
      assert.match(said, /write profile = "standard" inside \[brane\.fetch\.capability\] instead of line 3, or drop line 3/)
      const lines = seed.split('\n')
      const rewrites = {
        'profile in the table': lines.filter((_, i) => i !== 2).join('\n').replace('[brane.fetch.capability]\n', '[brane.fetch.capability]\nprofile = "standard"\n'),
        'string dropped': lines.filter((_, i) => i !== 2).join('\n')
      }
      for (const [name, text] of Object.entries(rewrites)) {
        await writeFile(join(dir, 'fixed.toml'), text)
        const fixed = await omega(join(dir, 'fixed.toml'))
        assert.equal(fixed.code, 0, `${name}: ${fixed.out}${fixed.err}`)
      }
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })

  it('reports every error of a file at once', async () => {
    await assert.rejects(loadManifest(join(INVALID, '30-many-errors.toml')), (err) => {
      assert.equal(errorsOf(err, 'x').length, 8)
      assert.match((err as Error).message, /\(8 errors\)/)
      return true
    })
  })

  it('accepts the seed manifests unchanged', async () => {
    // every manifest dropped into examples/seeds must validate (warnings allowed: a seed
    // may use keys this version does not know); ours use only known keys
    const seeds = (await readdir(SEEDS)).filter((f) => /\.(toml|json|ya?ml)$/.test(f))
    assert.ok(seeds.length >= 3)
    for (const seed of seeds) {
      const { plan, warnings } = await loadManifest(join(SEEDS, seed))
      assert.ok(plan.branes.length > 0, seed)
      if (['gaia-fetch.toml', 'biome-pipeline.toml', 'habitat-home.toml'].includes(seed)) {
        assert.deepEqual(warnings, [], seed)
      }
    }
  })

  it('reads JSON and YAML of the same shape into the same plan', async () => {
    const file = join(SEEDS, 'biome-pipeline.toml')
    const fromToml = await loadManifest(file)
    const json = checkManifest(JSON.stringify(fromToml.manifest, null, 2), 'pipeline.json')
    const yaml = checkManifest(toYaml(fromToml.manifest), 'pipeline.yaml')
    assert.deepEqual({ ...json.plan, file: '' }, { ...fromToml.plan, file: '' })
    assert.deepEqual({ ...yaml.plan, file: '' }, { ...fromToml.plan, file: '' })
  })

  it('warns about unknown keys with a suggestion, and still loads', () => {
    const { warnings } = checkManifest('[brane.api]\nimage = "a.wasm"\nlifecyle = "pooled"\n', 'w.toml')
    assert.deepEqual(warnings.map(formatIssue), [
      'w.toml:3:1: warning: brane.api.lifecyle: unknown key "lifecyle" is ignored (did you mean "lifecycle"?)'
    ])
  })

  it('refuses a manifest that is not a table', () => {
    assert.throws(() => checkManifest('[1, 2]', 'list.json'), (err) => {
      assert.deepEqual(errorsOf(err, 'list.json'), ['list.json:1:1: error: expected a ZGraph manifest, got an array'])
      return true
    })
  })

  it('names a missing file', async () => {
    await assert.rejects(loadManifest(join(INVALID, 'nope.toml')), { name: 'ManifestError', message: /no such file/ })
  })
})

describe('manifest bounds (hostile input)', () => {
  /** The one error `text` gives, as `file:line:col: error: …` */
  const refusal = (text: string, file: string): string => {
    let issues: string[] = []
    assert.throws(() => checkManifest(text, file), (err) => { issues = errorsOf(err, file); return true })
    assert.equal(issues.length, 1, issues.join('\n'))
    return issues[0] as string
  }
  const chain = (n: number, cycle = false): string => [
    ...Array.from({ length: n }, (_, i) => `[brane.b${i}]\nimage = "x.wasm"\n`),
    '[graph]\nedges = [\n',
    ...Array.from({ length: n - 1 }, (_, i) => `  { from = "b${i}", to = "b${i + 1}", on = "t" },\n`),
    cycle ? `  { from = "b${n - 1}", to = "b0", on = "t" },\n` : '',
    ']\n'
  ].join('')

  it('refuses deep nesting, long key paths and long strings with file:line, before parsing', () => {
    assert.equal(refusal(`x = ${'['.repeat(10_000)}${']'.repeat(10_000)}\n`, 'deep.toml'), 'deep.toml:1:37: error: arrays and tables are nested more than 32 deep')
    assert.equal(refusal(`{"brane": ${'['.repeat(10_000)}${']'.repeat(10_000)}}`, 'deep.json'), 'deep.json:1:42: error: arrays and tables are nested more than 32 deep')
    assert.equal(refusal(`a:\n  b: ${'['.repeat(10_000)}\n`, 'deep.yaml'), 'deep.yaml:2:38: error: arrays and tables are nested more than 32 deep')
    // D3: a 200 KB table header of 100 000 dotted parts once ran the parser out of memory
    assert.equal(refusal(`[${Array.from({ length: 100_000 }, () => 'a').join('.')}]\n`, 'dotted.toml'), 'dotted.toml:1:33: error: a key path of more than 16 dotted parts')
    assert.equal(refusal(`[brane.a]\nimage = "${'a'.repeat(300_000)}"\n`, 'long.toml'), 'long.toml:2:9: error: a string of more than 65536 characters (a manifest names files; it does not hold them)')
    assert.match(refusal('# x\n'.repeat(300_000), 'big.toml'), /^big\.toml:1:1: error: the file holds 1200000 bytes, more than a manifest may \(1048576\)$/)
    // what is within the bounds still reads: dotted keys, floats, times, apostrophes in YAML
    checkManifest('[brane.a]\nimage = "x.wasm"\nlimits.cpu_quota = 0.5\n', 'ok.toml')
    checkManifest('brane:\n  a:\n    image: "x.wasm" # it\'s fine\n', 'ok.yaml')
  })

  it('refuses numbers with no sane meaning: cpu_quota = 7.5e9, a deadline of years', () => {
    assert.equal(refusal('[brane.a]\nimage = "x.wasm"\nlimits = { cpu_quota = 7.5e9 }\n', 'cpu.toml'), 'cpu.toml:3:12: error: brane.a.limits.cpu_quota: expected at most 1024 cores, got 7500000000')
    assert.equal(refusal('[brane.a]\nimage = "x.wasm"\nlimits = { deadline = "1000d" }\n', 'late.toml'), 'late.toml:3:12: error: brane.a.limits.deadline: expected at most "24h" (a call that may run longer is a job for a queue), got "1000d"')
  })

  it('refuses a YAML alias bomb at the first alias', () => {
    const levels = Array.from({ length: 8 }, (_, i) => {
      const prev = String.fromCharCode(97 + i)
      return `${String.fromCharCode(98 + i)}: &${String.fromCharCode(98 + i)} [${Array.from({ length: 9 }, () => `*${prev}`).join(',')}]`
    })
    const text = ['a: &a ["x","x","x","x","x","x","x","x","x"]', ...levels, ''].join('\n')
    assert.equal(refusal(text, 'bomb.yaml'), 'bomb.yaml:2:8: error: aliases expand to more than 100 nodes (a "billion laughs" document)')
  })

  it('bounds branes and edges, and checks a long chain of edges without recursion', () => {
    assert.equal(refusal(chain(1001), 'many.toml'), 'many.toml:1:2: error: brane: 1001 branes, more than a manifest may hold (1000): split the application into several manifests')
    assert.equal(checkManifest(chain(1000), 'chain.toml').plan.edges.length, 999)
    assert.equal(refusal(chain(1000, true), 'loop.toml'), 'loop.toml:2003:3: error: graph.edges[0]: the event graph has a cycle: b0 → b1 → b2 → b3 → … → b998 → b999 → b0 (1000 branes) (set [graph] allow_cycles = true if it is intended)')
  })
})

describe('plan', () => {
  it('resolves defaults, grants, limits and edges', async () => {
    const { plan } = await loadManifest(join(SEEDS, 'gaia-fetch.toml'))
    const fetch = plan.branes.find((b) => b.name === 'fetch')
    assert.ok(fetch !== undefined)
    assert.equal(fetch.substrate, 'gaia')
    assert.equal(fetch.profile, 'standard')
    assert.deepEqual(fetch.replicas, { kind: 'fixed', count: 2 })
    assert.deepEqual(fetch.limits, { memMaxBytes: 64 * 2 ** 20, deadlineMs: 8000, bodyMaxBytes: 16 * 2 ** 20, cpuQuota: 0.5 })
    assert.deepEqual(fetch.grants['net.http'], { allowlist: ['*.crossref.org', 'api.crossref.org'] })
    assert.deepEqual(fetch.grants['fs.tmp'], { quotaBytes: 256 * 2 ** 20, lifetime: 'request' })
    assert.deepEqual(fetch.grants.emit, { topics: ['doi.resolved'] })
    assert.deepEqual(fetch.routes, [{ path: '/fetch/', wildcard: true, declared: true }])
    const cache = plan.branes.find((b) => b.name === 'cache')
    assert.equal(cache?.edgesIn.length, 1)
    assert.deepEqual(cache?.routes, [{ path: '/cache/', wildcard: true, declared: false }])
    assert.deepEqual(cache?.limits, { memMaxBytes: 64 * 2 ** 20, deadlineMs: 30_000, bodyMaxBytes: 16 * 2 ** 20, cpuQuota: 1 })
  })

  it('gives frontier and auto replicas from the pipeline seed', async () => {
    const { plan } = await loadManifest(join(SEEDS, 'biome-pipeline.toml'))
    const train = plan.branes.find((b) => b.name === 'train')
    assert.equal(train?.profile, 'frontier')
    assert.equal(train?.gpu, 'passthrough')
    assert.deepEqual(plan.branes.find((b) => b.name === 'transform')?.replicas, { kind: 'auto', min: 1, max: 8 })
    assert.deepEqual(plan.edges.map((e) => `${e.from}>${e.to}:${e.on}`), [
      'ingest>transform:raw.batch', 'transform>train:tensor.shard', 'train>publish:model.checkpoint'
    ])
  })
})

describe('quantities', () => {
  it('parses sizes', () => {
    assert.equal(parseSize('64 MiB'), 64 * 2 ** 20)
    assert.equal(parseSize('1.5GB'), 1.5e9)
    assert.equal(parseSize('512 kib'), 512 * 1024)
    assert.equal(parseSize(4096), 4096)
    assert.equal(parseSize('64 megs'), undefined)
    assert.equal(parseSize(-1), undefined)
  })

  it('parses durations', () => {
    assert.equal(parseDuration('8s'), 8000)
    assert.equal(parseDuration('30s'), 30_000)
    assert.equal(parseDuration('250ms'), 250)
    assert.equal(parseDuration('1m30s'), 90_000)
    assert.equal(parseDuration('1.5h'), 5_400_000)
    assert.equal(parseDuration('8 seconds'), undefined)
    assert.equal(parseDuration(''), undefined)
  })

  it('parses CPU quotas', () => {
    assert.equal(parseCpuQuota(0.5), 0.5)
    assert.equal(parseCpuQuota('50%'), 0.5)
    assert.equal(parseCpuQuota('half'), undefined)
    assert.equal(parseCpuQuota(0), undefined)
  })
})
