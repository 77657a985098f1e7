/**
 * Small helpers shared by modules that have nothing else in common.
 */
import { randomBytes } from 'node:crypto'
import { open, rename, unlink } from 'node:fs/promises'
import { connect, createServer, type Server } from 'node:net'
import { basename, dirname, join } from 'node:path'

/**
 * Make a directory's entries durable (after creating or renaming a file in it). Not
 * every platform can open a directory: there it is a no-op.
 */
export async function syncDir (dir: string): Promise<void> {
  try {
    const handle = await open(dir, 'r')
    try {
      await handle.sync()
    } finally {
      await handle.close()
    }
  } catch {}
}

/** Whether something accepts a connection on the Unix socket at `path` now */
export async function socketAnswers (path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(path)
    socket.once('connect', () => {
      socket.destroy()
      resolve(true)
    })
    socket.once('error', () => { resolve(false) })
  })
}

/**
 * Runs `count` steps one after another; once one fails, the rest are not run and get
 * `skipped(i)` as their reason. One settled result per step, in order.
 */
export async function untilFirstFailure<T> (count: number, step: (i: number) => Promise<T>, skipped: (i: number) => Error): Promise<Array<PromiseSettledResult<T>>> {
  const results: Array<PromiseSettledResult<T>> = []
  let failed = false
  for (let i = 0; i < count; i++) {
    if (failed) {
      results.push({ status: 'rejected', reason: skipped(i) })
      continue
    }
    try {
      results.push({ status: 'fulfilled', value: await step(i) })
    } catch (reason) {
      failed = true
      results.push({ status: 'rejected', reason })
    }
  }
  return results
}

export interface WriteFileAtomicOptions {
  /** mode of the file @default 0o666 (less the umask) */
  mode?: number
  /**
   * fsync the file before the rename and its directory after, so that the new content
   * survives a crash once the call returns @default true
   */
  fsync?: boolean
  /** where the temporary file goes (on the same filesystem as `file`) @default `file`'s directory */
  tempDir?: string
}

/**
 * Replace `file` with `data` atomically: readers see the old content or the new, never a
 * part. Writes a temporary file (`<name>.<pid>-<random>.tmp`), then renames it over
 * `file`; the temporary file is removed when that fails.
 */
export async function writeFileAtomic (file: string, data: string | Uint8Array, options: WriteFileAtomicOptions = {}): Promise<void> {
  const fsync = options.fsync ?? true
  const temp = join(options.tempDir ?? dirname(file), `${basename(file)}.${process.pid}-${randomBytes(6).toString('hex')}.tmp`)
  try {
    const handle = await open(temp, 'wx', options.mode ?? 0o666)
    try {
      await handle.writeFile(data)
      if (fsync) {
        await handle.sync()
      }
    } finally {
      await handle.close()
    }
    await rename(temp, file)
  } catch (err) {
    await unlink(temp).catch(() => {})
    throw err
  }
  if (fsync) {
    await syncDir(dirname(file))
  }
}

/**
 * One signal that aborts when any input does (with that input's reason), with `clear()`
 * to detach from the inputs: call it when the work ends. It also detaches once it aborts.
 * (`AbortSignal.any()` leaks when one input lives long, e.g. a node's or a brane's
 * shutdown signal: nodejs/node#55351; see CONVENTIONS §4.)
 */
export interface ClearableSignal {
  readonly signal: AbortSignal
  clear: () => void
}

export function combineSignals (signals: ReadonlyArray<AbortSignal | undefined>): ClearableSignal {
  const controller = new AbortController()
  const inputs = signals.filter((s): s is AbortSignal => s !== undefined)
  const onAbort = (evt: Event): void => {
    controller.abort((evt.target as AbortSignal).reason)
    clear()
  }
  function clear (): void {
    for (const s of inputs) {
      s.removeEventListener('abort', onAbort)
    }
  }
  for (const s of inputs) {
    if (s.aborted) {
      controller.abort(s.reason)
      clear()
      break
    }
    s.addEventListener('abort', onAbort)
  }
  return { signal: controller.signal, clear }
}

/** Calls `emit` with each line of `stream` (text, split at "\n"; an unterminated last line too) */
export function eachLine (stream: NodeJS.ReadableStream, emit: (line: string) => void): void {
  let pending = ''
  stream.setEncoding('utf8')
  stream.on('data', (chunk: string) => {
    pending += chunk
    let newline = pending.indexOf('\n')
    while (newline !== -1) {
      emit(pending.slice(0, newline))
      pending = pending.slice(newline + 1)
      newline = pending.indexOf('\n')
    }
  })
  stream.on('end', () => {
    if (pending !== '') {
      emit(pending)
    }
  })
}

/** A TCP port free on 127.0.0.1 now (for a program that must be told its port, not given 0) */
export async function freePort (): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => { server.listen(0, '127.0.0.1', resolve) })
  const address = server.address()
  await new Promise<void>((resolve) => { server.close(() => { resolve() }) })
  if (address === null || typeof address === 'string') {
    throw new Error('127.0.0.1 has no TCP address')
  }
  return address.port
}

/**
 * `server` listening on `port` and `host` (or on the Unix socket `path`): resolves once it
 * listens, rejects with the error that stopped it (EADDRINUSE, EACCES, …)
 */
export async function listening (server: Server, ...at: [port: number, host: string] | [path: string]): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    const listened = (): void => {
      server.off('error', reject)
      resolve()
    }
    if (at.length === 1) {
      server.listen(at[0], listened)
    } else {
      server.listen(at[0], at[1], listened)
    }
  })
}

export { Checkpointer } from './checkpointer.ts'
