// Builds guest components written in JavaScript with componentize-js (StarlingMonkey):
//   examples/guests/probe/probe.js -> build/fixtures/probe.wasm
//   examples/pipeline/<brane>.js    -> examples/pipeline/<brane>.wasm (HTTP and event branes)
//   examples/js-hello/hello.js      -> examples/js-hello/hello.wasm (a reusable HTTP brane)
// componentize-js takes 11–26 s and ~780 MB, so each output is keyed by a hash of
// its inputs (sources, WIT, componentize-js version) kept beside it in `<output>.key`:
// an unchanged key skips the build without loading componentize-js at all. The WIT
// (renumbered to the WASI version StarlingMonkey implements, plus omega:brane) and the
// build itself (componentize-js in a child process, which frees its memory at exit and
// confines preview2-shim's preopens to that process) come from src/authoring, the
// module `omega new` and `omega build` use: nothing here works around them on its own.
import { createHash } from 'node:crypto'
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
// built by tsc before this script runs (npm run build)
import { componentizeJs, guestWitDeps } from '../dist/src/authoring/index.js'

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

async function run (index) {
  const target = JS_TARGETS[index]
  if (target === undefined) throw new RangeError(`No JS target ${index}`)
  const dir = await mkdtemp(join(tmpdir(), 'omega-guest-wit-'))
  try {
    await mkdir(join(dir, 'deps'))
    for (const { dep, text } of await targetDeps(target)) {
      await mkdir(join(dir, 'deps', dep))
      await writeFile(join(dir, 'deps', dep, 'package.wit'), text)
    }
    await writeFile(join(dir, 'world.wit'), await readFile(join(root, target.wit)))
    await componentizeJs({
      kind: 'component',
      source: join(root, target.source),
      wit: dir,
      world: target.world,
      output: join(root, target.output),
      disableFeatures: target.disableFeatures ?? []
    }, { what: target.source })
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}
