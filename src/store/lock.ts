import { open, readFile, stat, unlink } from 'node:fs/promises'
import { hostname } from 'node:os'
import { setTimeout as sleep } from 'node:timers/promises'
import { ImageStoreError } from '../errors.ts'

/** Options for {@link withFileLock} */
export interface FileLockOptions {
  /**
   * How long to wait for another holder before failing, in ms
   *
   * @default 30_000
   */
  timeoutMs?: number
  /**
   * A lock older than this is considered abandoned (its holder crashed), in ms
   *
   * @default 120_000
   */
  staleMs?: number
  signal?: AbortSignal
}

interface LockOwner {
  pid?: unknown
  host?: unknown
}

function errnoCode (err: unknown): string | undefined {
  return err instanceof Error ? (err as NodeJS.ErrnoException).code : undefined
}

/** True if the lock's holder is a process on this host that no longer exists */
async function holderIsGone (lockFile: string): Promise<boolean> {
  let owner: LockOwner
  try {
    owner = JSON.parse(await readFile(lockFile, 'utf8')) as LockOwner
  } catch {
    return false // unreadable or half-written: fall back to the age rule
  }
  if (owner.host !== hostname() || typeof owner.pid !== 'number') {
    return false
  }
  try {
    process.kill(owner.pid, 0)
    return false
  } catch (err) {
    return errnoCode(err) === 'ESRCH'
  }
}

async function tryAcquire (lockFile: string): Promise<boolean> {
  try {
    const handle = await open(lockFile, 'wx', 0o644)
    try {
      await handle.writeFile(JSON.stringify({ pid: process.pid, host: hostname(), created: new Date().toISOString() }))
    } finally {
      await handle.close()
    }
    return true
  } catch (err) {
    if (errnoCode(err) === 'EEXIST') {
      return false
    }
    throw err
  }
}

async function breakIfStale (lockFile: string, staleMs: number): Promise<void> {
  let age: number
  try {
    age = Date.now() - (await stat(lockFile)).mtimeMs
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') {
      return // released meanwhile
    }
    throw err
  }
  // Known limit: two waiters that both judge the same lock stale can race, and the slower
  // one may delete the lock the faster one just took. It needs a crash plus two concurrent
  // writers; rename-and-check would close it if it ever matters.
  if (age > staleMs || await holderIsGone(lockFile)) {
    await unlink(lockFile).catch((err: unknown) => {
      if (errnoCode(err) !== 'ENOENT') {
        throw err
      }
    })
  }
}

/**
 * Run `fn` while holding an exclusive lock file shared by every process using the same
 * directory. Locks left by a crashed process are broken (dead pid on this host, or older
 * than `staleMs`).
 *
 * @throws {ImageStoreError} if the lock stays held for `timeoutMs`
 */
export async function withFileLock<T> (lockFile: string, fn: () => Promise<T>, options: FileLockOptions = {}): Promise<T> {
  const timeoutMs = options.timeoutMs ?? 30_000
  const staleMs = options.staleMs ?? 120_000
  const deadline = Date.now() + timeoutMs
  let wait = 5
  while (!await tryAcquire(lockFile)) {
    options.signal?.throwIfAborted()
    await breakIfStale(lockFile, staleMs)
    if (Date.now() > deadline) {
      throw new ImageStoreError(`Cannot lock the image store: "${lockFile}" has been held by another process for ${timeoutMs} ms; delete it if no omega process is running`)
    }
    await sleep(wait, undefined, options.signal === undefined ? {} : { signal: options.signal })
    wait = Math.min(wait * 2, 100)
  }
  try {
    return await fn()
  } finally {
    await unlink(lockFile).catch(() => {})
  }
}
