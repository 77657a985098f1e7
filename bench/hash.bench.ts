import { createHash, randomFillSync } from 'node:crypto'
import { blake3Hex } from '../src/identity/index.ts'
import type { BenchCase } from './harness.ts'

const MIB = 1024 * 1024
const input = new Uint8Array(MIB)

/** Content addressing: our BLAKE3 (hash-wasm, WebAssembly) against node:crypto's native SHA-256 */
export const cases: BenchCase[] = [
  {
    name: 'blake3-1MiB',
    description: 'Hash a 1 MiB buffer to hex: identity.blake3Hex vs node:crypto sha256',
    metrics: ['MiB/s', 'p50', 'p99'],
    bytesPerOp: MIB,
    setup () { randomFillSync(input) },
    subject: { label: 'identity.blake3Hex (hash-wasm)', op: () => blake3Hex(input) },
    baseline: { label: 'node:crypto sha256 hex', op: () => createHash('sha256').update(input).digest('hex') }
  }
]
