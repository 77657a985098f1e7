import { randomBytes } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { mkdir, open, readdir, readFile, rename, stat, unlink } from 'node:fs/promises'
import { join } from 'node:path'
import { ImageNotFoundError, ImageStoreError, InvalidImageRefError } from '../errors.ts'
import { CONTENT_ADDRESS_PREFIX, createBlake3, formatContentAddress, parseContentAddress } from '../identity/index.ts'
import type { ContentAddress } from '../identity/index.ts'
import type { AbortOptions } from '../interfaces/index.ts'
import { withFileLock } from './lock.ts'
import { parseImageRef } from './ref.ts'
import { syncDir, writeFileAtomic } from '../util/index.ts'

/** Configuration of {@link imageStore} */
export interface ImageStoreInit {
  /** Omega's home directory; the store lives in `<home>/images` */
  home: string
  /**
   * How long to wait for another process's lock on the store, in ms
   *
   * @default 30_000
   */
  lockTimeoutMs?: number
}

/** Where an image's bytes are */
export interface ResolvedImage {
  /** the blob file, `<home>/images/blobs/<hex>`; treat it as read-only */
  readonly path: string
  /** the BLAKE3 content address, `b3:<hex>` */
  readonly hash: ContentAddress
  /** bytes */
  readonly size: number
}

/** One tag in the store */
export interface ImageEntry {
  /** `name:tag` */
  readonly ref: string
  readonly hash: ContentAddress
  readonly size: number
  /** when the tag was last set, ISO 8601 */
  readonly added: string
}

/** What {@link ImageStore.add} stored */
export interface AddedImage extends ImageEntry {
  readonly path: string
}

/** A local content-addressed store of component files, tagged `name:tag` */
export interface ImageStore {
  /** `<home>/images` */
  readonly root: string
  /**
   * Copy `filePath` into the store (once per distinct content) and point `ref` at it.
   * Re-tagging moves the tag. A blob no tag points to any more is deleted.
   *
   * @throws {InvalidImageRefError} for a malformed `ref`
   * @throws {ImageNotFoundError} if `filePath` does not exist or is not a file
   */
  add: (filePath: string, ref: string, options?: AbortOptions) => Promise<AddedImage>
  /**
   * Locate an image by `name[:tag]` or by content address `b3:<hex>`.
   *
   * @throws {ImageNotFoundError} naming the command that adds it
   * @throws {InvalidImageRefError} for a malformed reference
   */
  resolve: (ref: string, options?: AbortOptions) => Promise<ResolvedImage>
  /** Every tag, sorted by ref */
  list: (options?: AbortOptions) => Promise<ImageEntry[]>
  /**
   * Remove a tag, and its blob if no other tag points to it.
   *
   * @throws {ImageNotFoundError} if the tag is not in the store
   */
  remove: (ref: string, options?: AbortOptions) => Promise<ImageEntry>
}

interface IndexRecord {
  hash: ContentAddress
  size: number
  added: string
}

interface IndexFile {
  version: 1
  images: Record<string, IndexRecord>
}

const INDEX_VERSION = 1
const COPY_CHUNK = 1024 * 1024
/** Temp files older than this were left by a crash and are swept on the next add */
const ABANDONED_TEMP_MS = 24 * 60 * 60 * 1000

function errnoCode (err: unknown): string | undefined {
  return err instanceof Error ? (err as NodeJS.ErrnoException).code : undefined
}

function tempName (): string {
  return `${randomBytes(8).toString('hex')}.tmp`
}

async function hashFile (path: string, signal: AbortSignal | undefined): Promise<{ hex: string, size: number }> {
  const hasher = createBlake3()
  let size = 0
  const stream = createReadStream(path, signal === undefined ? { highWaterMark: COPY_CHUNK } : { highWaterMark: COPY_CHUNK, signal })
  for await (const chunk of stream as AsyncIterable<Buffer>) {
    hasher.update(chunk)
    size += chunk.byteLength
  }
  return { hex: hasher.digestHex(), size }
}

/** Copy `source` to a new file `target`, fsync it, and return the BLAKE3 and size of what was written */
async function copyHashing (source: string, target: string, signal: AbortSignal | undefined): Promise<{ hex: string, size: number }> {
  const hasher = createBlake3()
  let size = 0
  // Blobs are immutable: create read-only (the returned descriptor can still write)
  const out = await open(target, 'wx', 0o444)
  try {
    const stream = createReadStream(source, signal === undefined ? { highWaterMark: COPY_CHUNK } : { highWaterMark: COPY_CHUNK, signal })
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      hasher.update(chunk)
      size += chunk.byteLength
      await out.write(chunk)
    }
    await out.sync()
  } finally {
    await out.close()
  }
  return { hex: hasher.digestHex(), size }
}

function isIndexRecord (value: unknown): value is IndexRecord {
  if (typeof value !== 'object' || value === null) {
    return false
  }
  const record = value as Record<string, unknown>
  return typeof record['hash'] === 'string' && record['hash'].startsWith(CONTENT_ADDRESS_PREFIX) &&
    typeof record['size'] === 'number' && typeof record['added'] === 'string'
}

