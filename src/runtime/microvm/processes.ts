/**
 * Every VMM process Omega starts is registered here and killed when it is stopped, and
 * at the latest when this Node process exits: no VMM outlives its owner.
 */
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process'
import { existsSync } from 'node:fs'

const live = new Set<ChildProcess>()
let hooked = false

function killAll (): void {
  for (const child of live) {
    try {
      child.kill('SIGKILL')
    } catch {
      // already gone
    }
  }
  live.clear()
}

const SETPRIV = '/usr/bin/setpriv'

/**
 * Spawns a VMM and tracks it. Where util-linux's setpriv exists the VMM gets a parent-
 * death signal (SIGKILL), so it dies with this process even when this process is
 * killed with SIGKILL and no exit handler runs.
 */
export function spawnVmm (binary: string, args: readonly string[], options: SpawnOptions): ChildProcess {
  const child = existsSync(SETPRIV)
    ? spawn(SETPRIV, ['--pdeathsig', 'KILL', binary, ...args], options)
    : spawn(binary, [...args], options)
  track(child)
  return child
}

/** Tracks `child` until it exits */
export function track (child: ChildProcess): void {
  if (!hooked) {
    hooked = true
    // 'exit' handlers run synchronously, also under --test-force-exit and process.exit()
    process.on('exit', killAll)
  }
  live.add(child)
  child.once('exit', () => { live.delete(child) })
}

/** How many tracked VMM processes are still alive */
export function liveVmms (): number {
  return live.size
}

/** Kills `child` with SIGKILL and resolves when it has exited (bounded by `ms`) */
export async function killAndWait (child: ChildProcess, ms = 5_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) {
    return
  }
  await new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, ms)
    child.once('exit', () => { clearTimeout(timer); resolve() })
    try {
      child.kill('SIGKILL')
    } catch {
      clearTimeout(timer)
      resolve()
    }
  })
}
