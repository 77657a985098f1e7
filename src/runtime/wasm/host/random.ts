/**
 * `random`: wasi:random, from the operating system, or (deterministic branes) from a
 * stream seeded by the manifest, so the same seed gives the same bytes in every run.
 */
import { createCipheriv, createHash } from 'node:crypto'
import { shim, type ImportInterface } from './shim.ts'

/** The three wasi:random interfaces of one instance */
export interface RandomInterfaces {
  readonly random: ImportInterface
  readonly insecure: ImportInterface
  readonly insecureSeed: ImportInterface
}

/** Most bytes one `get-random-bytes` call may ask for (the guest's memory bounds it anyway) */
const MAX_BYTES = 1 << 26

/**
 * A deterministic byte stream: the ChaCha20 key stream under a key derived from
 * `seed` and `label` (one stream per interface, so using one does not shift another).
 */
class SeededStream {
  readonly #cipher: ReturnType<typeof createCipheriv>

  constructor (seed: number, label: string) {
    const key = createHash('sha256').update(`omega:random:${label}:${seed}`).digest()
    // node's chacha20 takes a 16-byte IV: 4-byte counter + 12-byte nonce
    this.#cipher = createCipheriv('chacha20', key, Buffer.alloc(16))
  }

  bytes (len: number): Uint8Array {
    return new Uint8Array(this.#cipher.update(Buffer.alloc(len)))
  }

  u64 (): bigint {
    return Buffer.from(this.bytes(8)).readBigUInt64LE()
  }
}

function length (len: bigint): number {
  const n = Number(len)
  if (n > MAX_BYTES) {
    throw new RangeError(`get-random-bytes: ${n} bytes is more than ${MAX_BYTES}`)
  }
  return n
}

/**
 * wasi:random for one instance.
 *
 * @param seed - when set, every value comes from a stream seeded by it
 */
export function randomFor (seed: number | undefined): RandomInterfaces {
  if (seed === undefined) {
    return { random: shim.random, insecure: shim.insecure, insecureSeed: shim.insecureSeed }
  }
  const secure = new SeededStream(seed, 'random')
  const insecure = new SeededStream(seed, 'insecure')
  const insecureSeed = new SeededStream(seed, 'insecure-seed')
  const seedPair: [bigint, bigint] = [insecureSeed.u64(), insecureSeed.u64()]
  return {
    random: {
      getRandomBytes: (len: bigint): Uint8Array => secure.bytes(length(len)),
      getRandomU64: (): bigint => secure.u64()
    },
    insecure: {
      getInsecureRandomBytes: (len: bigint): Uint8Array => insecure.bytes(length(len)),
      getInsecureRandomU64: (): bigint => insecure.u64()
    },
    insecureSeed: {
      insecureSeed: (): [bigint, bigint] => seedPair
    }
  }
}
