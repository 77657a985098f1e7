/**
 * Every VMM process Omega starts is registered here and killed when it is stopped, and
 * at the latest when this Node process exits: no VMM outlives its owner.
 */
import type { ChildProcess } from 'node:child_process'

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
