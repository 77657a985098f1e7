#!/usr/bin/env node
// The `omega` command: runs the bundled CLI (build it first with `npm run build`).
import { existsSync } from 'node:fs'

const entry = new URL('../dist/cli/omega.js', import.meta.url)
if (!existsSync(entry)) {
  process.stderr.write('omega: not built yet: run "npm run build" in the Omega checkout first\n')
  process.exitCode = 1
} else {
  await import(entry.href)
}
