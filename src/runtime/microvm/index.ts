/**
 * runtime/microvm: frontier branes. A guest image (`omega guest build`) boots once in a
 * VMM (QEMU microvm over QMP, or Firecracker over its REST API), is saved as a golden
 * snapshot, and clones restored from it serve HTTP requests and events through a small
 * agent that speaks a framed protocol over virtio-serial (vsock where the VMM has no
 * virtio-serial).
 *
 * @example
 * ```ts
 * import { FrontierBrane, buildGuest, createDriver, probeFrontier } from './runtime/microvm/index.ts'
 *
 * const probe = await probeFrontier() // { frontier: true, vmm: 'QEMU emulator version 7.2.22 …', accel: 'tcg', vfio: false }
 * const image = await buildGuest({ home, name: 'echo', from: 'examples/frontier/echo' })
 * const brane = await FrontierBrane.create({ name: 'echo', image, driver: await createDriver(), memBytes: 128 * 2 ** 20, vcpus: 1,
 *   snapshotRoot: snapshotRootFor(home), runDir: runDirFor(home), signer: nodeKey })
 * await brane.handle({ method: 'GET', pathWithQuery: '/', scheme: 'http', authority: 'x', headers: [], body: new Uint8Array() })
 * await brane.close()
 * ```
 */
import { statfsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { blake3Hex } from '../../identity/index.ts'
import { UnsupportedError } from '../../errors.ts'
import type { VmmDriver } from './driver.ts'
import { FirecrackerDriver } from './firecracker.ts'
import { probeDriver } from './probe.ts'
import { QemuDriver } from './qemu.ts'

export { probeFrontier, probeHost, kvmUsable, vfioPresent, which } from './probe.ts'
export type { FrontierProbe } from './probe.ts'
export { FrontierBrane, EXIT_REJECT, EXIT_RETRY, MIN_GUEST_MEM, parseCgi } from './frontier-brane.ts'
export type { FrontierBraneInit, FrontierStats, FrontierTiming } from './frontier-brane.ts'
export { buildGuest, buildAgent, cpioNewc, defaultKernel, listGuests, removeGuest, resolveGuest } from './image.ts'
export { AGENT_MODULES, agentModules, decompressModule, moduleName, parseModulesDep, resolveModules, type ModuleSet } from './modules.ts'
export type { BuildGuestOptions, GuestImage } from './image.ts'
export { QemuDriver, hostKhz, kernelCmdline } from './qemu.ts'
export type { QemuDriverInit } from './qemu.ts'
export { FirecrackerDriver } from './firecracker.ts'
export type { FirecrackerDriverInit } from './firecracker.ts'
export { AgentConnection, FrameReader, encodeFrame, parseEmits, FRAME_PING, FRAME_PONG, FRAME_RUN, FRAME_RESULT } from './agent.ts'
export type { RunInput, RunResult, GuestEmit } from './agent.ts'
export { ensureGolden, snapshotKey } from './snapshots.ts'
export type { GoldenSnapshot, SnapshotSigner } from './snapshots.ts'
export type { VmConfig, VmHandle, VmmDriver, VmExit } from './driver.ts'
export { liveVmms } from './processes.ts'

/**
 * The driver the probe chose for this host.
 *
 * @throws UnsupportedError when no VMM works here, with the probe's reason
 */
export async function createDriver (): Promise<VmmDriver> {
  const probe = await probeDriver()
  if (!probe.frontier || probe.driver === undefined || probe.binary === undefined) {
    throw new UnsupportedError(`This node cannot run frontier (microVM) branes: ${probe.reason ?? 'no usable VMM'}`)
  }
  return probe.driver === 'firecracker'
    ? new FirecrackerDriver({ binary: probe.binary })
    : new QemuDriver({ binary: probe.binary, accel: probe.accel })
}

/** Where golden snapshots of this Omega home live: a tmpfs, so clones map RAM from memory */
export function snapshotRootFor (home: string, init: { minFreeBytes?: number } = {}): string {
  const name = `omega-${blake3Hex(Buffer.from(home)).slice(0, 16)}`
  try {
    const fs = statfsSync('/dev/shm')
    // containers often get a 64 MiB /dev/shm: guest RAM would not fit, so use the home's disk (the page cache serves it)
    if (fs.bavail * fs.bsize >= (init.minFreeBytes ?? 1024 * 2 ** 20)) {
      return join('/dev/shm', name)
    }
  } catch {
    // no /dev/shm
  }
  return join(home, 'cache', 'snapshots', name)
}

/** Where this process's VMs keep their sockets (short: Unix socket paths are limited to 107 bytes) */
export function runDirFor (home: string): string {
  return join(tmpdir(), `omega-vm-${blake3Hex(Buffer.from(home)).slice(0, 12)}-${process.pid}`)
}
