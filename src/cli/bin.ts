/**
 * The only file that touches process globals: argv, env, stdio, signals, exit code.
 */
import { basename } from 'node:path'
import { main, exitCodeFor } from './main.ts'

const controller = new AbortController()
let interrupted = 0
function onSignal (signal: NodeJS.Signals): void {
  interrupted++
  if (interrupted > 1) {
    // a second Ctrl-C means now
    process.exit(128 + (signal === 'SIGINT' ? 2 : 15))
  }
  controller.abort(Object.assign(new Error(`Interrupted by ${signal}`), { name: 'AbortError' }))
}
process.on('SIGINT', onSignal)
process.on('SIGTERM', onSignal)
// a reader that stops early (`omega --help | head`) is no error: end quietly
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code !== 'EPIPE') {
    throw err
  }
  process.exit(process.exitCode ?? 0)
})

main(process.argv.slice(2), {
  signal: controller.signal,
  stdout: process.stdout,
  stderr: process.stderr,
  env: process.env,
  cwd: process.cwd(),
  isTTY: process.stdout.isTTY,
  // installed as `omega` and as `ω` (the seeds' spelling): help and messages use the name it was run by
  name: basename(process.argv[1] ?? '') === 'ω' ? 'ω' : 'omega',
  // `omega run`: the command reads and writes these itself, synchronously
  stdio: { stdin: 0, stdout: 1, stderr: 2 }
}).then(
  (code) => { process.exitCode = code },
  (err: unknown) => {
    process.stderr.write(`omega: ${err instanceof Error ? err.message : String(err)}\n`)
    process.exitCode = exitCodeFor(err)
  })
