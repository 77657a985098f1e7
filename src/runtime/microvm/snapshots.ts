/**
 * Golden snapshots: one per guest image and VM shape, made by booting the guest once,
 * waiting for its agent and saving the paused VM. Guest RAM stays in a file on /dev/shm
 * (clones map it copy-on-write); the device state is a small file beside it.
 *
 * A snapshot's key is the BLAKE3 of the VMM identity (version, accelerator, command
 * line), the kernel's and the initramfs's hashes, memory and vCPUs. Its record
 * (`snapshot.json`) holds the key and the BLAKE3 of both files, signed by the node's
 * Ed25519 key; a snapshot whose record does not verify, or was signed by another node,
 * is never restored (it is made again).
 */
import { randomBytes } from 'node:crypto'
import { existsSync } from 'node:fs'
import { mkdir, open, readFile, rename, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { blake3Hex, createBlake3, verify } from '../../identity/index.ts'
import type { AbortOptions, Logger } from '../../interfaces/index.ts'
import { VmmError } from '../../errors.ts'
import type { AgentConnection } from './agent.ts'
import type { VmConfig, VmHandle, VmmDriver } from './driver.ts'
import type { GuestImage } from './image.ts'
import { KERNEL_STOPPED } from './qemu.ts'
import { combineSignals } from '../../util/index.ts'

/** Signs snapshot records (the node's key) */
export interface SnapshotSigner {
  readonly did: string
  sign: (bytes: Uint8Array) => Uint8Array
}

export interface GoldenSnapshot {
  readonly key: string
  readonly dir: string
  readonly ramFile: string
  readonly stateFile: string
  /** ms spent making it (0 when it was reused) */
  readonly madeInMs: number
}

export interface GoldenInit {
  readonly driver: VmmDriver
  readonly image: GuestImage
  readonly memBytes: number
  readonly vcpus: number
  /** where snapshots live, on a tmpfs (/dev/shm) */
  readonly root: string
  /** a scratch directory for the golden VM's sockets */
  readonly runDir: string
  readonly signer: SnapshotSigner
  /** how long the first boot may take. @default 120_000 */
  readonly bootTimeoutMs?: number
  readonly logger?: Logger
}

interface SnapshotRecord {
  readonly version: 1
  readonly key: string
  readonly image: string
  readonly ram: string
  readonly state: string
  readonly createdAt: string
  readonly did: string
  readonly signature: string
}

function recordBytes (r: Omit<SnapshotRecord, 'signature'>): Buffer {
  return Buffer.from(`omega-microvm-snapshot-v1\n${r.key}\n${r.image}\n${r.ram}\n${r.state}\n${r.createdAt}\n${r.did}`)
}

async function hashFile (file: string): Promise<string> {
  const hasher = createBlake3()
  const handle = await open(file, 'r')
  try {
    const chunk = Buffer.alloc(4 * 2 ** 20)
    for (;;) {
      const { bytesRead } = await handle.read(chunk, 0, chunk.byteLength, null)
      if (bytesRead === 0) {
        break
      }
      hasher.update(chunk.subarray(0, bytesRead))
    }
  } finally {
    await handle.close()
  }
  return hasher.digestHex()
}

/** The key of the golden snapshot for this image and shape on this VMM */
export async function snapshotKey (init: Pick<GoldenInit, 'driver' | 'image' | 'memBytes' | 'vcpus'>, options: AbortOptions = {}): Promise<string> {
  const config = vmConfig(init, 'RAM', true, 'DIR')
  const identity = await init.driver.identity(config, options)
  return blake3Hex(Buffer.from(`${identity}\n${init.image.kernelHash}\n${init.image.initrdHash}\n${init.memBytes}\n${init.vcpus}`))
}

export function vmConfig (init: Pick<GoldenInit, 'image' | 'memBytes' | 'vcpus'>, ramFile: string, ramShared: boolean, dir: string): VmConfig {
  return { kernel: init.image.kernel, initrd: init.image.initrd, memBytes: init.memBytes, vcpus: init.vcpus, ramFile, ramShared, dir }
}

/** Checks the record of the snapshot in `dir`; undefined when it is missing, foreign or does not verify */
async function verifiedSnapshot (dir: string, key: string, did: string): Promise<GoldenSnapshot | undefined> {
  let record: SnapshotRecord
  try {
    record = JSON.parse(await readFile(join(dir, 'snapshot.json'), 'utf8')) as SnapshotRecord
  } catch {
    return undefined
  }
  const { signature, ...body } = record
  if (record.key !== key || record.did !== did || typeof signature !== 'string' ||
      !verify(did, recordBytes(body), Buffer.from(signature, 'base64url'))) {
    return undefined
  }
  const ramFile = join(dir, 'ram')
  const stateFile = join(dir, 'state')
  if (!existsSync(ramFile) || !existsSync(stateFile) ||
      await hashFile(stateFile) !== record.state || await hashFile(ramFile) !== record.ram) {
    return undefined
  }
  return { key, dir, ramFile, stateFile, madeInMs: 0 }
}

/**
 * The golden snapshot for `init`: reused when a verified one exists, made otherwise
 * (boot, wait for the agent, save). Safe against other processes doing the same: each
 * builds in its own directory and renames it into place.
 */
export async function ensureGolden (init: GoldenInit, options: AbortOptions = {}): Promise<GoldenSnapshot> {
  const key = await snapshotKey(init, options)
  // one directory per key and node: another node's (or home's) snapshot is not ours to trust
  const dir = join(init.root, blake3Hex(Buffer.from(`${key}\n${init.signer.did}`)).slice(0, 32))
  const existing = await verifiedSnapshot(dir, key, init.signer.did)
  if (existing !== undefined) {
    return existing
  }
  const started = performance.now()
  const tmp = `${dir}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`
  await mkdir(tmp, { recursive: true })
  const ramFile = join(tmp, 'ram')
  const vmDir = join(init.runDir, `golden-${randomBytes(4).toString('hex')}`)
  const vm = await init.driver.boot(vmConfig(init, ramFile, true, vmDir), options)
  const combined = combineSignals([AbortSignal.timeout(init.bootTimeoutMs ?? 120_000), options.signal])
  try {
    const signal = combined.signal
    let agent: AgentConnection | undefined
    try {
      agent = await connectWithRetry(vm, signal)
      await agent.ready({ signal })
    } catch (err) {
      throw await bootFailure(init.image.name, vm, init.bootTimeoutMs ?? 120_000, options, err)
    } finally {
      agent?.close()
    }
    // the agent sees EOF before the snapshot: restored clones start waiting for a host
    await new Promise((resolve) => setTimeout(resolve, 20))
    await vm.snapshot(join(tmp, 'state'), options)
  } catch (err) {
    await rm(tmp, { recursive: true, force: true })
    throw err
  } finally {
    combined.clear()
    await vm.stop()
  }
  const body = {
    version: 1 as const,
    key,
    image: init.image.id,
    ram: await hashFile(ramFile),
    state: await hashFile(join(tmp, 'state')),
    createdAt: new Date().toISOString(),
    did: init.signer.did
  }
  const record: SnapshotRecord = { ...body, signature: Buffer.from(init.signer.sign(recordBytes(body))).toString('base64url') }
  await writeFile(join(tmp, 'snapshot.json'), JSON.stringify(record, null, 2) + '\n')
  await rm(dir, { recursive: true, force: true })
  try {
    await rename(tmp, dir)
  } catch {
    // another process put its own in place first: use that one
    await rm(tmp, { recursive: true, force: true })
  }
  const made = await verifiedSnapshot(dir, key, init.signer.did)
  if (made === undefined) {
    throw new VmmError(`The snapshot just made in ${dir} does not verify`)
  }
  const madeInMs = Math.round(performance.now() - started)
  init.logger?.info({ image: init.image.name, key: key.slice(0, 16), ms: madeInMs }, 'made golden snapshot')
  return { ...made, madeInMs }
}

/**
 * Why a first boot failed, with the console tail. A VMM that exits while booting (the
 * agent exits when it cannot open its transport, and the kernel then stops the VM) is
 * reported at once with the likely cause; only a guest that stays up silent waits for
 * the boot timeout.
 */
async function bootFailure (name: string, vm: VmHandle, timeoutMs: number, options: AbortOptions, cause: unknown): Promise<Error> {
  if (options.signal?.aborted === true) {
    return cause instanceof Error ? cause : new VmmError(String(cause))
  }
  // the agent's connection may close a moment before the VMM's exit is seen
  const exit = await Promise.race([vm.exited, new Promise<undefined>((resolve) => setTimeout(resolve, 1000, undefined).unref())])
  const diagnostics = await vm.diagnostics()
  if (exit === undefined) {
    return new VmmError(`The guest "${name}" did not answer its first ping within ${timeoutMs} ms\n${diagnostics}`, { cause })
  }
  const how = exit.signal === null ? `with code ${String(exit.code)}` : `on ${exit.signal}`
  return new VmmError(`The guest "${name}" stopped while booting (its VMM exited ${how}) before its agent answered; likely cause: ${likelyBootCause(diagnostics)}\n${diagnostics}`, { cause })
}

/** The likely cause of a failed boot, read from the guest console and the VMM's stderr */
export function likelyBootCause (diagnostics: string): string {
  if (/cannot (load|open) module/.test(diagnostics)) {
    return 'the guest kernel\'s modules did not load (the image was built for another kernel, or its modules are incomplete: rebuild it with "omega guest build", or pass --kernel and --modules of one release)'
  }
  if (/FATAL: .*(virtio-serial|vsock)/.test(diagnostics)) {
    return 'the agent could not open the transport the VMM gave it (the kernel lacks virtio-serial or vsock support, or the VMM did not attach the device)'
  }
  if (/omega-agent:/.test(diagnostics)) {
    return 'the agent stopped (see the console below)'
  }
  if (KERNEL_STOPPED.test(diagnostics)) {
    return 'the kernel stopped before the agent ran (a kernel that cannot run under this VMM, or a damaged initramfs)'
  }
  if (/QEMU:|Firecracker:/.test(diagnostics)) {
    return 'the VMM refused to run the guest (its message is below)'
  }
  return 'unknown: the guest printed nothing (a kernel that cannot boot under this VMM?)'
}

async function connectWithRetry (vm: VmHandle, signal: AbortSignal): Promise<AgentConnection> {
  for (;;) {
    signal.throwIfAborted()
    try {
      return await vm.connectAgent({ signal })
    } catch (err) {
      if (vm.dead) {
        throw err
      }
      await new Promise((resolve) => setTimeout(resolve, 10))
    }
  }
}