class FileImageStore implements ImageStore {
  readonly root: string
  readonly #blobs: string
  readonly #tmp: string
  readonly #indexFile: string
  readonly #lockFile: string
  readonly #lockTimeoutMs: number
  /** Serialises this process's writers, so they do not spin on the lock file */
  #writes: Promise<unknown> = Promise.resolve()

  constructor (init: ImageStoreInit) {
    this.root = join(init.home, 'images')
    this.#blobs = join(this.root, 'blobs')
    this.#tmp = join(this.root, 'tmp')
    this.#indexFile = join(this.root, 'index.json')
    this.#lockFile = join(this.root, 'index.lock')
    this.#lockTimeoutMs = init.lockTimeoutMs ?? 30_000
  }

  async add (filePath: string, ref: string, options: AbortOptions = {}): Promise<AddedImage> {
    const { signal } = options
    signal?.throwIfAborted()
    const parsed = parseImageRef(ref)
    await this.#checkSource(filePath, parsed.ref)
    await mkdir(this.#blobs, { recursive: true })
    await mkdir(this.#tmp, { recursive: true })
    await this.#sweepTemp()

    // Copy outside the lock (it can be slow); only the commit below is serialised
    const temp = join(this.#tmp, tempName())
    try {
      const copied = await copyHashing(filePath, temp, signal)
      const written = await hashFile(temp, signal)
      if (written.hex !== copied.hex || written.size !== copied.size) {
        throw new ImageStoreError(`Cannot add image "${parsed.ref}": the copy in "${temp}" does not read back as written (BLAKE3 ${written.hex} ≠ ${copied.hex}); check the disk`)
      }
      const hash = formatContentAddress(copied.hex)
      const blob = join(this.#blobs, copied.hex)
      const added = new Date().toISOString()
      await this.#mutate(async (index) => {
        await this.#placeBlob(temp, blob, copied.hex, signal)
        const previous = index.images[parsed.ref]
        index.images[parsed.ref] = { hash, size: copied.size, added }
        return previous === undefined ? [] : [previous.hash]
      }, signal)
      return { ref: parsed.ref, hash, size: copied.size, added, path: blob }
    } finally {
      await unlink(temp).catch(() => {})
    }
  }

  async resolve (ref: string, options: AbortOptions = {}): Promise<ResolvedImage> {
    options.signal?.throwIfAborted()
    if (ref.startsWith(CONTENT_ADDRESS_PREFIX)) {
      return this.#resolveAddress(ref)
    }
    const parsed = parseImageRef(ref)
    const record = (await this.#readIndex()).images[parsed.ref]
    if (record === undefined) {
      throw new ImageNotFoundError(`Image "${parsed.ref}" is not in the store (${this.root}): add it with "omega image add FILE ${parsed.ref}"`)
    }
    const hex = parseContentAddress(record.hash)
    const path = join(this.#blobs, hex)
    const size = await this.#blobSize(path)
    if (size === undefined) {
      throw new ImageNotFoundError(`Image "${parsed.ref}" points to ${record.hash}, which is missing from the store (${this.root}): add it again with "omega image add FILE ${parsed.ref}"`)
    }
    if (size !== record.size) {
      throw new ImageStoreError(`Image "${parsed.ref}" is damaged: blob "${path}" has ${size} bytes, expected ${record.size}: add it again with "omega image add FILE ${parsed.ref}"`)
    }
    return { path, hash: record.hash, size }
  }

  async list (options: AbortOptions = {}): Promise<ImageEntry[]> {
    options.signal?.throwIfAborted()
    const index = await this.#readIndex()
    return Object.entries(index.images)
      .map(([ref, record]) => ({ ref, hash: record.hash, size: record.size, added: record.added }))
      .sort((a, b) => (a.ref < b.ref ? -1 : a.ref > b.ref ? 1 : 0))
  }

  async remove (ref: string, options: AbortOptions = {}): Promise<ImageEntry> {
    options.signal?.throwIfAborted()
    const parsed = parseImageRef(ref)
    let removed: ImageEntry | undefined
    await this.#mutate(async (index) => {
      const record = index.images[parsed.ref]
      if (record === undefined) {
        throw new ImageNotFoundError(`Cannot remove image "${parsed.ref}": it is not in the store (${this.root})`)
      }
      delete index.images[parsed.ref]
      removed = { ref: parsed.ref, ...record }
      return [record.hash]
    }, options.signal)
    return removed as ImageEntry
  }

  async #checkSource (filePath: string, ref: string): Promise<void> {
    try {
      const info = await stat(filePath)
      if (!info.isFile()) {
        throw new ImageNotFoundError(`Cannot add image "${ref}": "${filePath}" is not a file`)
      }
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') {
        throw new ImageNotFoundError(`Cannot add image "${ref}": file "${filePath}" does not exist`, { cause: err })
      }
      throw err
    }
  }

