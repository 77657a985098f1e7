import { createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, sign as cryptoSign, verify as cryptoVerify } from 'node:crypto'
import type { KeyObject } from 'node:crypto'
import { link, mkdir, open, readFile, unlink } from 'node:fs/promises'
import { join } from 'node:path'
import { base58btc } from 'multiformats/bases/base58'
import { NodeKeyError } from '../errors.ts'
import { syncDir } from '../util/index.ts'
import type { AbortOptions } from '../interfaces/index.ts'

/** File name of the node's private key inside the Omega home directory */
export const NODE_KEY_FILE = 'node.key'

/** `did:key:` */
export const DID_KEY_PREFIX = 'did:key:'

/** The multicodec `ed25519-pub` (0xed) as an unsigned varint */
const ED25519_PUB_MULTICODEC = Uint8Array.of(0xed, 0x01)
/** DER prefixes that wrap a raw 32-byte Ed25519 key (RFC 8410) */
const SPKI_ED25519_PREFIX = Buffer.from('302a300506032b6570032100', 'hex')
const PKCS8_ED25519_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex')
const ED25519_KEY_BYTES = 32
const ED25519_SIGNATURE_BYTES = 64
/** Decoded public keys, so that verifying many records from a few signers does not re-parse DER each time */
const VERIFY_KEY_CACHE_MAX = 1024
const verifyKeyCache = new Map<string, KeyObject>()

/**
 * An Ed25519 key pair identifying one node (or one deployer). The private key never
 * leaves this object.
 *
 * @example
 * ```ts
 * const key = await loadOrCreateNodeKey(defaultHome(env))
 * const signature = key.sign(bytes)
 * verify(key.did, bytes, signature) // true
 * ```
 */
export class NodeKey {
  /** `did:key:z6Mk…` of the public key */
  readonly did: string
  readonly #privateKey: KeyObject
  readonly #publicKey: Uint8Array

