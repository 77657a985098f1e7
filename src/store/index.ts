/**
 * The local content-addressed image store: component files kept by BLAKE3 under
 * `<home>/images`, named by `name:tag` or by content address `b3:<hex>`.
 *
 * @example
 * ```ts
 * import { imageStore } from '../store/index.ts'
 *
 * const store = imageStore({ home })
 * await store.add('hello.wasm', 'hello:1')
 * const { path, hash, size } = await store.resolve('hello:1')
 * ```
 */
export { imageStore } from './image-store.ts'
export type { AddedImage, ImageEntry, ImageStore, ImageStoreInit, ResolvedImage } from './image-store.ts'
export { DEFAULT_TAG, isImagePath, parseImageRef } from './ref.ts'
export type { ImageRef } from './ref.ts'
export { ImageNotFoundError, ImageStoreError, InvalidImageRefError } from '../errors.ts'
