/**
 * Frontier branes on a real microVM (QEMU microvm; TCG where KVM is not usable): a guest
 * image is built, booted once into a golden snapshot, and clones restored from it serve
 * HTTP and events through the guest agent. One golden snapshot serves every test here.
 */
import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { chmod, mkdtemp, readFile, rm, writeFile, mkdir } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateNodeKey } from '../src/identity/index.ts'
import {
  buildGuest, createDriver, ensureGolden, FrontierBrane, liveVmms, probeFrontier, runDirFor, snapshotRootFor,
  type GuestImage, type VmmDriver
} from '../src/runtime/microvm/index.ts'
import { ROOT, until } from './helpers.ts'

const probe = await probeFrontier()
const skip = probe.frontier ? false : `no VMM on this host: ${probe.reason ?? ''}`
if (skip !== false) {
  process.stdout.write(`# frontier tests skipped: ${skip}\n`)
}

const request = (path: string, body = ''): Parameters<FrontierBrane['handle']>[0] => ({
  method: body === '' ? 'GET' : 'POST', pathWithQuery: path, scheme: 'http', authority: 'frontier.test', headers: [['x-test', '1']], body: Buffer.from(body)
})

/** Our VMM processes still alive, found by our unique run directory in their command lines */
function ourQemus (runDir: string): string {
  try {
    return execFileSync('pgrep', ['-af', runDir], { encoding: 'utf8' }).trim()
  } catch {
    return '' // pgrep exits 1 when nothing matches
  }
}

