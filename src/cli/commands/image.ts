import type { Command } from 'commander'
import { open } from 'node:fs/promises'
import { resolve } from 'node:path'
import { formatSize } from '../../manifest/lite.ts'
import { ComponentLoadError } from '../../errors.ts'
import { homeOption, type CliContext } from '../context.ts'
import { table } from '../table.ts'

export function imageCommands (program: Command, ctx: CliContext): void {
  const image = program.command('image').description('Manage the local content-addressed image store (BLAKE3)')
  const signal = ctx.signal === undefined ? {} : { signal: ctx.signal }

  image.command('add')
    .description('Copy a WebAssembly component into the store under NAME:TAG')
    .argument('<file>', 'a .wasm component')
    .argument('<ref>', 'NAME:TAG (TAG defaults to "latest")')
    .action(async (file: string, ref: string, _opts: unknown, command: Command) => {
      const { imageStore } = await import('../../store/index.ts')
      const path = resolve(ctx.cwd, file)
      await checkComponentFile(path)
      const store = imageStore({ home: ctx.home(homeOption(command)) })
      const added = await store.add(path, ref, signal)
      ctx.stdout.write(`${added.ref} ${added.hash} (${formatSize(added.size)})\n`)
    })

  image.command('ls')
    .description('List the images in the store')
    .option('--json', 'print as JSON')
    .action(async (opts: { json?: boolean }, command: Command) => {
      const { imageStore } = await import('../../store/index.ts')
      const store = imageStore({ home: ctx.home(homeOption(command)) })
      const entries = await store.list(signal)
      if (opts.json === true) {
        ctx.stdout.write(JSON.stringify(entries, null, 2) + '\n')
      } else if (entries.length === 0) {
        ctx.stdout.write(`No images in ${store.root} (add one with "omega image add FILE NAME:TAG")\n`)
      } else {
        ctx.stdout.write(table(['ref', 'hash', 'size', 'added'], entries.map((e) => [e.ref, e.hash.slice(0, 19) + '…', formatSize(e.size), e.added])))
      }
    })

  image.command('rm')
    .description('Remove a tag (and its bytes when no other tag uses them)')
    .argument('<ref>', 'NAME:TAG')
    .action(async (ref: string, _opts: unknown, command: Command) => {
      const { imageStore } = await import('../../store/index.ts')
      const store = imageStore({ home: ctx.home(homeOption(command)) })
      const removed = await store.remove(ref, signal)
      ctx.stdout.write(`removed ${removed.ref} ${removed.hash}\n`)
    })
}

/** Refuse files that are not WebAssembly components before they enter the store */
async function checkComponentFile (path: string): Promise<void> {
  const header = Buffer.alloc(8)
  let read = 0
  try {
    const handle = await open(path, 'r')
    try {
      read = (await handle.read(header, 0, 8, 0)).bytesRead
    } finally {
      await handle.close()
    }
  } catch {
    return // the store reports missing files with its own clear error
  }
  if (read < 8 || header.readUInt32BE(0) !== 0x0061736d) {
    throw new ComponentLoadError(`Cannot add ${path}: not a WebAssembly file`)
  }
  // bytes 6..7 are the layer: 0 for a core module, 1 for a component
  if (header.readUInt16LE(6) !== 1) {
    throw new ComponentLoadError(`Cannot add ${path}: it is a core WebAssembly module, not a WASI 0.2 component (make one with "jco new" or "wasm-tools component new")`)
  }
}
