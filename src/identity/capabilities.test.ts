import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateNodeKey } from './keys.ts'
import {
  RevocationList,
  delegateCapability,
  inspectCapability,
  issueCapability,
  parseCapability,
  resourcePatterns,
  verifyCapability
} from './capabilities.ts'

const root = generateNodeKey()
const alice = generateNodeKey()
const bob = generateNodeKey()
const carol = generateNodeKey()
const roots = [root.did]

/** Top-level protobuf fields of a Biscuit (1 root key id, 2 authority, 3 blocks, 4 proof) */
function fields (bytes: Buffer): Array<{ field: number, raw: Buffer }> {
  const out: Array<{ field: number, raw: Buffer }> = []
  let at = 0
  const varint = (): number => {
    let value = 0
    let shift = 0
    for (let i = 0; i < 10; i++) {
      const byte = bytes[at++] ?? 0
      value += (byte & 0x7f) * 2 ** shift
      shift += 7
      if ((byte & 0x80) === 0) {
        break
      }
    }
    return value
  }
  while (at < bytes.length) {
    const start = at
    const key = varint()
    if ((key & 7) === 2) {
      const length = varint()
      at += length
    } else {
      varint()
    }
    out.push({ field: key >>> 3, raw: bytes.subarray(start, at) })
  }
  return out
}

