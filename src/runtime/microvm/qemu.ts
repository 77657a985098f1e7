/**
 * The QEMU `microvm` driver (Debian's qemu-system-x86), controlled over QMP.
 *
 * Guest RAM lives in a file (memory-backend-file). Snapshots use migration with the
 * `x-ignore-shared` capability: the golden VM maps the RAM file shared, so only device
 * state goes into the state file; a clone maps the same RAM file privately (copy-on-
 * write) and loads the device state into a QEMU started in advance with `-incoming defer`.
 * The agent talks over virtio-serial (a `virtserialport` named `omega.agent`) whose
 * host end is a Unix socket.
 */
import { execFile, type ChildProcess } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdir, readFile, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import type { AbortOptions } from '../../interfaces/index.ts'
import { VmmError } from '../../errors.ts'
import { AgentConnection } from './agent.ts'
import type { VmConfig, VmExit, VmHandle, VmmDriver } from './driver.ts'
import { killAndWait, spawnVmm } from './processes.ts'
import { QmpClient } from './qmp.ts'

const exec = promisify(execFile)

export interface QemuDriverInit {
  /** @default 'qemu-system-x86_64' */
  binary?: string
  /** `kvm` only where hardware virtualisation works (see probe.ts). @default 'tcg' */
  accel?: 'kvm' | 'tcg'
  /** how long QMP may take to come up. @default 10_000 */
  startTimeoutMs?: number
}

/** The host's TSC frequency in kHz, for the guest's command line (TSC calibration hangs ~40% of TCG boots otherwise) */
export async function hostKhz (): Promise<number> {
  try {
    const khz = Number((await readFile('/sys/devices/system/cpu/cpu0/tsc_freq_khz', 'utf8')).trim())
    if (Number.isFinite(khz) && khz > 0) {
      return khz
    }
  } catch {
    // most kernels do not expose it: /proc/cpuinfo has the frequency in MHz
  }
  const cpuinfo = await readFile('/proc/cpuinfo', 'utf8')
  const mhz = /^cpu MHz\s*:\s*([\d.]+)/m.exec(cpuinfo)?.[1]
  return mhz === undefined ? 2_000_000 : Math.round(Number(mhz) * 1000)
}

/**
 * The guest kernel's command line: quiet, PID 1 is the agent (told which transport the
 * VMM gives it), TSC calibration skipped; a panic (the agent exiting) stops the VM
 */
export function kernelCmdline (khz: number, transport: 'virtio-serial' | 'vsock', extra?: string): string {
  // lpj at HZ=250 (Debian's): loops per jiffy ~ khz * 1000 / 250
  return [
    'console=ttyS0', 'quiet', 'loglevel=3', 'panic=-1', 'rdinit=/init', `omega.transport=${transport}`,
    `tsc_early_khz=${khz}`, 'tsc=reliable', `lpj=${khz * 4}`, 'no_timer_check', 'random.trust_cpu=on',
    ...(extra === undefined || extra === '' ? [] : [extra])
  ].join(' ')
}

/** A console line that says the guest kernel stopped (a panic, or no root to mount) */
export const KERNEL_STOPPED = /Kernel panic|VFS: Unable to mount/

/**
 * What of a guest console explains a failure: every line the agent wrote (the last 20),
 * the kernel's panic line, and the last 2 lines, in console order without repeats
 */
export function consoleTail (text: string): string {
  const lines = text.replaceAll('\r', '').trim().split('\n')
  const agent = lines.flatMap((line, i) => line.includes('omega-agent:') ? [i] : []).slice(-20)
  const panic = lines.flatMap((line, i) => KERNEL_STOPPED.test(line) ? [i] : []).slice(0, 1)
  const last = lines.map((_, i) => i).slice(-2)
  return [...new Set([...agent, ...panic, ...last])].sort((a, b) => a - b).map((i) => lines[i]).join('\n')
}

export class QemuDriver implements VmmDriver {
  readonly name = 'qemu' as const
  readonly #binary: string
  readonly #accel: 'kvm' | 'tcg'
  readonly #startTimeoutMs: number
  #version: string | undefined
  #khz: number | undefined

  constructor (init: QemuDriverInit = {}) {
    this.#binary = init.binary ?? 'qemu-system-x86_64'
    this.#accel = init.accel ?? 'tcg'
    this.#startTimeoutMs = init.startTimeoutMs ?? 10_000
  }

  get accel (): 'kvm' | 'tcg' {
    return this.#accel
  }

