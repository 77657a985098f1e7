/**
 * Blob transfer: a node that takes a deployment fetches the images it lacks from other
 * nodes (the `blob` RPC, in chunks), and answers theirs from its registry.
 */
import { open } from 'node:fs/promises'
import { BraneNotFoundError, DeploymentError } from '../errors.ts'
import type { ContentAddress } from '../identity/index.ts'
import type { AbortOptions, Logger } from '../interfaces/index.ts'
import { deploymentId, type DeploymentDocument } from './deployment.ts'
import type { Registry } from './registry.ts'
import type { Rpc } from './rpc.ts'

/** Bytes of an image per RPC answer */
export const BLOB_CHUNK = 1024 * 1024

export interface FetchBlobsOptions extends AbortOptions {
  registry: Registry
  rpc: Rpc
  /** the nodes to ask for an image, in order (asked again for each image) */
  sources: () => string[]
  logger: Logger
}

/**
 * Fetch the images of `doc` that `registry` lacks, trying `sources` in turn.
 *
 * @throws DeploymentError when no source gave the bytes of an image
 */
export async function fetchBlobs (doc: DeploymentDocument, options: FetchBlobsOptions): Promise<void> {
  const { registry, rpc, logger } = options
  const callOptions: AbortOptions = options.signal === undefined ? {} : { signal: options.signal }
  for (const image of doc.images) {
    if (await registry.hasBlob(image.hash)) {
      continue
    }
    const sources = options.sources()
    let fetched = false
    for (const peer of sources) {
      try {
        const chunks: Uint8Array[] = []
        for (let offset = 0; offset < image.size || offset === 0; offset += BLOB_CHUNK) {
          const { body } = await rpc.call(peer, 'blob', { hash: image.hash, offset, length: BLOB_CHUNK }, undefined, callOptions)
          chunks.push(body)
          if (body.byteLength < BLOB_CHUNK) {
            break
          }
        }
        await registry.putBlob(Buffer.concat(chunks), image.hash)
        fetched = true
        break
      } catch (err) {
        logger.debug({ peer, hash: image.hash, err: (err as Error).message }, 'image fetch failed, trying another node')
      }
    }
    if (!fetched) {
      throw new DeploymentError(`Cannot take deployment ${deploymentId(doc)}: no node gave the bytes of image "${image.image}" (${image.hash})`)
    }
  }
}

/** Answer other nodes' `blob` calls from `registry` */
export function serveBlobs (rpc: Rpc, registry: Registry): void {
  rpc.register('blob', async ({ params }) => {
    const { hash, offset, length } = params as { hash: ContentAddress, offset: number, length: number }
    if (!/^b3:[0-9a-f]{64}$/.test(hash) || !await registry.hasBlob(hash)) {
      throw new BraneNotFoundError(`No image ${String(hash)} on this node`)
    }
    if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(length) || length < 0) {
      throw new RangeError('blob: offset and length must be whole numbers')
    }
    const file = await open(registry.blobPath(hash))
    try {
      const chunk = Buffer.alloc(Math.min(length, BLOB_CHUNK))
      const { bytesRead } = await file.read(chunk, 0, chunk.byteLength, offset)
      return { body: chunk.subarray(0, bytesRead) }
    } finally {
      await file.close()
    }
  })
}
