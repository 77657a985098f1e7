// Builds the example components and the test fixtures from WAT + WIT:
//   examples/hello/hello.wat           -> examples/hello/hello.wasm
//   src/runtime/wasm/fixtures/<x>.wat  -> build/fixtures/<x>.wasm (HTTP and event branes)
// parse (WAT -> core module) -> componentEmbed (add the world's WIT) -> componentNew.
// Outputs are rewritten only when their bytes change, so the script is idempotent.
// Run by `npm run build` after tsc; takes about 0.1 s. JS guests (examples/guests/,
// see build-guests.js) take ~10–25 s when their sources change, nothing otherwise.
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises'
import { dirname, join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import { performance } from 'node:perf_hooks'
import { componentEmbed, componentNew, parse } from '@bytecodealliance/jco-transpile/wasm-tools'
import { buildJsTargets } from './build-guests.js'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const witDir = join(root, 'wit')

/** @type {{ source: string, output: string, world: string }[]} */
const TARGETS = [
  { source: 'examples/hello/hello.wat', output: 'examples/hello/hello.wasm', world: 'omega:worlds/http' },
  { source: 'src/runtime/wasm/fixtures/trap.wat', output: 'build/fixtures/trap.wasm', world: 'omega:worlds/http' },
  { source: 'src/runtime/wasm/fixtures/oom.wat', output: 'build/fixtures/oom.wasm', world: 'omega:worlds/http' },
  { source: 'src/runtime/wasm/fixtures/command.wat', output: 'build/fixtures/command.wasm', world: 'wasi:cli/command@0.2.12' },
  { source: 'src/runtime/wasm/fixtures/config.wat', output: 'build/fixtures/config.wasm', world: 'omega:worlds/http-config' },
  { source: 'src/runtime/wasm/fixtures/kv.wat', output: 'build/fixtures/kv.wasm', world: 'omega:worlds/http-keyvalue' },
  { source: 'src/runtime/wasm/fixtures/spin.wat', output: 'build/fixtures/spin.wasm', world: 'omega:worlds/http' },
  { source: 'src/runtime/wasm/fixtures/log.wat', output: 'build/fixtures/log.wasm', world: 'omega:worlds/http' },
  { source: 'src/runtime/wasm/fixtures/random.wat', output: 'build/fixtures/random.wasm', world: 'omega:worlds/http' },
  { source: 'src/runtime/wasm/fixtures/echo-command.wat', output: 'build/fixtures/echo-command.wasm', world: 'wasi:cli/command@0.2.12' },
  { source: 'src/runtime/wasm/fixtures/sockets.wat', output: 'build/fixtures/sockets.wasm', world: 'wasi:cli/command@0.2.12' },
  { source: 'src/runtime/wasm/fixtures/bomb.wat', output: 'build/fixtures/bomb.wasm', world: 'omega:worlds/http' },
  { source: 'src/runtime/wasm/fixtures/recurse.wat', output: 'build/fixtures/recurse.wasm', world: 'omega:worlds/http' },
  { source: 'src/runtime/wasm/fixtures/flood.wat', output: 'build/fixtures/flood.wasm', world: 'omega:worlds/http' },
  { source: 'src/runtime/wasm/fixtures/http-emit.wat', output: 'build/fixtures/http-emit.wasm', world: 'omega:worlds/http' },
  { source: 'src/runtime/wasm/fixtures/counter.wat', output: 'build/fixtures/counter.wasm', world: 'omega:worlds/http' },
  { source: 'src/runtime/wasm/fixtures/echo-stream.wat', output: 'build/fixtures/echo-stream.wasm', world: 'omega:worlds/http' },
  // event branes (wit/brane/brane.wit)
  { source: 'src/runtime/wasm/fixtures/forward.wat', output: 'build/fixtures/forward.wasm', world: 'omega:brane/event-brane' },
  { source: 'src/runtime/wasm/fixtures/sink.wat', output: 'build/fixtures/sink.wasm', world: 'omega:brane/event-brane' },
  { source: 'src/runtime/wasm/fixtures/flaky.wat', output: 'build/fixtures/flaky.wasm', world: 'omega:brane/event-brane' },
  { source: 'src/runtime/wasm/fixtures/reject.wat', output: 'build/fixtures/reject.wasm', world: 'omega:brane/event-brane' },
  { source: 'src/runtime/wasm/fixtures/state.wat', output: 'build/fixtures/state.wasm', world: 'omega:brane/event-brane' }
]

/**
 * All of wit/ as one WIT source: the root package, then each wit/deps/<pkg>/package.wit
 * as a nested `package x:y@v { ... }` block. Passing `witSource` instead of `witPath`
 * keeps wasm-tools (itself a component on preview2-shim) off the host filesystem: no
 * `_setPreopens` is needed, and embedding takes ~10 ms instead of ~50 ms.
 * @returns {Promise<string>}
 */
async function witSource () {
  const rootFiles = (await readdir(witDir)).filter((name) => name.endsWith('.wit')).sort()
  let source = ''
  for (const name of rootFiles) source += await readFile(join(witDir, name), 'utf8') + '\n'
  // omega's own packages (wit/brane/) and the WASI deps, each a nested package block
  const files = [join(witDir, 'brane', 'brane.wit')]
  const deps = (await readdir(join(witDir, 'deps'), { withFileTypes: true })).filter((d) => d.isDirectory())
  for (const dep of deps.map((d) => d.name).sort()) files.push(join(witDir, 'deps', dep, 'package.wit'))
  for (const file of files) {
    const text = await readFile(file, 'utf8')
    const header = /^package ([^;\s]+);\s*$/m.exec(text)
    if (header === null) throw new Error(`Cannot read "${relative(root, file)}": no package header`)
    source += `package ${header[1]} {\n${text.slice(0, header.index)}${text.slice(header.index + header[0].length)}\n}\n`
  }
  return source
}

/**
 * @param {{ source: string, output: string, world: string }} target
 * @param {string} wit
 * @returns {Promise<boolean>} whether the output changed
 */
async function build (target, wit) {
  const wat = await readFile(join(root, target.source), 'utf8')
  let component
  try {
    const core = await parse(wat)
    const embedded = await componentEmbed({ binary: core, witSource: wit, world: target.world })
    component = await componentNew(embedded)
  } catch (err) {
    throw new Error(`Cannot build "${target.source}": ${describe(err)}`, { cause: err })
  }
  const output = join(root, target.output)
  const previous = await readFile(output).catch(() => undefined)
  if (previous !== undefined && Buffer.compare(previous, component) === 0) {
    return false
  }
  await mkdir(dirname(output), { recursive: true })
  await writeFile(output, component)
  return true
}

/** jco's wasm-tools throws plain strings or `{ payload }` objects */
function describe (err) {
  if (typeof err === 'string') return err
  if (err?.payload !== undefined) return String(err.payload)
  return err instanceof Error ? err.message : String(err)
}

async function main () {
  const start = performance.now()
  const wit = await witSource()
  const changed = []
  for (const target of TARGETS) {
    if (await build(target, wit)) changed.push(target.output)
  }
  const ms = (performance.now() - start).toFixed(0)
  process.stdout.write(`build-examples: ${TARGETS.length} components, ${changed.length} changed, ${ms} ms\n`)
  // JS guests (componentize-js, slow): rebuilt only when their inputs change
  const jsStart = performance.now()
  const js = await buildJsTargets()
  const jsMs = (performance.now() - jsStart).toFixed(0)
  process.stdout.write(`build-examples: ${js.built.length + js.skipped.length} JS components, ${js.built.length} built, ${jsMs} ms\n`)
}

main().catch((err) => {
  process.stderr.write(`build-examples: ${err instanceof Error ? err.message : String(err)}\n`)
  process.exitCode = 1
})