describe('frontier branes on a real microVM', { skip }, () => {
  let home = ''
  let image: GuestImage
  let driver: VmmDriver
  let brane: FrontierBrane
  const key = generateNodeKey()
  const emitted: Array<{ topic: string, payload: string, traceId?: string, traceparent?: string }> = []
  const logs: string[] = []

  before(async () => {
    home = await mkdtemp(join(tmpdir(), 'omega-frontier-'))
    image = await buildGuest({ home, name: 'upper', from: join(ROOT, 'examples/frontier/upper') })
    driver = await createDriver()
    brane = await FrontierBrane.create({
      name: 'upper',
      image,
      driver,
      memBytes: 128 * 2 ** 20,
      vcpus: 1,
      lifecycle: 'pooled',
      poolSize: 1,
      deadlineMs: 20_000,
      emitTopics: ['shouted'],
      onEmit: async (topic, payload, options) => {
        emitted.push({ topic, payload: Buffer.from(payload).toString(), ...(options.traceId === undefined ? {} : { traceId: options.traceId }), ...(options.traceparent === undefined ? {} : { traceparent: options.traceparent }) })
        return `${topic}:1`
      },
      log: (stream, line) => { logs.push(`${stream}: ${line}`) },
      snapshotRoot: snapshotRootFor(home),
      runDir: runDirFor(home),
      signer: key
    })
  })

  after(async () => {
    await brane?.close()
    await rm(snapshotRootFor(home), { recursive: true, force: true })
    await rm(home, { recursive: true, force: true })
    await rm(runDirFor(home), { recursive: true, force: true })
    assert.equal(liveVmms(), 0, 'every VMM this file started has exited')
    assert.equal(ourQemus(runDirFor(home)), '', 'no QEMU of ours is left running')
  })

  it('builds the same image, byte for byte, from the same inputs', async () => {
    const other = await mkdtemp(join(tmpdir(), 'omega-frontier-b-'))
    try {
      const again = await buildGuest({ home: other, name: 'upper', from: join(ROOT, 'examples/frontier/upper') })
      assert.equal(again.id, image.id)
      assert.deepEqual(await readFile(again.initrd), await readFile(image.initrd))
      // the gzip header holds no name and no time
      const gz = await readFile(image.initrd)
      assert.deepEqual([...gz.subarray(0, 10)], [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3])
    } finally {
      await rm(other, { recursive: true, force: true })
    }
  })

  it('refuses a workload directory without an executable run', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'omega-frontier-bad-'))
    try {
      await writeFile(join(dir, 'run'), '#!/bin/sh\necho hi\n')
      await chmod(join(dir, 'run'), 0o644)
      await assert.rejects(buildGuest({ home: dir, name: 'bad', from: dir }), { name: 'GuestImageError', message: /must exist and be executable/ })
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })

  it('boots a real guest, sends it an HTTP request and gets the reply from the workload', async () => {
    const res = await brane.handle(request('/upper/hello?x=1', 'some words'))
    assert.equal(res.status, 200)
    assert.equal(Buffer.from(res.body).toString(), 'hello from a microVM: POST /upper/hello?x=1 SOME WORDS\n')
    // the guest runs the kernel the image was built with
    assert.deepEqual(res.headers.find(([k]) => k === 'x-guest'), ['x-guest', image.kernelRelease])
    assert.ok(brane.stats.restored >= 1)
  })

  it('reports a failing workload with its stderr', async () => {
    await assert.rejects(brane.handle(request('/upper/fail')), { name: 'GuestError', message: /exited with status 3: failing on purpose/ })
    assert.ok(logs.some((l) => l === 'stderr: failing on purpose'))
  })

  it('delivers an event; what the guest emits carries the event\'s trace id', async () => {
    emitted.length = 0
    await brane.deliver({ id: 'hits:b3:0011', topic: 'hits', payload: Buffer.from('/shout/abc'), source: 'web', traceId: 'hits:b3:0011', attempt: 1 })
    assert.deepEqual(emitted, [{ topic: 'shouted', payload: '/SHOUT/ABC', traceId: 'hits:b3:0011' }])
    assert.ok(logs.includes('stdout: upper-cased event hits:b3:0011 from web'))
    // the delivery's span (OpenTelemetry export on) is the parent of what it emits
    emitted.length = 0
    const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'
    await brane.deliver({ id: 'hits:b3:0012', topic: 'hits', payload: Buffer.from('/shout/x'), source: 'web', traceId: 'hits:b3:0011', attempt: 1, traceparent })
    assert.deepEqual(emitted, [{ topic: 'shouted', payload: '/SHOUT/X', traceId: 'hits:b3:0011', traceparent }])
  })

  it('kill -9 of the VMM mid-request: the caller gets a clear error and a replacement serves the next request', async () => {
    const before = brane.pids
    assert.equal(before.length, 1)
    const victim = before[0] as number
    const replacedBefore = brane.stats.replaced
    const slow = brane.handle(request('/upper/slow'))
    await until(() => brane.stats.busy === 1, 10_000, 'the slow request to reach the guest')
    // the request is inside the guest (sleep 30): kill the VMM under it
    await new Promise((resolve) => setTimeout(resolve, 200))
    process.kill(victim, 'SIGKILL')
    await assert.rejects(slow, (err: Error) => {
      assert.equal(err.name, 'VmmError')
      assert.match(err.message, /lost its microVM during GET \/upper\/slow/)
      assert.match(err.message, /a replacement is starting/)
      return true
    })
    const res = await brane.handle(request('/upper/after'))
    assert.equal(res.status, 200)
    assert.match(Buffer.from(res.body).toString(), /GET \/upper\/after/)
    assert.ok(brane.stats.replaced > replacedBefore)
    assert.ok(!brane.pids.includes(victim))
    assert.throws(() => process.kill(victim, 0), { code: 'ESRCH' })
  })

  it('stops a guest that runs past the deadline and replaces it', async () => {
    const strict = await FrontierBrane.create({
      name: 'strict',
      image,
      driver,
      memBytes: 128 * 2 ** 20,
      vcpus: 1,
      lifecycle: 'pooled',
      deadlineMs: 1_500,
      snapshotRoot: snapshotRootFor(home),
      runDir: runDirFor(home),
      signer: key
    })
    try {
      // same image and shape: the golden snapshot was reused, not made again
      assert.equal(strict.snapshot.madeInMs, 0)
      assert.equal(strict.snapshot.dir, brane.snapshot.dir)
      const victim = strict.pids[0]
      await assert.rejects(strict.handle(request('/strict/spin')), { name: 'DeadlineExceededError', message: /deadline of 1500 ms/ })
      const res = await strict.handle(request('/strict/ok'))
      assert.equal(res.status, 200)
      assert.ok(!strict.pids.includes(victim as number))
    } finally {
      await strict.close()
    }
  })

  it('ephemeral: every call gets a clone that never served before (and the default 64 MiB mem_max is raised to the 96 MiB minimum)', async () => {
    const eph = await FrontierBrane.create({
      name: 'eph', image, driver, memBytes: 64 * 2 ** 20, vcpus: 1, lifecycle: 'ephemeral', snapshotRoot: snapshotRootFor(home), runDir: runDirFor(home), signer: key
    })
    try {
      assert.notEqual(eph.snapshot.dir, brane.snapshot.dir, 'another memory size is another snapshot')
      const seen = new Set<number>()
      for (let i = 0; i < 3; i++) {
        await until(() => eph.pids.length === 1 && eph.stats.warm === 1, 30_000, 'a warm clone')
        const pid = eph.pids[0] as number
        assert.ok(!seen.has(pid), 'a clone serves one call only')
        seen.add(pid)
        assert.equal((await eph.handle(request(`/eph/${i}`))).status, 200)
      }
      assert.ok(eph.stats.restored >= 3)
    } finally {
      await eph.close()
    }
  })

  it('remakes a golden snapshot whose files no longer match their signed record', async () => {
    const init = { driver, image, memBytes: 128 * 2 ** 20, vcpus: 1, root: snapshotRootFor(home), runDir: runDirFor(home), signer: key }
    const good = await ensureGolden(init)
    assert.equal(good.madeInMs, 0)
    const state = await readFile(good.stateFile)
    state[state.byteLength - 1] = (state[state.byteLength - 1] ?? 0) ^ 0xff
    await writeFile(good.stateFile, state)
    const remade = await ensureGolden(init)
    assert.ok(remade.madeInMs > 0, 'a tampered snapshot is made again')
    // the remade snapshot restores and serves
    await mkdir(runDirFor(home), { recursive: true })
    const fresh = await FrontierBrane.create({
      name: 'fresh', image, driver, memBytes: 128 * 2 ** 20, vcpus: 1, snapshotRoot: snapshotRootFor(home), runDir: runDirFor(home), signer: key
    })
    try {
      assert.equal(fresh.snapshot.madeInMs, 0)
      assert.equal((await fresh.handle(request('/fresh/x'))).status, 200)
    } finally {
      await fresh.close()
    }
  })
})
