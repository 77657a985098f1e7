/**
 * Where fs.tmp directories live on the host: `<tmpRoot>/<brane>/<instance>/`. No
 * preview2-shim import here, so the main thread can use it (to sweep the directories
 * of a worker it terminated) without starting the shim's I/O thread.
 */
import { readdirSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

const SAFE_NAME = /^[A-Za-z0-9_][A-Za-z0-9._-]*$/

/** The default root of fs.tmp directories: `<os tmpdir>/omega-tmp` */
export function defaultTmpRoot (): string {
  return join(tmpdir(), 'omega-tmp')
}

/** @throws RangeError when `name` cannot be one path segment */
export function checkTmpName (what: string, name: string): void {
  if (!SAFE_NAME.test(name)) {
    throw new RangeError(`Invalid ${what} name for a tmp directory: "${name}"`)
  }
}

/** The host directory holding every tmp directory of `brane` */
export function braneTmpDir (brane: string, tmpRoot: string = defaultTmpRoot()): string {
  checkTmpName('brane', brane)
  return join(tmpRoot, brane)
}

/** Options of {@link sweepTmpDirs} */
export interface SweepTmpOptions {
  /** only instance directories whose name starts with this (e.g. a worker's prefix) */
  readonly prefix?: string
  /** @default defaultTmpRoot() */
  readonly tmpRoot?: string
}

/**
 * Removes tmp directories of `brane` that no instance will clean up: call it after
 * terminating a worker (with that worker's instance prefix) or when the brane stops
 * (without a prefix). Returns how many directories were removed.
 */
export function sweepTmpDirs (brane: string, options: SweepTmpOptions = {}): number {
  const dir = braneTmpDir(brane, options.tmpRoot)
  let names: string[]
  try {
    names = readdirSync(dir)
  } catch {
    return 0
  }
  const prefix = options.prefix ?? ''
  let removed = 0
  for (const name of names) {
    if (name.startsWith(prefix)) {
      rmSync(join(dir, name), { recursive: true, force: true })
      removed++
    }
  }
  if (prefix === '') {
    rmSync(dir, { recursive: true, force: true })
  }
  return removed
}

/** The prefix of the tmp directories of one worker's instances, for {@link sweepTmpDirs} */
export function instancePrefix (pid: number, thread: number): string {
  return `p${pid}t${thread}-`
}
