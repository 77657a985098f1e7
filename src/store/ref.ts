import { isAbsolute } from 'node:path'
import { InvalidImageRefError } from '../errors.ts'
import { isContentAddress } from '../identity/index.ts'

/** The tag used when a reference has none */
export const DEFAULT_TAG = 'latest'

const NAME = /^[a-z0-9][a-z0-9._/-]*$/
const NAME_MAX = 255
const TAG = /^[A-Za-z0-9._-]{1,128}$/

/** A parsed `name:tag` image reference */
export interface ImageRef {
  readonly name: string
  readonly tag: string
  /** the canonical `name:tag` form (with the default tag filled in) */
  readonly ref: string
}

/**
 * Parse `name[:tag]`. The name is lowercase `[a-z0-9][a-z0-9._/-]*` (at most 255
 * characters); the tag is `[A-Za-z0-9._-]{1,128}` and defaults to `latest`.
 *
 * @throws {InvalidImageRefError} if the reference is malformed, or is a content address
 * (`b3:<hex>`), which names content rather than a tag
 * @example
 * ```ts
 * parseImageRef('hello') // { name: 'hello', tag: 'latest', ref: 'hello:latest' }
 * ```
 */
export function parseImageRef (ref: string): ImageRef {
  if (isContentAddress(ref)) {
    throw new InvalidImageRefError(`Invalid image reference "${ref}": this is a content address; a tag is written name:tag`)
  }
  const colon = ref.indexOf(':')
  const name = colon === -1 ? ref : ref.slice(0, colon)
  const tag = colon === -1 ? DEFAULT_TAG : ref.slice(colon + 1)
  if (name.length > NAME_MAX || !NAME.test(name)) {
    throw new InvalidImageRefError(`Invalid image reference "${ref}": the name must start with a lowercase letter or digit and contain only a-z 0-9 . _ / - (at most ${NAME_MAX} characters), e.g. "hello:1"`)
  }
  if (!TAG.test(tag)) {
    throw new InvalidImageRefError(`Invalid image reference "${ref}": the tag after ":" must be 1 to 128 of A-Z a-z 0-9 . _ -, e.g. "hello:1"`)
  }
  return { name, tag, ref: `${name}:${tag}` }
}

/**
 * Whether an `image` value names a file (relative to the manifest) rather than a store
 * reference: anything ending in `.wasm`, or starting with `/`, `./` or `../`.
 */
export function isImagePath (image: string): boolean {
  return image.endsWith('.wasm') || isAbsolute(image) || image.startsWith('./') || image.startsWith('../')
}
