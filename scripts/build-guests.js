// Builds guest components written in JavaScript with componentize-js (StarlingMonkey):
//   examples/guests/probe/probe.js -> build/fixtures/probe.wasm
//   examples/pipeline/<brane>.js    -> examples/pipeline/<brane>.wasm (HTTP and event branes)
//   examples/js-hello/hello.js      -> examples/js-hello/hello.wasm (a reusable HTTP brane)
// componentize-js takes 11–26 s and ~780 MB, so each output is keyed by a hash of
// its inputs (sources, WIT, componentize-js version) kept beside it in `<output>.key`:
// an unchanged key skips the build without loading componentize-js at all. A build
// runs in a child process (`node scripts/build-guests.js <index>`), which frees its
// memory at exit and confines `_setPreopens` (componentize-js reads files through
// preview2-shim, which gives no host filesystem by default) to that process.
import { spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
// built by tsc before this script runs (npm run build)
import { guestWitDeps } from '../dist/src/authoring/index.js'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')

/**
 * `omega: true` adds wit/brane/brane.wit (package omega:brane) to the guest's WIT deps.
 * `disableFeatures`: StarlingMonkey features left out, so that the component imports
 * only what its world says (an event brane needs no wasi:http, and every import
 * needs a grant): see componentize-js' README.
 * @type {{ source: string, wit: string, world: string, output: string, omega?: boolean, disableFeatures?: string[] }[]}
 */
export const JS_TARGETS = [
  { source: 'examples/guests/probe/probe.js', wit: 'examples/guests/probe/probe.wit', world: 'omega:probe/probe', output: 'build/fixtures/probe.wasm' },
  // StarlingMonkey's event loop needs clocks for fetch-event
  pipeline('ingest', ['random', 'stdio']),
  pipeline('transform', ['random', 'clocks', 'stdio', 'http', 'fetch-event']),
  pipeline('train', ['random', 'clocks', 'stdio', 'http', 'fetch-event']),
  // an HTTP brane exporting wasi:http/incoming-handler itself: reusable, so pooled
  { source: 'examples/js-hello/hello.js', wit: 'examples/js-hello/hello.wit', world: 'omega:js-hello/hello', output: 'examples/js-hello/hello.wasm', disableFeatures: ['random', 'clocks', 'stdio', 'fetch-event'] }
]

/** A brane of examples/pipeline: `<name>.js` in world `omega:pipeline/<name>` */
function pipeline (name, disableFeatures) {
  const dir = 'examples/pipeline'
  return { source: `${dir}/${name}.js`, wit: `${dir}/pipeline.wit`, world: `omega:pipeline/${name}`, output: `${dir}/${name}.wasm`, omega: true, disableFeatures }
}

/** wit/deps as StarlingMonkey needs them (see src/authoring/wit.ts), plus omega:brane when `target` asks */
async function targetDeps (target) {
  return guestWitDeps({ omega: target.omega === true })
}

async function inputKey (target) {
  const hash = createHash('sha256')
  const pkg = JSON.parse(await readFile(join(root, 'node_modules/@bytecodealliance/componentize-js/package.json'), 'utf8'))
  hash.update(`componentize-js@${pkg.version}\0`)
  hash.update(await readFile(join(root, target.source)))
  hash.update(await readFile(join(root, target.wit)))
  if (target.disableFeatures !== undefined) hash.update(`disable:${target.disableFeatures.join(',')}\0`)
  for (const { dep, text } of await targetDeps(target)) hash.update(`${dep}\0${text}\0`)
  return hash.digest('hex')
}

/**
 * Builds every JS target whose inputs changed.
 * @returns {Promise<{ built: string[], skipped: string[] }>}
 */
export async function buildJsTargets () {
  const built = []
  const skipped = []
  for (const [index, target] of JS_TARGETS.entries()) {
    const key = await inputKey(target)
    const keyFile = join(root, `${target.output}.key`)
    const previous = await readFile(keyFile, 'utf8').catch(() => '')
    const exists = await readFile(join(root, target.output)).then(() => true, () => false)
    if (previous.trim() === key && exists) {
      skipped.push(target.output)
      continue
    }
    await run(index)
    await writeFile(keyFile, `${key}\n`)
    built.push(target.output)
  }
  return { built, skipped }
}

function run (index) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [fileURLToPath(import.meta.url), String(index)], { stdio: ['ignore', 'inherit', 'inherit'] })
    child.on('error', reject)
    child.on('exit', (code) => {
      code === 0 ? resolve() : reject(new Error(`Cannot build "${JS_TARGETS[index]?.source}": componentize-js exited with ${code}`))
    })
  })
}

async function buildOne (index) {
  const target = JS_TARGETS[index]
  if (target === undefined) throw new RangeError(`No JS target ${index}`)
  const { _setPreopens } = await import('@bytecodealliance/preview2-shim/filesystem')
  _setPreopens({ '/': '/' })
  const { componentize } = await import('@bytecodealliance/componentize-js')
  const dir = await mkdtemp(join(tmpdir(), 'omega-guest-wit-'))
  try {
    await mkdir(join(dir, 'deps'))
    for (const { dep, text } of await targetDeps(target)) {
      await mkdir(join(dir, 'deps', dep))
      await writeFile(join(dir, 'deps', dep, 'package.wit'), text)
    }
    await writeFile(join(dir, 'world.wit'), await readFile(join(root, target.wit)))
    const { component } = await componentize({
      sourcePath: join(root, target.source),
      witPath: dir,
      worldName: target.world,
      ...(target.disableFeatures === undefined ? {} : { disableFeatures: target.disableFeatures })
    })
    await mkdir(dirname(join(root, target.output)), { recursive: true })
    await writeFile(join(root, target.output), component)
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url) && process.argv[2] !== undefined) {
  buildOne(Number(process.argv[2])).catch((err) => {
    process.stderr.write(`build-guests: ${err instanceof Error ? err.stack : String(err)}\n`)
    process.exitCode = 1
  })
}
