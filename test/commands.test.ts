/**
 * wasi:cli/run commands (the fixture src/runtime/wasm/fixtures/echo-command.wat, built
 * from source by `npm run build`): as an event brane between real branes through the
 * node's queue, and run once with `omega run`, as a process of its own.
 */
import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { LocalNode } from '../src/daemon/index.ts'
import { silentLogging } from '../src/observe/index.ts'
import { cli, copyFixtures, ROOT, until } from './helpers.ts'

const PIPELINE = `
[brane.web]
image = "http-emit.wasm"
trigger = { http = "/e/*" }

[brane.cmd]
image = "echo-command.wasm"
stdout = "emit"

[brane.cmd.capability]
"fs.tmp" = {}
env = { GREETING = "hi" }

[brane.end]
image = "sink.wasm"
lifecycle = "pooled"

[graph]
edges = [
  { from = "web", to = "cmd", on = "hits" },
  { from = "cmd", to = "end", on = "out" },
]
`

describe('a wasi:cli/run command as an event brane', () => {
  let dir = ''
  let node: LocalNode
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'omega-commands-'))
    await copyFixtures(dir, ['http-emit', 'echo-command', 'sink'])
    await writeFile(join(dir, 'omega.toml'), PIPELINE)
    node = await LocalNode.start(join(dir, 'omega.toml'), { home: join(dir, 'home'), port: 0, logging: silentLogging(), admin: false })
  })
  after(async () => {
    await node.stop()
    await rm(dir, { recursive: true, force: true })
  })

  const lines = (brane: string): string[] => node.logBook.query({ brane, limit: 10_000 }).map((r) => r.message)

  it('links with validate --link as a command, and is refused with HTTP routes by both validate --link and up', async () => {
    const linked = await cli(['validate', '--link', join(dir, 'omega.toml')], join(dir, 'home'))
    assert.equal(linked.code, 0, linked.err)
    // alone, so that up has nothing else to serve (a brane failing beside others is retried)
    await writeFile(join(dir, 'routed.toml'), '[brane.cmd]\nimage = "echo-command.wasm"\ntrigger = { http = "/cmd" }\n\n[brane.cmd.capability]\n"fs.tmp" = {}\n')
    const refused = await cli(['validate', '--link', join(dir, 'routed.toml')], join(dir, 'home'))
    assert.equal(refused.code, 3)
    assert.match(refused.err, /brane\.cmd\.image: Brane "cmd": component .*echo-command\.wasm is a wasi:cli\/run command .*not a server: it cannot answer the HTTP routed to it/)
    await assert.rejects(LocalNode.start(join(dir, 'routed.toml'), { home: join(dir, 'home-routed'), port: 0, logging: silentLogging(), admin: false }),
      { name: 'ComponentLoadError', message: /is a wasi:cli\/run command .*not a server/ })
  })

  it('sees the payload on stdin and OMEGA_* in its environment; what it writes to stdout is emitted to the next brane', async () => {
    const id = await node.emit('web', 'hits', Buffer.from('out 5\nhello'))
    await until(() => lines('end').includes('hello'), 30_000, 'the sink to log the emitted payload')
    const cmd = lines('cmd')
    for (const expected of ['OMEGA_KIND=event', 'OMEGA_BRANE=cmd', 'OMEGA_TOPIC=hits', `OMEGA_EVENT_ID=${id}`, 'OMEGA_SOURCE=web', `OMEGA_TRACE_ID=${id}`, 'OMEGA_ATTEMPT=1', 'GREETING=hi', 'arg cmd']) {
      assert.ok(cmd.includes(expected), `the command logged ${expected}: ${cmd.join(' | ')}`)
    }
    // on the event's trace: web → cmd, then cmd → end
    await until(() => (node.trace(id)?.hops.length ?? 0) === 2, 30_000, 'two hops')
    assert.deepEqual(node.trace(id)?.hops.map((h) => `${h.from}→${h.to}:${h.topic}`), ['web→cmd:hits', 'cmd→end:out'])
  })

  it('exit 65 dead-letters the event at once, exit 75 is retried, and a topic no edge carries is refused', async () => {
    const rejected = await node.emit('web', 'hits', Buffer.from('exit 65'))
    const retried = await node.emit('web', 'hits', Buffer.from('exit 75'))
    const denied = await node.emit('web', 'hits', Buffer.from('secret 2\nhi'))
    await until(() => node.deadLetters().filter((d) => d.to === 'cmd').length === 3, 120_000, 'three dead letters')
    const hops = (id: string): Array<{ attempt: number, outcome: string }> => (node.trace(id)?.hops ?? []).filter((h) => h.to === 'cmd')
    assert.deepEqual(hops(rejected).map((h) => h.attempt), [1])
    assert.match(hops(rejected)[0]?.outcome ?? '', /^RejectedEventError: Brane "cmd" rejected event "hits:b3:[0-9a-f]+": its command exited with status 65$/)
    assert.deepEqual(hops(retried).map((h) => h.attempt), [1, 2, 3, 4, 5])
    for (const hop of hops(retried)) {
      assert.match(hop.outcome, /^RetryableEventError: Brane "cmd": its command exited with status 75 on event .* \(retry asked\)$/)
    }
    assert.ok(lines('cmd').includes('OMEGA_ATTEMPT=5'))
    for (const hop of hops(denied)) {
      assert.match(hop.outcome, /^CapabilityDeniedError: Brane "cmd" emitted on topic "secret", which no edge in \[graph\]\.edges carries from it \(it may emit: out\)$/)
    }
    // nothing of a failed run reached the sink
    assert.ok(!lines('end').includes('hi'))
  })
})

