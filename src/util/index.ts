/**
 * Small helpers shared by modules that have nothing else in common.
 */
import { open } from 'node:fs/promises'
import { connect } from 'node:net'

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
