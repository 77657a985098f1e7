/**
 * `fs.tmp`: a private directory per instance, preopened as `/tmp` (the only preopen a
 * brane ever gets), with a byte quota and a lifetime.
 *
 * The guest's descriptors wrap preview2-shim's `Descriptor` (made with
 * `_createPreopenDescriptor` on the instance's own host directory, never the shim's
 * process-wide preopens). The shim resolves every path itself under the preopen:
 * absolute paths, `..` above the root and symlinks whose target is absolute or leaves
 * the root fail with `not-permitted`. The wrapper adds the quota: every write that
 * would grow the directory past `quotaBytes` is cut short at the quota, and a write
 * with no room left fails with `insufficient-space` (for `descriptor.write`) or the
 * stream error `last-operation-failed` whose `filesystem-error-code` is
 * `insufficient-space` (for streams); the instance keeps running.
 *
 * Usage is the sum of the file sizes under the directory (each inode once, sparse
 * files at their full size) plus open files already unlinked. It is kept as a running
 * upper bound and measured again only when a write would pass the quota.
 */
import { lstatSync, mkdirSync, readdirSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { _createPreopenDescriptor, types as shimFsTypes } from '@bytecodealliance/preview2-shim/filesystem'
import { shim, WitError, type ImportInterface, type Pollable } from './shim.ts'

/** The shim's Descriptor, as far as this module uses it */
interface ShimDescriptor {
  stat: () => { type: string, linkCount: bigint, size: bigint }
  write: (buffer: Uint8Array, offset: bigint) => bigint
  writeViaStream: (offset: bigint) => ShimOutputStream
  openAt: (pathFlags: object, path: string, openFlags: object, flags: object) => ShimDescriptor
  setSize: (size: bigint) => void
  [Symbol.dispose]?: () => void
  [key: string]: unknown
}

interface ShimOutputStream {
  checkWrite: () => bigint
  write: (contents: Uint8Array) => void
  blockingWriteAndFlush: (contents: Uint8Array) => void
  flush: () => void
  blockingFlush: () => void
  subscribe: () => Pollable
  [Symbol.dispose]?: () => void
}

interface Readable {
  read: (len: bigint) => Uint8Array
  blockingRead: (len: bigint) => Uint8Array
}

/** Options of {@link TmpDir.create} */
export interface TmpDirInit {
  /** host directory to create; must not exist yet */
  readonly path: string
  readonly quotaBytes: number
}

const IoError = shim.ioError['Error'] as new (payload: unknown) => object
const DIRECTORY_FLAGS = Object.freeze({ read: true, mutateDirectory: true })

/** An instance's private tmp directory and its quota accounting */
export class TmpDir {
  readonly path: string
  readonly quotaBytes: number
  #used = 0n
  readonly #open = new Set<ShimDescriptor>()
  #removed = false

  private constructor (init: TmpDirInit) {
    this.path = init.path
    this.quotaBytes = init.quotaBytes
  }

  /** Creates the host directory (mode 0700) */
  static create (init: TmpDirInit): TmpDir {
    if (!Number.isSafeInteger(init.quotaBytes) || init.quotaBytes < 0) {
      throw new RangeError(`Invalid fs.tmp quota: ${init.quotaBytes}`)
    }
    mkdirSync(init.path, { recursive: false, mode: 0o700 })
    return new TmpDir(init)
  }

  /** Bytes in use, measured now */
  measure (): bigint {
    const seen = new Set<bigint>()
    let total = 0n
    const walk = (dir: string): void => {
      for (const name of readdirSync(dir)) {
        const path = join(dir, name)
        const stats = lstatSync(path, { bigint: true })
        if (stats.isDirectory()) {
          walk(path)
        } else if (!seen.has(stats.ino)) {
          seen.add(stats.ino)
          total += stats.size
        }
      }
    }
    walk(this.path)
    for (const file of this.#open) {
      try {
        const stats = file.stat()
        if (stats.linkCount === 0n) {
          total += stats.size
        }
      } catch {
        this.#open.delete(file)
      }
    }
    this.#used = total
    return total
  }

  /** Empties the directory (end of a request-lifetime tmp): the preopen stays valid */
  clear (): void {
    if (this.#removed) {
      return
    }
    for (const name of readdirSync(this.path)) {
      rmSync(join(this.path, name), { recursive: true, force: true })
    }
    this.#used = 0n
  }

  /** Removes the directory (end of its lifetime); later guest calls fail */
  remove (): void {
    this.#removed = true
    this.#open.clear()
    rmSync(this.path, { recursive: true, force: true })
  }

  /** The wasi:filesystem interfaces that show this directory as `/tmp` */
  interfaces (): { types: ImportInterface, preopens: ImportInterface } {
    const root = new TmpDescriptor(this, _createPreopenDescriptor(this.path) as unknown as ShimDescriptor, true)
    return {
      types: { ...(shimFsTypes as unknown as ImportInterface), Descriptor: TmpDescriptor },
      preopens: { getDirectories: (): Array<[TmpDescriptor, string]> => [[root, '/tmp']] }
    }
  }

  /** @internal a descriptor of this directory was opened */
  track (file: ShimDescriptor): void {
    this.#open.add(file)
  }

  /** @internal a descriptor was dropped */
  untrack (file: ShimDescriptor): void {
    this.#open.delete(file)
  }

  /**
   * @internal How many of `len` bytes may be written to `file` at `offset`. Throws
   * `insufficient-space` when none may.
   */
  allow (file: ShimDescriptor, offset: bigint, len: number): { len: number, size: bigint } {
    const size = file.stat().size
    const growth = offset + BigInt(len) - size
    const quota = BigInt(this.quotaBytes)
    if (growth <= 0n || this.#used + growth <= quota) {
      return { len, size }
    }
    const room = quota - this.measure() // exact now
    const allowed = room <= 0n ? 0n : size + room - offset
    if (allowed <= 0n) {
      throw new WitError('insufficient-space')
    }
    return { len: Math.min(len, Number(allowed)), size }
  }

  /** @internal `file` grew from `before` to at least `end` */
  grew (before: bigint, end: bigint): void {
    if (end > before) {
      this.#used += end - before
    }
  }
}

function quotaStreamError (): WitError {
  const cause = Object.assign(new Error('fs.tmp quota exceeded'), { code: 'ENOSPC' })
  return new WitError({ tag: 'last-operation-failed', val: new IoError(cause) })
}

/**
 * An output stream to a file in a {@link TmpDir}: the shim's file stream, with every
 * write checked against the quota first.
 */
class QuotaOutputStream extends shim.OutputStream {
  readonly #tmp: TmpDir
  readonly #file: ShimDescriptor
  readonly #inner: ShimOutputStream
  #offset: bigint | undefined

  /** @param offset - where writing starts; `undefined` appends */
  constructor (tmp: TmpDir, file: ShimDescriptor, offset: bigint | undefined) {
    super()
    this.#tmp = tmp
    this.#file = file
    this.#offset = offset
    this.#inner = file.writeViaStream(offset ?? file.stat().size)
  }

  #room (): number {
    const offset = this.#offset ?? this.#file.stat().size
    try {
      return this.#tmp.allow(this.#file, offset, Number.MAX_SAFE_INTEGER).len
    } catch (err) {
      if (err instanceof WitError) {
        return 0
      }
      throw err
    }
  }

  #charge (contents: Uint8Array): void {
    const offset = this.#offset ?? this.#file.stat().size
    let allowed: { len: number, size: bigint }
    try {
      allowed = this.#tmp.allow(this.#file, offset, contents.length)
    } catch (err) {
      throw err instanceof WitError ? quotaStreamError() : err
    }
    if (allowed.len < contents.length) {
      throw quotaStreamError()
    }
    const end = offset + BigInt(contents.length)
    this.#tmp.grew(allowed.size, end)
    if (this.#offset !== undefined) {
      this.#offset = end
    }
  }

  checkWrite (): bigint {
    const inner = this.#inner.checkWrite()
    const room = this.#room()
    if (room === 0) {
      throw quotaStreamError()
    }
    return inner < BigInt(room) ? inner : BigInt(room)
  }

  write (contents: Uint8Array): void {
    this.#charge(contents)
    this.#inner.write(contents)
  }

  blockingWriteAndFlush (contents: Uint8Array): void {
    this.#charge(contents)
    this.#inner.blockingWriteAndFlush(contents)
  }

  flush (): void {
    this.#inner.flush()
  }

  blockingFlush (): void {
    this.#inner.blockingFlush()
  }

  writeZeroes (len: bigint): void {
    this.write(new Uint8Array(Number(len)))
  }

  blockingWriteZeroesAndFlush (len: bigint): void {
    this.blockingWriteAndFlush(new Uint8Array(Number(len)))
  }

  splice (src: Readable, len: bigint): bigint {
    const chunk = src.read(len < 65536n ? len : 65536n)
    this.write(chunk)
    return BigInt(chunk.length)
  }

  blockingSplice (src: Readable, len: bigint): bigint {
    const chunk = src.blockingRead(len < 65536n ? len : 65536n)
    this.blockingWriteAndFlush(chunk)
    return BigInt(chunk.length)
  }

  subscribe (): Pollable {
    return this.#inner.subscribe()
  }

  [Symbol.dispose] (): void {
    this.#inner[Symbol.dispose]?.()
  }
}

