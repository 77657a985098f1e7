/**
 * Host directories preopened for a guest (`omega run --dir HOST::GUEST`; no manifest
 * grants these: a brane gets `fs.tmp` at most). The descriptors are preview2-shim's,
 * made with `_createPreopenDescriptor` on each directory, never the shim's
 * process-wide preopens; the shim resolves every path under its preopen (absolute
 * paths, `..` above it and symlinks leaving it fail with `not-permitted`).
 */
import { _createPreopenDescriptor, types as shimFsTypes } from '@bytecodealliance/preview2-shim/filesystem'
import type { ImportInterface } from './shim.ts'

/** One host directory and the path the guest sees it at */
export interface HostDir {
  readonly host: string
  readonly guest: string
}

/** wasi:filesystem/types and preopens showing `dirs`, in order */
export function hostDirInterfaces (dirs: readonly HostDir[]): { types: ImportInterface, preopens: ImportInterface } {
  const list = dirs.map((dir): [unknown, string] => [_createPreopenDescriptor(dir.host), dir.guest])
  return {
    types: shimFsTypes as unknown as ImportInterface,
    preopens: { getDirectories: (): Array<[unknown, string]> => list }
  }
}
