/**
 * A manifest with standard (WASI) branes and a frontier (microVM) brane joined by
 * edges, run by one node: an event crosses from WASM into the microVM and back into
 * WASM. Placement refuses what the host cannot run, and validation stays host-independent.
 */
import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { cp, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { LocalNode } from '../src/daemon/index.ts'
import { exitCodeFor } from '../src/cli/main.ts'
import { silentLogging } from '../src/observe/index.ts'
import { liveVmms, probeFrontier, removeGuest, runDirFor, snapshotRootFor } from '../src/runtime/microvm/index.ts'
import { cli, copyFixtures, ROOT, until } from './helpers.ts'

const probe = await probeFrontier()
const skip = probe.frontier ? false : `no VMM on this host: ${probe.reason ?? ''}`
if (skip !== false) {
  process.stdout.write(`# frontier end-to-end tests skipped: ${skip}\n`)
}

const MANIFEST = `
[brane.web]
image = "http-emit.wasm"
lifecycle = "pooled"
trigger = { http = "/shout/*" }

[brane.upper]
capability = "frontier"
guest = "upper"
lifecycle = "pooled"

[brane.upper.limits]
mem_max = "128 MiB"
deadline = "20s"

[brane.log]
image = "sink.wasm"
lifecycle = "pooled"

[graph]
edges = [
  { from = "web", to = "upper", on = "hits" },
  { from = "upper", to = "log", on = "shouted" },
]
`

const GPU = `
[brane.train]
capability = "frontier"
guest = "upper"
gpu = "passthrough"
`

const HABITAT = `
[brane.desk]
substrate = "habitat"
hosts = ["desk.local"]
capability = "frontier"
guest = "upper"
`

function ourQemus (runDir: string): string {
  try {
    return execFileSync('pgrep', ['-af', runDir], { encoding: 'utf8' }).trim()
  } catch {
    return ''
  }
}

describe('a frontier brane between two WASM branes', { skip }, () => {
  let dir = ''
  let home = ''
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'omega-frontier-e2e-'))
    home = join(dir, 'home')
    await copyFixtures(dir, ['http-emit', 'sink'])
    await writeFile(join(dir, 'omega.toml'), MANIFEST)
    await writeFile(join(dir, 'gpu.toml'), GPU)
    await writeFile(join(dir, 'habitat.toml'), HABITAT)
    const built = await cli(['guest', 'build', 'upper', '--from', join(ROOT, 'examples/frontier/upper')], home)
    assert.equal(built.code, 0, built.err)
    assert.match(built.out, /^upper b3:[0-9a-f]{64} \(kernel /)
  })
  after(async () => {
    await rm(snapshotRootFor(home), { recursive: true, force: true })
    await rm(dir, { recursive: true, force: true })
    await rm(runDirFor(home), { recursive: true, force: true })
    assert.equal(liveVmms(), 0)
    assert.equal(ourQemus(runDirFor(home)), '', 'no QEMU of ours is left running')
  })

  it('carries an event from WASM into the microVM and back into WASM, and serves HTTP from the microVM', async () => {
    const node = await LocalNode.start(join(dir, 'omega.toml'), { home, port: 0, logging: silentLogging(), admin: false })
    try {
      assert.deepEqual(node.branes.map((b) => `${b.name}:${b.state}`).sort(), ['log:running', 'upper:running', 'web:running'])
      const res = await fetch(`${node.url}/shout/hello-vm`)
      assert.equal(res.status, 200)
      const id = (await res.text()).trim()
      assert.match(id, /^hits:b3:[0-9a-f]{32}$/)
      // "log" (WASM) logs the payload it received: upper-cased inside the microVM
      await until(() => node.logBook.query({ brane: 'log' }).some((r) => r.message.includes('/SHOUT/HELLO-VM')), 60_000, 'the event to come back from the microVM')
      // the workload's own output went to the frontier brane's log
      assert.ok(node.logBook.query({ brane: 'upper' }).some((r) => r.message.startsWith(`upper-cased event ${id} from web`)))
      // one trace: web → upper → log
      await until(() => (node.trace(id)?.hops.length ?? 0) === 2, 30_000, 'two hops')
      assert.deepEqual(node.trace(id)?.hops.map((h) => `${h.from}>${h.to}:${h.topic}:${h.outcome}`), ['web>upper:hits:ok', 'upper>log:shouted:ok'])
      // the frontier brane answers HTTP on its default route too
      const direct = await fetch(`${node.url}/upper/direct`, { method: 'POST', body: 'abc' })
      assert.equal(direct.status, 200)
      assert.equal(await direct.text(), 'hello from a microVM: POST /upper/direct ABC\n')
      // a failing workload is a 5xx with a clear record, not a hang
      const failed = await fetch(`${node.url}/upper/fail`)
      assert.ok(failed.status >= 500, `status ${failed.status}`)
    } finally {
      await node.stop()
    }
    assert.equal(ourQemus(runDirFor(home)), '', 'stopping the node stops its microVMs')
  })

  it('a guest that cannot boot fails within seconds with its console; the WASM branes serve and omega ps shows it failed', async () => {
    // a kernel "without its modules": the modules the image carries are not ELF, so none loads
    const modules = join(dir, 'bad-modules')
    await mkdir(join(modules, 'kernel'), { recursive: true })
    await writeFile(join(modules, 'modules.dep'), 'kernel/virtio_mmio.ko:\nkernel/virtio_console.ko:\n')
    await writeFile(join(modules, 'kernel/virtio_mmio.ko'), 'not a module\n')
    await writeFile(join(modules, 'kernel/virtio_console.ko'), 'not a module\n')
    const built = await cli(['guest', 'build', 'broken', '--from', join(ROOT, 'examples/frontier/upper'), '--modules', modules], home)
    assert.equal(built.code, 0, built.err)
    await cp(join(ROOT, 'examples/hello/hello.wasm'), join(dir, 'hello.wasm'))
    await writeFile(join(dir, 'broken.toml'), `
[brane.hello]
image = "hello.wasm"
trigger = { http = "/hi/*" }

[brane.vm]
capability = "frontier"
guest = "broken"
lifecycle = "pooled"
limits = { mem_max = "128 MiB" }
`)
    const node = await LocalNode.start(join(dir, 'broken.toml'), { home, port: 0, logging: silentLogging() })
    try {
      const vm = node.branes.find((b) => b.name === 'vm')
      assert.equal(vm?.state, 'failed')
      // the agent said why on the console and exited; the host saw the VMM stop (no 120 s wait)
      assert.match(vm.reason ?? '', /The guest "broken" stopped while booting \(its VMM exited with code \d+\) before its agent answered; likely cause: the guest kernel's modules did not load/)
      assert.match(vm.reason ?? '', /guest console:[\s\S]*cannot load module virtio_mmio\.ko: Exec format error \(not a module for this kernel/)
      assert.match(vm.reason ?? '', /FATAL: the VMM gave a virtio-serial port but none named omega\.agent appeared/)
      const hello = await fetch(`${node.url}/hi/there`)
      assert.equal(hello.status, 200)
      assert.equal(await hello.text(), 'hello from omega: /hi/there\n')
      const ps = await cli(['ps'], home)
      assert.equal(ps.code, 0, ps.err)
      assert.match(ps.out, /^hello +running /m)
      assert.match(ps.out, /^vm +failed .*The guest "broken" stopped while booting.* \(attempt 1, next \S+\)$/m)
      const json = JSON.parse((await cli(['ps', '--json'], home)).out) as { branes: Array<{ name: string, state: string, reason?: string }> }
      assert.match(json.branes.find((b) => b.name === 'vm')?.reason ?? '', /guest console:/)
    } finally {
      await node.stop()
      await removeGuest(home, 'broken')
    }
    assert.equal(ourQemus(runDirFor(home)), '', 'no QEMU of the failed brane is left running')
  })

  it('refuses gpu = "passthrough" at placement on a host without VFIO, with the reason and exit code 7', async (t) => {
    if (probe.vfio) {
      t.skip('this host has VFIO')
      return
    }
    await assert.rejects(LocalNode.start(join(dir, 'gpu.toml'), { home, port: 0, logging: silentLogging(), admin: false }), (err: Error) => {
      assert.equal(err.name, 'PlacementError')
      assert.match(err.message, /Cannot place brane "train" on this node: gpu = "passthrough" needs VFIO/)
      assert.equal(exitCodeFor(err), 7)
      return true
    })
    // the same manifest is valid: validation does not look at the host
    const valid = await cli(['validate', join(dir, 'gpu.toml')])
    assert.equal(valid.code, 0, valid.err)
  })

  it('validates the seed pipeline (gpu = "passthrough") on any host, and refuses frontier on habitat', async () => {
    const seed = await cli(['validate', join(ROOT, 'examples/seeds/biome-pipeline.toml')])
    assert.equal(seed.code, 0, seed.err)
    const habitat = await cli(['validate', join(dir, 'habitat.toml')])
    assert.equal(habitat.code, 3)
    assert.match(habitat.err + habitat.out, /capability "frontier" is not allowed on substrate "habitat"/)
  })

  it('says what the host can run: omega guest probe', async () => {
    const run = await cli(['guest', 'probe', '--json'])
    assert.equal(run.code, 0, run.err)
    const printed = JSON.parse(run.out) as Record<string, unknown>
    assert.deepEqual(printed, JSON.parse(JSON.stringify(probe)))
    assert.equal(printed.frontier, true)
    assert.match(String(printed.vmm), /QEMU emulator version|Firecracker/)
    const text = await cli(['guest', 'probe'])
    assert.match(text.out, /^frontier: yes\nvmm: {6}\S/)
    const listed = await cli(['guest', 'ls', '--json'], home)
    assert.deepEqual((JSON.parse(listed.out) as Array<{ name: string }>).map((g) => g.name), ['upper'])
  })

  it('names the missing guest image with the command that builds it', async () => {
    await writeFile(join(dir, 'missing.toml'), '[brane.vm]\ncapability = "frontier"\nguest = "nope"\n')
    await assert.rejects(LocalNode.start(join(dir, 'missing.toml'), { home, port: 0, logging: silentLogging(), admin: false }),
      { name: 'GuestImageNotFoundError', message: /No guest image "nope" on this node \(built: upper\): build it with "omega guest build nope --from DIR"/ })
  })
})
