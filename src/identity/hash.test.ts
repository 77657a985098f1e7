import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import {
  blake3Hex,
  contentAddress,
  createBlake3,
  formatContentAddress,
  isContentAddress,
  parseContentAddress
} from './index.ts'

// Official BLAKE3 digest of the empty input (BLAKE3 reference implementation, test_vectors.json)
const EMPTY = 'af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262'

describe('blake3Hex', () => {
  it('matches the reference digest of the empty input', () => {
    assert.equal(blake3Hex(new Uint8Array()), EMPTY)
  })

  it('agrees with the incremental hasher across chunk boundaries', () => {
    const bytes = new Uint8Array(300_000).map((_, i) => (i * 31) & 0xff)
    const hasher = createBlake3()
    for (let offset = 0; offset < bytes.length; offset += 65_537) {
      hasher.update(bytes.subarray(offset, offset + 65_537))
    }
    assert.equal(hasher.digestHex(), blake3Hex(bytes))
    assert.match(blake3Hex(bytes), /^[0-9a-f]{64}$/)
  })
})

describe('content addresses', () => {
  it('formats and parses b3:<hex>', () => {
    const address = formatContentAddress(EMPTY)
    assert.equal(address, `b3:${EMPTY}`)
    assert.equal(parseContentAddress(address), EMPTY)
    assert.equal(contentAddress(new Uint8Array()), address)
    assert.equal(isContentAddress(address), true)
  })

  it('rejects malformed addresses with a TypeError', () => {
    for (const bad of [EMPTY, `b3:${EMPTY.toUpperCase()}`, `b3:${EMPTY.slice(1)}`, `b3:${EMPTY}0`, 'sha256:' + EMPTY, 'b3:', `b3:${EMPTY.slice(1)}g`]) {
      assert.equal(isContentAddress(bad), false, bad)
      assert.throws(() => parseContentAddress(bad), { name: 'TypeError' }, bad)
    }
    assert.throws(() => formatContentAddress('abc'), { name: 'TypeError' })
  })
})
