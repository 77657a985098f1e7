/**
 * The seeds' operations views: `ω` as the command's other name, `omega gaia logs |
 * profile | snapshot`, log lines per instance (`hello.001 REQ …`) with the requests a
 * guest makes, and the profile table by percentile.
 */
import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { cp, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { LocalNode } from '../src/daemon/index.ts'
import { silentLogging } from '../src/observe/index.ts'
import { ROOT, cli, get } from './helpers.ts'

describe('operations views', () => {
  let dir = ''
  let home = ''
  let node: LocalNode | undefined
  let target: Server | undefined
  let port = 0

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'omega-ops-'))
    home = join(dir, 'home')
    await cp(join(ROOT, 'examples/hello/hello.wasm'), join(dir, 'hello.wasm'))
    await cp(join(ROOT, 'build/fixtures/probe.wasm'), join(dir, 'probe.wasm'))
    target = createServer((_req, res) => { res.end('allowed') })
    await new Promise<void>((resolve) => { target?.listen(0, '127.0.0.1', resolve) })
    port = (target.address() as AddressInfo).port
    await writeFile(join(dir, 'omega.toml'), `
[brane.hello]
image = "hello.wasm"
lifecycle = "pooled"
trigger = { http = "/hello" }

[brane.probe]
image = "probe.wasm"
trigger = { http = { route = "/...", host = "probe.test" } }

[brane.probe.capability]
"net.http" = { allowlist = ["127.0.0.1:${port}"] }
"fs.tmp" = { quota = "64 KiB", lifetime = "request" }
clock = true
random = true
env = {}
`)
    node = await LocalNode.start(join(dir, 'omega.toml'), { home, port: 0, logging: silentLogging() })
  })

  after(async () => {
    await node?.stop()
    await new Promise<void>((resolve) => { target === undefined ? resolve() : target.close(() => { resolve() }) })
    await rm(dir, { recursive: true, force: true })
  })

  it('answers to ω as to omega', async () => {
    const link = join(dir, 'ω')
    await symlink(join(ROOT, 'bin/omega.js'), link)
    const run = spawnSync(process.execPath, [link, '--help'], { encoding: 'utf8', timeout: 30_000 })
    assert.equal(run.status, 0, run.stderr)
    assert.match(run.stdout, /^Usage: ω \[options\] \[command\]/)
    assert.match(run.stdout, /^ {2}gaia +The operator pool's views/m)
    const wrong = spawnSync(process.execPath, [link, 'gaia', 'logs', '--since', 'soon', '--home', home], { encoding: 'utf8', timeout: 30_000 })
    assert.equal(wrong.status, 2)
    assert.match(wrong.stderr, /^ω: Invalid --since "soon"/)
  })

  it('gaia logs: a line per request, named by instance, and the requests the guest made', async () => {
    const base = node?.url ?? ''
    for (let i = 0; i < 3; i++) {
      assert.equal((await get(base, `/hello?n=${i}`)).status, 200)
    }
    const reply = await get(base, `/http?authority=${encodeURIComponent(`127.0.0.1:${port}`)}&path=/ok`, 'probe.test')
    assert.deepEqual(JSON.parse(reply.body), { status: 200, body: 'allowed' })
    const logs = await cli(['gaia', 'logs', '--brane', 'probe'], home)
    assert.equal(logs.code, 0, logs.err)
    const outgoing = new RegExp(`^\\d\\d:\\d\\d:\\d\\d\\.\\d{3} (probe\\.\\d{3}) REQ GET 127\\.0\\.0\\.1:${port}/ok bytes=7 dur=\\d+ms status=200$`, 'm').exec(logs.out)
    assert.ok(outgoing !== null, logs.out)
    // the probe's own request, by the same instance, after the one it made
    const own = /^\d\d:\d\d:\d\d\.\d{3} (probe\.\d{3}) REQ GET \/http\?\S+ RES 200 \d+B cpu=\S+ END /m.exec(logs.out)
    assert.equal(own?.[1], outgoing[1], logs.out)
    assert.ok(logs.out.indexOf(outgoing[0]) < logs.out.indexOf(own?.[0] ?? ''))
    // the same lines as `omega logs`; a pooled brane's requests share its instance
    assert.equal((await cli(['logs', '--brane', 'probe'], home)).out, logs.out)
    const hello = (await cli(['gaia', 'logs', '--brane', 'hello'], home)).out.split('\n').filter((l) => l.includes(' REQ GET /hello'))
    assert.equal(hello.length, 3, hello.join('\n'))
    assert.ok(hello.every((l) => / hello\.\d{3} REQ GET \/hello\?n=\d RES 200 /.test(l)), hello.join('\n'))
  })

  it('gaia profile --p50 --p99: the cold/exec/cpu/mem table by percentile, and the rate', async () => {
    const shown = await cli(['gaia', 'profile', '--brane', 'hello', '--p50', '--p99'], home)
    assert.equal(shown.code, 0, shown.err)
    const lines = shown.out.trimEnd().split('\n')
    assert.match(lines[0] ?? '', /^\s+COLD\s+EXEC\s+CPU\s+MEM$/)
    assert.match(shown.out, /^P50\s+\S+\s+\d+\.\d+ms\s+\d+\.\d+ms\s+\d+ [KM]iB$/m)
    assert.match(shown.out, /^P99\s+\S+\s+\d+\.\d+ms\s+\d+\.\d+ms\s+\d+ [KM]iB$/m)
    assert.match(shown.out, /^RPS \d+(\.\d+)?( K)? \(last 10s; \d+ requests, 0 errors\)$/m)
    const p99 = await cli(['gaia', 'profile', '--brane', 'hello', '--p99'], home)
    assert.doesNotMatch(p99.out, /^P50/m)
    assert.match(p99.out, /^P99/m)
  })

  it('gaia snapshot is omega snapshot: the same refusal for a brane that is not pinned', async () => {
    const alias = await cli(['gaia', 'snapshot', 'hello', '-o', join(dir, 'a.json')], home)
    const plain = await cli(['snapshot', 'hello', '-o', join(dir, 'b.json')], home)
    assert.equal(alias.code, 13)
    assert.deepEqual(alias, plain)
  })
})
