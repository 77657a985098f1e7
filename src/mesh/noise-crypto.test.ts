import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { defaultCrypto } from '@chainsafe/libp2p-noise/crypto'
import { noiseCrypto } from './noise-crypto.ts'

describe('noise crypto', () => {
  it('agrees with the default implementation: key pairs from seeds, and shared keys both ways', () => {
    const ours = noiseCrypto()
    const seed = new Uint8Array(32).fill(7)
    const bytes = ({ publicKey, privateKey }: { publicKey: Uint8Array, privateKey: Uint8Array }): number[][] => [[...publicKey], [...privateKey]]
    assert.deepEqual(bytes(ours.generateX25519KeyPairFromSeed(seed)), bytes(defaultCrypto.generateX25519KeyPairFromSeed(seed)))
    for (let i = 0; i < 3; i++) {
      const a = ours.generateX25519KeyPair()
      const b = defaultCrypto.generateX25519KeyPair()
      const shared = defaultCrypto.generateX25519SharedKey(b.privateKey, a.publicKey)
      assert.deepEqual(ours.generateX25519SharedKey(a.privateKey, b.publicKey), shared)
      // again, from the kept key object
      assert.deepEqual(ours.generateX25519SharedKey(a.privateKey, b.publicKey), shared)
      assert.deepEqual(ours.generateX25519SharedKey(b.privateKey, a.publicKey), shared, 'a key it did not make is imported')
    }
  })

  it('keeps a bounded number of key objects and still answers for keys it let go', () => {
    const ours = noiseCrypto()
    const first = ours.generateX25519KeyPair()
    const peer = defaultCrypto.generateX25519KeyPair()
    for (let i = 0; i < 300; i++) {
      ours.generateX25519KeyPair()
    }
    assert.deepEqual(ours.generateX25519SharedKey(first.privateKey, peer.publicKey), defaultCrypto.generateX25519SharedKey(peer.privateKey, first.publicKey))
  })
})
