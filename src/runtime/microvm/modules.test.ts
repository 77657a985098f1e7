import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { gzipSync } from 'node:zlib'
import { agentModules, moduleName, parseModulesDep, resolveModules } from './modules.ts'

/** Debian 6.1.0-57's modules.dep for what the agent needs: virtio.ko listed before virtio_ring.ko, which it needs */
const DEP = `kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/virtio/virtio_mmio.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/char/virtio_console.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/net/vmw_vsock/vsock.ko:
kernel/net/vmw_vsock/vmw_vsock_virtio_transport_common.ko: kernel/net/vmw_vsock/vsock.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/net/vmw_vsock/vmw_vsock_virtio_transport.ko: kernel/net/vmw_vsock/vmw_vsock_virtio_transport_common.ko kernel/net/vmw_vsock/vsock.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/fs/fuse/virtiofs.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko kernel/fs/fuse/fuse.ko
kernel/fs/fuse/fuse.ko:
`

const WANTED = { required: ['virtio_mmio', 'virtio_console'], optional: ['vmw_vsock_virtio_transport'] }

/** Every module after everything it depends on */
function assertDependencyOrder (order: readonly string[], deps: ReadonlyMap<string, readonly string[]>): void {
  order.forEach((path, i) => {
    for (const dep of deps.get(path) ?? []) {
      assert.ok(order.indexOf(dep) >= 0 && order.indexOf(dep) < i, `${dep} is loaded before ${path}`)
    }
  })
}

describe('guest kernel modules', () => {
  it('resolves what the agent needs with its dependencies, dependencies first, each once', () => {
    const deps = parseModulesDep(DEP)
    const { order, absent, builtin } = resolveModules(deps, WANTED)
    assert.deepEqual(order.map(moduleName), [
      'virtio_ring', 'virtio', 'virtio_mmio', 'virtio_console', 'vsock', 'vmw_vsock_virtio_transport_common', 'vmw_vsock_virtio_transport'
    ])
    assertDependencyOrder(order, deps)
    assert.deepEqual([absent, builtin], [[], []])
    assert.ok(!order.some((p) => p.includes('fuse')), 'nothing the agent does not need')
  })

  it('skips built-in modules, tolerates a kernel without vsock, refuses one without virtio-serial', () => {
    // built in: no file, so no line of its own in modules.dep
    const deps = parseModulesDep(DEP.split('\n').filter((l) => !l.includes('vsock') && !l.startsWith('kernel/drivers/virtio/virtio_mmio')).join('\n'))
    const set = resolveModules(deps, WANTED, new Set(['virtio_mmio']))
    assert.deepEqual(set.order.map(moduleName), ['virtio_ring', 'virtio', 'virtio_console'])
    assert.deepEqual(set.builtin, ['virtio_mmio'])
    assert.deepEqual(set.absent, ['vmw_vsock_virtio_transport'])
    const noConsole = parseModulesDep(DEP.split('\n').filter((l) => !l.startsWith('kernel/drivers/char/virtio_console')).join('\n'))
    assert.throws(() => resolveModules(noConsole, WANTED), { name: 'GuestImageError', message: /no module "virtio_console"/ })
    // a dependency without an entry of its own, and a cycle, end with an error or once
    assert.throws(() => resolveModules(parseModulesDep('a/virtio_mmio.ko: a/gone.ko\na/virtio_console.ko:\n'), WANTED), { message: /names a\/gone\.ko as a dependency but has no entry/ })
    const cycle = resolveModules(parseModulesDep('x/virtio_mmio.ko: x/virtio_console.ko\nx/virtio_console.ko: x/virtio_mmio.ko\n'), WANTED)
    assert.deepEqual(cycle.order, ['x/virtio_console.ko', 'x/virtio_mmio.ko'])
  })

  it('decompresses .ko.xz, .ko.zst and .ko.gz modules and names them .ko, in dependency order', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'omega-modules-'))
    try {
      // as a kernel that compresses its modules lists them, one compression per module here
      const ext: Record<string, string> = { virtio: 'xz', virtio_ring: 'zst', virtio_mmio: 'gz', virtio_console: 'xz' }
      const path = (p: string): string => { const n = moduleName(p); return ext[n] === undefined ? p : `${p}.${ext[n]}` }
      const lines = DEP.split('\n').filter((l) => l !== '' && !l.includes('vsock') && !l.includes('fuse'))
        .map((l) => l.split(/(:?\s+|:$)/).map((w) => w.endsWith('.ko') ? path(w) : w).join(''))
      await writeFile(join(dir, 'modules.dep'), lines.join('\n') + '\n')
      const elf = (name: string): Buffer => Buffer.concat([Buffer.from([0x7f, 0x45, 0x4c, 0x46]), Buffer.from(`module ${name} `.repeat(100))])
      for (const line of lines) {
        const file = line.slice(0, line.indexOf(':'))
        const full = join(dir, file)
        await mkdir(dirname(full), { recursive: true })
        const plain = elf(moduleName(file))
        const packed = file.endsWith('.gz')
          ? gzipSync(plain)
          : execFileSync(file.endsWith('.xz') ? 'xz' : 'zstd', ['-c', '-q'], { input: plain })
        assert.notDeepEqual(packed.subarray(0, 4), plain.subarray(0, 4))
        await writeFile(full, packed)
      }
      const modules = await agentModules(dir)
      assert.deepEqual(modules.map((m) => m.name), ['virtio_ring.ko', 'virtio.ko', 'virtio_mmio.ko', 'virtio_console.ko'])
      for (const m of modules) {
        assert.deepEqual(m.data, elf(m.name.replace(/\.ko$/, '')), `${m.name} is the decompressed ELF`)
      }
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })

  it('says what is missing when the modules directory has no modules.dep', async () => {
    await assert.rejects(agentModules('/nonexistent-omega-modules'), { name: 'GuestImageError', message: /modules\.dep.*kernel's modules must be installed/ })
  })
})
