/**
 * The tbf hop of test/shaper.ts (not a test file): run inside a network namespace whose
 * loopback `tc tbf` rate-limits, as `node shaper-forwarder.js ENTRY EGRESS`. Every
 * connection to the unix socket ENTRY crosses the namespace's loopback over TCP once and
 * goes on to the unix socket EGRESS (both paths are files, so they reach across network
 * namespaces), bytes unchanged: both directions pass tbf. Prints "ready" when listening.
 */
import { createServer, connect, type Socket } from 'node:net'
import { rm } from 'node:fs/promises'

function splice (a: Socket, b: Socket): void {
  a.on('error', () => { b.destroy() })
  b.on('error', () => { a.destroy() })
  a.pipe(b).pipe(a)
}

async function main (entry: string, egress: string): Promise<void> {
  const inner = createServer({ allowHalfOpen: true }, (socket) => {
    splice(socket, connect({ path: egress, allowHalfOpen: true }))
  })
  await new Promise<void>((resolve) => { inner.listen(0, '127.0.0.1', resolve) })
  const address = inner.address()
  const port = typeof address === 'object' && address !== null ? address.port : 0
  await rm(entry, { force: true })
  const outer = createServer({ allowHalfOpen: true }, (socket) => {
    splice(socket, connect({ port, host: '127.0.0.1', allowHalfOpen: true }))
  })
  await new Promise<void>((resolve) => { outer.listen(entry, resolve) })
  process.stdout.write('ready\n')
}

const [entry, egress] = process.argv.slice(2)
if (entry === undefined || egress === undefined) {
  process.stderr.write('usage: shaper-forwarder ENTRY EGRESS\n')
  process.exitCode = 2
} else {
  main(entry, egress).catch((err: unknown) => {
    process.stderr.write(`shaper-forwarder: ${String(err)}\n`)
    process.exitCode = 1
  })
}
