import { stat } from 'node:fs/promises'
import { dirname, resolve } from 'node:path'
import { ImageNotFoundError } from '../errors.ts'
import { imageStore, isImagePath } from '../store/index.ts'

export { isImagePath }
import type { AbortOptions } from '../interfaces/index.ts'

export interface ResolvedImageFile {
  /** absolute path of the component bytes */
  readonly path: string
  /** where it came from, for logs: the manifest path or the store reference */
  readonly source: string
}

/**
 * Find the bytes of a brane's image: a path relative to the manifest, or `NAME:TAG` /
 * `b3:HASH` in the local store. A missing image names the command that provides it.
 */
export async function resolveImage (brane: string, image: string, manifestFile: string, home: string, options: AbortOptions = {}): Promise<ResolvedImageFile> {
  if (!isImagePath(image)) {
    const found = await imageStore({ home }).resolve(image, options)
    return { path: found.path, source: `${image} (${found.hash.slice(0, 15)}…)` }
  }
  const path = resolve(dirname(manifestFile), image)
  try {
    const info = await stat(path)
    if (!info.isFile()) {
      throw new ImageNotFoundError(`Brane "${brane}": image "${image}" is not a file: ${path}`)
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      const build = path.includes('/examples/') ? ' (the examples are built by "npm run build")' : ''
      throw new ImageNotFoundError(
        `Brane "${brane}": image "${image}" not found at ${path}${build}; build it there, or add a component to the store with "omega image add FILE NAME:TAG" and set image = "NAME:TAG"`,
        { cause: err })
    }
    throw err
  }
  return { path, source: image }
}
