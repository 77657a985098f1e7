import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { generateKeyPairSync } from 'node:crypto'
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { after, before, describe, it } from 'node:test'
import { base58btc } from 'multiformats/bases/base58'
import {
  NODE_KEY_FILE,
  didFromPublicKey,
  generateNodeKey,
  loadOrCreateNodeKey,
  nodeKeyFromSeed,
  publicKeyFromDid,
  verify
} from './index.ts'

function hex (text: string): Uint8Array {
  return new Uint8Array(Buffer.from(text, 'hex'))
}

// w3c-ccg/did-method-key test-vectors/ed25519-x25519.json: seed → did and publicKeyBase58
const DID_KEY_VECTORS = [
  {
    seed: '0000000000000000000000000000000000000000000000000000000000000000',
    did: 'did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp',
    publicKeyBase58: '4zvwRjXUKGfvwnParsHAS3HuSVzV5cA4McphgmoCtajS'
  },
  {
    seed: '0000000000000000000000000000000000000000000000000000000000000001',
    did: 'did:key:z6MkjchhfUsD6mmvni8mCdXHw216Xrm9bQe2mBH1P5RDjVJG',
    publicKeyBase58: '6ASf5EcmmEHTgDJ4X4ZT5vT6iHVJBXPg5AN5YoTCpGWt'
  }
]

// RFC 8032 §7.1, TEST 1 (empty message)
const RFC8032_TEST1 = {
  secretKey: '9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60',
  publicKey: 'd75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a',
  signature: 'e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b'
}

describe('did:key', () => {
  it('matches the did:key spec test vectors', () => {
    for (const vector of DID_KEY_VECTORS) {
      const key = nodeKeyFromSeed(hex(vector.seed))
      assert.equal(key.did, vector.did)
      // publicKeyBase58 is the raw key in plain base58btc (no multibase prefix)
      assert.deepEqual(key.publicKey, base58btc.baseDecode(vector.publicKeyBase58))
      assert.deepEqual(publicKeyFromDid(vector.did), key.publicKey)
      assert.equal(didFromPublicKey(key.publicKey), vector.did)
    }
  })

  it('signs the RFC 8032 test vector byte for byte', () => {
    const key = nodeKeyFromSeed(hex(RFC8032_TEST1.secretKey))
    assert.deepEqual(key.publicKey, hex(RFC8032_TEST1.publicKey))
    assert.deepEqual(key.sign(new Uint8Array()), hex(RFC8032_TEST1.signature))
    assert.equal(verify(key.did, new Uint8Array(), hex(RFC8032_TEST1.signature)), true)
  })

  it('rejects malformed dids with a TypeError', () => {
    const good = DID_KEY_VECTORS[0]?.did ?? ''
    const secp256k1 = 'did:key:zQ3shokFTS3brHcDQrn82RUDfCZESWL1ZdCEJwekUDPQiYBme'
    for (const bad of [
      'did:web:example.com',
      'did:key:' + good.slice('did:key:z'.length), // no multibase prefix
      'did:key:z0OIl', // not base58
      good.slice(0, -3), // truncated key
      good + 'z', // trailing byte
      `${good}#${good.slice('did:key:'.length)}`, // DID URL, not a DID
      secp256k1 // another key type
    ]) {
      assert.throws(() => publicKeyFromDid(bad), { name: 'TypeError' }, bad)
      assert.throws(() => verify(bad, new Uint8Array(), new Uint8Array(64)), { name: 'TypeError' }, bad)
    }
  })
})