describe('capability tokens (Biscuit)', () => {
  const t1 = issueCapability(root, { subject: alice.did, capabilities: [parseCapability('deploy:brane/*'), parseCapability('logs:brane/*')] })
  const t2 = delegateCapability(t1, { roots, subject: bob.did, capabilities: [parseCapability('logs:brane/*')] })
  const t3 = delegateCapability(t2, { roots, subject: carol.did, capabilities: [parseCapability('logs:brane/fetch')], ttlSeconds: 60 })

  it('issues, delegates twice with attenuation and verifies the 3-link chain offline', () => {
    const ok = verifyCapability(t3, { ability: 'logs', resource: 'brane/fetch', roots })
    assert.equal(ok.subject, carol.did)
    assert.deepEqual(ok.lineage, [alice.did, bob.did, carol.did])
    assert.equal(ok.root, root.did)
    assert.equal(verifyCapability(t1, { ability: 'deploy', resource: 'brane/fetch', roots }).subject, alice.did)
    const read = inspectCapability(t3, { roots })
    assert.equal(read.links.length, 3)
    assert.deepEqual(read.links[2]?.capabilities, [{ ability: 'logs', resource: 'brane/fetch' }])
    assert.match(read.id, /^[0-9a-f]{128}$/)
  })

  it('a delegated token allows less than its parent: every attenuated right is refused', () => {
    for (const [ability, resource] of [['deploy', 'brane/fetch'], ['logs', 'brane/other'], ['logs', 'brane/*'], ['invoke', 'route/x']] as const) {
      assert.throws(() => verifyCapability(t3, { ability, resource, roots }), { name: 'CapabilityTokenError', reason: 'denied' }, `${ability} ${resource}`)
    }
    assert.throws(() => verifyCapability(t2, { ability: 'deploy', resource: 'brane/fetch', roots }), { reason: 'denied' })
  })

  it('refuses to delegate more than the parent allows (escalation)', () => {
    assert.throws(() => delegateCapability(t2, { roots, subject: carol.did, capabilities: [parseCapability('deploy:brane/fetch')] }), { name: 'CapabilityTokenError', reason: 'escalation' })
    assert.throws(() => delegateCapability(t3, { roots, subject: carol.did, capabilities: [parseCapability('logs:*')] }), { reason: 'escalation' })
  })

  it('a hand-made block that claims new rights grants nothing', async () => {
    // Bypass delegateCapability's check: append a block asserting right("deploy", "*") and an
    // "attenuated" wildcard; Biscuit never trusts facts of non-root blocks for the verifier
    const biscuit = (await import('./biscuit.ts')).biscuit()
    const parsed = biscuit.Biscuit.fromBase64(t2, biscuit.PublicKey.fromBytes(root.publicKey, 0))
    const block = biscuit.Biscuit.block_builder()
    block.addCode('right("deploy", "*"); right("*", "*"); attenuated("*", "*"); subject("did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK");')
    const forged = parsed.appendBlock(block).toBase64()
    assert.throws(() => verifyCapability(forged, { ability: 'deploy', resource: 'brane/fetch', roots }), { reason: 'denied' })
    assert.throws(() => verifyCapability(forged, { ability: 'admin', resource: 'node', roots }), { reason: 'denied' })
  })

  it('refuses expired tokens, at any link', () => {
    const later = Date.now() + 120_000
    assert.throws(() => verifyCapability(t3, { ability: 'logs', resource: 'brane/fetch', roots, now: later }), { reason: 'expired' })
    // the parent (1 h) is still valid then
    assert.equal(verifyCapability(t2, { ability: 'logs', resource: 'brane/fetch', roots, now: later }).subject, bob.did)
    const short = issueCapability(root, { subject: alice.did, capabilities: [parseCapability('logs:*')], ttlSeconds: 1, now: Date.now() - 10_000 })
    assert.throws(() => verifyCapability(short, { ability: 'logs', resource: 'x', roots }), { reason: 'expired' })
  })

  it('refuses untrusted roots, wrong signatures and malformed tokens', () => {
    assert.throws(() => verifyCapability(t3, { ability: 'logs', resource: 'brane/fetch', roots: [alice.did] }), { reason: 'signature' })
    const bytes = Buffer.from(t3, 'base64url')
    // flip a byte inside the last block's signature (proof and signatures sit at the end)
    const tampered = Buffer.from(bytes)
    const i = bytes.length - 40
    tampered[i] = (tampered[i] ?? 0) ^ 0x01
    assert.throws(() => verifyCapability(tampered.toString('base64url'), { ability: 'logs', resource: 'brane/fetch', roots }), { name: 'CapabilityTokenError' })
    assert.throws(() => verifyCapability('not a token!', { ability: 'logs', resource: 'brane/fetch', roots }), { reason: 'malformed' })
    assert.throws(() => verifyCapability('', { ability: 'logs', resource: 'brane/fetch', roots }), { reason: 'malformed' })
  })

  it('refuses a broken chain: the middle link removed, the last kept', () => {
    const parts = fields(Buffer.from(t3, 'base64url'))
    assert.deepEqual(parts.map((p) => p.field), [2, 3, 3, 4])
    const broken = Buffer.concat(parts.filter((_, i) => i !== 1).map((p) => p.raw)).toString('base64url')
    assert.throws(() => verifyCapability(broken, { ability: 'logs', resource: 'brane/fetch', roots }), { name: 'CapabilityTokenError', reason: 'signature' })
    // and the last block grafted onto another chain from the same root
    const other = delegateCapability(t1, { roots, subject: bob.did, capabilities: [parseCapability('logs:brane/*')] })
    const otherParts = fields(Buffer.from(other, 'base64url'))
    const graft = Buffer.concat([otherParts[0]!.raw, otherParts[1]!.raw, parts[2]!.raw, parts[3]!.raw]).toString('base64url')
    assert.throws(() => verifyCapability(graft, { ability: 'logs', resource: 'brane/fetch', roots }), { reason: 'signature' })
  })

  it('revocation by id refuses the link and everything delegated from it, persisted, with a hook', async () => {
    const home = await mkdtemp(join(tmpdir(), 'omega-revoke-'))
    try {
      const list = await new RevocationList(home).load()
      const heard: string[] = []
      list.onRevoked((id) => { heard.push(id) })
      const middle = inspectCapability(t2, { roots }).id
      await list.revoke(middle)
      assert.deepEqual(heard, [middle])
      assert.throws(() => verifyCapability(t3, { ability: 'logs', resource: 'brane/fetch', roots, revoked: list }), { reason: 'revoked' })
      assert.throws(() => verifyCapability(t2, { ability: 'logs', resource: 'brane/fetch', roots, revoked: list }), { reason: 'revoked' })
      // the parent is not revoked
      assert.equal(verifyCapability(t1, { ability: 'logs', resource: 'brane/fetch', roots, revoked: list }).subject, alice.did)
      const again = await new RevocationList(home).load()
      assert.equal(again.has(middle), true)
      assert.deepEqual(JSON.parse(await readFile(list.file, 'utf8')), [middle])
      await assert.rejects(list.revoke('nope'), { name: 'TypeError' })
    } finally {
      await rm(home, { recursive: true, force: true })
    }
  })

  it('resource patterns', () => {
    assert.deepEqual(resourcePatterns('brane/fetch').sort(), ['*', 'brane/*', 'brane/fetch'])
    assert.deepEqual(resourcePatterns('brane/*').sort(), ['*', 'brane/*'])
    assert.throws(() => parseCapability('deploy'), { name: 'TypeError' })
    assert.throws(() => parseCapability('deploy:brane/f*'), { name: 'TypeError' })
  })
})