interface Proc { code: number | null, out: string, err: string }

/** `omega run ARGS` as its own process, with `stdin` on its standard input */
async function omegaRun (args: string[], stdin: string, cwd: string, env: Record<string, string> = {}): Promise<Proc> {
  return new Promise<Proc>((resolve, reject) => {
    const child = spawn(process.execPath, [join(ROOT, 'bin/omega.js'), 'run', ...args], { cwd, env: { ...process.env, OMEGA_HOME: join(cwd, 'home'), ...env }, stdio: ['pipe', 'pipe', 'pipe'] })
    let out = ''
    let err = ''
    child.stdout.on('data', (chunk: Buffer) => { out += chunk.toString() })
    child.stderr.on('data', (chunk: Buffer) => { err += chunk.toString() })
    child.once('error', reject)
    child.once('close', (code) => { resolve({ code, out, err }) })
    child.stdin.end(stdin)
  })
}

describe('omega run', () => {
  let dir = ''
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'omega-run-'))
    await copyFixtures(dir, ['echo-command'])
    await mkdir(join(dir, 'data'))
    await writeFile(join(dir, 'data', 'notes.txt'), 'the file\'s contents\n')
  })
  after(async () => { await rm(dir, { recursive: true, force: true }) })

  it('runs a command once with its arguments, the process\'s stdin and stdout, --env and --dir', async () => {
    const run = await omegaRun(['echo-command.wasm', '--env', 'FROM_HOST', '--env', 'MODE=fast', '--dir', 'data::/data', '--', 'notes.txt', 'more'], 'from stdin\n', dir, { FROM_HOST: 'copied', NOT_GRANTED: 'x' })
    assert.equal(run.code, 0, run.err)
    assert.equal(run.out, 'from stdin\nthe file\'s contents\n')
    const err = run.err.split('\n')
    assert.deepEqual(err.filter((line) => line.includes('=')).sort(), ['FROM_HOST=copied', 'MODE=fast'])
    assert.deepEqual(err.filter((line) => line.startsWith('arg ')), ['arg echo-command.wasm', 'arg notes.txt', 'arg more'])
  })

  it('exits with the command\'s exit code', async () => {
    const run = await omegaRun(['echo-command.wasm', '--dir', 'data'], 'exit 42', dir)
    assert.equal(run.code, 42, run.err)
    assert.equal(run.out, 'exit 42')
    // a file it cannot open: the fixture's own exit code 4
    const missing = await omegaRun(['echo-command.wasm', '--dir', 'data', '--', 'nope.txt'], '', dir)
    assert.equal(missing.code, 4, missing.err)
  })

  it('refuses a missing grant before running, naming the flag, with the link check\'s exit code (5)', async () => {
    const run = await omegaRun(['echo-command.wasm'], 'exit 0', dir)
    assert.equal(run.code, 5)
    assert.equal(run.out, '')
    assert.match(run.err, /^omega: Cannot link command "echo-command\.wasm": component imports "wasi:filesystem\/preopens@0\.2\.12", which needs --dir HOST\[::GUEST\]/)
    assert.doesNotMatch(run.err, /^arg /m)
    // in-process too (no process stdio is needed to refuse)
    const inProcess = await cli(['run', join(dir, 'echo-command.wasm')], join(dir, 'home'))
    assert.equal(inProcess.code, 5)
  })

  it('refuses a component that is not a command, and bad flags as usage errors', async () => {
    await copyFixtures(dir, ['sink'])
    const notCommand = await omegaRun(['sink.wasm'], '', dir)
    assert.equal(notCommand.code, 6)
    assert.match(notCommand.err, /does not export wasi:cli\/run .* so it is not a command/)
    const unset = await omegaRun(['echo-command.wasm', '--dir', 'data', '--env', 'SURELY_UNSET_HERE'], '', dir)
    assert.equal(unset.code, 2)
    assert.match(unset.err, /SURELY_UNSET_HERE is not set here/)
  })
})