describe('sign and verify', () => {
  const key = generateNodeKey()
  const message = new TextEncoder().encode('receipt #1: 12 invocations')

  it('round-trips', () => {
    const signature = key.sign(message)
    assert.equal(signature.byteLength, 64)
    assert.equal(verify(key.did, message, signature), true)
  })

  it('fails on a tampered signature, message or signer', () => {
    const signature = key.sign(message)
    for (let bit = 0; bit < 512; bit += 37) {
      const tampered = signature.slice()
      tampered[bit >> 3] = (tampered[bit >> 3] ?? 0) ^ (1 << (bit & 7))
      assert.equal(verify(key.did, message, tampered), false, `bit ${bit}`)
    }
    const other = message.slice()
    other[0] = (other[0] ?? 0) ^ 1
    assert.equal(verify(key.did, other, signature), false)
    assert.equal(verify(generateNodeKey().did, message, signature), false)
    assert.equal(verify(key.did, message, signature.subarray(0, 63)), false)
    assert.equal(verify(key.did, message, new Uint8Array(0)), false)
  })

  it('does not leak the private key through JSON', () => {
    assert.deepEqual(JSON.parse(JSON.stringify(key)), { did: key.did })
  })
})

describe('loadOrCreateNodeKey', () => {
  let root = ''
  before(async () => { root = await mkdtemp(join(tmpdir(), 'omega-keys-')) })
  after(async () => { await rm(root, { recursive: true, force: true }) })

  it('creates the key with private permissions and loads the same key again', async () => {
    const home = join(root, 'fresh', '.omega')
    const first = await loadOrCreateNodeKey(home)
    const file = join(home, NODE_KEY_FILE)
    assert.equal((await stat(file)).mode & 0o777, 0o600)
    assert.equal((await stat(home)).mode & 0o777, 0o700)
    assert.match(await readFile(file, 'utf8'), /^-----BEGIN PRIVATE KEY-----\n/)
    const second = await loadOrCreateNodeKey(home)
    assert.equal(second.did, first.did)
    const message = new Uint8Array([1, 2, 3])
    assert.equal(verify(first.did, message, second.sign(message)), true)
    assert.deepEqual(await readdir(home), [NODE_KEY_FILE], 'no temp files left behind')
  })

  it('agrees on one key when many callers race to create it', async () => {
    const home = join(root, 'race')
    const keys = await Promise.all(Array.from({ length: 8 }, async () => loadOrCreateNodeKey(home)))
    assert.equal(new Set(keys.map((k) => k.did)).size, 1)
    assert.equal((await loadOrCreateNodeKey(home)).did, keys[0]?.did)
    assert.deepEqual(await readdir(home), [NODE_KEY_FILE])
  })

  it('agrees on one key when several processes race to create it', async () => {
    const home = join(root, 'race-processes')
    const keysModule = fileURLToPath(new URL('./keys.js', import.meta.url))
    const script = `import(${JSON.stringify(keysModule)}).then(async (m) => { process.stdout.write((await m.loadOrCreateNodeKey(${JSON.stringify(home)})).did) })`
    const run = promisify(execFile)
    const outputs = await Promise.all([1, 2, 3].map(async () => (await run(process.execPath, ['-e', script])).stdout))
    assert.equal(new Set(outputs).size, 1)
    assert.equal((await loadOrCreateNodeKey(home)).did, outputs[0])
  })

  it('refuses a corrupt key file, names it, and leaves it untouched', async () => {
    const home = join(root, 'corrupt')
    await loadOrCreateNodeKey(home)
    const file = join(home, NODE_KEY_FILE)
    await writeFile(file, 'not a key\n')
    await assert.rejects(loadOrCreateNodeKey(home), (err: Error) => {
      assert.equal(err.name, 'NodeKeyError')
      assert.ok(err.message.includes(file), err.message)
      return true
    })
    assert.equal(await readFile(file, 'utf8'), 'not a key\n')
  })

  it('refuses a key of another type', async () => {
    const home = join(root, 'rsa')
    await loadOrCreateNodeKey(home)
    const file = join(home, NODE_KEY_FILE)
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' })
    await writeFile(file, privateKey.export({ format: 'pem', type: 'pkcs8' }))
    await assert.rejects(loadOrCreateNodeKey(home), { name: 'NodeKeyError' })
  })

  it('honours an aborted signal', async () => {
    await assert.rejects(loadOrCreateNodeKey(join(root, 'aborted'), { signal: AbortSignal.abort() }), { name: 'AbortError' })
  })
})
