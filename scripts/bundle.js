// Bundles what runs on Omega's threads: dist/src (tsc's output) -> dist/cli/.
//   dist/src/cli/bin.js                -> dist/cli/omega.js (bin/omega.js runs it)
//   dist/src/runtime/wasm/worker.js    -> dist/cli/worker.js (a brane's worker), and the
//   other worker threads the same way
// Node spends ~1–2 ms on each module it loads here (resolve, read, compile, link), and
// `omega up` read ~200 of them across two threads before it served; a bundle is a few
// files. Lazy imports stay lazy (code splitting). Packages that find files next to their
// own code (native addons, wasm, the TypeScript compiler) stay in node_modules. The
// tests import dist/src directly; the command-line tests run the bundle.
// Run by `npm run build` after tsc; takes about a second. It writes dist/cli/ anew each time.
import { readFile, rm } from 'node:fs/promises'
import { dirname, join, relative, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { performance } from 'node:perf_hooks'
import { build } from 'esbuild'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const src = join(root, 'dist/src')
const outdir = join(root, 'dist/cli')

/** Entry points: output name -> module under dist/src */
const ENTRIES = {
  omega: 'cli/bin.js',
  worker: 'runtime/wasm/worker.js',
  'checkpoint-worker': 'util/checkpoint-worker.js',
  'transpile-worker': 'runtime/wasm/transpile-worker.js',
  'command-worker': 'runtime/wasm/command-worker.js'
}
const entryOf = new Map(Object.entries(ENTRIES).map(([name, file]) => [join(src, file), `${name}.js`]))

/**
 * Packages that read files beside their own code, or are native; and the mesh stack
 * (libp2p), which only mesh commands load, and which a lone node is tested never to load
 */
const EXTERNAL = ['better-sqlite3', '@bytecodealliance/*', '@biscuit-auth/*', 'typescript', 'hash-wasm', 'libp2p', '@libp2p/*', '@chainsafe/*', '@multiformats/*']

/**
 * Every output file sits in outdir, a module's code in a chunk beside others. A module
 * that starts a worker bundled here (`new URL('./worker.js', import.meta.url)`) gets that
 * worker's bundle; any other use of its own URL gets the URL it has unbundled, where its
 * assets are found relative to it.
 */
const ownUrl = {
  name: 'own-import-meta-url',
  setup (b) {
    b.onLoad({ filter: /[\\/]dist[\\/]src[\\/].*\.js$/ }, async ({ path }) => {
      const text = await readFile(path, 'utf8')
      const own = `new URL(${JSON.stringify(relative(outdir, path).split('\\').join('/'))}, import.meta.url).href`
      const contents = text.replace(/new URL\('(\.\.?\/[^']+\.js)', import\.meta\.url\)|import\.meta\.url/g, (whole, rel) => {
        const bundled = rel === undefined ? undefined : entryOf.get(resolve(dirname(path), rel))
        if (bundled !== undefined) {
          return `new URL(${JSON.stringify(`./${bundled}`)}, import.meta.url)`
        }
        return whole.replace('import.meta.url', own)
      })
      return { contents, loader: 'js', resolveDir: dirname(path) }
    })
  }
}

const start = performance.now()
// chunk names carry a hash: the last build's would stay beside this one's
await rm(outdir, { recursive: true, force: true })
await build({
  entryPoints: Object.fromEntries(Object.entries(ENTRIES).map(([name, file]) => [name, join(src, file)])),
  outdir,
  // every output file in outdir itself: the URLs ownUrl writes are relative to it
  chunkNames: '[name]-[hash]',
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  external: EXTERNAL,
  // CommonJS packages inside an ES module bundle still call require() for Node's own modules
  banner: { js: "import { createRequire as __omegaRequire } from 'node:module'; const require = __omegaRequire(import.meta.url);" },
  sourcemap: 'linked',
  logLevel: 'warning',
  plugins: [ownUrl]
})
console.log(`bundle: dist/cli/ in ${(performance.now() - start).toFixed(0)} ms`)