  /**
   * Prefer {@link loadOrCreateNodeKey}, {@link generateNodeKey} or {@link nodeKeyFromSeed}.
   *
   * @throws {TypeError} if `privateKey` is not an Ed25519 private key
   */
  constructor (privateKey: KeyObject) {
    if (privateKey.type !== 'private' || privateKey.asymmetricKeyType !== 'ed25519') {
      throw new TypeError(`Cannot create node key: expected an Ed25519 private key, got ${privateKey.type} ${privateKey.asymmetricKeyType ?? 'key'}`)
    }
    this.#privateKey = privateKey
    const spki = createPublicKey(privateKey).export({ format: 'der', type: 'spki' })
    this.#publicKey = new Uint8Array(spki.subarray(SPKI_ED25519_PREFIX.length))
    this.did = didFromPublicKey(this.#publicKey)
  }

  /** The raw 32-byte Ed25519 public key (a copy) */
  get publicKey (): Uint8Array {
    return this.#publicKey.slice()
  }

  /** A 64-byte Ed25519 signature of `bytes` */
  sign (bytes: Uint8Array): Uint8Array {
    return new Uint8Array(cryptoSign(null, bytes, this.#privateKey))
  }

  /** The private key as PKCS#8 PEM, as stored in `node.key` */
  exportPem (): string {
    return this.#privateKey.export({ format: 'pem', type: 'pkcs8' }).toString()
  }

  /** Never print key material by accident */
  toJSON (): { did: string } {
    return { did: this.did }
  }
}

/** A fresh random node key (not persisted) */
export function generateNodeKey (): NodeKey {
  return new NodeKey(generateKeyPairSync('ed25519').privateKey)
}

/**
 * The node key derived from a 32-byte Ed25519 seed (the RFC 8032 private key). For tests
 * and deterministic fixtures; real nodes use {@link loadOrCreateNodeKey}.
 *
 * @throws {RangeError} if `seed` is not 32 bytes
 */
export function nodeKeyFromSeed (seed: Uint8Array): NodeKey {
  if (seed.byteLength !== ED25519_KEY_BYTES) {
    throw new RangeError(`Cannot create node key from seed: expected ${ED25519_KEY_BYTES} bytes, got ${seed.byteLength}`)
  }
  const der = Buffer.concat([PKCS8_ED25519_PREFIX, seed])
  return new NodeKey(createPrivateKey({ key: der, format: 'der', type: 'pkcs8' }))
}

/**
 * The `did:key` of a raw Ed25519 public key: `did:key:` + base58btc multibase (`z`) of the
 * multicodec varint 0xed 0x01 followed by the 32 key bytes (W3C CCG did:key method).
 *
 * @throws {RangeError} if `publicKey` is not 32 bytes
 */
export function didFromPublicKey (publicKey: Uint8Array): string {
  if (publicKey.byteLength !== ED25519_KEY_BYTES) {
    throw new RangeError(`Cannot encode did:key: expected a ${ED25519_KEY_BYTES}-byte Ed25519 public key, got ${publicKey.byteLength} bytes`)
  }
  const bytes = new Uint8Array(ED25519_PUB_MULTICODEC.length + ED25519_KEY_BYTES)
  bytes.set(ED25519_PUB_MULTICODEC, 0)
  bytes.set(publicKey, ED25519_PUB_MULTICODEC.length)
  return DID_KEY_PREFIX + base58btc.encode(bytes)
}

/**
 * The raw 32-byte Ed25519 public key inside a `did:key`.
 *
 * @throws {TypeError} if `did` is not an Ed25519 `did:key` (wrong method, multibase, codec or
 * length; DID URLs with a fragment, path or query are rejected too)
 */
export function publicKeyFromDid (did: string): Uint8Array {
  if (typeof did !== 'string' || !did.startsWith(DID_KEY_PREFIX)) {
    throw new TypeError(`Cannot decode did:key "${String(did)}": expected it to start with "${DID_KEY_PREFIX}z"`)
  }
  const id = did.slice(DID_KEY_PREFIX.length)
  if (/[#?/]/.test(id)) {
    throw new TypeError(`Cannot decode did:key "${did}": expected a bare DID, not a DID URL with a fragment, query or path`)
  }
  if (!id.startsWith('z')) {
    throw new TypeError(`Cannot decode did:key "${did}": expected base58btc multibase (prefix "z")`)
  }
  let bytes: Uint8Array
  try {
    bytes = base58btc.decode(id)
  } catch (err) {
    throw new TypeError(`Cannot decode did:key "${did}": not valid base58btc`, { cause: err })
  }
  if (bytes[0] !== ED25519_PUB_MULTICODEC[0] || bytes[1] !== ED25519_PUB_MULTICODEC[1]) {
    throw new TypeError(`Cannot decode did:key "${did}": expected multicodec ed25519-pub (0xed 0x01), got 0x${(bytes[0] ?? 0).toString(16)} 0x${(bytes[1] ?? 0).toString(16)}`)
  }
  if (bytes.byteLength !== ED25519_PUB_MULTICODEC.length + ED25519_KEY_BYTES) {
    throw new TypeError(`Cannot decode did:key "${did}": expected a ${ED25519_KEY_BYTES}-byte Ed25519 public key, got ${bytes.byteLength - ED25519_PUB_MULTICODEC.length} bytes`)
  }
  return bytes.slice(ED25519_PUB_MULTICODEC.length)
}

function verifyKeyFor (did: string): KeyObject {
  let key = verifyKeyCache.get(did)
  if (key === undefined) {
    const der = Buffer.concat([SPKI_ED25519_PREFIX, publicKeyFromDid(did)])
    key = createPublicKey({ key: der, format: 'der', type: 'spki' })
    if (verifyKeyCache.size >= VERIFY_KEY_CACHE_MAX) {
      // Maps iterate in insertion order: drop the oldest entry
      const oldest = verifyKeyCache.keys().next().value
      if (oldest !== undefined) {
        verifyKeyCache.delete(oldest)
      }
    }
    verifyKeyCache.set(did, key)
  }
  return key
}

/**
 * True if `signature` is a valid Ed25519 signature of `bytes` by the key in `did`.
 * A wrong or malformed signature returns false; a malformed did throws.
 *
 * @throws {TypeError} if `did` is not an Ed25519 `did:key`
 */
export function verify (did: string, bytes: Uint8Array, signature: Uint8Array): boolean {
  const key = verifyKeyFor(did)
  if (signature.byteLength !== ED25519_SIGNATURE_BYTES) {
    return false
  }
  return cryptoVerify(null, bytes, key, signature)
}

function isErrnoException (err: unknown, code: string): boolean {
  return err instanceof Error && (err as NodeJS.ErrnoException).code === code
}

/**
 * Read an Ed25519 private key (PEM, as in `<home>/node.key`) from `file`
 *
 * @throws {NodeKeyError} when it is not one
 */
export async function readNodeKeyFile (file: string): Promise<NodeKey> {
  const text = await readFile(file, 'utf8')
  let privateKey: KeyObject
  try {
    privateKey = createPrivateKey({ key: text, format: 'pem' })
  } catch (err) {
    throw new NodeKeyError(`Cannot load node key "${file}": it is not a PEM-encoded private key. It was left untouched, because replacing it would change this node's identity: restore it from a backup, or move it away to create a new key`, { cause: err })
  }
  if (privateKey.asymmetricKeyType !== 'ed25519') {
    throw new NodeKeyError(`Cannot load node key "${file}": expected an Ed25519 private key, got ${privateKey.asymmetricKeyType ?? 'an unknown key type'}. It was left untouched: move it away to create a new key`)
  }
  return new NodeKey(privateKey)
}

async function writeDurably (file: string, text: string, flag: 'wx'): Promise<void> {
  const handle = await open(file, flag, 0o600)
  try {
    await handle.writeFile(text)
    await handle.sync()
  } finally {
    await handle.close()
  }
}

/**
 * Place `text` at `file` only if `file` does not exist yet, so that a reader never sees a
 * partial file and concurrent creators agree on one winner. Returns false if another
 * process created it first.
 */
async function createExclusive (file: string, dir: string, text: string): Promise<boolean> {
  const temp = join(dir, `.${NODE_KEY_FILE}.${randomBytes(8).toString('hex')}.tmp`)
  await writeDurably(temp, text, 'wx')
  try {
    // link(2), unlike rename(2), fails with EEXIST instead of replacing an existing key
    await link(temp, file)
    return true
  } catch (err) {
    if (isErrnoException(err, 'EEXIST')) {
      return false
    }
    if (!isErrnoException(err, 'EPERM') && !isErrnoException(err, 'ENOTSUP') && !isErrnoException(err, 'ENOSYS')) {
      throw err
    }
  } finally {
    await unlink(temp).catch(() => {})
  }
  // A file system without hard links: exclusive create in place (still never two keys)
  try {
    await writeDurably(file, text, 'wx')
    return true
  } catch (err) {
    if (isErrnoException(err, 'EEXIST')) {
      return false
    }
    throw err
  }
}

/**
 * The node key stored in `<home>/node.key` (PKCS#8 PEM, mode 0600), created on first use
 * (`home` is created with mode 0700 if missing). Concurrent first runs agree on one key.
 *
 * @throws {NodeKeyError} if the file exists but is not an Ed25519 private key; it is never overwritten
 * @example
 * ```ts
 * const key = await loadOrCreateNodeKey('/home/me/.omega')
 * key.did // 'did:key:z6Mk…'
 * ```
 */
export async function loadOrCreateNodeKey (home: string, options: AbortOptions = {}): Promise<NodeKey> {
  options.signal?.throwIfAborted()
  const file = join(home, NODE_KEY_FILE)
  try {
    return await readNodeKeyFile(file)
  } catch (err) {
    if (!isErrnoException(err, 'ENOENT')) {
      if (err instanceof NodeKeyError) {
        throw err
      }
      throw new NodeKeyError(`Cannot read node key "${file}": ${err instanceof Error ? err.message : String(err)}`, { cause: err })
    }
  }
  options.signal?.throwIfAborted()
  await mkdir(home, { recursive: true, mode: 0o700 })
  const key = generateNodeKey()
  if (await createExclusive(file, home, key.exportPem())) {
    await syncDir(home)
    return key
  }
  // Another process created the key between our read and our create: use theirs
  return readNodeKeyFile(file)
}
