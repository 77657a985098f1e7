/**
 * The driver interface every VMM fits behind (QEMU microvm over QMP, Firecracker over
 * its REST API): boot a guest, snapshot it, restore a snapshot into a VMM started in
 * advance, talk to its agent, stop it.
 */
import type { AbortOptions } from '../../interfaces/index.ts'
import type { AgentConnection } from './agent.ts'

/** What a VM runs and with what resources */
export interface VmConfig {
  /** the kernel (bzImage for QEMU; Firecracker needs an uncompressed vmlinux) */
  readonly kernel: string
  readonly initrd: string
  /** guest RAM in bytes (the brane's mem_max) */
  readonly memBytes: number
  readonly vcpus: number
  /**
   * The file that holds guest RAM (on /dev/shm). A VM booted to make a golden snapshot
   * maps it shared (its RAM is the snapshot's RAM); clones map it privately, copy-on-write.
   */
  readonly ramFile: string
  readonly ramShared: boolean
  /** a private directory for the VM's sockets and console log */
  readonly dir: string
  /** kernel command-line additions */
  readonly cmdline?: string
}

export interface VmExit {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
}

/** One running VMM process */
export interface VmHandle {
  /** the VMM's process id */
  readonly pid: number
  /** settles when the VMM process exits (never rejects) */
  readonly exited: Promise<VmExit>
  /** whether the process has exited */
  readonly dead: boolean
  /** connects to the guest agent (the VM must be running) */
  connectAgent: (options?: AbortOptions) => Promise<AgentConnection>
  /** pauses the guest and writes its device state to `statePath` (RAM stays in the RAM file) */
  snapshot: (statePath: string, options?: AbortOptions) => Promise<void>
  /** loads `statePath` into a VMM started with `prepare` and runs the guest */
  restore: (statePath: string, options?: AbortOptions) => Promise<void>
  /** kills the VMM and removes its directory; idempotent */
  stop: () => Promise<void>
  /** the last lines of the guest console and the VMM's stderr, for error messages */
  diagnostics: () => Promise<string>
}

export interface VmmDriver {
  readonly name: 'qemu' | 'firecracker'
  /**
   * What a snapshot depends on besides the images: the VMM's version and its command
   * line for `config` (paths of per-VM files left out). A snapshot made by another
   * identity is never restored.
   */
  identity: (config: VmConfig, options?: AbortOptions) => Promise<string>
  /** starts a VMM and boots the guest from scratch */
  boot: (config: VmConfig, options?: AbortOptions) => Promise<VmHandle>
  /** starts a VMM that waits for `restore` (QEMU: `-incoming defer`) */
  prepare: (config: VmConfig, options?: AbortOptions) => Promise<VmHandle>
}
