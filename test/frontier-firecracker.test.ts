/**
 * The Firecracker driver. With a real `firecracker` on PATH (and hardware KVM) it would
 * boot a guest; no Firecracker binary exists here, so that test is skipped with the
 * reason, and the driver is checked against a stand-in (test/fixtures/fake-firecracker.mjs)
 * that validates its command line and every REST request against Firecracker's API and
 * answers in Firecracker's formats, with a minimal agent behind the vsock socket.
 */
import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateNodeKey } from '../src/identity/index.ts'
import { buildGuest, FirecrackerDriver, FrontierBrane, kvmUsable, liveVmms, which } from '../src/runtime/microvm/index.ts'
import { ROOT } from './helpers.ts'

const real = await which('firecracker')
const kvm = await kvmUsable()
const realSkip = real === undefined ? 'no firecracker binary on PATH' : kvm.usable ? false : `firecracker is on PATH but ${kvm.why}`
const fcKernelSkip = process.env.OMEGA_FC_KERNEL === undefined || process.env.OMEGA_FC_MODULES === undefined
  ? 'set OMEGA_FC_KERNEL (a vmlinux with CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES) and OMEGA_FC_MODULES (its modules directory)'
  : false
if (realSkip !== false || fcKernelSkip !== false) {
  process.stdout.write(`# real Firecracker test skipped: ${realSkip !== false ? realSkip : String(fcKernelSkip)}\n`)
}

describe('the Firecracker driver', () => {
  let dir = ''
  let log = ''
  const kernel = (): string => join(dir, 'vmlinux')
  const initrd = (): string => join(dir, 'initrd')
  const config = (name: string, ramShared: boolean): Parameters<FirecrackerDriver['boot']>[0] =>
    ({ kernel: kernel(), initrd: initrd(), memBytes: 128 * 2 ** 20, vcpus: 1, ramFile: join(dir, 'ram'), ramShared, dir: join(dir, name) })

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'omega-fc-'))
    log = join(dir, 'requests.jsonl')
    await writeFile(kernel(), 'not really a kernel')
    await writeFile(initrd(), 'not really an initramfs')
    process.env.FAKE_FC_LOG = log
  })
  after(async () => {
    delete process.env.FAKE_FC_LOG
    await rm(dir, { recursive: true, force: true })
    assert.equal(liveVmms(), 0)
  })

  it('boots a real guest with Firecracker and serves a request from a restored clone', { skip: realSkip !== false ? realSkip : fcKernelSkip }, async () => {
    // Firecracker loads an uncompressed vmlinux whose kernel finds virtio-mmio devices on
    // its command line (CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES), which Debian's cloud kernel lacks
    const home = join(dir, 'real-home')
    const image = await buildGuest({ home, name: 'upper', from: join(ROOT, 'examples/frontier/upper'), kernel: process.env.OMEGA_FC_KERNEL ?? '', modules: process.env.OMEGA_FC_MODULES ?? '' })
    const brane = await FrontierBrane.create({
      name: 'upper',
      image,
      driver: new FirecrackerDriver({ binary: real ?? 'firecracker' }),
      memBytes: 128 * 2 ** 20,
      vcpus: 1,
      snapshotRoot: join(home, 'snapshots'),
      runDir: join(home, 'run'),
      signer: generateNodeKey()
    })
    try {
      const res = await brane.handle({ method: 'GET', pathWithQuery: '/upper/fc', scheme: 'http', authority: 'fc', headers: [], body: new Uint8Array() })
      assert.equal(res.status, 200)
      assert.match(Buffer.from(res.body).toString(), /hello from a microVM: GET \/upper\/fc/)
    } finally {
      await brane.close()
    }
  })

  it('drives the REST API: configure, start, talk to the agent over vsock, snapshot, and restore into another VMM', async () => {
    const driver = new FirecrackerDriver({ binary: join(ROOT, 'test/fixtures/fake-firecracker.mjs') })
    assert.match(await driver.version(), /^Firecracker v1\.7\.0/)
    const golden = await driver.boot(config('golden', true))
    try {
      const agent = await golden.connectAgent()
      await agent.ready({ signal: AbortSignal.timeout(5_000) })
      const result = await agent.run({ env: { OMEGA_KIND: 'http' }, stdin: Buffer.from('echo me') })
      assert.equal(result.stdout.toString(), 'echo me')
      agent.close()
      await golden.snapshot(join(dir, 'state'))
      assert.ok(existsSync(join(dir, 'state')) && existsSync(join(dir, 'ram')))
    } finally {
      await golden.stop()
    }
    const clone = await driver.prepare(config('clone', false))
    try {
      await clone.restore(join(dir, 'state'))
      const agent = await clone.connectAgent()
      await agent.ready({ signal: AbortSignal.timeout(5_000) })
      agent.close()
    } finally {
      await clone.stop()
    }
    const requests = (await readFile(log, 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as { cwd: string, request: string, body: Record<string, unknown>, error: string | null })
    assert.deepEqual(requests.map((r) => `${r.request}${r.error === null ? '' : ' refused'}`), [
      'PUT /machine-config', 'PUT /boot-source', 'PUT /vsock', 'PUT /actions', 'PATCH /vm', 'PUT /snapshot/create', 'PUT /snapshot/load'
    ])
    assert.deepEqual(requests[0]?.body, { vcpu_count: 1, mem_size_mib: 128, smt: false })
    assert.match(String(requests[1]?.body.boot_args), /tsc_early_khz=\d+ /)
    // each VMM runs in its own directory: the snapshot's relative vsock path is per clone
    assert.equal(requests[2]?.body.uds_path, 'vsock.sock')
    assert.deepEqual([requests[2]?.cwd, requests[6]?.cwd], [join(dir, 'golden'), join(dir, 'clone')])
    assert.deepEqual(requests[6]?.body, { snapshot_path: join(dir, 'state'), mem_backend: { backend_type: 'File', backend_path: join(dir, 'ram') }, resume_vm: true })
  })

  it('turns a refused request into a VmmError carrying Firecracker\'s fault message', async () => {
    const driver = new FirecrackerDriver({ binary: join(ROOT, 'test/fixtures/fake-firecracker.mjs') })
    const vm = await driver.prepare(config('broken', false))
    try {
      await assert.rejects(vm.restore(join(dir, 'no-such-state')), { name: 'VmmError', message: /Firecracker refused PUT \/snapshot\/load \(HTTP 400\): Cannot open snapshot file/ })
    } finally {
      await vm.stop()
    }
  })
})