/**
 * wasi:filesystem `descriptor` for a {@link TmpDir}: delegates to the shim's
 * descriptor, wraps every descriptor it opens, and meters every write.
 */
export class TmpDescriptor {
  readonly #tmp: TmpDir
  readonly #inner: ShimDescriptor
  readonly #root: boolean

  /** @internal */
  constructor (tmp: TmpDir, inner: ShimDescriptor, root: boolean) {
    this.#tmp = tmp
    this.#inner = inner
    this.#root = root
    if (!root) {
      tmp.track(inner)
    }
  }

  static #unwrap (value: unknown): ShimDescriptor {
    if (!(value instanceof TmpDescriptor)) {
      throw new WitError('bad-descriptor')
    }
    return value.#inner
  }

  #call (name: string, ...args: unknown[]): unknown {
    return (this.#inner[name] as (...a: unknown[]) => unknown).apply(this.#inner, args)
  }

  // the shim's preopen descriptor cannot stat or list itself: open "." for those
  #onSelf<T> (use: (self: ShimDescriptor) => T): T {
    if (!this.#root) {
      return use(this.#inner)
    }
    const self = this.#inner.openAt({ symlinkFollow: false }, '.', { directory: true }, { read: true })
    try {
      return use(self)
    } finally {
      self[Symbol.dispose]?.()
    }
  }

  readViaStream (offset: bigint): unknown { return this.#call('readViaStream', offset) }

  writeViaStream (offset: bigint): QuotaOutputStream {
    if (this.#root) {
      throw new WitError('is-directory')
    }
    return new QuotaOutputStream(this.#tmp, this.#inner, offset)
  }

  appendViaStream (): QuotaOutputStream {
    if (this.#root) {
      throw new WitError('is-directory')
    }
    return new QuotaOutputStream(this.#tmp, this.#inner, undefined)
  }

  advise (offset: bigint, length: bigint, advice: string): unknown { return this.#call('advise', offset, length, advice) }
  syncData (): unknown { return this.#call('syncData') }
  getFlags (): unknown { return this.#root ? DIRECTORY_FLAGS : this.#call('getFlags') }
  getType (): unknown { return this.#call('getType') }

  setSize (size: bigint): void {
    if (this.#root) {
      throw new WitError('is-directory')
    }
    const current = this.#inner.stat().size
    if (size > current) {
      const allowed = this.#tmp.allow(this.#inner, current, Number(size - current))
      if (BigInt(allowed.len) < size - current) {
        throw new WitError('insufficient-space')
      }
    }
    this.#inner.setSize(size)
    this.#tmp.grew(current, size)
  }

  setTimes (atime: unknown, mtime: unknown): unknown { return this.#call('setTimes', atime, mtime) }
  read (length: bigint, offset: bigint): unknown { return this.#call('read', length, offset) }

  write (buffer: Uint8Array, offset: bigint): bigint {
    if (this.#root) {
      throw new WitError('is-directory')
    }
    const allowed = this.#tmp.allow(this.#inner, offset, buffer.length)
    const written = this.#inner.write(allowed.len < buffer.length ? buffer.subarray(0, allowed.len) : buffer, offset)
    this.#tmp.grew(allowed.size, offset + written)
    return written
  }

  readDirectory (): unknown {
    return this.#onSelf((self) => (self['readDirectory'] as () => unknown).call(self))
  }

  sync (): unknown { return this.#call('sync') }
  createDirectoryAt (path: string): unknown { return this.#call('createDirectoryAt', path) }

  stat (): unknown {
    return this.#onSelf((self) => self.stat())
  }

  statAt (pathFlags: object, path: string): unknown { return this.#call('statAt', pathFlags, path) }
  setTimesAt (pathFlags: object, path: string, atime: unknown, mtime: unknown): unknown { return this.#call('setTimesAt', pathFlags, path, atime, mtime) }

  linkAt (oldPathFlags: object, oldPath: string, newDescriptor: unknown, newPath: string): unknown {
    return this.#call('linkAt', oldPathFlags, oldPath, TmpDescriptor.#unwrap(newDescriptor), newPath)
  }

  openAt (pathFlags: object, path: string, openFlags: object, flags: object): TmpDescriptor {
    return new TmpDescriptor(this.#tmp, this.#inner.openAt(pathFlags, path, openFlags, flags), false)
  }

  readlinkAt (path: string): unknown { return this.#call('readlinkAt', path) }
  removeDirectoryAt (path: string): unknown { return this.#call('removeDirectoryAt', path) }

  renameAt (oldPath: string, newDescriptor: unknown, newPath: string): unknown {
    return this.#call('renameAt', oldPath, TmpDescriptor.#unwrap(newDescriptor), newPath)
  }

  symlinkAt (target: string, path: string): unknown { return this.#call('symlinkAt', target, path) }
  unlinkFileAt (path: string): unknown { return this.#call('unlinkFileAt', path) }

  isSameObject (other: unknown): boolean {
    return other instanceof TmpDescriptor && other.#inner === this.#inner
  }

  metadataHash (): unknown { return this.#call('metadataHash') }
  metadataHashAt (pathFlags: object, path: string): unknown { return this.#call('metadataHashAt', pathFlags, path) }

  [Symbol.dispose] (): void {
    if (!this.#root) {
      this.#tmp.untrack(this.#inner)
      this.#inner[Symbol.dispose]?.()
    }
  }
}
