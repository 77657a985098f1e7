/**
 * The Firecracker driver, over Firecracker's REST API on a Unix socket
 * (`--api-sock`): PUT /machine-config, /boot-source, /vsock and /actions to boot;
 * PATCH /vm and PUT /snapshot/create to save; PUT /snapshot/load (RAM mapped
 * privately from the golden memory file) to restore.
 *
 * Firecracker has no virtio-serial: the agent listens on vsock port 1024, reached
 * through the vsock's Unix socket with Firecracker's `CONNECT <port>` handshake. The
 * vsock socket path is relative and each VMM runs in its own directory, so clones
 * restored from one snapshot do not collide. Firecracker needs hardware KVM and a
 * kernel that finds virtio-mmio devices on its command line
 * (CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES), given as an uncompressed vmlinux.
 */
import { execFile, type ChildProcess } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdir, readFile, rm } from 'node:fs/promises'
import { request } from 'node:http'
import { join } from 'node:path'
import { promisify } from 'node:util'
import type { AbortOptions } from '../../interfaces/index.ts'
import { VmmError } from '../../errors.ts'
import { socketAnswers } from '../../util/index.ts'
import { AgentConnection, openUnix } from './agent.ts'
import type { VmConfig, VmExit, VmHandle, VmmDriver } from './driver.ts'
import { killAndWait, spawnVmm } from './processes.ts'
import { consoleTail, hostKhz, kernelCmdline } from './qemu.ts'

const exec = promisify(execFile)

/** The vsock port the agent listens on */
export const AGENT_VSOCK_PORT = 1024

export interface FirecrackerDriverInit {
  /** @default 'firecracker' */
  binary?: string
  /** @default 10_000 */
  startTimeoutMs?: number
}

/** One REST call over the API socket; resolves with the parsed body (or undefined for 204) */
export async function fcRequest (socketPath: string, method: string, path: string, body: unknown, options: AbortOptions = {}): Promise<unknown> {
  const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body))
  return new Promise((resolve, reject) => {
    const req = request({
      socketPath,
      method,
      path,
      headers: { accept: 'application/json', ...(payload === undefined ? {} : { 'content-type': 'application/json', 'content-length': payload.byteLength }) },
      ...(options.signal === undefined ? {} : { signal: options.signal })
    }, (res) => {
      let text = ''
      res.setEncoding('utf8')
      res.on('data', (c: string) => { text += c })
      res.on('end', () => {
        const status = res.statusCode ?? 0
        let parsed: unknown
        try {
          parsed = text === '' ? undefined : JSON.parse(text)
        } catch {
          parsed = text
        }
        if (status >= 200 && status < 300) {
          resolve(parsed)
        } else {
          const fault = (parsed as { fault_message?: string } | undefined)?.fault_message ?? text
          reject(new VmmError(`Firecracker refused ${method} ${path} (HTTP ${status}): ${fault}`))
        }
      })
    })
    req.on('error', (err) => { reject(new VmmError(`Cannot reach Firecracker's API socket ${socketPath}: ${err.message}`, { cause: err })) })
    req.end(payload)
  })
}

export class FirecrackerDriver implements VmmDriver {
  readonly name = 'firecracker' as const
  readonly #binary: string
  readonly #startTimeoutMs: number
  #version: string | undefined

  constructor (init: FirecrackerDriverInit = {}) {
    this.#binary = init.binary ?? 'firecracker'
    this.#startTimeoutMs = init.startTimeoutMs ?? 10_000
  }

  async version (options: AbortOptions = {}): Promise<string> {
    if (this.#version === undefined) {
      try {
        this.#version = (await exec(this.#binary, ['--version'], options.signal === undefined ? {} : { signal: options.signal })).stdout.split('\n')[0]?.trim() ?? 'unknown'
      } catch (err) {
        throw new VmmError(`Cannot run ${this.#binary}`, { cause: err })
      }
    }
    return this.#version
  }

  async bootArgs (config: VmConfig): Promise<string> {
    return kernelCmdline(await hostKhz(), 'vsock', config.cmdline)
  }

  async identity (config: VmConfig, options: AbortOptions = {}): Promise<string> {
    return `${await this.version(options)}\nfirecracker\n${Math.ceil(config.memBytes / 2 ** 20)}\n${config.vcpus}\n${await this.bootArgs(config)}\n${config.kernel}`
  }

  async boot (config: VmConfig, options: AbortOptions = {}): Promise<VmHandle> {
    const vm = await this.#spawn(config, options)
    try {
      const api = vm.apiSocket
      await fcRequest(api, 'PUT', '/machine-config', { vcpu_count: config.vcpus, mem_size_mib: Math.ceil(config.memBytes / 2 ** 20), smt: false }, options)
      await fcRequest(api, 'PUT', '/boot-source', { kernel_image_path: config.kernel, initrd_path: config.initrd, boot_args: await this.bootArgs(config) }, options)
      await fcRequest(api, 'PUT', '/vsock', { guest_cid: 3, uds_path: 'vsock.sock' }, options)
      await fcRequest(api, 'PUT', '/actions', { action_type: 'InstanceStart' }, options)
      return vm
    } catch (err) {
      await vm.stop()
      throw err
    }
  }