  async version (options: AbortOptions = {}): Promise<string> {
    if (this.#version === undefined) {
      try {
        const { stdout } = await exec(this.#binary, ['--version'], options.signal === undefined ? {} : { signal: options.signal })
        this.#version = stdout.split('\n')[0]?.trim() ?? 'unknown'
      } catch (err) {
        throw new VmmError(`Cannot run ${this.#binary} (install the Debian package qemu-system-x86)`, { cause: err })
      }
    }
    return this.#version
  }

  async #args (config: VmConfig, paths: { qmp: string, agent: string, console: string } | undefined): Promise<string[]> {
    this.#khz ??= await hostKhz()
    const mem = `${Math.ceil(config.memBytes / 2 ** 20)}M`
    const p = paths ?? { qmp: 'QMP', agent: 'AGENT', console: 'CONSOLE' }
    return [
      '-nodefaults', '-no-user-config', '-display', 'none', '-no-reboot',
      '-M', 'microvm,acpi=on,memory-backend=mem',
      ...(this.#accel === 'kvm' ? ['-accel', 'kvm', '-cpu', 'host'] : ['-accel', 'tcg,tb-size=64', '-cpu', 'max']),
      '-smp', String(config.vcpus), '-m', mem,
      '-object', `memory-backend-file,id=mem,size=${mem},mem-path=${paths === undefined ? 'RAM' : config.ramFile},share=${config.ramShared ? 'on' : 'off'}`,
      '-kernel', config.kernel, '-initrd', config.initrd,
      '-append', kernelCmdline(this.#khz, 'virtio-serial', config.cmdline),
      '-serial', `file:${p.console}`,
      '-device', 'virtio-serial-device,max_ports=2',
      '-chardev', `socket,id=agent,path=${p.agent},server=on,wait=off`,
      '-device', 'virtserialport,chardev=agent,name=omega.agent',
      '-qmp', `unix:${p.qmp},server=on,wait=off`
    ]
  }

  async identity (config: VmConfig, options: AbortOptions = {}): Promise<string> {
    // share=on|off differs between the golden VM and its clones by design: leave it out
    const args = (await this.#args({ ...config, ramShared: true }, undefined)).join(' ')
    return `${await this.version(options)}\n${this.#accel}\n${args}`
  }

  async boot (config: VmConfig, options: AbortOptions = {}): Promise<VmHandle> {
    return this.#launch(config, false, options)
  }

  async prepare (config: VmConfig, options: AbortOptions = {}): Promise<VmHandle> {
    return this.#launch(config, true, options)
  }

  async #launch (config: VmConfig, incoming: boolean, options: AbortOptions): Promise<VmHandle> {
    options.signal?.throwIfAborted()
    await mkdir(config.dir, { recursive: true })
    const paths = { qmp: join(config.dir, 'qmp.sock'), agent: join(config.dir, 'agent.sock'), console: join(config.dir, 'console.log') }
    const args = [...await this.#args(config, paths), ...(incoming ? ['-incoming', 'defer'] : [])]
    const child = spawnVmm(this.#binary, args, { stdio: ['ignore', 'ignore', 'pipe'] })
    let stderr = ''
    child.stderr?.setEncoding('utf8')
    child.stderr?.on('data', (s: string) => { stderr = (stderr + s).slice(-4096) })
    const vm = new QemuVm(child, config, paths, () => stderr)
    try {
      if (child.pid === undefined) {
        await new Promise((resolve) => { child.once('error', resolve); child.once('exit', resolve) })
        throw new VmmError(`Cannot start ${this.#binary} (install the Debian package qemu-system-x86)`)
      }
      await vm.connectQmp(this.#startTimeoutMs, options)
      return vm
    } catch (err) {
      const diag = await vm.diagnostics()
      await vm.stop()
      if (err instanceof VmmError) {
        throw new VmmError(`${err.message}${diag === '' ? '' : `\n${diag}`}`, { cause: err })
      }
      throw err
    }
  }
}

class QemuVm implements VmHandle {
  readonly pid: number
  readonly exited: Promise<VmExit>
  readonly #child: ChildProcess
  readonly #config: VmConfig
  readonly #paths: { qmp: string, agent: string, console: string }
  readonly #stderr: () => string
  #qmp: QmpClient | undefined
  #dead = false
  #stopped = false

  constructor (child: ChildProcess, config: VmConfig, paths: { qmp: string, agent: string, console: string }, stderr: () => string) {
    this.#child = child
    this.pid = child.pid ?? -1
    this.#config = config
    this.#paths = paths
    this.#stderr = stderr
    this.exited = new Promise<VmExit>((resolve) => {
      child.once('exit', (code, signal) => { this.#dead = true; resolve({ code, signal }) })
      child.once('error', () => { this.#dead = true; resolve({ code: null, signal: null }) })
    })
  }

  get dead (): boolean {
    return this.#dead
  }

  async connectQmp (timeoutMs: number, options: AbortOptions): Promise<void> {
    const deadline = Date.now() + timeoutMs
    let last: unknown
    while (Date.now() < deadline) {
      options.signal?.throwIfAborted()
      if (this.#dead) {
        throw new VmmError(`QEMU exited while starting (${this.#stderr().trim().split('\n').slice(-3).join(' ') || 'no message'})`)
      }
      if (existsSync(this.#paths.qmp)) {
        try {
          this.#qmp = await QmpClient.connect(this.#paths.qmp, { signal: AbortSignal.timeout(Math.max(100, deadline - Date.now())) })
          return
        } catch (err) {
          last = err
        }
      }
      await new Promise((resolve) => setTimeout(resolve, 5))
    }
    throw new VmmError(`QEMU did not open its QMP socket within ${timeoutMs} ms`, { cause: last })
  }

  #client (): QmpClient {
    if (this.#qmp === undefined || this.#dead) {
      throw new VmmError(`QEMU (pid ${this.pid}) is not running`)
    }
    return this.#qmp
  }

  async connectAgent (options: AbortOptions = {}): Promise<AgentConnection> {
    if (this.#dead) {
      throw new VmmError(`QEMU (pid ${this.pid}) is not running`)
    }
    return AgentConnection.open(this.#paths.agent, options)
  }

  async snapshot (statePath: string, options: AbortOptions = {}): Promise<void> {
    const qmp = this.#client()
    await qmp.execute('migrate-set-capabilities', { capabilities: [{ capability: 'x-ignore-shared', state: true }] }, options)
    await qmp.execute('stop', undefined, options)
    await qmp.execute('migrate', { uri: `exec:cat > ${shellPath(statePath)}` }, options)
    await this.#waitMigration(options)
  }

  async #waitMigration (options: AbortOptions): Promise<void> {
    const qmp = this.#client()
    for (let i = 0; i < 30_000; i++) {
      options.signal?.throwIfAborted()
      const info = await qmp.execute('query-migrate', undefined, options) as { status?: string, 'error-desc'?: string }
      if (info.status === 'completed') {
        return
      }
      if (info.status === 'failed' || info.status === 'cancelled') {
        throw new VmmError(`QEMU migration ${info.status}: ${info['error-desc'] ?? 'no reason given'}`)
      }
      await new Promise((resolve) => setTimeout(resolve, 2))
    }
    throw new VmmError('QEMU migration did not finish')
  }

  async restore (statePath: string, options: AbortOptions = {}): Promise<void> {
    const qmp = this.#client()
    let running = false
    const off = qmp.onEvent((e) => { if (e.event === 'RESUME') { running = true } })
    try {
      await qmp.execute('migrate-set-capabilities', { capabilities: [{ capability: 'x-ignore-shared', state: true }] }, options)
      await qmp.execute('migrate-incoming', { uri: `exec:cat ${shellPath(statePath)}` }, options)
      for (let i = 0; i < 20_000 && !running; i++) {
        options.signal?.throwIfAborted()
        const status = await qmp.execute('query-status', undefined, options) as { running?: boolean, status?: string }
        if (status.running === true) {
          running = true
          break
        }
        // the golden VM was paused before it was saved, so a loaded clone stays paused: run it
        if (status.status === 'paused' || status.status === 'postmigrate') {
          const migration = await qmp.execute('query-migrate', undefined, options) as { status?: string }
          if (migration.status === 'completed') {
            await qmp.execute('cont', undefined, options)
            continue
          }
        }
        if (status.status === 'inmigrate' || status.status === 'paused') {
          const migration = await qmp.execute('query-migrate', undefined, options) as { status?: string, 'error-desc'?: string }
          if (migration.status === 'failed') {
            throw new VmmError(`QEMU could not load the snapshot: ${migration['error-desc'] ?? 'no reason given'}`)
          }
        }
        if (status.status === 'internal-error' || status.status === 'shutdown') {
          throw new VmmError(`QEMU could not load the snapshot (status ${status.status})`)
        }
        await new Promise((resolve) => setTimeout(resolve, 1))
      }
      if (!running) {
        throw new VmmError('The restored guest did not start running')
      }
    } finally {
      off()
    }
  }

  async stop (): Promise<void> {
    if (this.#stopped) {
      return
    }
    this.#stopped = true
    this.#qmp?.close()
    await killAndWait(this.#child)
    await rm(this.#config.dir, { recursive: true, force: true })
  }

  async diagnostics (): Promise<string> {
    let consoleLog = ''
    try {
      consoleLog = consoleTail(await readFile(this.#paths.console, 'utf8'))
    } catch {
      // no console output yet
    }
    const stderr = this.#stderr().trim()
    return [stderr === '' ? '' : `QEMU: ${stderr}`, consoleLog === '' ? '' : `guest console:\n${consoleLog}`].filter((s) => s !== '').join('\n')
  }
}

/** Paths Omega makes hold no shell metacharacters; refuse any that does */
function shellPath (path: string): string {
  if (!/^[\w./-]+$/.test(path)) {
    throw new VmmError(`Cannot pass the path "${path}" to QEMU's exec: migration: only letters, digits, "_", ".", "/" and "-" are allowed`)
  }
  return path
}