  /** Best effort: delete temp files a crashed writer left behind (never a live writer's) */
  async #sweepTemp (): Promise<void> {
    const cutoff = Date.now() - ABANDONED_TEMP_MS
    for (const name of await readdir(this.#tmp).catch(() => [])) {
      const path = join(this.#tmp, name)
      const info = await stat(path).catch(() => undefined)
      if (info !== undefined && info.mtimeMs < cutoff) {
        await unlink(path).catch(() => {})
      }
    }
  }

  async #resolveAddress (address: string): Promise<ResolvedImage> {
    let hex: string
    try {
      hex = parseContentAddress(address)
    } catch (err) {
      throw new InvalidImageRefError(`Invalid image reference "${address}": a content address is "b3:" followed by 64 lowercase hex digits`, { cause: err })
    }
    const path = join(this.#blobs, hex)
    const size = await this.#blobSize(path)
    if (size === undefined) {
      throw new ImageNotFoundError(`Image "${address}" is not in the store (${this.root}): add the file with "omega image add FILE NAME:TAG"`)
    }
    return { path, hash: formatContentAddress(hex), size }
  }

  async #blobSize (path: string): Promise<number | undefined> {
    try {
      return (await stat(path)).size
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') {
        return undefined
      }
      throw err
    }
  }

  /** Move a verified temp file to `blob`, unless an intact copy is already there */
  async #placeBlob (temp: string, blob: string, hex: string, signal: AbortSignal | undefined): Promise<void> {
    try {
      const existing = await hashFile(blob, signal)
      if (existing.hex === hex) {
        return // identical content is stored once
      }
      // A damaged blob (bit rot, a partial copy by hand): replace it with the good bytes
    } catch (err) {
      if (errnoCode(err) !== 'ENOENT') {
        throw err
      }
    }
    await rename(temp, blob)
    await syncDir(this.#blobs)
  }

  /**
   * Read-modify-write the index under the store lock. `change` edits the index in place
   * and returns the hashes whose tags it dropped; blobs no tag points to any more are
   * deleted after the new index is durable.
   */
  async #mutate (change: (index: IndexFile) => Promise<readonly ContentAddress[]>, signal: AbortSignal | undefined): Promise<void> {
    const run = async (): Promise<void> => {
      await mkdir(this.#tmp, { recursive: true })
      await withFileLock(this.#lockFile, async () => {
        const index = await this.#readIndex()
        const dropped = await change(index)
        await this.#writeIndex(index)
        const referenced = new Set(Object.values(index.images).map((record) => record.hash))
        for (const hash of dropped) {
          if (!referenced.has(hash)) {
            await unlink(join(this.#blobs, parseContentAddress(hash))).catch(() => {})
          }
        }
      }, signal === undefined ? { timeoutMs: this.#lockTimeoutMs } : { timeoutMs: this.#lockTimeoutMs, signal })
    }
    const result = this.#writes.then(run, run)
    this.#writes = result.catch(() => {})
    await result
  }

  async #readIndex (): Promise<IndexFile> {
    let text: string
    try {
      text = await readFile(this.#indexFile, 'utf8')
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') {
        return { version: INDEX_VERSION, images: {} }
      }
      throw err
    }
    let parsed: unknown
    try {
      parsed = JSON.parse(text)
    } catch (err) {
      throw new ImageStoreError(`Cannot read the image index "${this.#indexFile}": it is not valid JSON`, { cause: err })
    }
    const images = (parsed as { images?: unknown } | null)?.images
    if ((parsed as { version?: unknown } | null)?.version !== INDEX_VERSION || typeof images !== 'object' || images === null) {
      throw new ImageStoreError(`Cannot read the image index "${this.#indexFile}": expected { "version": ${INDEX_VERSION}, "images": { … } }`)
    }
    const result: IndexFile = { version: INDEX_VERSION, images: {} }
    for (const [ref, record] of Object.entries(images)) {
      if (!isIndexRecord(record)) {
        throw new ImageStoreError(`Cannot read the image index "${this.#indexFile}": entry "${ref}" is not { hash, size, added }`)
      }
      result.images[ref] = { hash: record.hash, size: record.size, added: record.added }
    }
    return result
  }

  async #writeIndex (index: IndexFile): Promise<void> {
    await writeFileAtomic(this.#indexFile, JSON.stringify(index, null, 2) + '\n', { mode: 0o644, tempDir: this.#tmp })
  }
}

/**
 * The local image store in `<home>/images`: blobs at `blobs/<blake3 hex>` (written to a
 * temp file, verified, then renamed, so a crash loses nothing), tags in `index.json`
 * (replaced atomically under a lock file shared with other processes).
 *
 * @example
 * ```ts
 * const store = imageStore({ home: defaultHome(env) })
 * await store.add('hello.wasm', 'hello:1')
 * const { path, hash } = await store.resolve('hello:1')
 * ```
 */
export function imageStore (init: ImageStoreInit): ImageStore {
  return new FileImageStore(init)
}
