/**
 * Guest images: `omega guest build NAME --from DIR` turns a workload directory into a
 * kernel and a reproducible initramfs, stored under `$OMEGA_HOME/guests/` and keyed by
 * the BLAKE3 hash of both.
 *
 * The initramfs holds the guest agent as `/init` (guest/agent/agent.c, compiled
 * statically with the host's gcc and cached by source hash), busybox with its applets
 * under `/bin`, the virtio modules the agent loads and their dependencies, in load
 * order (`/lib/modules/omega/`, see modules.ts), and the workload's files under `/app`.
 * `/app/run` must exist and be executable: the agent runs it once per request or event
 * (see README, "Frontier").
 *
 * Reproducible: entries are sorted, every mtime, uid and gid is 0, inode numbers are
 * assigned in order, and the archive is gzipped without a name or time.
 */
import { execFile } from 'node:child_process'
import { existsSync } from 'node:fs'
import { copyFile, lstat, mkdir, readdir, readFile, readlink, rename, rm, stat, writeFile } from 'node:fs/promises'
import { basename, dirname, join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { gzipSync } from 'node:zlib'
import { blake3Hex } from '../../identity/index.ts'
import type { AbortOptions } from '../../interfaces/index.ts'
import { writeFileAtomic } from '../../util/index.ts'
import { GuestImageError, GuestImageNotFoundError } from '../../errors.ts'
import { agentModules } from './modules.ts'

const exec = promisify(execFile)

/** A built guest image */
export interface GuestImage {
  readonly name: string
  /** `b3:` + BLAKE3 of the kernel's and the initramfs's hashes */
  readonly id: string
  /** the kernel (a bzImage) */
  readonly kernel: string
  /** the gzipped newc initramfs */
  readonly initrd: string
  readonly kernelHash: string
  readonly initrdHash: string
  /** the kernel's release, e.g. `6.1.0-50-cloud-amd64` */
  readonly kernelRelease: string
  readonly initrdBytes: number
}

export interface BuildGuestOptions extends AbortOptions {
  /** Omega's data directory */
  readonly home: string
  readonly name: string
  /** the workload directory: becomes `/app`; must hold an executable `run` */
  readonly from: string
  /** the kernel (bzImage). @default the newest /boot/vmlinuz-*-cloud-amd64, else the newest /boot/vmlinuz-* */
  readonly kernel?: string
  /** where the kernel's modules are. @default /lib/modules/<release> */
  readonly modules?: string
  /** a static busybox. @default /bin/busybox */
  readonly busybox?: string
  /** the C compiler for the agent. @default gcc */
  readonly cc?: string
}

/** The repository (or installed package) root, from src/ or dist/ */
function packageRoot (): string {
  let dir = dirname(fileURLToPath(import.meta.url))
  while (!existsSync(join(dir, 'package.json'))) {
    const parent = dirname(dir)
    if (parent === dir) {
      throw new GuestImageError('Cannot find the Omega package root (package.json) above the microvm runtime')
    }
    dir = parent
  }
  return dir
}

/** The agent's C source */
export function agentSourcePath (): string {
  return join(packageRoot(), 'guest', 'agent', 'agent.c')
}

function guestsDir (home: string): string {
  return join(home, 'guests')
}

/** The default kernel: the newest cloud kernel in /boot, else the newest kernel */
export async function defaultKernel (): Promise<string> {
  let names: string[]
  try {
    names = (await readdir('/boot')).filter((n) => n.startsWith('vmlinuz-'))
  } catch {
    names = []
  }
  const byVersion = (a: string, b: string): number => a.localeCompare(b, 'en', { numeric: true })
  const cloud = names.filter((n) => n.endsWith('-cloud-amd64')).sort(byVersion)
  const any = names.sort(byVersion)
  const pick = cloud.at(-1) ?? any.at(-1)
  if (pick === undefined) {
    throw new GuestImageError('Cannot build a guest: no kernel in /boot (install the Debian package linux-image-cloud-amd64, or pass --kernel FILE)')
  }
  return join('/boot', pick)
}

/**
 * Compiles the guest agent statically, once per source and compiler: the binary is
 * cached under `<home>/cache/guest-agent/<hash>/agent`.
 */
export async function buildAgent (home: string, options: AbortOptions & { cc?: string } = {}): Promise<string> {
  const cc = options.cc ?? 'gcc'
  const source = await readFile(agentSourcePath())
  let ccVersion: string
  try {
    ccVersion = (await exec(cc, ['--version'], { ...signalOf(options) })).stdout
  } catch (err) {
    throw new GuestImageError(`Cannot build the guest agent: "${cc}" is not usable (install the Debian packages gcc and libc6-dev)`, { cause: err })
  }
  const key = blake3Hex(Buffer.concat([Buffer.from(ccVersion), Buffer.from([0]), source])).slice(0, 32)
  const dir = join(home, 'cache', 'guest-agent', key)
  const out = join(dir, 'agent')
  if (existsSync(out)) {
    return out
  }
  await mkdir(dir, { recursive: true })
  const tmp = `${out}.${process.pid}.tmp`
  try {
    await exec(cc, ['-static', '-O2', '-s', '-o', tmp, agentSourcePath()], { ...signalOf(options) })
  } catch (err) {
    const stderr = (err as { stderr?: string }).stderr ?? ''
    throw new GuestImageError(`Cannot compile the guest agent with ${cc} -static (is libc6-dev installed?): ${stderr.trim().split('\n').slice(-3).join(' ')}`, { cause: err })
  }
  await rename(tmp, out)
  return out
}

/** One archive entry */
interface CpioEntry {
  readonly path: string
  /** full st_mode: type and permissions */
  readonly mode: number
  readonly data?: Uint8Array
  readonly rdevMajor?: number
  readonly rdevMinor?: number
}

const S_IFDIR = 0o040000
const S_IFREG = 0o100000
const S_IFLNK = 0o120000
const S_IFCHR = 0o020000

/** A newc cpio archive with sorted entries, zero times and owners, sequential inodes */
export function cpioNewc (entries: readonly CpioEntry[]): Buffer {
  const sorted = [...entries].sort((a, b) => a.path < b.path ? -1 : a.path > b.path ? 1 : 0)
  const chunks: Buffer[] = []
  let ino = 1
  const hex = (n: number): string => n.toString(16).padStart(8, '0')
  const pad = (n: number): Buffer => Buffer.alloc((4 - (n % 4)) % 4)
  const push = (path: string, mode: number, data: Uint8Array, rdevMajor: number, rdevMinor: number, nlink: number): void => {
    const name = Buffer.from(path + '\0')
    const header = '070701' + [ino++, mode, 0, 0, nlink, 0, data.byteLength, 0, 0, rdevMajor, rdevMinor, name.byteLength, 0].map(hex).join('')
    chunks.push(Buffer.from(header), name, pad(110 + name.byteLength), Buffer.from(data), pad(data.byteLength))
  }
  for (const e of sorted) {
    push(e.path, e.mode, e.data ?? new Uint8Array(), e.rdevMajor ?? 0, e.rdevMinor ?? 0, (e.mode & S_IFDIR) === S_IFDIR ? 2 : 1)
  }
  ino = 0
  push('TRAILER!!!', 0, new Uint8Array(), 0, 0, 1)
  return Buffer.concat(chunks)
}

async function workloadEntries (from: string): Promise<CpioEntry[]> {
  const entries: CpioEntry[] = [{ path: 'app', mode: S_IFDIR | 0o755 }]
  const walk = async (dir: string): Promise<void> => {
    for (const name of (await readdir(dir)).sort()) {
      const full = join(dir, name)
      const rel = 'app/' + relative(from, full).split('\\').join('/')
      const st = await lstat(full)
      if (st.isDirectory()) {
        entries.push({ path: rel, mode: S_IFDIR | 0o755 })
        await walk(full)
      } else if (st.isSymbolicLink()) {
        entries.push({ path: rel, mode: S_IFLNK | 0o777, data: Buffer.from(await readlink(full)) })
      } else if (st.isFile()) {
        // only the executable bit is kept: the same files give the same image on every host
        entries.push({ path: rel, mode: S_IFREG | ((st.mode & 0o111) !== 0 ? 0o755 : 0o644), data: await readFile(full) })
      }
    }
  }
  await walk(from)
  return entries
}

async function busyboxEntries (busybox: string, options: AbortOptions): Promise<CpioEntry[]> {
  let list: string
  try {
    list = (await exec(busybox, ['--list'], { ...signalOf(options) })).stdout
  } catch (err) {
    throw new GuestImageError(`Cannot build a guest: "${busybox}" is not a usable busybox (install the Debian package busybox-static)`, { cause: err })
  }
  const data = await readFile(busybox)
  if (hasInterpreter(data)) {
    throw new GuestImageError(`Cannot build a guest: "${busybox}" is dynamically linked and the guest has no libc (install the Debian package busybox-static, or pass --busybox FILE)`)
  }
  const applets = list.split('\n').map((s) => s.trim()).filter((s) => /^[a-z0-9_.[-]+$/i.test(s) && s !== 'busybox')
  return [
    { path: 'bin/busybox', mode: S_IFREG | 0o755, data },
    ...[...new Set(applets)].map((a) => ({ path: `bin/${a}`, mode: S_IFLNK | 0o777, data: Buffer.from('busybox') }))
  ]
}

/**
 * Builds the guest image `name` from the workload directory `from` and records it
 * under `<home>/guests/`. The same inputs give the same bytes and the same id.
 *
 * @throws GuestImageError naming what is missing (no `run`, no kernel, no busybox, no gcc)
 */
export async function buildGuest (options: BuildGuestOptions): Promise<GuestImage> {
  const { home, name, from } = options
  if (!/^[a-z0-9][a-z0-9._-]*$/i.test(name)) {
    throw new GuestImageError(`Cannot build guest "${name}": a name is letters, digits, ".", "_" and "-", starting with a letter or digit`)
  }
  const run = join(from, 'run')
  const runStat = await stat(run).catch(() => undefined)
  if (runStat === undefined || !runStat.isFile() || (runStat.mode & 0o111) === 0) {
    throw new GuestImageError(`Cannot build guest "${name}": ${run} must exist and be executable (the agent runs it for every request and event)`)
  }
  const kernel = options.kernel ?? await defaultKernel()
  const kernelBytes = await readFile(kernel).catch((err: unknown) => {
    throw new GuestImageError(`Cannot build guest "${name}": cannot read the kernel ${kernel}`, { cause: err })
  })
  const release = basename(kernel).replace(/^vmlinuz-/, '')
  const modules = options.modules ?? join('/lib/modules', release)
  const agent = await buildAgent(home, { ...signalOf(options), ...(options.cc === undefined ? {} : { cc: options.cc }) })

  const entries: CpioEntry[] = [
    { path: 'bin', mode: S_IFDIR | 0o755 },
    { path: 'dev', mode: S_IFDIR | 0o755 },
    { path: 'dev/console', mode: S_IFCHR | 0o600, rdevMajor: 5, rdevMinor: 1 },
    { path: 'proc', mode: S_IFDIR | 0o755 },
    { path: 'sys', mode: S_IFDIR | 0o755 },
    { path: 'tmp', mode: S_IFDIR | 0o1777 },
    { path: 'lib', mode: S_IFDIR | 0o755 },
    { path: 'lib/modules', mode: S_IFDIR | 0o755 },
    { path: 'lib/modules/omega', mode: S_IFDIR | 0o755 },
    { path: 'init', mode: S_IFREG | 0o755, data: await readFile(agent) },
    ...await busyboxEntries(options.busybox ?? '/bin/busybox', options),
    ...await workloadEntries(from)
  ]
  // the agent's modules and their dependencies, in load order, decompressed
  const order: string[] = []
  for (const mod of await agentModules(modules, options)) {
    entries.push({ path: `lib/modules/omega/${mod.name}`, mode: S_IFREG | 0o644, data: mod.data })
    order.push(mod.name)
  }
  entries.push({ path: 'lib/modules/omega/order', mode: S_IFREG | 0o644, data: Buffer.from(order.join('\n') + '\n') })

  // gzipSync writes no name and a zero time in the header: the bytes depend on the input only
  const initrd = gzipSync(cpioNewc(entries), { level: 6 })
  const kernelHash = blake3Hex(kernelBytes)
  const initrdHash = blake3Hex(initrd)
  const hex = blake3Hex(Buffer.from(`omega-guest-v1\0${kernelHash}\0${initrdHash}`))
  const id = `b3:${hex}`
  const dir = join(guestsDir(home), hex)
  await mkdir(dir, { recursive: true })
  const image: GuestImage = {
    name, id, kernel: join(dir, 'kernel'), initrd: join(dir, 'initrd.cpio.gz'), kernelHash, initrdHash, kernelRelease: release, initrdBytes: initrd.byteLength
  }
  if (!existsSync(image.kernel)) {
    await copyFile(kernel, `${image.kernel}.tmp`)
    await rename(`${image.kernel}.tmp`, image.kernel)
  }
  await writeFileAtomic(image.initrd, initrd, { fsync: false })
  await writeFile(join(dir, 'image.json'), JSON.stringify({ id, kernelHash, initrdHash, kernelRelease: release }, null, 2) + '\n')
  await writeNames(home, { ...await readNames(home), [name]: id })
  return image
}

async function readNames (home: string): Promise<Record<string, string>> {
  try {
    return JSON.parse(await readFile(join(guestsDir(home), 'names.json'), 'utf8')) as Record<string, string>
  } catch {
    return {}
  }
}

async function writeNames (home: string, names: Record<string, string>): Promise<void> {
  const file = join(guestsDir(home), 'names.json')
  const sorted = Object.fromEntries(Object.entries(names).sort(([a], [b]) => a.localeCompare(b)))
  await writeFileAtomic(file, JSON.stringify(sorted, null, 2) + '\n', { fsync: false })
}

/**
 * The guest image `ref` (a name given to `omega guest build`, or its `b3:` id).
 *
 * @throws GuestImageNotFoundError when no such image was built on this node
 */
export async function resolveGuest (home: string, ref: string): Promise<GuestImage> {
  const names = await readNames(home)
  const id = ref.startsWith('b3:') ? ref : names[ref]
  const hex = id?.slice(3) ?? ''
  const dir = join(guestsDir(home), hex)
  if (id === undefined || !/^[0-9a-f]{64}$/.test(hex) || !existsSync(join(dir, 'image.json'))) {
    const known = Object.keys(names)
    throw new GuestImageNotFoundError(`No guest image "${ref}" on this node (built: ${known.length === 0 ? 'none' : known.join(', ')}): build it with "omega guest build ${ref.startsWith('b3:') ? 'NAME' : ref} --from DIR"`)
  }
  const meta = JSON.parse(await readFile(join(dir, 'image.json'), 'utf8')) as { kernelHash: string, initrdHash: string, kernelRelease: string }
  const initrd = join(dir, 'initrd.cpio.gz')
  const name = ref.startsWith('b3:') ? (Object.entries(names).find(([, v]) => v === id)?.[0] ?? ref) : ref
  return { name, id, kernel: join(dir, 'kernel'), initrd, ...meta, initrdBytes: (await stat(initrd)).size }
}

/** Every named guest image on this node */
export async function listGuests (home: string): Promise<GuestImage[]> {
  const out: GuestImage[] = []
  for (const name of Object.keys(await readNames(home))) {
    try {
      out.push(await resolveGuest(home, name))
    } catch {
      // a name whose files were removed: not listed
    }
  }
  return out
}

/** Removes a name (the files stay while another name uses them) */
export async function removeGuest (home: string, name: string): Promise<void> {
  const names = await readNames(home)
  const id = names[name]
  if (id === undefined) {
    throw new GuestImageNotFoundError(`No guest image "${name}" on this node`)
  }
  delete names[name]
  await writeNames(home, names)
  if (!Object.values(names).includes(id)) {
    await rm(join(guestsDir(home), id.slice(3)), { recursive: true, force: true })
  }
}

/** Whether an ELF64 file asks for a dynamic loader (has a PT_INTERP program header) */
export function hasInterpreter (elf: Buffer): boolean {
  if (elf.byteLength < 64 || elf.readUInt32BE(0) !== 0x7f454c46 || elf[4] !== 2) {
    return false
  }
  const phoff = Number(elf.readBigUInt64LE(32))
  const phentsize = elf.readUInt16LE(54)
  const phnum = elf.readUInt16LE(56)
  for (let i = 0; i < phnum; i++) {
    const at = phoff + i * phentsize
    if (at + 4 <= elf.byteLength && elf.readUInt32LE(at) === 3) {
      return true
    }
  }
  return false
}

function signalOf (options: AbortOptions): { signal?: AbortSignal } {
  return options.signal === undefined ? {} : { signal: options.signal }
}
