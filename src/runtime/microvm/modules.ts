/**
 * The kernel modules a guest image carries: the ones the agent needs, with everything
 * they depend on, resolved from the kernel's own `modules.dep` (what depmod wrote, what
 * modprobe reads), ordered so that each module comes after its dependencies, and
 * decompressed when the kernel ships them as `.ko.xz`, `.ko.zst` or `.ko.gz`: the agent
 * loads plain ELF files with finit_module, one after another, with no modprobe.
 */
import { execFile } from 'node:child_process'
import { readFile } from 'node:fs/promises'
import { basename, join } from 'node:path'
import { promisify } from 'node:util'
import { gunzipSync } from 'node:zlib'
import type { AbortOptions } from '../../interfaces/index.ts'
import { GuestImageError } from '../../errors.ts'

const exec = promisify(execFile)

/** What the agent needs: virtio-mmio and virtio-serial (QEMU microvm), vsock (Firecracker) */
export const AGENT_MODULES = {
  required: ['virtio_mmio', 'virtio_console'],
  /** only for VMMs without virtio-serial; a kernel without them still serves QEMU */
  optional: ['vmw_vsock_virtio_transport']
} as const

/** A module as `modules.dep` names it: `kernel/drivers/virtio/virtio.ko.xz` → `virtio` */
export function moduleName (path: string): string {
  // modprobe treats "-" and "_" in module names alike
  return basename(path).replace(/\.ko(\.(xz|zst|gz))?$/, '').replaceAll('-', '_')
}

/** `modules.dep`: each module's path (relative to the modules directory) → the paths it needs */
export function parseModulesDep (text: string): Map<string, string[]> {
  const deps = new Map<string, string[]>()
  for (const line of text.split('\n')) {
    const colon = line.indexOf(':')
    if (colon <= 0) {
      continue
    }
    deps.set(line.slice(0, colon).trim(), line.slice(colon + 1).trim().split(/\s+/).filter((p) => p !== ''))
  }
  return deps
}

export interface ModuleSet {
  /** module paths as `modules.dep` gives them, each after everything it depends on */
  readonly order: readonly string[]
  /** wanted modules that are built into the kernel (nothing to load) */
  readonly builtin: readonly string[]
  /** optional modules this kernel has neither as a file nor built in */
  readonly absent: readonly string[]
}

/**
 * The modules to load for `required` and `optional` (names), dependencies first.
 * `builtin` holds the names in the kernel's `modules.builtin`.
 *
 * @throws GuestImageError when a required module is neither in `deps` nor built in, or
 * a dependency that `modules.dep` names has no entry of its own
 */
export function resolveModules (deps: ReadonlyMap<string, readonly string[]>, wanted: { required: readonly string[], optional?: readonly string[] }, builtin: ReadonlySet<string> = new Set()): ModuleSet {
  const byName = new Map([...deps.keys()].map((path) => [moduleName(path), path]))
  const order: string[] = []
  const placed = new Set<string>()
  const found: string[] = []
  const inKernel: string[] = []
  const absent: string[] = []
  for (const [name, required] of [...wanted.required.map((n) => [n, true] as const), ...(wanted.optional ?? []).map((n) => [n, false] as const)]) {
    const key = name.replaceAll('-', '_')
    const path = byName.get(key)
    if (path !== undefined) {
      found.push(path)
    } else if (builtin.has(key)) {
      inKernel.push(key)
    } else if (required) {
      throw new GuestImageError(`The kernel has no module "${name}" (not in its modules.dep nor modules.builtin): the agent needs it to talk to the host; use a kernel with virtio-mmio and virtio-serial (Debian's linux-image-cloud-amd64 has them)`)
    } else {
      absent.push(key)
    }
  }
  // depth-first, dependencies before dependants; iterative, with a guard against cycles
  for (const root of found) {
    const stack: Array<{ path: string, next: number }> = [{ path: root, next: 0 }]
    const onPath = new Set([root])
    while (stack.length > 0) {
      const top = stack[stack.length - 1] as { path: string, next: number }
      if (placed.has(top.path)) {
        stack.pop()
        onPath.delete(top.path)
        continue
      }
      const needs = deps.get(top.path)
      if (needs === undefined) {
        throw new GuestImageError(`modules.dep names ${top.path} as a dependency but has no entry for it: the kernel's modules are incomplete (reinstall the kernel package, or run depmod)`)
      }
      const dep = needs[top.next]
      if (dep === undefined) {
        placed.add(top.path)
        order.push(top.path)
        stack.pop()
        onPath.delete(top.path)
        continue
      }
      top.next++
      if (!placed.has(dep) && !onPath.has(dep)) {
        onPath.add(dep)
        stack.push({ path: dep, next: 0 })
      }
    }
  }
  return { order, builtin: inKernel, absent }
}

/** The modules of `dir` (a `/lib/modules/<release>` tree) the agent needs, read and in load order */
export async function agentModules (dir: string, options: AbortOptions = {}): Promise<Array<{ name: string, data: Buffer }>> {
  let depText: string
  try {
    depText = await readFile(join(dir, 'modules.dep'), 'utf8')
  } catch (err) {
    throw new GuestImageError(`Cannot read ${join(dir, 'modules.dep')}: the guest kernel's modules must be installed there (the kernel package installs them; or pass --modules DIR)`, { cause: err })
  }
  const builtin = await readFile(join(dir, 'modules.builtin'), 'utf8').then(
    (text) => new Set(text.split('\n').filter((l) => l !== '').map(moduleName)),
    () => new Set<string>())
  const set = resolveModules(parseModulesDep(depText), AGENT_MODULES, builtin)
  const out: Array<{ name: string, data: Buffer }> = []
  for (const path of set.order) {
    const file = join(dir, path)
    const raw = await readFile(file).catch((err: unknown) => {
      throw new GuestImageError(`Cannot read kernel module ${file} (listed in modules.dep): reinstall the kernel package`, { cause: err })
    })
    out.push({ name: `${moduleName(path)}.ko`, data: await decompressModule(file, raw, options) })
  }
  return out
}

/** A module file's ELF bytes, decompressed by its extension */
export async function decompressModule (file: string, raw: Buffer, options: AbortOptions = {}): Promise<Buffer> {
  if (file.endsWith('.ko')) {
    return raw
  }
  if (file.endsWith('.ko.gz')) {
    return gunzipSync(raw)
  }
  const tool = file.endsWith('.ko.xz') ? { cmd: 'xz', pkg: 'xz-utils' } : file.endsWith('.ko.zst') ? { cmd: 'zstd', pkg: 'zstd' } : undefined
  if (tool === undefined) {
    throw new GuestImageError(`Kernel module ${file}: unknown compression (expected .ko, .ko.xz, .ko.zst or .ko.gz)`)
  }
  try {
    const { stdout } = await exec(tool.cmd, ['-dc', file], { encoding: 'buffer', maxBuffer: 256 * 2 ** 20, ...(options.signal === undefined ? {} : { signal: options.signal }) })
    return stdout
  } catch (err) {
    const missing = (err as NodeJS.ErrnoException).code === 'ENOENT'
    throw new GuestImageError(missing
      ? `Kernel module ${file} is ${tool.cmd}-compressed and "${tool.cmd}" is not installed (install the Debian package ${tool.pkg})`
      : `Cannot decompress kernel module ${file} with ${tool.cmd}: ${String((err as { stderr?: Buffer }).stderr ?? (err as Error).message).trim()}`, { cause: err })
  }
}
