// Regenerates the TypeScript guest bindings of the omega:brane world into
// bindings/brane/ (committed): what a brane written in TypeScript/JavaScript imports
// and exports. Run after changing wit/brane/brane.wit:
//
//   node scripts/guest-types.js
//
// The test suite checks that the committed files match what this script makes.
import { mkdir, writeFile, rm } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { generateGuestTypes } from '@bytecodealliance/jco-transpile'

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..')

/** The generated files, as `relative path → text` */
export async function guestTypes () {
  // jco's type generator is itself a component that reads the WIT through WASI: give
  // this build process (never a runtime) the host filesystem
  const { _setPreopens } = await import('@bytecodealliance/preview2-shim/filesystem')
  _setPreopens({ '/': '/' })
  const files = await generateGuestTypes(join(ROOT, 'wit/brane/brane.wit'), { worldName: 'omega:brane/event-brane', guest: true })
  const out = {}
  for (const [name, bytes] of Object.entries(files)) {
    out[name] = new TextDecoder().decode(bytes)
  }
  return out
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const target = join(ROOT, 'bindings/brane')
  await rm(target, { recursive: true, force: true })
  for (const [name, text] of Object.entries(await guestTypes())) {
    await mkdir(dirname(join(target, name)), { recursive: true })
    await writeFile(join(target, name), text)
  }
  process.stdout.write(`guest-types: wrote ${target}\n`)
}
