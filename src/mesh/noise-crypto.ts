/**
 * Noise's crypto (`@chainsafe/libp2p-noise`'s Node implementation) with the X25519 private
 * keys kept as Node key objects. Its default imports the raw private key again for every
 * Diffie-Hellman: on Node 20 `crypto.createPrivateKey` of an X25519 PKCS#8 key takes
 * ~300 µs here (the DH itself ~30 µs), and a handshake does three per side, the static key
 * in two of them. Here a key pair made or derived by this object keeps its key object,
 * looked up by the raw key; everything else is the default.
 */
import { createPrivateKey, createPublicKey, diffieHellman, generateKeyPairSync, type KeyObject } from 'node:crypto'
import { defaultCrypto } from '@chainsafe/libp2p-noise/crypto'
import type { ICryptoInterface } from '@chainsafe/libp2p-noise'

/** a Uint8Array, or noise's list of chunks (uint8arraylist) */
type Bytes = Uint8Array | { subarray: () => Uint8Array }

// DER prefixes of X25519 keys: PKCS#8 (private) and SubjectPublicKeyInfo (public)
const PKCS8_PREFIX = Buffer.from([0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x6e, 0x04, 0x22, 0x04, 0x20])
const SPKI_PREFIX = Buffer.from([0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x6e, 0x03, 0x21, 0x00])

/**
 * Key objects of the private keys in use: the node's static key, and each handshake's
 * ephemeral key (used twice, then never again). Bounded: the oldest go first.
 */
const MAX_KEYS = 256

/**
 * Key objects of the peers' public keys, for the whole process (a peer's ephemeral key
 * is used in two Diffie-Hellmans of a handshake, its static key in every handshake with
 * it): `createPublicKey` of an X25519 key takes ~80 µs here, the DH itself ~30 µs
 */
const publicKeys = new Map<string, KeyObject>()

function publicKeyOf (raw: Uint8Array): KeyObject {
  const id = Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength).toString('base64')
  let key = publicKeys.get(id)
  if (key === undefined) {
    key = createPublicKey({ key: Buffer.concat([SPKI_PREFIX, raw]), format: 'der', type: 'spki' })
    if (publicKeys.size >= MAX_KEYS * 4) {
      publicKeys.delete(publicKeys.keys().next().value as string)
    }
    publicKeys.set(id, key)
  }
  return key
}

function bytesOf (data: Bytes): Uint8Array {
  return data instanceof Uint8Array ? data : data.subarray()
}

/** A noise crypto implementation for one process; pass it as `noise({ crypto })` */
export function noiseCrypto (): ICryptoInterface {
  const keys = new Map<string, KeyObject>()
  /** `key` is the object of the raw private key `id` names: keep it (as the youngest) */
  const keep = (id: string, key: KeyObject): KeyObject => {
    keys.delete(id)
    keys.set(id, key)
    if (keys.size > MAX_KEYS) {
      keys.delete(keys.keys().next().value as string)
    }
    return key
  }
  const idOf = (raw: Uint8Array): string => Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength).toString('base64')
  const privateKeyOf = (raw: Uint8Array): KeyObject => {
    const id = idOf(raw)
    return keep(id, keys.get(id) ?? createPrivateKey({ key: Buffer.concat([PKCS8_PREFIX, raw]), format: 'der', type: 'pkcs8' }))
  }
  return {
    ...defaultCrypto,
    generateX25519KeyPair () {
      const { publicKey, privateKey } = generateKeyPairSync('x25519')
      const raw = new Uint8Array(privateKey.export({ format: 'der', type: 'pkcs8' }).subarray(PKCS8_PREFIX.length))
      keep(idOf(raw), privateKey)
      return { publicKey: new Uint8Array(publicKey.export({ format: 'der', type: 'spki' }).subarray(SPKI_PREFIX.length)), privateKey: raw }
    },
    generateX25519KeyPairFromSeed (seed: Uint8Array) {
      const privateKey = privateKeyOf(seed)
      return { publicKey: new Uint8Array(createPublicKey(privateKey).export({ format: 'der', type: 'spki' }).subarray(SPKI_PREFIX.length)), privateKey: seed }
    },
    generateX25519SharedKey (privateKey: Bytes, publicKey: Bytes) {
      return diffieHellman({ privateKey: privateKeyOf(bytesOf(privateKey)), publicKey: publicKeyOf(bytesOf(publicKey)) })
    }
  }
}
