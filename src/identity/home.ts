import { homedir } from 'node:os'
import { join } from 'node:path'

/** Options for {@link defaultHome} */
export interface DefaultHomeOptions {
  /**
   * The user's home directory
   *
   * @default os.homedir()
   */
  homedir?: string
}

/**
 * Omega's home directory (node key, image store, state): `$OMEGA_HOME` if set and not
 * empty, else `~/.omega`. Takes the environment as a parameter because only the CLI
 * reads `process.env`.
 *
 * @example
 * ```ts
 * defaultHome({ OMEGA_HOME: '/srv/omega' }) // '/srv/omega'
 * defaultHome({}, { homedir: '/home/me' }) // '/home/me/.omega'
 * ```
 */
export function defaultHome (env: Readonly<Record<string, string | undefined>>, options: DefaultHomeOptions = {}): string {
  const fromEnv = env['OMEGA_HOME']
  if (fromEnv !== undefined && fromEnv !== '') {
    return fromEnv
  }
  return join(options.homedir ?? homedir(), '.omega')
}
