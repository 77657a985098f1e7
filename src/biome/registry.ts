/**
 * The deployment registry of one node: the newest deployment of each name (last writer
 * wins by signed hybrid-logical-clock time, no quorum), and the component bytes they
 * need, content addressed. Both survive a restart.
 */
import { mkdir, readdir, readFile, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { contentAddress, type ContentAddress } from '../identity/index.ts'
import type { AbortOptions } from '../interfaces/index.ts'
import { writeFileAtomic } from '../util/index.ts'
import { DeploymentError } from '../errors.ts'
import { isNewer, MAX_APPS, verifyDeployment, type DeploymentDocument } from './deployment.ts'

export interface RegistryInit {
  /** `<home>/biome` */
  root: string
}

export class Registry {
  readonly #root: string
  readonly #current = new Map<string, DeploymentDocument>()

  constructor (init: RegistryInit) {
    this.#root = init.root
  }

  get blobDir (): string {
    return join(this.#root, 'blobs')
  }

  get deployDir (): string {
    return join(this.#root, 'deployments')
  }

  /** Load what was registered before a restart (documents are checked again) */
  async open (options: AbortOptions = {}): Promise<void> {
    await mkdir(join(this.#root, 'registry'), { recursive: true })
    await mkdir(this.blobDir, { recursive: true })
    await mkdir(this.deployDir, { recursive: true })
    for (const file of await readdir(join(this.#root, 'registry'))) {
      options.signal?.throwIfAborted()
      if (!file.endsWith('.json')) {
        continue
      }
      try {
        const doc = verifyDeployment(JSON.parse(await readFile(join(this.#root, 'registry', file), 'utf8')))
        this.#current.set(doc.name, doc)
      } catch (err) {
        throw new DeploymentError(`Cannot open the deployment registry: ${join(this.#root, 'registry', file)} is damaged: ${(err as Error).message}; move it away to drop that deployment`, { cause: err })
      }
    }
  }

  /** The newest deployment of each name (removals too) */
  list (): DeploymentDocument[] {
    return [...this.#current.values()].sort((a, b) => a.name < b.name ? -1 : 1)
  }

  get (name: string): DeploymentDocument | undefined {
    return this.#current.get(name)
  }

  /**
   * Keep `doc` if it is newer than what this node has for its name (the caller checked
   * it). Durable when it resolves with true.
   */
  async offer (doc: DeploymentDocument): Promise<boolean> {
    if (!isNewer(doc, this.#current.get(doc.name))) {
      return false
    }
    if (!this.#current.has(doc.name) && this.#current.size >= MAX_APPS) {
      throw new DeploymentError(`Refusing app "${doc.name}": this node holds ${MAX_APPS} apps already, the most a mesh carries`)
    }
    const dir = join(this.#root, 'registry')
    const file = join(dir, `${doc.name}.json`)
    await writeFileAtomic(file, JSON.stringify(doc), { mode: 0o600 })
    // a concurrent offer may have stored a newer one meanwhile
    if (!isNewer(doc, this.#current.get(doc.name))) {
      await writeFileAtomic(file, JSON.stringify(this.#current.get(doc.name)), { mode: 0o600 })
      return false
    }
    this.#current.set(doc.name, doc)
    return true
  }

  /** Where the bytes of `hash` are (whether or not they are there yet) */
  blobPath (hash: ContentAddress): string {
    return join(this.blobDir, hash.slice(3))
  }

  async hasBlob (hash: ContentAddress): Promise<boolean> {
    return stat(this.blobPath(hash)).then((s) => s.isFile(), () => false)
  }

  /**
   * Store bytes under their content address.
   *
   * @throws DeploymentError when they are not the bytes of `expected`
   */
  async putBlob (bytes: Uint8Array, expected?: ContentAddress): Promise<ContentAddress> {
    const hash = contentAddress(bytes)
    if (expected !== undefined && hash !== expected) {
      throw new DeploymentError(`Refusing image bytes: they hash to ${hash}, not ${expected}`)
    }
    if (!await this.hasBlob(hash)) {
      await writeFileAtomic(this.blobPath(hash), bytes, { mode: 0o600 })
    }
    return hash
  }

  async readBlob (hash: ContentAddress): Promise<Buffer> {
    return readFile(this.blobPath(hash))
  }
}
