/**
 * What this host can run: which VMM works, whether KVM is usable (hardware
 * virtualisation, not a software KVM such as PVM that stock guests cannot use) or TCG
 * is needed, and whether VFIO is there for GPU passthrough.
 */
import { execFile } from 'node:child_process'
import { constants, existsSync } from 'node:fs'
import { access, readdir, readFile } from 'node:fs/promises'
import { delimiter, join } from 'node:path'
import { promisify } from 'node:util'

const exec = promisify(execFile)

export interface FrontierProbe {
  /** whether this node can run frontier (microVM) branes */
  readonly frontier: boolean
  /** the VMM it would use, with its version */
  readonly vmm?: string
  /** `kvm` with hardware virtualisation, `tcg` (software emulation) otherwise */
  readonly accel: 'kvm' | 'tcg'
  /** VFIO is present (a GPU can be passed through) */
  readonly vfio: boolean
  /** why frontier is off, or what limits it */
  readonly reason?: string
}

export interface ProbeInit {
  /** @default process.env.PATH */
  readonly path?: string
}

/** The first executable named `name` on `path` */
export async function which (name: string, path = process.env.PATH ?? ''): Promise<string | undefined> {
  for (const dir of path.split(delimiter)) {
    if (dir === '') {
      continue
    }
    const file = join(dir, name)
    try {
      await access(file, constants.X_OK)
      return file
    } catch {
      // not here
    }
  }
  return undefined
}

/** KVM that stock guests can use: /dev/kvm read-write, vmx or svm in the CPU flags, and not PVM */
export async function kvmUsable (): Promise<{ usable: boolean, why: string }> {
  try {
    await access('/dev/kvm', constants.R_OK | constants.W_OK)
  } catch {
    return { usable: false, why: 'no usable /dev/kvm' }
  }
  if (existsSync('/sys/module/kvm_pvm')) {
    return { usable: false, why: '/dev/kvm is PVM (kvm_pvm, a software KVM) that stock guests cannot use' }
  }
  const cpuinfo = await readFile('/proc/cpuinfo', 'utf8').catch(() => '')
  if (!/^flags\s*:.*\b(vmx|svm)\b/m.test(cpuinfo)) {
    return { usable: false, why: 'the CPU shows no hardware virtualisation (vmx/svm)' }
  }
  return { usable: true, why: 'hardware KVM' }
}

/** VFIO: the container device and at least one IOMMU group */
export async function vfioPresent (): Promise<boolean> {
  if (!existsSync('/dev/vfio/vfio')) {
    return false
  }
  const groups = await readdir('/sys/kernel/iommu_groups').catch(() => [])
  return groups.length > 0
}

async function version (binary: string, args: string[]): Promise<string | undefined> {
  try {
    const { stdout } = await exec(binary, args, { timeout: 5_000 })
    return stdout.split('\n')[0]?.trim()
  } catch {
    return undefined
  }
}

/**
 * Probes the host once. Firecracker is chosen when its binary is on PATH and KVM is
 * usable (it has no software emulation); QEMU otherwise, with KVM or TCG.
 */
export async function probeHost (init: ProbeInit = {}): Promise<FrontierProbe & { driver?: 'qemu' | 'firecracker', binary?: string }> {
  const path = init.path ?? process.env.PATH ?? ''
  const kvm = await kvmUsable()
  const accel = kvm.usable ? 'kvm' : 'tcg'
  const vfio = await vfioPresent()
  const firecracker = await which('firecracker', path)
  if (firecracker !== undefined && kvm.usable) {
    const v = await version(firecracker, ['--version'])
    if (v !== undefined) {
      return { frontier: true, vmm: v, accel, vfio, driver: 'firecracker', binary: firecracker }
    }
  }
  const qemu = await which('qemu-system-x86_64', path)
  const qemuVersion = qemu === undefined ? undefined : await version(qemu, ['--version'])
  if (qemu !== undefined && qemuVersion !== undefined) {
    return {
      frontier: true,
      vmm: qemuVersion,
      accel,
      vfio,
      driver: 'qemu',
      binary: qemu,
      ...(kvm.usable ? {} : { reason: `QEMU runs guests with TCG (software emulation): ${kvm.why}` })
    }
  }
  const noFc = firecracker === undefined ? 'no firecracker on PATH' : `firecracker is on PATH but ${kvm.why}`
  return { frontier: false, accel, vfio, reason: `no usable VMM: ${noFc}, and no qemu-system-x86_64 on PATH (install the Debian package qemu-system-x86)` }
}

let cached: ReturnType<typeof probeHost> | undefined

/**
 * Whether this node can run frontier branes, and with what: what `omega node`
 * advertises (`frontier` only where a VMM works). Probed once per process.
 *
 * @example
 * ```ts
 * const probe = await probeFrontier()
 * // { frontier: true, vmm: 'QEMU emulator version 7.2.22 …', accel: 'tcg', vfio: false, reason: 'QEMU runs guests with TCG …' }
 * ```
 */
export async function probeFrontier (): Promise<FrontierProbe> {
  cached ??= probeHost()
  const { driver: _driver, binary: _binary, ...probe } = await cached
  return probe
}

/** The cached probe with the chosen driver and binary */
export async function probeDriver (): ReturnType<typeof probeHost> {
  cached ??= probeHost()
  return cached
}
