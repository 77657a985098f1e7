import { createHmac, generateKeyPairSync, randomBytes, sign, timingSafeEqual, verify as nodeVerify } from 'node:crypto'
import { generateNodeKey, verify } from '../src/identity/index.ts'
import type { BenchCase } from './harness.ts'

const message = randomBytes(256)
const key = generateNodeKey()
const raw = generateKeyPairSync('ed25519')
const secret = randomBytes(32)

function identitySignVerify (): boolean {
  return verify(key.did, message, key.sign(message))
}

/** Signing a record and checking it, as receipts and signed manifests will */
export const cases: BenchCase[] = [
  {
    name: 'ed25519-vs-hmac-256B',
    description: 'Sign then verify 256 bytes: identity Ed25519 (NodeKey.sign + verify(did)) vs HMAC-SHA256 compute + constant-time compare (what a shared-secret design would pay)',
    metrics: ['ops/s', 'p50', 'p99'],
    subject: { label: 'identity Ed25519 sign+verify', op: identitySignVerify },
    baseline: {
      label: 'node:crypto HMAC-SHA256 mac+check',
      op: () => {
        const mac = createHmac('sha256', secret).update(message).digest()
        return timingSafeEqual(mac, createHmac('sha256', secret).update(message).digest())
      }
    }
  },
  {
    name: 'ed25519-overhead-256B',
    description: 'Sign then verify 256 bytes: identity API (did:key decoding, copies) vs raw node:crypto Ed25519 with prebuilt KeyObjects — the cost of our wrapper',
    metrics: ['ops/s', 'p50', 'p99'],
    subject: { label: 'identity Ed25519 sign+verify', op: identitySignVerify },
    baseline: {
      label: 'node:crypto Ed25519 sign+verify (KeyObjects)',
      op: () => nodeVerify(null, message, raw.publicKey, sign(null, message, raw.privateKey))
    }
  }
]