  async prepare (config: VmConfig, options: AbortOptions = {}): Promise<VmHandle> {
    return this.#spawn(config, options)
  }

  async #spawn (config: VmConfig, options: AbortOptions): Promise<FirecrackerVm> {
    options.signal?.throwIfAborted()
    await mkdir(config.dir, { recursive: true })
    const apiSocket = join(config.dir, 'api.sock')
    // cwd = the VM's directory: the relative vsock path of a snapshot resolves per clone
    const child = spawnVmm(this.#binary, ['--api-sock', apiSocket], { cwd: config.dir, stdio: ['ignore', 'pipe', 'pipe'] })
    let output = ''
    for (const stream of [child.stdout, child.stderr]) {
      stream?.setEncoding('utf8')
      stream?.on('data', (s: string) => { output = (output + s).slice(-4096) })
    }
    const vm = new FirecrackerVm(child, config, apiSocket, () => output)
    const deadline = Date.now() + this.#startTimeoutMs
    // the socket file appears at bind(), a moment before listen(): wait until it answers
    while (!existsSync(apiSocket) || !await socketAnswers(apiSocket)) {
      if (vm.dead || Date.now() > deadline) {
        await vm.stop()
        throw new VmmError(`Firecracker did not open its API socket within ${this.#startTimeoutMs} ms: ${output.trim().slice(-300)}`)
      }
      await new Promise((resolve) => setTimeout(resolve, 5))
    }
    return vm
  }
}

class FirecrackerVm implements VmHandle {
  readonly pid: number
  readonly exited: Promise<VmExit>
  readonly apiSocket: string
  readonly #child: ChildProcess
  readonly #config: VmConfig
  readonly #output: () => string
  #dead = false
  #stopped = false

  constructor (child: ChildProcess, config: VmConfig, apiSocket: string, output: () => string) {
    this.#child = child
    this.pid = child.pid ?? -1
    this.#config = config
    this.apiSocket = apiSocket
    this.#output = output
    this.exited = new Promise<VmExit>((resolve) => {
      child.once('exit', (code, signal) => { this.#dead = true; resolve({ code, signal }) })
      child.once('error', () => { this.#dead = true; resolve({ code: null, signal: null }) })
    })
  }

  get dead (): boolean {
    return this.#dead
  }

  async connectAgent (options: AbortOptions = {}): Promise<AgentConnection> {
    const socket = await openUnix(join(this.#config.dir, 'vsock.sock'), options)
    // Firecracker's host-initiated vsock handshake: "CONNECT <port>\n" → "OK <host port>\n"
    await new Promise<void>((resolve, reject) => {
      let line = ''
      const onData = (chunk: Buffer): void => {
        line += chunk.toString('latin1')
        const nl = line.indexOf('\n')
        if (nl < 0) {
          return
        }
        socket.off('data', onData)
        const rest = Buffer.from(line.slice(nl + 1), 'latin1')
        if (rest.byteLength > 0) {
          socket.unshift(rest)
        }
        if (line.startsWith('OK ')) {
          resolve()
        } else {
          socket.destroy()
          reject(new VmmError(`Firecracker's vsock refused CONNECT ${AGENT_VSOCK_PORT}: ${line.slice(0, nl)}`))
        }
      }
      socket.on('data', onData)
      socket.once('close', () => { reject(new VmmError('Firecracker closed the vsock connection (is the guest agent listening?)')) })
      socket.write(`CONNECT ${AGENT_VSOCK_PORT}\n`)
    })
    return AgentConnection.wrap(socket)
  }

  async snapshot (statePath: string, options: AbortOptions = {}): Promise<void> {
    await fcRequest(this.apiSocket, 'PATCH', '/vm', { state: 'Paused' }, options)
    await fcRequest(this.apiSocket, 'PUT', '/snapshot/create', { snapshot_type: 'Full', snapshot_path: statePath, mem_file_path: this.#config.ramFile }, options)
  }

  async restore (statePath: string, options: AbortOptions = {}): Promise<void> {
    await fcRequest(this.apiSocket, 'PUT', '/snapshot/load', {
      snapshot_path: statePath,
      mem_backend: { backend_type: 'File', backend_path: this.#config.ramFile },
      resume_vm: true
    }, options)
  }

  async stop (): Promise<void> {
    if (this.#stopped) {
      return
    }
    this.#stopped = true
    await killAndWait(this.#child)
    await rm(this.#config.dir, { recursive: true, force: true })
  }

  async diagnostics (): Promise<string> {
    const out = this.#output().trim()
    let log = ''
    try {
      log = consoleTail(await readFile(join(this.#config.dir, 'console.log'), 'utf8'))
    } catch {
      // the console goes to Firecracker's stdout
    }
    return [out === '' ? '' : `Firecracker: ${out}`, log].filter((s) => s !== '').join('\n')
  }
}
